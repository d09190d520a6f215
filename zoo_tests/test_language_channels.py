"""Channel plumbing, each on a tiny file of its own: slice and chunk, channel_shuffle, permute,
layernorm/layernorm2d, dense over the last axis, and layer_scale (as a module and bare)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import zoo
from zoo._builder import check_size
from zoo._expansion import expand
from zoo._registry import REGISTRY

Writer = Callable[[str, str], Path]

HEAD = "description: t\nsource: t\npublished: {params: 0, source: t}\n"


def _file(layers: str, *, input_: str = "[8, 4, 4]", extra: str = "") -> str:
    return f"name: a\n{HEAD}input: {input_}\n{extra}layers:\n{layers}"


def _counted(name: str) -> tuple[int, int]:
    """(parameters by the table's rules, parameters of the built model)."""
    spec = zoo.get_spec(name)
    rules = check_size(expand(spec, REGISTRY.blocks(), {}, tuple(spec.input)))
    return rules, zoo.count_params(zoo.build(name, device="meta"))


def _error(kind: type[zoo.ZooError] = zoo.ShapeError) -> zoo.ZooError:
    with pytest.raises(kind) as info:
        zoo.build("a")
    return info.value


# ---------------------------------------------------------------- slice, chunk

def test_slice_and_chunk_take_channel_ranges(arch_dir: Writer) -> None:
    arch_dir("a.yaml", _file(
        "  - concat:\n      branches:\n"
        "        - [{slice: {start: 5}}]\n"
        "        - [{slice: {start: 1, stop: -5}}]\n"
        "        - [{chunk: {chunks: 4, index: 3}}]\n"
        "        - [{chunk: 0}]\n"
    ))
    model = zoo.build("a")
    x = torch.randn(2, 8, 4, 4)
    want = torch.cat([x[:, 5:], x[:, 1:3], x[:, 6:8], x[:, 0:4]], 1)
    assert torch.equal(model(x), want)
    assert zoo.get_spec("a") and expand(zoo.get_spec("a"), REGISTRY.blocks(), {}, (8, 4, 4)).out_shape == (11, 4, 4)
    assert _counted("a") == (0, 0)


def test_slice_and_chunk_errors_name_the_channels(arch_dir: Writer) -> None:
    arch_dir("a.yaml", _file("  - slice: {start: 6, stop: 2}\n"))
    err = _error()
    assert err.line == 7 and "slice 6:2 of 8 channels is empty" in str(err)
    arch_dir("a.yaml", _file("  - chunk: {chunks: 3}\n"))
    assert "chunk needs channels divisible by 3, got 8" in str(_error())
    arch_dir("a.yaml", _file("  - chunk: {chunks: 2, index: 2}\n"))
    assert "chunk index 2 is out of range for 2 chunks (0 to 1)" in str(_error())
    arch_dir("a.yaml", _file("  - slice: {begin: 2}\n"))
    assert "begin" in str(_error(zoo.SchemaError))


# ---------------------------------------------------------------- channel_shuffle

def test_channel_shuffle_matches_torchvision(arch_dir: Writer) -> None:
    from torchvision.models.shufflenetv2 import channel_shuffle

    arch_dir("a.yaml", _file("  - channel_shuffle: 4\n", input_="[12, 3, 3]"))
    model = zoo.build("a")
    x = torch.randn(2, 12, 3, 3)
    assert torch.equal(model(x), channel_shuffle(x, 4))
    assert not torch.equal(model(x), x)
    arch_dir("a.yaml", _file("  - channel_shuffle: {groups: 3}\n"))
    err = _error()
    assert err.line == 7 and "channel_shuffle needs channels divisible by groups=3, got 8" in str(err)
    arch_dir("a.yaml", _file("  - flatten\n  - channel_shuffle: 2\n"))
    assert "channel_shuffle needs an image input" in str(_error())


def test_shufflenet_unit_keys_are_torchvisions_inverted_residual() -> None:
    from torchvision.models.shufflenetv2 import InvertedResidual

    model = zoo.build("shufflenet_v2_x0_5", device="meta")
    for ours, (inp, oup, stride) in ((model.stage2[0], (24, 48, 2)), (model.stage2[1], (48, 48, 1))):
        theirs = InvertedResidual(inp, oup, stride)
        assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in theirs.state_dict().items()}


# ---------------------------------------------------------------- permute, layernorm, dense over the last axis

def test_permute_layernorm_dense_run_channels_last(arch_dir: Writer) -> None:
    arch_dir("a.yaml", _file(
        "  - permute: [1, 2, 0]\n"                       # (8, 4, 4) -> (4, 4, 8)
        "  - layernorm: {name: norm, eps: 1.0e-6}\n"
        "  - dense: {name: fc, units: 16, last_axis: true}\n"
        "  - permute: [2, 0, 1]\n"                       # (4, 4, 16) -> (16, 4, 4)
    ))
    model = zoo.build("a")
    assert model.norm.weight.shape == (8,) and model.fc.weight.shape == (16, 8)
    x = torch.randn(2, 8, 4, 4)
    y = x.permute(0, 2, 3, 1)
    want = F.linear(F.layer_norm(y, (8,), model.norm.weight, model.norm.bias, 1e-6), model.fc.weight, model.fc.bias)
    assert torch.allclose(model(x), want.permute(0, 3, 1, 2))
    assert _counted("a") == (2 * 8 + 8 * 16 + 16,) * 2


def test_layernorm2d_is_torchvisions(arch_dir: Writer) -> None:
    from torchvision.models.convnext import LayerNorm2d

    arch_dir("a.yaml", _file("  - layernorm2d: {eps: 1.0e-6}\n  - layernorm2d: {affine: false}\n"))
    model = zoo.build("a")
    ref = LayerNorm2d(8, eps=1e-6)
    with torch.no_grad():
        model[0].weight.uniform_()
        model[0].bias.uniform_()
    ref.load_state_dict(model[0].state_dict())
    x = torch.randn(2, 8, 4, 4)
    torch.testing.assert_close(model[0](x), ref(x), atol=0, rtol=0)
    assert _counted("a") == (16, 16)
    arch_dir("a.yaml", _file("  - flatten\n  - layernorm2d\n"))
    assert "layernorm2d needs an image input" in str(_error())


def test_permute_and_dense_errors(arch_dir: Writer) -> None:
    arch_dir("a.yaml", _file("  - permute: [0, 1, 1]\n"))
    err = _error()
    assert err.line == 7 and "permute dims must order the input's 3 axes 0..2 (batch excluded), got [0, 1, 1]" in str(err)
    arch_dir("a.yaml", _file("  - dense: 4\n"))
    assert "set last_axis: true" in str(_error())


# ---------------------------------------------------------------- layer_scale

def test_layer_scale_module_and_bare_parameter(arch_dir: Writer) -> None:
    arch_dir("a.yaml", _file(
        "  - layer_scale: {name: ls, init: 0.5}\n"
        "  - residual:\n      name: res\n      body:\n"
        "        - conv: {name: conv, filters: 8, kernel: 1}\n"
        "        - layer_scale: {name: gamma, init: 1.0e-6, bare: true}\n"
    ))
    model = zoo.build("a")
    keys = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert keys == {"ls.gamma": (8, 1, 1), "res.conv.weight": (8, 8, 1, 1), "res.conv.bias": (8,), "res.gamma": (8, 1, 1)}
    assert torch.equal(model.res.gamma, torch.full((8, 1, 1), 1e-6))
    with torch.no_grad():
        model.res.gamma.copy_(torch.arange(8.0).view(8, 1, 1))
    x = torch.randn(2, 8, 4, 4)
    scaled = x * 0.5
    assert torch.allclose(model(x), scaled + torch.arange(8.0).view(1, 8, 1, 1) * model.res.conv(scaled))
    model(x).sum().backward()
    assert model.res.gamma.grad is not None and model.ls.gamma.grad is not None
    assert _counted("a") == (8 + 72 + 8,) * 2


def test_layer_scale_on_flat_features_and_errors(arch_dir: Writer) -> None:
    arch_dir("a.yaml", _file("  - flatten\n  - layer_scale: 2.0\n"))
    assert tuple(zoo.build("a")[1].gamma.shape) == (128,)
    arch_dir("a.yaml", _file("  - residual:\n      body:\n        - layer_scale: {bare: true}\n"))
    err = _error(zoo.SchemaError)
    assert err.line == 9 and "a bare layer_scale needs a name" in str(err)
    arch_dir("a.yaml", _file("  - layer_scale: {name: g, bare: true}\n"))
    err = _error(zoo.SchemaError)
    assert err.line == 7 and "not the top level" in str(err)
    arch_dir("a.yaml", _file("  - permute: [1, 2, 0]\n  - flatten\n  - layer_scale: {init: one}\n"))
    assert "layer_scale.init" in str(_error(zoo.SchemaError))


def test_convnext_block_keys_and_layer_scale_are_torchvisions() -> None:
    from torchvision.models.convnext import CNBlock

    model = zoo.build("convnext_tiny", device="meta")
    block = model.features[1][0]
    theirs = CNBlock(96, 1e-6, 0.0)
    assert {k: v.shape for k, v in block.state_dict().items()} == {k: v.shape for k, v in theirs.state_dict().items()}
    assert "layer_scale" in dict(block.named_parameters(recurse=False))
    drops = [m.p for m in model.modules() if type(m).__name__ == "StochasticDepth"]
    assert drops[0] == 0.0 and drops[-1] == pytest.approx(0.1) and len(drops) == 18


# ---------------------------------------------------------------- features_only of the new families

@pytest.mark.parametrize(("name", "timm_name"), [("convnext_tiny", "convnext_tiny"), ("densenet121", "densenet121")])
def test_feature_info_is_timms(name: str, timm_name: str) -> None:
    import timm

    with torch.device("meta"):
        theirs = timm.create_model(timm_name, pretrained=False).feature_info
    ours = zoo.build(name, features_only=True, device="meta").feature_info
    assert [(d["num_chs"], d["reduction"]) for d in ours] == [(d["num_chs"], d["reduction"]) for d in theirs]


@pytest.mark.parametrize("name", ["convnext_tiny", "shufflenet_v2_x0_5", "squeezenet1_1", "densenet121"])
def test_features_only_returns_the_declared_maps(name: str) -> None:
    backbone = zoo.build(name, features_only=True, input_size=[3, 64, 64]).eval()
    with torch.no_grad():
        maps = backbone(torch.randn(1, 3, 64, 64))
    assert [m.shape[1] for m in maps] == [d["num_chs"] for d in backbone.feature_info]
    assert [m.shape[-1] for m in maps] == sorted((m.shape[-1] for m in maps), reverse=True)
