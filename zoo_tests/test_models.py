"""Every registered model, parametrized over zoo.list_models(): a new YAML file is tested by adding it."""

from __future__ import annotations

import pytest
import torch

import zoo
from zoo._builder import check_size
from zoo._expansion import expand
from zoo._registry import REGISTRY

from .shapes import build_cheaply, is_large
from .shapes import test_input_shape as _input_shape

MODELS = zoo.list_models()


@pytest.mark.parametrize("name", MODELS)
def test_parameter_count_matches_published(name: str) -> None:
    spec = zoo.get_spec(name)
    assert spec.published is not None
    model = zoo.build(name, device="meta", **spec.published.with_params)
    assert zoo.count_params(model, convention=spec.published.convention) == spec.published.params


@pytest.mark.parametrize("name", MODELS)
def test_size_rule_counts_what_is_built(name: str) -> None:
    """The primitive table's parameter rules (used to refuse oversized models before allocating)
    agree with the modules actually built."""
    spec = zoo.get_spec(name)
    expanded = expand(spec, REGISTRY.blocks(), {}, tuple(spec.input))
    assert check_size(expanded) == zoo.count_params(zoo.build(name, device="meta"))


@pytest.mark.parametrize("name", MODELS)
def test_forward_shape_matches_inferred_shape_and_every_parameter_gets_a_gradient(name: str) -> None:
    torch.manual_seed(0)
    spec = zoo.get_spec(name)
    shape = _input_shape(name)
    model = build_cheaply(name, input_size=shape) if is_large(name) else zoo.build(name, input_size=shape)
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
    shape = _input_shape(name)
    build = build_cheaply if is_large(name) else zoo.build
    model = build(name, num_classes=3, in_channels=2, input_size=[2, *shape[1:]])
    model.eval()
    out = model(torch.randn(1, 2, *shape[1:]))
    assert out.shape == (1, 3)
