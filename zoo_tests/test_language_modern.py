"""Language features of the modern CNN families, each on a tiny file of its own: stochastic depth,
expression functions, multiplicative gates, the hard activations, free-form names, flat concat."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

import zoo

Writer = Callable[[str, str], Path]

HEAD = "description: t\nsource: t\npublished: {params: 0, source: t}\n"


def _file(layers: str, *, input_: str = "[4, 8, 8]", extra: str = "") -> str:
    return f"name: a\n{HEAD}input: {input_}\n{extra}layers:\n{layers}"


# ---------------------------------------------------------------- stochastic depth

def test_stochastic_depth_is_torchvisions_module_with_its_draws(arch_dir: Writer) -> None:
    from torchvision.ops import StochasticDepth

    arch_dir("a.yaml", _file("  - stochastic_depth: {p: 0.3, name: sd}\n  - stochastic_depth: {p: 0.5, mode: batch}\n"))
    model = zoo.build("a")
    ref = torch.nn.Sequential(StochasticDepth(0.3, "row"), StochasticDepth(0.5, "batch"))
    assert repr(model.sd) == repr(ref[0]) == "StochasticDepth(p=0.3, mode=row)"
    assert zoo.count_params(model) == 0
    x = torch.randn(16, 4, 8, 8)
    torch.manual_seed(3)
    ours = model.train()(x)
    torch.manual_seed(3)
    assert torch.equal(ours, ref.train()(x))
    rows = (ours.flatten(1) == 0).all(1)
    assert 0 < int(rows.sum()) < 16 or bool((ours == 0).all())  # whole rows dropped, not single values
    assert torch.equal(model.eval()(x), x)  # identity in eval mode


def test_stochastic_depth_shorthand_and_bad_values(arch_dir: Writer) -> None:
    arch_dir("a.yaml", _file("  - stochastic_depth: 0.2\n"))
    assert zoo.build("a")[0].p == 0.2
    arch_dir("a.yaml", _file("  - flatten\n  - stochastic_depth: {p: 1.5}\n"))
    with pytest.raises(zoo.SchemaError) as info:
        zoo.build("a")
    assert info.value.line == 8 and "stochastic_depth.p: expected a number from 0 to 1, got 1.5" in str(info.value)
    arch_dir("a.yaml", _file("  - stochastic_depth: {p: 0.1, mode: rows}\n"))
    with pytest.raises(zoo.SchemaError, match="row"):
        zoo.build("a")


# ---------------------------------------------------------------- expression functions

@pytest.mark.parametrize("value", [3.2, 8, 16 * 0.75, 24 * 0.35, 37.3, 96 * 1.1, 320 * 1.4, 1280 * 0.5, 17.0])
@pytest.mark.parametrize("divisor", [4, 8, 16])
def test_make_divisible_is_torchvisions(value: float, divisor: int) -> None:
    from torchvision.models._utils import _make_divisible

    from zoo._expr import evaluate

    assert evaluate(f"make_divisible({value}, {divisor})", {}) == _make_divisible(value, divisor)
    assert evaluate(f"make_divisible({value}, {divisor}, 64)", {}) == _make_divisible(value, divisor, 64)


def test_block_index_from_sum_and_take() -> None:
    from zoo._expr import evaluate

    env = {"depths": [1, 2, 2, 3], "s": 2, "i": 1}
    assert evaluate("sum(take(depths, s)) + i", env) == 4  # blocks before stage 2, plus this one's index
    assert evaluate("sum(depths)", env) == 8 and evaluate("take(depths, 9)", env) == [1, 2, 2, 3]


@pytest.mark.parametrize(("text", "message"), [
    ("make_divisible(30, 0)", "positive integer divisor"),
    ("make_divisible('a', 8)", "cannot evaluate"),
    ("sum(3)", "sum needs a list of numbers"),
    ("sum([1, true])", "sum needs a list of numbers"),
    ("take([1, 2], -1)", "non-negative integer count"),
    ("take(3, 1)", "take needs a list"),
])
def test_expression_functions_refuse_bad_arguments(text: str, message: str) -> None:
    from zoo._expr import evaluate

    with pytest.raises(zoo.ExpressionError, match=message):
        evaluate(text, {})


def test_expression_function_error_points_at_the_file(arch_dir: Writer) -> None:
    arch_dir("a.yaml", _file('  - conv: {filters: "${make_divisible(w, 0)}", kernel: 1}\n', extra="params: {w: 10}\n"))
    with pytest.raises(zoo.ExpressionError) as info:
        zoo.build("a")
    assert info.value.line == 8 and "make_divisible" in str(info.value)


# ---------------------------------------------------------------- multiplicative gates

SE_FILE = """
  - residual:
      name: se
      merge: mul
      body:
        - adaptive_avgpool: {name: avgpool, output: 1}
        - conv: {name: fc1, filters: 2, kernel: 1}
        - relu: {name: activation, inplace: false}
        - conv: {name: fc2, filters: 4, kernel: 1}
        - hardsigmoid: {name: scale_activation, inplace: false}
"""


def test_squeeze_excitation_gate_is_torchvisions(arch_dir: Writer) -> None:
    from torchvision.ops import SqueezeExcitation

    arch_dir("a.yaml", _file(SE_FILE))
    model = zoo.build("a")
    ref = SqueezeExcitation(4, 2, scale_activation=torch.nn.Hardsigmoid)
    model.se.load_state_dict(ref.state_dict(), strict=True)  # avgpool, fc1, activation, fc2, scale_activation
    assert {n for n, _ in model.se.named_children()} == {n for n, _ in ref.named_children()}
    assert zoo.count_params(model) == sum(p.numel() for p in ref.parameters()) == 2 * 4 + 2 + 4 * 2 + 4
    x = torch.randn(2, 4, 8, 8)
    assert torch.equal(model(x), ref(x))


def test_spatial_gate_broadcasts_over_channels(arch_dir: Writer) -> None:
    gate = "  - residual:\n      merge: mul\n      body:\n        - conv: {filters: 1, kernel: 3, padding: 1}\n        - sigmoid\n"
    arch_dir("a.yaml", _file(gate))
    model = zoo.build("a")
    x = torch.randn(2, 4, 8, 8)
    conv = model[0].get_submodule("0")
    assert torch.allclose(model(x), torch.sigmoid(conv(x)) * x)


def test_gate_that_does_not_broadcast_is_a_shape_error(arch_dir: Writer) -> None:
    gate = "  - residual:\n      merge: mul\n      body:\n        - adaptive_avgpool: 1\n        - conv: {filters: 3, kernel: 1}\n"
    arch_dir("a.yaml", _file(gate))
    with pytest.raises(zoo.ShapeError) as info:
        zoo.build("a")
    assert info.value.line == 7 and "gate (body) gives (3, 1, 1), which does not broadcast onto the input (identity shortcut) (4, 8, 8)" in str(info.value)
    arch_dir("a.yaml", _file(gate.replace("filters: 3", "filters: 4").replace("merge: mul", "merge: mul\n      scale: 0.5")))
    with pytest.raises(zoo.SchemaError, match="'scale' only applies to merge: add"):
        zoo.build("a")
    arch_dir("a.yaml", _file(gate.replace("merge: mul", "merge: max")))
    with pytest.raises(zoo.SchemaError, match="merge"):
        zoo.build("a")


# ---------------------------------------------------------------- activations, names, flat concat

@pytest.mark.parametrize(("name", "module"), [("relu6", "ReLU6"), ("hardswish", "Hardswish"), ("hardsigmoid", "Hardsigmoid")])
def test_hard_activations_are_torch_modules_and_act_values(arch_dir: Writer, name: str, module: str) -> None:
    arch_dir("a.yaml", _file(f"  - {name}: {{inplace: false}}\n  - conv: {{filters: 2, kernel: 1, act: {name}}}\n"))
    model = zoo.build("a")
    assert type(model[0]).__name__ == module and repr(model[0]) == repr(getattr(torch.nn, module)())
    x = torch.randn(2, 4, 8, 8) * 6
    conv = torch.nn.Conv2d(4, 2, 1)
    conv.load_state_dict(model[1].state_dict())
    expected = getattr(torch.nn, module)()(conv(getattr(torch.nn, module)()(x)))
    assert torch.allclose(model(x), expected)


def test_names_take_any_key_character_but_dot(arch_dir: Writer) -> None:
    arch_dir("a.yaml", _file('  - seq:\n      name: block1-0\n      layers: [{conv: {filters: 2, kernel: 1, name: "fc+1"}}]\n'))
    assert list(zoo.build("a").state_dict()) == ["block1-0.fc+1.weight", "block1-0.fc+1.bias"]
    arch_dir("a.yaml", _file('  - seq:\n      name: "a.b"\n      layers: [relu]\n'))
    with pytest.raises(zoo.SchemaError, match="name"):
        zoo.build("a")
    arch_dir("a.yaml", _file('  - relu: {name: ""}\n'))
    with pytest.raises(zoo.SchemaError, match="without '.'"):
        zoo.build("a")


def test_concat_of_flat_features(arch_dir: Writer) -> None:
    arch_dir("a.yaml", _file("  - flatten\n  - concat:\n      branches:\n        - dense: 9\n        - [dense: 4, relu]\n"))
    model = zoo.build("a")
    assert model(torch.randn(3, 4, 8, 8)).shape == (3, 13)
    arch_dir("a.yaml", _file("  - concat:\n      branches:\n        - global_avgpool\n        - conv: {filters: 2, kernel: 1}\n"))
    with pytest.raises(zoo.ShapeError, match=r"branch 0: \(4\), branch 1: \(2, 8, 8\)"):
        zoo.build("a")
