"""The architecture language: Keras 'same', combinators, blocks, extends, expressions, names."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import zoo
from zoo._expr import evaluate, interpolate

Writer = Callable[[str, str], Path]

HEAD = "description: t\nsource: t\npublished: {params: 0, source: t}\n"


def test_conv_same_stride_two_pads_bottom_right_like_keras(arch_dir: Writer) -> None:
    arch_dir("a.yaml", f"name: a\n{HEAD}input: [1, 7, 7]\nlayers:\n  - conv: {{filters: 1, kernel: 3, stride: 2, padding: same, bias: false}}\n")
    model = zoo.build("a")
    x = torch.randn(1, 1, 7, 7)
    w = model[0].weight
    # TF: out = ceil(7/2) = 4, total pad = (4-1)*2 + 3 - 7 = 2 -> 1 before, 1 after
    assert torch.allclose(model(x), F.conv2d(F.pad(x, (1, 1, 1, 1)), w, stride=2))
    arch_dir("a.yaml", f"name: a\n{HEAD}input: [1, 8, 8]\nlayers:\n  - conv: {{filters: 1, kernel: 3, stride: 2, padding: same, bias: false}}\n")
    model = zoo.build("a")
    x = torch.randn(1, 1, 8, 8)
    # 8 -> 4, total pad = 3*2 + 3 - 8 = 1: all of it after (bottom/right)
    assert torch.allclose(model(x), F.conv2d(F.pad(x, (0, 1, 0, 1)), model[0].weight, stride=2))


def test_pool_same_matches_keras_semantics(arch_dir: Writer) -> None:
    arch_dir("a.yaml", f"name: a\n{HEAD}input: [1, 7, 7]\nlayers:\n  - maxpool: {{kernel: 2, padding: same}}\n  - avgpool: {{kernel: 2, padding: same, name: avg}}\n")
    model = zoo.build("a")
    x = -torch.rand(1, 1, 7, 7) - 1  # all negative: zero padding would win a max, -inf must not
    pooled = model[0](x)
    assert pooled.shape == (1, 1, 4, 4)
    assert torch.equal(pooled[0, 0, 3, 3], x[0, 0, 6, 6])  # bottom-right window holds one real pixel
    averaged = model.avg(pooled)  # 4x4 -> 2x2, no padding needed
    assert averaged.shape == (1, 1, 2, 2)
    edge = zoo.build("a").avg(x)  # 7x7 -> 4x4; the last window averages real pixels only
    assert torch.allclose(edge[0, 0, 3, 3], x[0, 0, 6, 6])


def test_blocks_residual_names_and_state_dict_keys(arch_dir: Writer) -> None:
    arch_dir("a.yaml", f"""
name: a
{HEAD}input: [3, 16, 16]
params: {{num_classes: 5, widths: [8, 16]}}
blocks:
  unit:
    params: {{filters: required, stride: 1, project: false}}
    layers:
      - residual:
          body:
            - conv: {{name: conv1, filters: "${{filters}}", kernel: 3, stride: "${{stride}}", padding: 1, bias: false}}
            - batchnorm: {{name: bn1}}
            - relu
            - conv: {{name: conv2, filters: "${{filters}}", kernel: 3, padding: 1, bias: false}}
            - batchnorm: {{name: bn2}}
          shortcut:
            - seq:
                name: downsample
                when: "${{project}}"
                layers:
                  - conv: {{filters: "${{filters}}", kernel: 1, stride: "${{stride}}", bias: false}}
                  - batchnorm
          post: relu
layers:
  - conv: {{name: stem, filters: 8, kernel: 3, padding: 1}}
  - repeat:
      n: 2
      as: s
      layers:
        - seq:
            name: "layer${{s + 1}}"
            layers:
              - unit: {{filters: "${{widths[s]}}", stride: "${{1 if s == 0 else 2}}", project: "${{s > 0}}"}}
              - unit: {{filters: "${{widths[s]}}"}}
  - global_avgpool: {{name: pool}}
  - dense: {{name: fc, units: "${{num_classes}}"}}
""")
    model = zoo.build("a")
    keys = set(model.state_dict())
    assert {"stem.weight", "layer1.0.conv1.weight", "layer1.0.bn2.running_mean", "layer1.1.conv2.weight",
            "layer2.0.downsample.0.weight", "layer2.0.downsample.1.num_batches_tracked", "fc.bias"} <= keys
    assert not any(k.startswith("layer1.0.downsample") for k in keys)
    assert model(torch.randn(2, 3, 16, 16)).shape == (2, 5)
    assert zoo.build("a", widths=[8, 4], num_classes=2)(torch.randn(1, 3, 16, 16)).shape == (1, 2)


def test_residual_computes_post_of_body_plus_shortcut_with_scale(arch_dir: Writer) -> None:
    arch_dir("a.yaml", f"name: a\n{HEAD}input: [2, 4, 4]\nlayers:\n  - residual:\n      scale: 0.5\n      body: [conv: {{filters: 2, kernel: 1, name: c}}]\n      post: relu\n")
    model = zoo.build("a")
    x = torch.randn(1, 2, 4, 4)
    assert torch.allclose(model(x), torch.relu(model[0].c(x) * 0.5 + x))


def test_concat_inline_registers_branches_flat(arch_dir: Writer) -> None:
    arch_dir("a.yaml", f"""
name: a
{HEAD}input: [4, 8, 8]
layers:
  - concat:
      name: mixed
      branches:
        - [conv: {{name: b1, filters: 2, kernel: 1}}]
        - - conv: {{name: b2_1, filters: 3, kernel: 1}}
          - concat:
              inline: true
              branches:
                - [conv: {{name: b2_2a, filters: 1, kernel: [1, 3], padding: [0, 1]}}]
                - [conv: {{name: b2_2b, filters: 1, kernel: [3, 1], padding: [1, 0]}}]
        - - maxpool: {{kernel: 3, stride: 1, padding: 1}}
          - conv: {{name: pool_proj, filters: 2, kernel: 1}}
""")
    model = zoo.build("a")
    m = model.mixed
    assert [n for n, _ in m.named_children()] == ["b1", "b2_1", "b2_2a", "b2_2b", "4", "pool_proj"]  # unnamed: position
    x = torch.randn(1, 4, 8, 8)
    y = m.b2_1(x)
    expect = torch.cat([m.b1(x), torch.cat([m.b2_2a(y), m.b2_2b(y)], 1), m.pool_proj(F.max_pool2d(x, 3, 1, 1))], 1)
    assert torch.allclose(model(x), expect)


def test_extends_overrides_params_and_inherits_layers(arch_dir: Writer) -> None:
    arch_dir("base.yaml", f"name: base\n{HEAD}input: [1, 8, 8]\nparams: {{width: 4, num_classes: 10}}\nlayers:\n  - conv: {{filters: '${{width}}', kernel: 3}}\n  - flatten\n  - dense: '${{num_classes}}'\n")
    arch_dir("wide.yaml", "name: wide\nextends: base\nparams: {width: 8}\npublished: {params: 2970, source: t}\n")
    assert zoo.count_params(zoo.build("wide")) == 8 * 9 + 8 + 8 * 36 * 10 + 10 == 2970
    assert zoo.get_spec("wide").chain == ["base", "wide"]


def test_aux_head_returns_extra_output_in_training_only(arch_dir: Writer) -> None:
    arch_dir("a.yaml", f"name: a\n{HEAD}input: [2, 4, 4]\nlayers:\n  - conv: {{filters: 3, kernel: 1}}\n  - aux: {{name: aux1, layers: [global_avgpool, dense: 7]}}\n  - global_avgpool\n  - dense: 5\n")
    model = zoo.build("a")
    logits, aux = model(torch.randn(2, 2, 4, 4))
    assert logits.shape == (2, 5) and aux.shape == (2, 7)
    model.eval()
    assert model(torch.randn(2, 2, 4, 4)).shape == (2, 5)


def test_fixed_filters_apply_the_lecture_kernels(arch_dir: Writer) -> None:
    arch_dir("a.yaml", f"name: a\n{HEAD}input: [1, 5, 5]\nlayers:\n  - filter: {{kernel: [identity, vertical_edges], padding: valid}}\n")
    model = zoo.build("a")
    x = torch.zeros(1, 1, 5, 5)
    x[..., :, 3:] = 1.0  # a vertical edge between columns 2 and 3
    out = model(x)
    assert torch.equal(out[0, 0], x[0, 0, 1:4, 1:4])  # identity
    assert out[0, 1].abs().sum() > 0 and torch.all(out[0, 1, :, 0] == 0)  # the edge detector fires at the edge only
    assert not list(model.parameters())


def test_expression_evaluator() -> None:
    env = {"planes": 64, "layers": [3, 4, 6, 3], "block": "bottleneck"}
    assert evaluate("planes * 4", env) == 256
    assert evaluate("layers[2] - 1", env) == 5
    assert evaluate("2 if block == 'bottleneck' else 1", env) == 2
    assert evaluate("max(planes // 3, 8) % 7", env) == 0
    assert interpolate("layer${1 + 1}", env) == "layer2"
    assert interpolate("${planes}", env) == 64
    with pytest.raises(zoo.ExpressionError):
        evaluate("2 ** 10 ** 10", env)
    with pytest.raises(zoo.ExpressionError):
        evaluate("planes.bit_length()", env)


def test_shared_inputs_are_never_overwritten_in_place(arch_dir: Writer) -> None:
    """relu is in place, except as the first layer to see an input that is also used elsewhere."""
    arch_dir("a.yaml", f"""
name: a
{HEAD}input: [2, 4, 4]
layers:
  - residual:
      name: res
      body: [relu, conv: {{filters: 2, kernel: 1, name: c}}]
  - concat:
      name: cat
      branches:
        - [relu]
        - [identity]
""")
    model = zoo.build("a")
    x = torch.randn(1, 2, 4, 4)
    with torch.no_grad():
        y = model.res.c(torch.relu(x)) + x
        expect = torch.cat([torch.relu(y), y], 1)
        assert torch.equal(model(x.clone()), expect)
    assert not model.res.get_submodule("0").inplace


def test_init_schemes_follow_the_reference(arch_dir: Writer) -> None:
    """resnet/vgg files name torchvision's initialization, so from-scratch training starts alike."""
    torch.manual_seed(0)
    conv = zoo.build("resnet50").layer1[0].conv2.weight  # kaiming normal, fan_out = 64 * 3 * 3
    assert abs(conv.std().item() / (2 / (64 * 9)) ** 0.5 - 1) < 0.05
    vgg = zoo.build("vgg11")
    assert abs(vgg.classifier[0].weight.std().item() / 0.01 - 1) < 0.05
    assert not vgg.classifier[0].bias.any() and not vgg.features[0].bias.any()
    arch_dir("a.yaml", f"name: a\n{HEAD}input: [4]\ninit: {{dense: kaiming_normall}}\nlayers: [dense: 2]\n")
    with pytest.raises(zoo.UnknownNameError, match="did you mean 'kaiming_normal'") as info:
        zoo.build("a")
    assert info.value.line == 6
