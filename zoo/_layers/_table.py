"""The table itself: what a primitive is, the registry dict, and helpers every family shares."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from .._errors import ShapeError

if TYPE_CHECKING:
    from torch import nn

Shape = tuple[int, ...]
Pos = Annotated[int, Field(gt=0)]
NonNeg = Annotated[int, Field(ge=0)]
Size2 = Pos | tuple[Pos, Pos]
Padding = Literal["valid", "same"] | NonNeg | tuple[NonNeg, NonNeg]


def _mentions_bool(annotation: Any) -> bool:
    return annotation is bool or any(_mentions_bool(a) for a in get_args(annotation))


@functools.lru_cache(maxsize=4096)
def _bool_rule(model: type[BaseModel], field_name: str) -> str:
    """How a field's type treats booleans: 'flag' (only true/false), 'number' (never a boolean) or
    'any'. Worked out once per field: every argument of every layer passes through the check."""
    field = model.model_fields.get(field_name)
    annotation = field.annotation if field is not None else Any
    if annotation is Any:
        return "any"
    if annotation is bool or annotation == (bool | None):
        return "flag"
    return "any" if _mentions_bool(annotation) else "number"


class Strict(BaseModel):
    """Arguments as a file writes them, without pydantic's lax conversions that hide mistakes:
    a boolean is never a number (``dense: true`` is not a 1-unit layer), a flag is only
    ``true``/``false`` (not ``"no"`` or ``1``), and floats are finite (NaN/inf break the network)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_confusion(cls, value: Any, info: ValidationInfo) -> Any:
        rule = _bool_rule(cls, info.field_name or "")
        if rule == "flag":
            if not isinstance(value, bool) and value is not None:
                raise ValueError("expected true or false")
            return value
        if rule == "number":
            items = value if isinstance(value, (list, tuple)) else [value]
            if any(isinstance(v, bool) for v in items):
                raise ValueError("expected a number, not a boolean")
        return value


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
