"""The bad-input corpus: every malformed file ends in the expected ZooError, at the right line.

Each file in ``bad_inputs/`` opens with ``# expect: ErrorClass[ line N]: text``; the line is N, or
the line carrying a ``# <-`` marker, or 1. Files that cannot carry a header (empty, not UTF-8)
are listed in ``NO_HEADER``.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

import zoo
from zoo._check_file import validate_file

CORPUS = Path(__file__).resolve().parent / "bad_inputs"
FILES = sorted(CORPUS.glob("*.yaml"))
NO_HEADER = {
    "arch_empty.yaml": ("SchemaError", 1, "file is empty"),
    "arch_utf16.yaml": ("SchemaError", 1, "not valid UTF-8"),
}
HEADER = re.compile(rb"# expect: (\w+)(?: line (\d+))?: (.*)")


def _expectation(path: Path) -> tuple[str, int, str]:
    if path.name in NO_HEADER:
        return NO_HEADER[path.name]
    lines = path.read_bytes().split(b"\n")
    match = HEADER.match(lines[0])
    assert match, f"{path.name}: first line must be '# expect: ErrorClass: text'"
    marker = next((i + 1 for i, line in enumerate(lines) if b"# <-" in line), 1)
    line = int(match.group(2)) if match.group(2) else marker
    return match.group(1).decode(), line, match.group(3).decode()


def test_corpus_is_large_enough() -> None:
    assert len(FILES) >= 250
    assert sum(p.name.startswith("recipe_") for p in FILES) >= 10


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_bad_input_gives_the_expected_error(path: Path) -> None:
    kind, line, text = _expectation(path)
    errors = validate_file(path)
    assert errors, f"{path.name} validated without error"
    first = errors[0]
    assert isinstance(first, getattr(zoo, kind)), f"{type(first).__name__}: {first}"
    assert first.line == line, str(first)
    assert text in str(first)
    assert str(first).startswith(f"{first.file}:{first.line}:{first.column}: ")


def test_zoo_validate_prints_every_error_of_a_file(tmp_path: Path) -> None:
    bad = tmp_path / "several.yaml"
    bad.write_text(
        "name: several\ndescription: d\nsource: s\ninput: [1, 28, 28]\npublished: {params: 0, source: s}\n"
        "layers:\n  - convv: {filters: 4, kernel: 3}\n  - conv: {filters: 4, kernal: 3}\n  - flaten\n"
    )
    good = Path(zoo.get_spec("mnist_cnn_v1").file)
    out = subprocess.run([sys.executable, "-m", "zoo", "validate", str(good), str(bad)], capture_output=True, text=True)
    assert out.returncode == 1
    lines = out.stdout.strip().splitlines()
    assert lines[0] == f"{good}: ok"
    assert [ln.split(": ", 1)[0] for ln in lines[1:]] == [f"{bad}:7:5", f"{bad}:8:24", f"{bad}:9:5"]
    assert "did you mean 'conv'" in lines[1] and "did you mean 'kernel'" in lines[2] and "did you mean 'flatten'" in lines[3]


def test_every_shipped_file_validates() -> None:
    shipped = sorted(Path(zoo.get_spec("mnist_cnn_v1").file).parent.parent.rglob("*.yaml"))
    recipes = sorted((Path(__file__).resolve().parent.parent / "recipes").glob("*.yaml"))
    for path in [*shipped, *recipes]:
        assert validate_file(path) == [], path
