"""The table itself: what a primitive is, the registry dict, and helpers every family shares."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import ConfigDict, Field

from .._errors import ShapeError
from .._strict import Strict

if TYPE_CHECKING:
    from torch import nn

Shape = tuple[int, ...]
Pos = Annotated[int, Field(gt=0)]
NonNeg = Annotated[int, Field(ge=0)]
Size2 = Pos | tuple[Pos, Pos]
Padding = Literal["valid", "same"] | NonNeg | tuple[NonNeg, NonNeg]


class Spec(Strict):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class NoArgs(Spec):
    pass


@dataclass(frozen=True)
class Primitive:
    name: str
    spec: type[Spec]
    shape: Callable[[Any, Shape], Shape]
    make: Callable[[Any, Shape], nn.Module]
    # values Keras' summary counts as non-trainable parameters besides ``params`` (batch-norm moving
    # mean and variance), for counts under the "keras" convention; None means none
    statistics: Callable[[Any, Shape], int] | None = None
    primary: str | None = None  # the field a scalar shorthand sets: ``maxpool: 2``
    doc: str = ""
    # learnable parameters from spec and input shape, so size limits are checked before anything
    # is built; None means "build the layer on the meta device and count"
    params: Callable[[Any, Shape], int] | None = None
    # elements of the largest buffer the forward pass makes beyond input and output, per sample
    # ('same' padding, the unfolded input of a convolution), so huge requests are refused from
    # the shapes before the allocator sees them; None means input and output are the largest
    workspace: Callable[[Any, Shape], int] | None = None


def _none(spec: Any, shape: Shape) -> int:
    return 0


PRIMITIVES: dict[str, Primitive] = {}


def _register(p: Primitive) -> None:
    PRIMITIVES[p.name] = p


def _pair(v: int | tuple[int, int]) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _need_image(shape: Shape, layer: str) -> tuple[int, int, int]:
    if len(shape) != 3:
        raise ShapeError(f"{layer} needs an image input (C, H, W), got {_fmt(shape)}; put it before 'flatten'")
    return shape[0], shape[1], shape[2]


def _fmt(shape: Shape) -> str:
    return "(" + ", ".join(str(s) for s in shape) + ")"



def _same_shape(spec: Any, shape: Shape) -> Shape:
    return shape
