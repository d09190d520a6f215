"""Property: any mutation of a shipped architecture file either validates or raises a ZooError,
never another exception and never a hang (hypothesis deadline per case; the size limits of the
YAML loader and the builder bound time and memory)."""

from __future__ import annotations

import os
import resource
import signal
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import zoo
from zoo._check_file import validate_file

SHIPPED = sorted(Path(zoo.get_spec("mnist_cnn_v1").file).parent.parent.rglob("*.yaml"))
TEXTS = [p.read_text() for p in SHIPPED]
NASTY = ["", "-1", "0", "1e309", "10000000", "'${1/0}'", "${x.y}", "[", "{", "*a", "&a", "!!python/none",
         "null", "true", "~", ":", "- ", "\t", "é", "\x00", "'", '"', "${", "}", "<<: *a", "? x"]


@st.composite
def mutated(draw: st.DrawFn) -> str:
    text = draw(st.sampled_from(TEXTS))
    lines = text.split("\n")
    for _ in range(draw(st.integers(1, 4))):
        if not lines:
            break
        i = draw(st.integers(0, len(lines) - 1))
        action = draw(st.sampled_from(["delete", "duplicate", "swap", "replace_token", "insert", "truncate", "indent"]))
        if action == "delete":
            del lines[i]
        elif action == "duplicate":
            lines.insert(i, lines[i])
        elif action == "swap":
            j = draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
        elif action == "replace_token":
            words = lines[i].split(" ")
            k = draw(st.integers(0, len(words) - 1))
            words[k] = draw(st.one_of(st.sampled_from(NASTY), st.integers(-10**12, 10**12).map(str), st.text(max_size=8)))
            lines[i] = " ".join(words)
        elif action == "insert":
            lines.insert(i, draw(st.text(max_size=30)))
        elif action == "truncate":
            lines[i] = lines[i][: draw(st.integers(0, len(lines[i])))]
        else:
            lines[i] = " " * draw(st.integers(0, 6)) + lines[i].lstrip()
    return "\n".join(lines)


SECONDS_PER_CASE = 30  # the slowest real file validates in about a second; a hang is far beyond this
MEMORY_GROWTH_MB = 1024  # peak resident memory may not grow by more than this over the whole run


class Hang(Exception):
    pass


@contextmanager
def time_limit(seconds: int) -> Iterator[None]:
    def alarm(signum: int, frame: object) -> None:
        raise Hang(f"validation took longer than {seconds} s")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


_start_peak: list[float] = []  # the process' high-water mark when the first case starts


# deadline=None: hypothesis' own deadline misfires on the first, import-heavy case; the alarm
# above is the hang detector.
@settings(max_examples=int(os.environ.get("ZOO_PROPERTY_EXAMPLES", "200")), deadline=None,
          suppress_health_check=[HealthCheck.too_slow], database=None)
@given(text=mutated())
def test_mutated_architecture_validates_or_raises_zoo_error(text: str) -> None:
    if not _start_peak:
        _start_peak.append(_peak_mb())
    with tempfile.TemporaryDirectory() as folder, time_limit(SECONDS_PER_CASE):
        path = Path(folder) / "mutant.yaml"
        path.write_text(text, encoding="utf-8", errors="surrogatepass") if text.isascii() else path.write_bytes(
            text.encode("utf-8", errors="replace"))
        errors = validate_file(path)  # returns ZooErrors; anything else propagates and fails the test
        assert all(isinstance(e, zoo.ZooError) and e.line is not None for e in errors), errors
    assert _peak_mb() - _start_peak[0] < MEMORY_GROWTH_MB
