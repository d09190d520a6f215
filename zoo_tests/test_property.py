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

from hypothesis import HealthCheck, event, given, settings
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


# ---------------------------------------------------------------- issue 11: generated input

def _examples(default: int) -> int:
    """CI runs the default; ``ZOO_PROPERTY_SCALE=20`` runs twenty times more locally."""
    return default * int(os.environ.get("ZOO_PROPERTY_SCALE", "1"))


# mostly sizes a real file uses, sometimes hostile ones
SMALL = st.one_of(st.integers(1, 4), st.integers(1, 4), st.integers(1, 4), st.sampled_from([-1, 0, 7, 1_000_000]))
SIZE2 = st.one_of(SMALL, SMALL, st.lists(SMALL, min_size=2, max_size=2), st.just(True))
PADDING = st.one_of(st.sampled_from(["valid", "same", "full"]), st.integers(0, 3), st.lists(st.integers(0, 3), min_size=2, max_size=2), SMALL)
FLOAT = st.one_of(st.floats(-3, 3), st.sampled_from([float("nan"), float("inf"), -float("inf"), 0.0, 1e30]))
LAYER_ARGS: dict[str, st.SearchStrategy[dict[str, object]]] = {
    "conv": st.fixed_dictionaries({"filters": st.sampled_from([1, 3, 4, 0, -2, True]), "kernel": SIZE2},
                                  optional={"stride": SIZE2, "padding": PADDING, "dilation": SIZE2,
                                            "groups": st.sampled_from([1, 2, 3, 0]), "bias": st.sampled_from([True, False, 1, "no"])}),
    "depthwise_conv": st.fixed_dictionaries({"kernel": SIZE2}, optional={"stride": SIZE2, "padding": PADDING,
                                            "dilation": SIZE2, "multiplier": st.sampled_from([1, 2, 0, 10**7])}),
    "separable_conv": st.fixed_dictionaries({"filters": st.sampled_from([1, 4, 0]), "kernel": SIZE2},
                                            optional={"stride": SIZE2, "padding": PADDING, "dilation": SIZE2}),
    "maxpool": st.fixed_dictionaries({"kernel": SIZE2}, optional={"stride": SIZE2, "padding": PADDING,
                                     "ceil_mode": st.booleans()}),
    "avgpool": st.fixed_dictionaries({"kernel": SIZE2}, optional={"stride": SIZE2, "padding": PADDING,
                                     "ceil_mode": st.booleans(), "count_include_pad": st.booleans()}),
    "adaptive_avgpool": st.fixed_dictionaries({"output": SIZE2}),
    "adaptive_maxpool": st.fixed_dictionaries({"output": SIZE2}),
    "pad": st.fixed_dictionaries({"padding": st.one_of(SMALL, st.lists(SMALL, min_size=4, max_size=4))}),
    "softmax": st.fixed_dictionaries({}, optional={"dim": st.integers(-6, 6)}),
    "log_softmax": st.fixed_dictionaries({}, optional={"dim": st.integers(-6, 6)}),
    "hardtanh": st.fixed_dictionaries({}, optional={"min": FLOAT, "max": FLOAT}),
    "leaky_relu": st.fixed_dictionaries({}, optional={"slope": FLOAT}),
    "lrn": st.fixed_dictionaries({}, optional={"size": SMALL, "alpha": FLOAT, "beta": FLOAT, "k": FLOAT}),
    "batchnorm": st.fixed_dictionaries({}, optional={"eps": FLOAT, "momentum": FLOAT, "scale": st.booleans(), "center": st.booleans()}),
    "dropout": st.fixed_dictionaries({}, optional={"p": FLOAT}),
    "dense": st.fixed_dictionaries({"units": st.sampled_from([1, 5, 0, True])}),
    "flatten": st.just({}),
    "global_avgpool": st.just({}),
    "relu": st.fixed_dictionaries({}, optional={"inplace": st.booleans()}),
    "filter": st.fixed_dictionaries({"kernel": st.sampled_from(["sharpen", ["box_blur", "edge_all"]])},
                                    optional={"padding": st.sampled_from(["same", "valid"])}),
}
FUZZ_ACTIVATION_LIMIT = 2**20  # the property's models stay small; larger requests must be refused


@st.composite
def random_network(draw: st.DrawFn) -> tuple[list[int], list[dict[str, object]]]:
    shape = [draw(st.integers(1, 4)), draw(st.integers(1, 12)), draw(st.integers(1, 12))]
    if draw(st.integers(0, 9)) == 0:
        shape = [draw(st.sampled_from([-3, 0, 1])), draw(st.sampled_from([0, 5])), 5]
    layers = []
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(sorted(LAYER_ARGS)))
        layers.append({kind: draw(LAYER_ARGS[kind])})
    return shape, layers


def _located_spec(text: str, name: str = "fuzz") -> object:
    """The file through the loader and the file schema (its ``input`` checks), as the registry does."""
    from zoo._errors import Location
    from zoo._pydantic_errors import validate
    from zoo._schema import ArchitectureFile, ArchitectureSpec
    from zoo._yaml import parse_yaml

    raw = parse_yaml(text, f"{name}.yaml")
    validate(ArchitectureFile, {**raw, "name": name}, location=Location(f"{name}.yaml", 1, 1))
    return ArchitectureSpec(name=name, file=f"{name}.yaml", chain=[name], description="", source="", input=raw["input"],
                            params=raw.get("params", {}), let={}, published=None, reference=None, features=None,
                            init=None, weights=None, blocks={}, layers=raw["layers"])


@settings(max_examples=_examples(300), deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None)
@given(net=random_network())
def test_random_primitive_arguments_validate_then_forward(net: tuple[list[int], list[dict[str, object]]]) -> None:
    """Validation that passes means the forward pass works: the shape rules make every check the
    forward pass would make (pool padding, dims, value ranges, empty outputs, sizes)."""
    import json

    import torch

    from zoo._builder import build_network
    from zoo._expansion import expand
    from zoo._schema import BlockTemplate

    shape, layers = net
    text = f"input: {json.dumps(shape)}\nlayers:\n" + "".join(f"  - {json.dumps(layer)}\n" for layer in layers)
    with time_limit(SECONDS_PER_CASE):
        try:
            blocks: dict[str, BlockTemplate] = {}
            expanded = expand(_located_spec(text), blocks, {}, tuple(shape))  # type: ignore[arg-type]
            model = build_network(expanded, activation_limit=FUZZ_ACTIVATION_LIMIT)
        except zoo.ZooError as exc:
            assert exc.location is not None, f"{type(exc).__name__} without a location: {exc}"
            event(f"refused: {type(exc).__name__}")
            return
        event("validated: forward run")
        out = model(torch.randn(2, *shape))
        assert tuple(out.shape) == (2, *expanded.out_shape), text
        assert torch.isfinite(out).all(), text


EXPR_LEAVES = st.one_of(st.integers(-5, 2000), st.sampled_from([0.5, 1e308, -0.0, 2.0]),
                        st.sampled_from(["'a'", "'%9d'", "[0]", "[1, 2, 3]", "width", "names", "True", "None"]))


@st.composite
def random_expression(draw: st.DrawFn, depth: int = 0) -> str:
    if depth > 4 or draw(st.integers(0, 3)) == 0:
        return str(draw(EXPR_LEAVES))
    shape = draw(st.integers(0, 4))
    a = draw(random_expression(depth + 1))
    if shape == 0:
        return f"({a} {draw(st.sampled_from(['+', '-', '*', '/', '//', '%', '**', '<', '==', 'in', 'and', 'or']))} {draw(random_expression(depth + 1))})"
    if shape == 1:
        return f"{draw(st.sampled_from(['min', 'max', 'abs', 'int', 'round', 'len', 'ceil', 'floor']))}({a})"
    if shape == 2:
        return f"round({a}, {draw(random_expression(depth + 1))})"
    if shape == 3:
        return f"[{a}, {draw(random_expression(depth + 1))}][{draw(st.integers(-3, 3))}]"
    return f"({a} if {draw(random_expression(depth + 1))} else {draw(random_expression(depth + 1))})"


@settings(max_examples=_examples(200), deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None)
@given(text=random_expression())
def test_random_expressions_are_bounded(text: str) -> None:
    """Any expression either gives a bounded plain value or raises ExpressionError, quickly and
    without growing memory (every intermediate value is checked, not only the result)."""
    from zoo._expr import MAX_ITEMS, evaluate

    if not _start_peak:
        _start_peak.append(_peak_mb())
    with time_limit(5):
        try:
            value = evaluate(text, {"width": 64, "names": ["a", "b"]})
        except zoo.ExpressionError:
            return
    assert value is None or isinstance(value, (bool, int, float, str, list)), (text, value)
    if isinstance(value, (str, list)):
        assert len(value) <= MAX_ITEMS
    if isinstance(value, int):
        assert abs(value) <= 2**63
    assert _peak_mb() - _start_peak[0] < MEMORY_GROWTH_MB


@st.composite
def random_nesting(draw: st.DrawFn) -> str:
    """A file of repeats, seqs, residuals and blocks nested in each other, blocks possibly cyclic."""
    names = ["b0", "b1", "b2"]

    def node(depth: int) -> str:
        kind = draw(st.sampled_from(["relu", "repeat", "seq", "residual", "block", "dropped"] if depth < 4 else ["relu", "block"]))
        if kind == "repeat":
            n = draw(st.sampled_from([0, 1, 2, 3, 10, 100, 10_000]))
            return f"{{repeat: {{n: {n}, layers: [{node(depth + 1)}]}}}}"
        if kind == "seq":
            return f"{{seq: {{layers: [{node(depth + 1)}, {node(depth + 1)}]}}}}"
        if kind == "residual":
            return f"{{residual: {{body: [{node(depth + 1)}]}}}}"
        if kind == "block":
            return draw(st.sampled_from(names))
        return "{relu: {when: false}}"

    blocks = "".join(f"  {b}:\n    layers: [{node(1)}]\n" for b in names)
    return f"input: [1, 4, 4]\nblocks:\n{blocks}layers: [{node(0)}]\n"


@settings(max_examples=_examples(40), deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None)
@given(text=random_nesting())
def test_random_repeat_and_block_nesting_is_bounded(text: str) -> None:
    """Nested repeats and blocks (cycles included) expand or raise a located ZooError, in bounded
    time and memory: the work, nesting and layer limits hold whatever the shape of the nesting."""
    from zoo._expansion import expand
    from zoo._schema import BlockTemplate
    from zoo._yaml import parse_yaml

    if not _start_peak:
        _start_peak.append(_peak_mb())
    raw = parse_yaml(text, "nest.yaml")
    blocks = {k: BlockTemplate.model_validate(v) for k, v in raw["blocks"].items()}
    with time_limit(SECONDS_PER_CASE):
        try:
            expand(_located_spec(text, "nest"), blocks, {}, (1, 4, 4))  # type: ignore[arg-type]
        except RecursionError as exc:  # pragma: no cover - the failure this test exists to catch
            raise AssertionError(f"RecursionError: {text}") from exc
        except zoo.ZooError as exc:
            assert exc.location is not None, str(exc)
            assert len(exc.notes) <= 12, f"{len(exc.notes)} context lines"
    assert _peak_mb() - _start_peak[0] < MEMORY_GROWTH_MB
