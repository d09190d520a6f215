"""Normalization and fixed per-channel transforms: affine, batchnorm, lrn, layernorm, layernorm2d."""

from __future__ import annotations

import math
from typing import Annotated

from pydantic import Field

from .._errors import ShapeError
from ._table import (
    Pos,
    Primitive,
    Shape,
    Spec,
    _need_image,
    _none,
    _register,
    _same_shape,
)
from ._torch import _modules, nn


class AffineSpec(Spec):
    scale: list[float] = Field(description="per-channel factor, one value per input channel")
    shift: list[float] = Field(description="per-channel value added after scaling")


def _affine_shape(s: AffineSpec, shape: Shape) -> Shape:
    if len(s.scale) != shape[0] or len(s.shift) != shape[0]:
        raise ShapeError(f"affine needs {shape[0]} scale and shift values (one per channel), got {len(s.scale)} and {len(s.shift)}")
    return shape


_register(Primitive(
    "affine", AffineSpec, _affine_shape, lambda s, shape: _modules.ChannelAffine(s.scale, s.shift),
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
        return nn.BatchNorm1d(c, eps=s.eps, momentum=s.momentum)
    if s.scale and s.center:
        return nn.BatchNorm2d(c, eps=s.eps, momentum=s.momentum)
    if s.center:
        return _modules.BatchNormNoScale(c, eps=s.eps, momentum=s.momentum)
    return nn.BatchNorm2d(c, eps=s.eps, momentum=s.momentum, affine=False)


def _bn_shape(s: BatchNormSpec, shape: Shape) -> Shape:
    if s.scale and not s.center:
        raise ShapeError("batchnorm with scale but without center is not supported")
    if len(shape) == 1 and not (s.scale and s.center):
        raise ShapeError("batchnorm without scale/center is only available for images")
    if len(shape) not in (1, 3):
        raise ShapeError(f"batchnorm needs (C, H, W) or (F,), got {shape}")
    return shape


def _bn_params(s: BatchNormSpec, shape: Shape) -> int:
    return shape[0] * (int(s.scale) + int(s.center))


_register(Primitive(
    "batchnorm", BatchNormSpec, _bn_shape, _bn_make, doc="batch normalization", params=_bn_params,
    statistics=lambda s, shape: 2 * shape[0],  # running mean and variance
))


class LrnSpec(Spec):
    size: Pos = 5
    # alpha >= 0 and k > 0 keep the base of the power positive (else the output is NaN)
    alpha: Annotated[float, Field(ge=0)] = 1e-4
    beta: float = 0.75
    k: Annotated[float, Field(gt=0)] = 2.0  # AlexNet paper's constants (PyTorch's default k is 1.0)


LRN_MIN_DENOMINATOR = 1e-6  # k ** beta below this divides float32 inputs into infinity
LRN_MIN_K = 1e-30  # float32 holds it (its smallest normal number is about 1.2e-38)


def _lrn_shape(s: LrnSpec, shape: Shape) -> Shape:
    _need_image(shape, "lrn")
    # the output is x / (k + alpha * mean(x^2)) ** beta: its smallest denominator is k ** beta
    # k below float32's range is 0 on the tensor (then 0 ** beta divides by zero); logs: k ** beta may overflow
    if s.k < LRN_MIN_K or s.beta < 0 or s.beta * math.log(s.k) < math.log(LRN_MIN_DENOMINATOR):
        raise ShapeError(
            f"lrn needs k >= {LRN_MIN_K:g}, beta >= 0 and k ** beta >= {LRN_MIN_DENOMINATOR:g} so its outputs stay finite, "
            f"got k={s.k:g}, beta={s.beta:g}"
        )
    return shape


_register(Primitive(
    "lrn", LrnSpec, _lrn_shape,
    lambda s, shape: nn.LocalResponseNorm(s.size, s.alpha, s.beta, s.k), primary="size", doc="local response norm",
    params=_none,
))


# ---------------------------------------------------------------- layer norm

class LayerNormSpec(Spec):
    eps: Annotated[float, Field(gt=0)] = 1e-5
    affine: bool = True  # learn a per-feature weight and bias


def _ln_params(s: LayerNormSpec, shape: Shape) -> int:
    return 2 * shape[-1] if s.affine else 0


_register(Primitive(
    "layernorm", LayerNormSpec, _same_shape,
    lambda s, shape: nn.LayerNorm(shape[-1], eps=s.eps, elementwise_affine=s.affine),
    doc="layer norm over the last axis (nn.LayerNorm): flat features, or channels after a permute", params=_ln_params,
))


def _ln2d_shape(s: LayerNormSpec, shape: Shape) -> Shape:
    _need_image(shape, "layernorm2d")
    return shape


_register(Primitive(
    "layernorm2d", LayerNormSpec, _ln2d_shape,
    lambda s, shape: _modules.LayerNorm2d(shape[0], eps=s.eps, elementwise_affine=s.affine),
    doc="layer norm over the channels of an image (torchvision's and timm's LayerNorm2d)",
    params=lambda s, shape: 2 * shape[0] if s.affine else 0,
))
