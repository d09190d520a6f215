"""Dense layers and shape changes: dense, flatten, dropout."""

from __future__ import annotations

import math
from typing import Annotated

from pydantic import Field

from .._errors import ShapeError
from ._table import (
    NoArgs,
    Pos,
    Primitive,
    Shape,
    Spec,
    _fmt,
    _none,
    _register,
    _same_shape,
)
from ._torch import _modules, nn
from .activations import ActName, _activation

# ---------------------------------------------------------------- dense and shape changes

class DenseSpec(Spec):
    units: Pos
    bias: bool = True
    act: ActName | None = None
    # over the last axis of any shape (nn.Linear's own rule): channels after a 'permute' to (H, W, C)
    last_axis: bool = False


def _dense_shape(s: DenseSpec, shape: Shape) -> Shape:
    if s.last_axis:
        return (*shape[:-1], s.units)
    if len(shape) != 1:
        raise ShapeError(
            f"dense needs flat features (F,), got {_fmt(shape)}; add 'flatten' or a global pool before it "
            "(or set last_axis: true to apply it over the last axis)"
        )
    return (s.units,)


def _dense_make(s: DenseSpec, shape: Shape) -> nn.Module:
    if s.act is None:
        return nn.Linear(shape[-1], s.units, bias=s.bias)
    act = _activation(s.act)
    assert act is not None  # act names are validated by the spec
    return _modules.LinearAct(shape[-1], s.units, bias=s.bias, act=act)


def _dense_params(s: DenseSpec, shape: Shape) -> int:
    return shape[-1] * s.units + (s.units if s.bias else 0)


_register(Primitive("dense", DenseSpec, _dense_shape, _dense_make, primary="units", doc="fully connected", params=_dense_params))


def _flatten_shape(s: NoArgs, shape: Shape) -> Shape:
    return (math.prod(shape),)


_register(Primitive("flatten", NoArgs, _flatten_shape, lambda s, shape: nn.Flatten(), doc="(C,H,W) -> (C*H*W,)", params=_none))


class DropoutSpec(Spec):
    p: Annotated[float, Field(ge=0.0, le=1.0)] = 0.5


_register(Primitive("dropout", DropoutSpec, _same_shape, lambda s, shape: nn.Dropout(s.p), primary="p", doc="dropout", params=_none))
