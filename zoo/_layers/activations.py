"""Activations: each is a primitive (``- relu``) and a value of a layer's ``act:``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from pydantic import model_validator

from .._errors import ShapeError
from ._table import (
    NoArgs,
    Primitive,
    Shape,
    Spec,
    _none,
    _register,
    _same_shape,
)
from ._torch import nn

# ---------------------------------------------------------------- activations

class InplaceSpec(Spec):
    # in place saves memory; the builder turns it off where the input is also used elsewhere
    # (the first layer of a residual body, a concat branch or an aux head)
    inplace: bool = True


class LeakyReluSpec(InplaceSpec):
    slope: float = 0.01


class HardtanhSpec(Spec):
    min: float = -1.0
    max: float = 1.0

    @model_validator(mode="after")
    def _ordered(self) -> HardtanhSpec:
        if not self.min < self.max:  # torch asserts this when the module is made
            raise ValueError(f"hardtanh needs min < max, got min={self.min} and max={self.max}")
        return self


class DimSpec(Spec):
    dim: int = 1


def _dim_shape(s: DimSpec, shape: Shape) -> Shape:
    ndim = len(shape) + 1  # the batch dimension comes first
    if not -ndim <= s.dim < ndim:
        raise ShapeError(f"dim {s.dim} is out of range for a {ndim}-d batch (N, {', '.join(map(str, shape))}): use {-ndim}..{ndim - 1}")
    return shape


class GeluSpec(Spec):
    approximate: Literal["none", "tanh"] = "none"


ACTIVATIONS: dict[str, tuple[type[Spec], Callable[[Any], nn.Module]]] = {
    "relu": (InplaceSpec, lambda s: nn.ReLU(inplace=s.inplace)),
    "leaky_relu": (LeakyReluSpec, lambda s: nn.LeakyReLU(s.slope, inplace=s.inplace)),
    "tanh": (NoArgs, lambda s: nn.Tanh()),
    "hardtanh": (HardtanhSpec, lambda s: nn.Hardtanh(s.min, s.max)),
    "sigmoid": (NoArgs, lambda s: nn.Sigmoid()),
    "softmax": (DimSpec, lambda s: nn.Softmax(dim=s.dim)),
    "log_softmax": (DimSpec, lambda s: nn.LogSoftmax(dim=s.dim)),
    "gelu": (GeluSpec, lambda s: nn.GELU(approximate=s.approximate)),
    "silu": (InplaceSpec, lambda s: nn.SiLU(inplace=s.inplace)),
    "identity": (NoArgs, lambda s: nn.Identity()),
    "relu6": (InplaceSpec, lambda s: nn.ReLU6(inplace=s.inplace)),
    "hardswish": (InplaceSpec, lambda s: nn.Hardswish(inplace=s.inplace)),
    "hardsigmoid": (InplaceSpec, lambda s: nn.Hardsigmoid(inplace=s.inplace)),
}
ActName = Literal[
    "relu", "leaky_relu", "tanh", "hardtanh", "sigmoid", "softmax", "log_softmax", "gelu", "silu", "identity",
    "relu6", "hardswish", "hardsigmoid",
]


def _activation(name: str | None) -> nn.Module | None:
    if name is None:
        return None
    spec_cls, factory = ACTIVATIONS[name]
    return factory(spec_cls())




for _name, (_spec, _factory) in ACTIVATIONS.items():
    _rule = _dim_shape if _spec is DimSpec else _same_shape
    _register(Primitive(_name, _spec, _rule, (lambda f: lambda s, shape: f(s))(_factory), doc="activation", params=_none))
