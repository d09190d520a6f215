"""Every user mistake is a ZooError subclass with file, line, path and a did-you-mean."""

from __future__ import annotations

import subprocess
import sys
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
    with pytest.raises(zoo.SizeLimitError, match="elements per sample"):  # its 1e9 outputs, next
        zoo.build("a", device="meta", max_params=10**13)
    assert zoo.count_params(zoo.build("a", device="meta", max_params=10**13, max_activation=10**9)) > 10**12


# ---------------------------------------------------------------- issue 11: hostile and mistaken input

@pytest.mark.parametrize(
    ("call", "text"),
    [
        (lambda: zoo.build("mnist_cnn_v1", input_size=5), "input_size must be 3 positive ints"),
        (lambda: zoo.build("mnist_cnn_v1", input_size=[1, -3, 28]), "input_size must be 3 positive ints"),
        (lambda: zoo.build("mnist_cnn_v1", input_size=[True, 28, 28]), "input_size must be 3 positive ints"),
        (lambda: zoo.build("mnist_cnn_v1", max_params="x"), "max_params must be a positive integer"),
        (lambda: zoo.build("mnist_cnn_v1", max_activation=0), "max_activation must be a positive integer"),
        (lambda: zoo.build("mnist_cnn_v1", num_classes=True), "num_classes must be a positive integer"),
        (lambda: zoo.build("mnist_cnn_v1", num_classes=-3), "num_classes must be a positive integer"),
        (lambda: zoo.build("mnist_cnn_v1", in_channels=True), "in_channels must be a positive int"),
        (lambda: zoo.build("mnist_cnn_v1", device="xyz"), "unknown device 'xyz'"),
        (lambda: zoo.build("mnist_cnn_v1", device=3), "device must be a string"),
        (lambda: zoo.build("resnet18", device="meta", features_only=True, out_indices=5), "out_indices must be a list"),
        (lambda: zoo.build("resnet18", device="meta", features_only=True, out_indices=["a"]), "out_indices must be a non-empty list of ints"),
        (lambda: zoo.build("resnet18", device="meta", features_only=True, out_indices=[9]), "out of range"),
        (lambda: zoo.list_models(5), "pattern must be a glob string"),
        (lambda: zoo.summary("mnist_cnn_v1", input_size=5), "input_size must be 3 positive ints"),
        (lambda: zoo.summary("mnist_cnn_v1", depth="x"), "depth must be a non-negative integer"),
        (lambda: zoo.summary("resnet18", input_size=[3, 20000, 20000]), "elements per sample"),
        (lambda: zoo.summary(torch_module(), input_size=[3, 20000, 20000]), "more than 268,435,456 elements"),
        (lambda: zoo.summary(42, input_size=[1, 2, 2]), "a model name or a torch.nn.Module"),
    ],
)
def test_api_argument_types_are_zoo_errors(call: Callable[[], object], text: str) -> None:
    with pytest.raises(zoo.ZooError, match=text.replace("(", r"\(").replace("[", r"\[")):
        call()


def torch_module() -> object:
    from torch import nn

    return nn.Identity()


def test_cuda_without_cuda_is_a_zoo_error() -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the refusal is for machines without it")
    with pytest.raises(zoo.SchemaError, match="not available on this machine"):
        zoo.build("mnist_cnn_v1", device="cuda")


def test_reserved_layer_names_in_build_and_list(arch_dir: Writer) -> None:
    arch_dir("a.yaml", _arch("a", "  - conv: {name: training, filters: 4, kernel: 3}\n  - flatten\n"))
    err = _raises(zoo.SchemaError, "a")
    assert err.line == 8 and "attribute of torch.nn.Module" in str(err)
    out = subprocess.run([sys.executable, "-m", "zoo", "list", "a"], capture_output=True, text=True, env=_env())
    assert "Traceback" not in out.stderr and "attribute of torch.nn.Module" in out.stdout + out.stderr


def _env() -> dict[str, str]:
    import os

    return {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}


def test_recursive_block_with_a_base_case_builds_and_its_errors_stay_short(arch_dir: Writer) -> None:
    blocks = (
        "blocks:\n  tower:\n    params: {d: required, deep: false}\n    layers:\n"
        "      - relu\n      - tower: {d: \"${d - 1}\", deep: \"${deep}\", when: \"${d > 0}\"}\n"
        "      - conv: {filters: 4, kernel: 99, when: \"${d == 0 and deep}\"}\n"
    )
    arch_dir("a.yaml", _arch("a", "  - tower: {d: 40, deep: \"${deep}\"}\n  - flatten\n", extra="params: {deep: false}\n" + blocks).replace(
        "params: {num_classes: 10}\n", ""))
    assert sum(1 for m in zoo.build("a").modules() if m.__class__.__name__ == "ReLU") == 41
    with pytest.raises(zoo.ShapeError) as info:
        zoo.build("a", deep=True)
    lines = str(info.value).splitlines()
    assert len(lines) == 3, lines  # the error and its two distinct call sites (was one line per level)


def test_bad_input_of_a_child_file_is_reported_in_the_child(arch_dir: Writer) -> None:
    child = "name: child\nextends: mnist_cnn_v1\ninput: [-3, 28, 28]\npublished: {params: 0, source: t}\n"
    path = arch_dir("child.yaml", child)
    with pytest.raises(zoo.SchemaError) as info:
        zoo.build("child")
    assert info.value.file == str(path) and info.value.line == 3
    path.write_text(child.replace("[-3, 28, 28]", "[1, 4, 4]"))
    with pytest.raises(zoo.ShapeError) as shape_info:
        zoo.build("child")
    assert f"with input (1, 4, 4) declared in {path}" in str(shape_info.value)


def test_activation_limit_has_an_override(arch_dir: Writer, monkeypatch: pytest.MonkeyPatch) -> None:
    arch_dir("a.yaml", _arch("a", "  - pad: 2000\n  - flatten\n"))  # (1, 4028, 4028): 16M elements
    zoo.build("a", device="meta")
    monkeypatch.setenv("ZOO_MAX_ACTIVATION", "1000000")
    with pytest.raises(zoo.SizeLimitError, match="above the limit of 1,000,000") as info:
        zoo.build("a", device="meta")
    assert info.value.line == 8
    zoo.build("a", device="meta", max_activation=20_000_000)
    monkeypatch.setenv("ZOO_MAX_ACTIVATION", "lots")
    with pytest.raises(zoo.SchemaError, match="ZOO_MAX_ACTIVATION must be a number"):
        zoo.build("a", device="meta")


def test_validate_reports_independent_errors_after_the_first(tmp_path: Path) -> None:
    from zoo._check_file import validate_file

    bad = tmp_path / "multi.yaml"
    bad.write_text(_arch("multi", "  - conv: {filters: 4, kernel: 3, dilation: -1}\n  - dropout: 2\n"
                                  "  - relu: {when: \"no\"}\n  - hardtanh: {min: 1, max: -1}\n"))
    errors = validate_file(bad)
    assert [e.line for e in errors] == [8, 9, 10, 11]


def test_validate_refuses_features_naming_no_layer(tmp_path: Path) -> None:
    from zoo._check_file import validate_file

    bad = tmp_path / "feat.yaml"
    bad.write_text(_arch("feat", "  - stage: {name: stem, layers: [relu]}\n  - flatten\n", extra="features: [stem, head]\n"))
    errors = validate_file(bad)
    assert len(errors) == 1 and errors[0].line == 7 and "'head' is not a module" in str(errors[0])


def test_expression_values_are_bounded_at_every_step() -> None:
    import time

    from zoo._expr import MAX_ITEMS, evaluate

    for text in ["'a'*1000*1000*1000*1000", "len([0]*1000*1000*1000)", "len('%999999999d' % 1)", "round(5, -10**18)"]:
        start = time.perf_counter()
        with pytest.raises(zoo.ExpressionError):
            evaluate(text, {})
        assert time.perf_counter() - start < 1.0, text  # refused before the value is built
    assert len(evaluate(f"'a' * {MAX_ITEMS}", {})) == MAX_ITEMS
