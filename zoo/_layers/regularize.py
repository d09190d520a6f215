"""Regularizers that act only in training: stochastic depth."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import Field

from ._table import Primitive, Shape, Spec, _none, _register, _same_shape

if TYPE_CHECKING:
    from torch import nn


class StochasticDepthSpec(Spec):
    p: Annotated[float, Field(ge=0.0, le=1.0)]  # probability of dropping the input
    mode: Literal["row", "batch"] = "row"  # row: per sample; batch: the whole batch at once


def _stochastic_depth_make(s: StochasticDepthSpec, shape: Shape) -> nn.Module:
    # torchvision's own module: same repr, same Bernoulli draws, so a train step matches theirs
    from torchvision.ops import StochasticDepth

    module: nn.Module = StochasticDepth(s.p, s.mode)
    return module


_register(Primitive(
    "stochastic_depth", StochasticDepthSpec, _same_shape, _stochastic_depth_make, primary="p",
    doc="drops the input with probability p in training, scales by 1/(1-p) (torchvision.ops.StochasticDepth)",
    params=_none,
))
