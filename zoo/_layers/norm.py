"""Normalization and fixed per-channel transforms: affine, batchnorm, lrn."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field
from torch import nn

from .._errors import ShapeError
from .._modules import BatchNormNoScale, ChannelAffine
from ._table import (
    Pos,
    Primitive,
    Shape,
    Spec,
    _need_image,
    _none,
    _register,
)


class AffineSpec(Spec):
    scale: list[float]  # per channel
    shift: list[float]


def _affine_shape(s: AffineSpec, shape: Shape) -> Shape:
    if len(s.scale) != shape[0] or len(s.shift) != shape[0]:
        raise ShapeError(f"affine needs {shape[0]} scale and shift values (one per channel), got {len(s.scale)} and {len(s.shift)}")
    return shape


_register(Primitive(
    "affine", AffineSpec, _affine_shape, lambda s, shape: ChannelAffine(s.scale, s.shift),
    doc="fixed per-channel x * scale + shift (e.g. torchvision's transform_input)", params=_none,
))


# ---------------------------------------------------------------- normalization

class BatchNormSpec(Spec):
    eps: Annotated[float, Field(gt=0)] = 1e-5
    momentum: Annotated[float, Field(ge=0, le=1)] | None = 0.1
    scale: bool = True  # Keras ``scale``: learn gamma
    center: bool = True  # Keras ``center``: learn beta


def _bn_make(s: BatchNormSpec, shape: Shape) -> nn.Module:
    c = shape[0]
    if len(shape) == 1:
        if not (s.scale and s.center):
            raise ShapeError("batchnorm without scale/center is only available for images")
        return nn.BatchNorm1d(c, eps=s.eps, momentum=s.momentum)
    if s.scale and s.center:
        return nn.BatchNorm2d(c, eps=s.eps, momentum=s.momentum)
    if s.center:
        return BatchNormNoScale(c, eps=s.eps, momentum=s.momentum)
    return nn.BatchNorm2d(c, eps=s.eps, momentum=s.momentum, affine=False)


def _bn_shape(s: BatchNormSpec, shape: Shape) -> Shape:
    if s.scale and not s.center:
        raise ShapeError("batchnorm with scale but without center is not supported")
    return shape


def _bn_params(s: BatchNormSpec, shape: Shape) -> int:
    return shape[0] * (int(s.scale) + int(s.center))


_register(Primitive(
    "batchnorm", BatchNormSpec, _bn_shape, _bn_make, doc="batch normalization", params=_bn_params,
    statistics=lambda s, shape: 2 * shape[0],  # running mean and variance
))


class LrnSpec(Spec):
    size: Pos = 5
    alpha: float = 1e-4
    beta: float = 0.75
    k: float = 2.0  # AlexNet paper's constants (PyTorch's default k is 1.0)


_register(Primitive(
    "lrn", LrnSpec, lambda s, shape: (_need_image(shape, "lrn"), shape)[1],
    lambda s, shape: nn.LocalResponseNorm(s.size, s.alpha, s.beta, s.k), primary="size", doc="local response norm",
    params=_none,
))
