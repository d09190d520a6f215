"""What expansion produces: ``Leaf``/``Group`` items with inferred shapes (no tensors), the combinators'
arguments, and the rules for module names."""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from pydantic import Field

from ._errors import (
    Location,
    SchemaError,
)
from ._layers import Primitive, Shape
from ._limits import MAX_REPEAT
from ._module_attrs import RESERVED_NAMES
from ._strict import Strict

META_KEYS = ("name", "when")


# a module name is one state_dict key component: any text but '.', which separates components
# (torchvision's RegNet has 'block1-0'); control characters are refused as unprintable
NAME_PATTERN = r"^[^.\x00-\x1f\x7f]+$"


@dataclass
class Leaf:
    name: str | None
    primitive: Primitive
    spec: Any
    in_shape: Shape
    out_shape: Shape
    loc: Location | None
    inline: bool = False


@dataclass
class Group:
    kind: str  # seq | residual | concat | aux
    name: str | None
    loc: Location | None
    out_shape: Shape
    inline: bool = False
    parts: list[list[Item]] = field(default_factory=list)  # seq/aux: [items]; concat: branches; residual: [body, shortcut, post]
    scale: float = 1.0
    merge: str = "add"  # residual only: add | mul
    block: str | None = None  # the block template it came from (what ``zoo draw`` shows collapsed)


Item = Leaf | Group


@dataclass
class Expanded:
    items: list[Item]
    out_shape: Shape


class _Args(Strict):
    name: str | None = Field(None, pattern=NAME_PATTERN)
    when: Any = True


class SeqArgs(_Args):
    """Layers in sequence, one named module (``stage`` is the same, for readability)."""

    layers: list[Any] = Field(min_length=1)
    inline: bool = False


class ResidualArgs(_Args):
    """body(x) merged with shortcut(x) (identity when absent), then the optional post layers."""

    body: list[Any] = Field(min_length=1)
    shortcut: list[Any] | None = None
    post: Any = None
    scale: float = Field(1.0, description="factor on the body's output before the merge (Inception-ResNet)")
    merge: Literal["add", "mul"] = Field("add", description="add: body + shortcut; mul: body is a gate multiplied onto the shortcut")
    inline: bool = False


class ConcatArgs(_Args):
    """Parallel branches on the same input, concatenated along channels."""

    branches: list[Any] = Field(min_length=1)
    inline: bool = False


class RepeatArgs(_Args):
    """The layers n times in a row, with the index bound to ``as`` (default ``i``)."""

    n: int = Field(ge=0, le=MAX_REPEAT)
    as_: str = Field("i", alias="as", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    layers: list[Any] = Field(min_length=1)


class AuxArgs(_Args):
    """An auxiliary head: its output is returned in training mode, the main path goes on."""

    layers: list[Any] = Field(min_length=1)


# combinator name -> its arguments (the language reference and the JSON Schema read this table;
# a test keeps it equal to the combinators the expander dispatches on, ``_combinators.COMBINATORS``)
COMBINATOR_ARGS: dict[str, type[_Args]] = {
    "seq": SeqArgs, "stage": SeqArgs, "residual": ResidualArgs, "concat": ConcatArgs, "repeat": RepeatArgs, "aux": AuxArgs,
}


_A = TypeVar("_A", bound=_Args)


_LAYER_FIELDS = {"layers", "body", "shortcut", "post", "branches"}  # evaluated lazily, in scope


def _fmt(shape: Shape) -> str:
    return "(" + ", ".join(str(s) for s in shape) + ")"


def _is_map(x: Any) -> bool:
    return isinstance(x, dict)


_NAME_RE = re.compile(NAME_PATTERN)


_CHECKED: set[str] = set()  # names that passed: a few hundred distinct ones name thousands of layers


def _name_checked(name: Any) -> bool:
    """Whether ``name`` passed :func:`_check_name` before (then its location and path need not be
    looked up to check it again)."""
    return type(name) is str and name in _CHECKED


def _check_name(name: Any, loc: Location | None, path: str) -> None:
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise SchemaError(
            f"name must be a non-empty text without '.' (it is one state_dict key component), got {name!r}",
            location=loc, path=path,
        )
    if name in RESERVED_NAMES:  # nn.Module's own attributes (``training``, ``forward``, ...)
        raise SchemaError(
            f"name {name!r} is an attribute of torch.nn.Module and cannot name a layer",
            location=loc, path=path, hint=f"choose another name, such as '{name.strip('_')}_'",
        )
    if len(_CHECKED) < 65536:
        _CHECKED.add(name)


def leaves(items: list[Item]) -> Iterator[Leaf]:
    for item in items:
        if isinstance(item, Leaf):
            yield item
        else:
            for part in item.parts:
                yield from leaves(part)


def leaf_params(leaf: Leaf) -> int:
    """A layer's parameter count from its table rule (or, lacking one, its meta-device twin)."""
    if leaf.primitive.params is not None:
        return leaf.primitive.params(leaf.spec, leaf.in_shape)
    import torch  # only for a primitive without a counting rule (a user's own table entry)

    with torch.device("meta"):
        return sum(p.numel() for p in leaf.primitive.make(leaf.spec, leaf.in_shape).parameters())


def leaf_activation(leaf: Leaf) -> int:
    """Elements of the largest tensor the layer reads, writes or needs on the way, per sample."""
    sizes = [math.prod(leaf.in_shape), math.prod(leaf.out_shape)]
    if leaf.primitive.workspace is not None:
        sizes.append(leaf.primitive.workspace(leaf.spec, leaf.in_shape))
    return max(sizes)
