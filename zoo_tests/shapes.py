"""Test inputs: the smallest square input a model accepts, found by shape inference alone."""

from __future__ import annotations

from typing import Any

import torch

import zoo
from zoo._expansion import expand
from zoo._registry import REGISTRY

SMALLEST_SIDE = 32  # ImageNet-size models are exercised at the smallest square input they accept, from here up


def test_input_shape(name: str, **params: Any) -> list[int]:
    """The declared input, or for large inputs the smallest square one shape inference accepts
    (nothing is allocated to find it), so a 2-core CI can run every model."""
    spec = zoo.get_spec(name)
    shape = list(spec.input)
    if len(shape) != 3 or shape[1] <= 64:
        return shape
    for side in range(SMALLEST_SIDE, shape[1]):
        try:
            expand(spec, REGISTRY.blocks(), params, (shape[0], side, side))
        except zoo.ShapeError:
            continue
        return [shape[0], side, side]
    return shape


test_input_shape.__test__ = False  # type: ignore[attr-defined]  # a helper, not a pytest test


# Above this many parameters, tests skip the (single-threaded, seconds-long) random initialization:
# models are built on the meta device, allocated, and filled from one small random pool.
LARGE_MODEL = 30_000_000


def is_large(name: str) -> bool:
    published = zoo.get_spec(name).published
    return published is not None and published.params > LARGE_MODEL


def fill_cheaply(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Deterministic, well-scaled values for every parameter and buffer without a per-value RNG
    call: a 1M-value normal pool, tiled at a different offset per tensor. Weights get He scaling
    (std sqrt(2 / fan_in)) so activations keep their size through deep ReLU networks; vectors
    (norm scales, biases) sit near 1 and 0; batch-norm statistics start at 0 and 1."""
    size = 1 << 20
    pool = torch.randn(size, generator=torch.Generator().manual_seed(seed))
    pool = torch.cat([pool, pool])  # any window of `size` values is one contiguous slice
    positive = pool.abs()
    with torch.no_grad():
        for i, (key, t) in enumerate(model.state_dict(keep_vars=True).items()):
            if not t.is_floating_point():
                t.zero_()
                continue
            if "running_var" in key:
                scale, shift, values = 0.1, 1.0, positive
            elif "running_mean" in key:
                scale, shift, values = 0.1, 0.0, pool
            elif t.dim() > 1:
                scale, shift, values = (2.0 / (t.numel() // t.shape[0])) ** 0.5, 0.0, pool
            else:
                scale, shift, values = 0.1, 1.0 if key.endswith("weight") else 0.0, pool
            start = (i * 7919) % size
            values = values[start : start + min(t.numel(), size)] * scale + shift
            flat = t.view(-1)
            for start in range(0, flat.numel(), values.numel()):  # tiled copies: memory speed, no RNG
                chunk = flat[start : start + values.numel()]
                chunk.copy_(values[: chunk.numel()])
    return model


def build_cheaply(name: str, **kwargs: Any) -> torch.nn.Module:
    """``zoo.build`` without the initialization cost: meta build, allocation, :func:`fill_cheaply`."""
    from zoo._builder import allocate

    model = zoo.build(name, device="meta", **kwargs)
    allocate(model, "cpu")
    return fill_cheaply(model)
