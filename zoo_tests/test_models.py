"""Every registered model, parametrized over zoo.list_models(): a new YAML file is tested by adding it."""

from __future__ import annotations

import pytest
import torch

import zoo
from zoo._builder import expand
from zoo._registry import REGISTRY

# Per-model exceptions live here and nowhere else: name -> reason. Large ImageNet models run the
# forward/backward checks at their smallest accepted input instead of the declared one.
SMALL_INPUT: dict[str, tuple[int, int]] = {}

MODELS = zoo.list_models()


def _input_shape(name: str) -> list[int]:
    shape = list(zoo.get_spec(name).input)
    if name in SMALL_INPUT:
        shape[1:] = SMALL_INPUT[name]
    return shape


@pytest.mark.parametrize("name", MODELS)
def test_parameter_count_matches_published(name: str) -> None:
    spec = zoo.get_spec(name)
    assert spec.published is not None
    model = zoo.build(name, device="meta", **spec.published.with_params)
    assert zoo.count_params(model, convention=spec.published.convention) == spec.published.params


@pytest.mark.parametrize("name", MODELS)
def test_forward_shape_matches_inferred_shape_and_every_parameter_gets_a_gradient(name: str) -> None:
    torch.manual_seed(0)
    spec = zoo.get_spec(name)
    shape = _input_shape(name)
    model = zoo.build(name)
    model.train()
    out = model(torch.randn(2, *shape))
    logits = out[0] if isinstance(out, tuple) else out
    inferred = expand(spec, REGISTRY.blocks(), {}, tuple(shape)).out_shape
    assert tuple(logits.shape) == (2, *inferred)
    if "num_classes" in spec.params:
        assert logits.shape[-1] == spec.params["num_classes"]
    loss = sum(o.float().square().mean() for o in (out if isinstance(out, tuple) else (out,)))
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"parameters without gradient: {missing[:5]}"


CLASSIFIERS = [n for n in MODELS if "num_classes" in zoo.get_spec(n).params and len(zoo.get_spec(n).input) == 3]


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_num_classes_and_in_channels_overrides(name: str) -> None:
    model = zoo.build(name, num_classes=3, in_channels=2)
    model.eval()
    shape = _input_shape(name)
    out = model(torch.randn(1, 2, *shape[1:]))
    assert out.shape == (1, 3)
