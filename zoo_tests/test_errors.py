"""Every user mistake is a ZooError subclass with file, line, path and a did-you-mean."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

import zoo

HEADER = """
name: {name}
description: test model
source: test
input: [1, 28, 28]
params: {{num_classes: 10}}
published: {{params: 0, source: test}}
"""


def _arch(name: str, layers: str, extra: str = "") -> str:
    return HEADER.format(name=name).lstrip("\n") + extra + "layers:\n" + layers


Writer = Callable[[str, str], Path]


def _raises(exc_type: type[zoo.ZooError], name: str) -> zoo.ZooError:
    with pytest.raises(exc_type) as info:
        zoo.build(name)
    return info.value


def test_unknown_top_level_key_has_line_and_suggestion(arch_dir: Writer) -> None:
    arch_dir("a.yaml", _arch("a", "  - flatten\n", extra="descripton: typo\n"))
    err = _raises(zoo.UnknownNameError, "a")
    assert err.line == 7 and err.column == 1
    assert "did you mean 'description'" in str(err)
    assert str(err).startswith(str(err.file) + ":7:1:")


def test_wrong_type_points_at_the_value(arch_dir: Writer) -> None:
    text = _arch("a", "  - flatten\n").replace("input: [1, 28, 28]", "input: [1, 28, x]")
    arch_dir("a.yaml", text)
    err = _raises(zoo.SchemaError, "a")
    assert err.line == 4 and "input[2]" in err.path


def test_unknown_layer_suggests_the_primitive(arch_dir: Writer) -> None:
    arch_dir("a.yaml", _arch("a", "  - flatten\n  - dense: 10\n  - sigmoidd\n"))
    err = _raises(zoo.UnknownNameError, "a")
    assert err.line == 10 and err.path == "layers[2]"
    assert "did you mean 'sigmoid'" in str(err)


def test_unknown_argument_suggests_the_field(arch_dir: Writer) -> None:
    arch_dir("a.yaml", _arch("a", "  - conv: {filters: 8, kernal: 3}\n"))
    err = _raises(zoo.UnknownNameError, "a")
    assert err.line == 8 and "did you mean 'kernel'" in str(err)
    assert "layers[0].conv.kernal" in str(err)


def test_unknown_block_and_block_parameter(arch_dir: Writer) -> None:
    blocks = "blocks:\n  unit:\n    params: {width: required}\n    layers:\n      - conv: {filters: '${width}', kernel: 3}\n"
    arch_dir("a.yaml", _arch("a", "  - unti: {width: 4}\n", extra=blocks))
    err = _raises(zoo.UnknownNameError, "a")
    assert "did you mean 'unit'" in str(err) and err.line == 13
    arch_dir("a.yaml", _arch("a", "  - unit: {widht: 4}\n", extra=blocks))
    err = _raises(zoo.UnknownNameError, "a")
    assert "did you mean 'width'" in str(err) and err.line == 13


def test_missing_block_parameter(arch_dir: Writer) -> None:
    blocks = "blocks:\n  unit:\n    params: {width: required}\n    layers:\n      - conv: {filters: '${width}', kernel: 3}\n"
    arch_dir("a.yaml", _arch("a", "  - unit: {}\n", extra=blocks))
    err = _raises(zoo.SchemaError, "a")
    assert "needs parameter 'width'" in str(err) and err.line == 13


def test_misspelled_model_name() -> None:
    with pytest.raises(zoo.UnknownNameError, match="did you mean 'mnist_cnn_v1'"):
        zoo.build("mnist_cnn_v2")


def test_misspelled_build_parameter() -> None:
    with pytest.raises(zoo.UnknownNameError, match="did you mean 'num_classes'"):
        zoo.build("mnist_cnn_v1", num_clases=3)


def test_bad_expression_names_unknown_parameter(arch_dir: Writer) -> None:
    arch_dir("a.yaml", _arch("a", "  - flatten\n  - dense: '${num_clases}'\n"))
    err = _raises(zoo.ExpressionError, "a")
    assert err.line == 9 and "did you mean 'num_classes'" in str(err)


def test_expression_division_by_zero(arch_dir: Writer) -> None:
    arch_dir("a.yaml", _arch("a", "  - flatten\n  - dense: '${num_classes // 0}'\n"))
    err = _raises(zoo.ExpressionError, "a")
    assert err.line == 9 and "division by zero" in str(err)


def test_extends_cycle(arch_dir: Writer) -> None:
    arch_dir("a.yaml", "name: a\nextends: b\n")
    arch_dir("b.yaml", "name: b\nextends: a\n")
    err = _raises(zoo.ExtendsError, "a")
    assert "cycle" in str(err) and err.line == 2 and "a -> b -> a" in str(err)


def test_extends_unknown_parent(arch_dir: Writer) -> None:
    arch_dir("a.yaml", "name: a\nextends: mnist_cnn_v2\n")
    err = _raises(zoo.ExtendsError, "a")
    assert "did you mean 'mnist_cnn_v1'" in str(err) and err.line == 2


def test_residual_shape_mismatch_reports_both_shapes(arch_dir: Writer) -> None:
    arch_dir("a.yaml", _arch("a", "  - residual:\n      body:\n        - conv: {filters: 8, kernel: 3, padding: same}\n"))
    err = _raises(zoo.ShapeError, "a")
    assert err.line == 8 and "(8, 28, 28)" in str(err) and "(1, 28, 28)" in str(err)


def test_concat_shape_mismatch(arch_dir: Writer) -> None:
    layers = "  - concat:\n      branches:\n        - conv: {filters: 4, kernel: 3}\n        - conv: {filters: 4, kernel: 1}\n"
    arch_dir("a.yaml", _arch("a", layers))
    err = _raises(zoo.ShapeError, "a")
    assert "(4, 26, 26)" in str(err) and "(4, 28, 28)" in str(err) and err.line == 8


def test_kernel_larger_than_input(arch_dir: Writer) -> None:
    arch_dir("a.yaml", _arch("a", "  - maxpool: 8\n  - conv: {filters: 4, kernel: 5}\n"))
    err = _raises(zoo.ShapeError, "a")
    assert err.line == 9 and "larger than its input" in str(err) and "3x3" in str(err)


def test_dense_before_flatten_says_what_to_do(arch_dir: Writer) -> None:
    arch_dir("a.yaml", _arch("a", "  - dense: 10\n"))
    err = _raises(zoo.ShapeError, "a")
    assert "flatten" in str(err) and err.line == 8


def test_duplicate_model_name_names_both_files(arch_dir: Writer) -> None:
    first = arch_dir("one.yaml", _arch("dup", "  - flatten\n"))
    second = arch_dir("two.yaml", _arch("dup", "  - flatten\n"))
    assert "dup" in zoo.list_models()  # one clash does not stop listing (zoo list reports it) ...
    with pytest.raises(zoo.RegistryError) as info:
        zoo.build("dup")  # ... but the name cannot be served
    assert str(first) in str(info.value) and str(second) in str(info.value)


def test_duplicate_name_of_a_shipped_model(arch_dir: Writer) -> None:
    arch_dir("mine.yaml", _arch("mnist_cnn_v1", "  - flatten\n"))
    with pytest.raises(zoo.RegistryError, match="mnist_cnn_v1.yaml"):
        zoo.build("mnist_cnn_v1")


def test_duplicate_sibling_names(arch_dir: Writer) -> None:
    arch_dir("a.yaml", _arch("a", "  - flatten: {name: x}\n  - dense: {units: 3, name: x}\n"))
    err = _raises(zoo.SchemaError, "a")
    assert "used twice" in str(err) and err.line == 9


def test_layer_mapping_with_two_keys(arch_dir: Writer) -> None:
    arch_dir("a.yaml", _arch("a", "  - conv: {filters: 4, kernel: 3}\n    act: relu\n"))
    err = _raises(zoo.SchemaError, "a")
    assert "one key" in str(err) and err.line == 8


def test_python_tag_is_refused_and_runs_nothing(arch_dir: Writer, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    arch_dir("a.yaml", f"name: !!python/object/apply:os.system ['touch {marker}']\n")
    assert "a" not in zoo.list_models()  # a broken file is left out of the listing ...
    from zoo._registry import REGISTRY

    problems = [p for p in REGISTRY.problems() if p.file and p.file.endswith("a.yaml")]
    assert len(problems) == 1 and isinstance(problems[0], zoo.SchemaError) and "not allowed" in str(problems[0])  # ... and reported
    assert not marker.exists()


def test_expression_cannot_reach_python(arch_dir: Writer) -> None:
    for expr in ("num_classes.__class__", "__import__('os')", "open('x')", "[c for c in 'ab']", "lambda: 1"):
        arch_dir("a.yaml", _arch("a", f"  - flatten\n  - dense: \"${{{expr}}}\"\n"))
        with pytest.raises(zoo.ExpressionError):
            zoo.build("a")


def test_size_limit_refuses_before_allocating(arch_dir: Writer) -> None:
    arch_dir("a.yaml", _arch("a", "  - flatten\n  - dense: 1000000000\n  - dense: 1000\n"))
    with pytest.raises(zoo.SizeLimitError, match="above the limit"):
        zoo.build("a")
    assert zoo.count_params(zoo.build("a", device="meta", max_params=10**13)) > 10**12
