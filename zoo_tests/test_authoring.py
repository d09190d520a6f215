"""Writing a file: the editor schema (checked here with jsonschema; test_lsp.py drives the real
editor engine), the language reference, its generated doc, and the command line around them."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

import zoo
from zoo._combinators import COMBINATORS
from zoo._layers import PRIMITIVES, Primitive
from zoo._layers._table import Spec, _none, _same_shape
from zoo._reference import language_markdown
from zoo._tree import COMBINATOR_ARGS

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "language.md"
HEAD = "name: m\ndescription: d\nsource: s\ninput: [1, 28, 28]\npublished: {params: 0, source: s}\n"


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft7Validator:
    schema = zoo.architecture_schema()
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def _leaves(errors: Any) -> list[list[Any]]:
    out = []
    for err in errors:
        out.extend(_leaves(err.context) if err.context else [list(err.absolute_path)])
    return out


def _problems(validator: jsonschema.Draft7Validator, text: str) -> list[list[Any]]:
    """Paths of the deepest failures (through unions: where an editor points)."""
    leaves = _leaves(validator.iter_errors(yaml.safe_load(text)))
    deepest = max((len(p) for p in leaves), default=0)
    return [p for p in leaves if len(p) == deepest]


@pytest.mark.parametrize("layers, where", [
    ("  - cnov: {filters: 8, kernel: 3}\n", ["layers", 0]),
    ("  - conv: {filtres: 8, kernel: 3}\n", ["layers", 0, "conv"]),
    ("  - conv: {filters: many, kernel: 3}\n", ["layers", 0, "conv", "filters"]),
    ("  - dense: {units: 10, act: rleu}\n", ["layers", 0, "dense", "act"]),
    ("  - flaten\n", ["layers", 0]),
    ("  - residual: {body: [{maxpol: 2}]}\n", ["layers", 0, "residual", "body", 0]),
    ("  - concat: {branches: [[relu], [{dense: {units: 0}}]]}\n", ["layers", 0, "concat", "branches", 1, 0, "dense", "units"]),
    ("  - repeat: {n: 2, layers: [{conv: {filters: 4, kernel: 3, strid: 2}}]}\n", ["layers", 0, "repeat", "layers", 0, "conv"]),
    ("  - bottleneck: {plains: 4}\n", ["layers", 0, "bottleneck"]),
])
def test_schema_flags_mistakes_at_any_depth(validator: jsonschema.Draft7Validator, layers: str, where: list[Any]) -> None:
    problems = _problems(validator, HEAD + "layers:\n" + layers)
    assert problems and all(p[: len(where)] == where for p in problems), problems


def test_schema_takes_expressions_wherever_a_value_goes(validator: jsonschema.Draft7Validator) -> None:
    text = HEAD + (
        "params: {w: 8, k: [3, 3], act: relu}\nlayers:\n"
        "  - conv: {filters: '${w}', kernel: '${k}', stride: ['${1}', 1], act: '${act}', when: '${w > 4}'}\n"
        "  - maxpool: '${2}'\n  - repeat: {n: '${w // 4}', layers: [relu]}\n  - flatten\n  - dense: '${w}'\n"
    )
    assert _problems(validator, text) == []


def test_schema_requires_what_the_registry_requires(validator: jsonschema.Draft7Validator) -> None:
    missing = {e.message for e in validator.iter_errors({"name": "m", "layers": ["flatten"]})}
    assert missing == {f"'{k}' is a required property" for k in ("published", "description", "source", "input")}
    assert not list(validator.iter_errors({"name": "m", "extends": "mnist_cnn_v1", "published": {"params": 1, "source": "s"}}))
    assert not list(validator.iter_errors({"name": "t", "abstract": True}))
    assert not list(validator.iter_errors({"kind": "blocks", "blocks": {"b": {"layers": ["relu"]}}}))


def test_blocks_from_zoo_path_are_in_the_schema(arch_dir: Callable[[str, str], Path]) -> None:
    arch_dir("lib.yaml", "kind: blocks\nblocks:\n  wide:\n    params: {w: required, k: 3}\n    layers:\n"
                         "      - conv: {filters: '${w}', kernel: '${k}'}\n")
    validator = jsonschema.Draft7Validator(zoo.architecture_schema())
    assert not _problems(validator, HEAD + "layers:\n  - wide: {w: 8}\n  - wide: {w: 8, k: 5, name: x}\n")
    assert _problems(validator, HEAD + "layers:\n  - wide: {k: 5}\n")  # w is required
    assert _problems(validator, HEAD + "layers:\n  - wide: {w: 8, kk: 5}\n")  # misspelt parameter


def test_a_new_primitive_appears_in_the_schema_and_the_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    class WobbleSpec(Spec):
        amount: float = 0.5

    monkeypatch.setitem(PRIMITIVES, "wobble", Primitive(
        "wobble", WobbleSpec, _same_shape, lambda s, shape: None, primary="amount", doc="a test primitive", params=_none))  # type: ignore[arg-type,return-value]
    validator = jsonschema.Draft7Validator(zoo.architecture_schema())
    assert not _problems(validator, HEAD + "layers:\n  - wobble: {amount: 0.1}\n  - wobble: 0.2\n  - wobble\n")
    assert _problems(validator, HEAD + "layers:\n  - wobble: {amout: 0.1}\n")
    info = {i.name: i for i in zoo.list_layers()}["wobble"]
    assert info.doc == "a test primitive" and [(a.name, a.type, a.default) for a in info.arguments] == [("amount", "a number", "0.5")]


def test_list_layers_covers_every_primitive_and_combinator() -> None:
    layers = {i.name: i for i in zoo.list_layers()}
    assert set(layers) == set(PRIMITIVES) | set(COMBINATOR_ARGS)
    assert set(COMBINATOR_ARGS) == set(COMBINATORS)
    conv = {a.name: a for a in layers["conv"].arguments}
    assert conv["filters"].default is None and conv["stride"].default == "1" and "integer > 0" in conv["filters"].type
    hardtanh = {a.name: a for a in layers["hardtanh"].arguments}
    assert set(hardtanh) == {"min", "max"} and hardtanh["min"].default == "-1.0"
    assert {a.name for a in layers["residual"].arguments} >= {"body", "shortcut", "merge", "inline", "scale"}
    assert all(i.doc for i in layers.values()), [n for n, i in layers.items() if not i.doc]


def test_language_doc_is_up_to_date() -> None:
    assert DOC.read_text() == language_markdown(), "docs/language.md is stale: run python scripts/make_language_doc.py"
    text = DOC.read_text()
    for name in [*PRIMITIVES, *COMBINATOR_ARGS]:
        assert f"### `{name}`" in text


def _zoo(*args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "zoo", *args], capture_output=True, text=True, **kw)


def test_cli_layers_schema_output_and_closed_pipe(tmp_path: Path) -> None:
    out = _zoo("layers", "depthwise_conv")
    assert out.returncode == 0 and "multiplier: an integer > 0; default 1" in out.stdout
    out = _zoo("layers", "conv2d")
    assert out.returncode == 1 and "the zoo calls it 'conv'" in out.stderr
    out = _zoo("schema", "--output", str(tmp_path / "missing" / "s.json"))
    assert out.returncode == 1 and out.stderr.startswith("error: cannot write") and "Traceback" not in out.stderr
    out = _zoo("schema", "--output", str(tmp_path / "s.json"))
    assert out.returncode == 0 and json.loads((tmp_path / "s.json").read_text())["title"] == "zoo architecture file"
    # a reader that stops early: no BrokenPipeError traceback
    shell = f"{sys.executable} -m zoo schema | head -c 10 >/dev/null"
    piped = subprocess.run(["bash", "-c", shell], capture_output=True, text=True)
    assert "Traceback" not in piped.stderr and "BrokenPipe" not in piped.stderr, piped.stderr


@pytest.mark.parametrize("name", ["mnist_cnn_v1", "resnet50", "inception_v3"])
def test_draw_writes_a_diagram_naming_every_top_level_layer(name: str, tmp_path: Path) -> None:
    from zoo._draw import draw

    svg = draw(name, tmp_path / f"{name}.svg")
    text = svg.read_text()
    assert text.startswith("<?xml") and "<svg" in text
    children = [n for n, _ in zoo.build(name, device="meta").named_children()]
    assert children and all(f">{child}: " in text for child in children), [c for c in children if f">{c}: " not in text]
    out_shape = "(10)" if name == "mnist_cnn_v1" else "(1000)"
    assert f">{out_shape}<" in text  # the last node's output shape


def test_cli_draw_png_and_its_errors(tmp_path: Path) -> None:
    out = _zoo("draw", "mnist_cnn_v1", "--depth", "2", "--output", str(tmp_path / "m.png"))
    assert out.returncode == 0 and (tmp_path / "m.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    out = _zoo("draw", "mnist_cnn_v1", "--output", str(tmp_path / "m.pdf"))
    assert out.returncode == 1 and "writes .svg or .png" in out.stderr
    out = _zoo("draw", "mnist_cnn_v", "--output", str(tmp_path / "m.svg"))
    assert out.returncode == 1 and "did you mean 'mnist_cnn_v1'?" in out.stderr
