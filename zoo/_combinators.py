"""The combinators: ``seq``/``stage``, ``residual``, ``concat``, ``repeat`` and ``aux``, each a
function of the expander (``_expansion``) and its already evaluated arguments, giving expanded items.

A combinator checks its arguments against their model in ``_tree`` (``COMBINATOR_ARGS``), expands
its layer lists through the expander and checks the shapes where they meet: a residual's body
against its shortcut (or, for ``merge: mul``, that the gate broadcasts), concat branches against
each other. Adding a combinator is one function and one entry in ``COMBINATORS``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Protocol

from ._errors import Location, SchemaError, ShapeError
from ._layers import Shape
from ._pydantic_errors import validate
from ._tree import (
    _A,
    _LAYER_FIELDS,
    AuxArgs,
    ConcatArgs,
    Expanded,
    Group,
    Item,
    Leaf,
    RepeatArgs,
    ResidualArgs,
    SeqArgs,
    _check_name,
    _fmt,
    _name_checked,
    leaves,
)
from ._yaml import loc_of

if TYPE_CHECKING:
    from ._expansion import _Expander

__all__ = ["COMBINATORS", "Combinator"]


class Combinator(Protocol):
    def __call__(
        self, ex: _Expander, raw: Any, env: Mapping[str, Any], shape: Shape, path: str, loc: Location | None,
    ) -> list[Item]: ...


_ARGS: dict[tuple[Any, ...], Any] = {}  # (model, the arguments but the layer lists) -> validated arguments
_MAX_ARGS = 4096


def _args(model: type[_A], raw: Any, path: str, loc: Location | None) -> _A:
    """The combinator's arguments validated. The layer lists in them (``list[Any]``, at least one
    item, no boolean; ``post`` any value) pass whatever else they hold, so arguments
    that differ only there validate alike: the result for the other values is reused. Callers read
    the layer lists from ``raw``, never from the result."""
    key = _args_key(model, raw)
    args = _ARGS.get(key) if key is not None else None
    if args is None:
        args = validate(model, raw, prefix=[path], location=loc)
        if key is not None:
            if len(_ARGS) >= _MAX_ARGS:
                _ARGS.clear()
            _ARGS[key] = args
    if args.name is not None and not _name_checked(args.name):
        _check_name(args.name, loc_of(raw, "name") or loc, f"{path}.name")
    return args


def _args_key(model: type[_A], raw: Any) -> tuple[Any, ...] | None:
    """What the validation of ``raw`` depends on; None when a layer field is not a non-empty list."""
    key: list[Any] = [model]
    for k, v in raw.items():
        if k in _LAYER_FIELDS:
            # Strict refuses a boolean item in a list field: such a list is validated for real
            if k != "post" and not (isinstance(v, list) and v and not any(isinstance(x, bool) for x in v)):
                return None
            key.append(k)
        else:
            key.append((k, v) if type(v) is int or type(v) is str else (k, type(v), repr(v)))
    return tuple(key)


def _seq(ex: _Expander, raw: Any, env: Mapping[str, Any], shape: Shape, path: str, loc: Location | None) -> list[Item]:
    args = _args(SeqArgs, raw, path, loc)
    inner = ex.expand_list(raw["layers"], env, shape, f"{path}.layers", loc)
    return [Group("seq", args.name, loc, inner.out_shape, inline=args.inline, parts=[inner.items])]


def _aux(ex: _Expander, raw: Any, env: Mapping[str, Any], shape: Shape, path: str, loc: Location | None) -> list[Item]:
    args = _args(AuxArgs, raw, path, loc)
    inner = ex.expand_list(raw["layers"], env, shape, f"{path}.layers", loc)
    _protect_input(inner.items)
    return [Group("aux", args.name, loc, shape, parts=[inner.items])]


def _residual(ex: _Expander, raw: Any, env: Mapping[str, Any], shape: Shape, path: str, loc: Location | None) -> list[Item]:
    args = _args(ResidualArgs, raw, path, loc)
    collected = len(ex.errors or [])
    body = ex.expand_list(raw["body"], env, shape, f"{path}.body", loc)
    # a body emptied by errors collected inside it (zoo validate) is not a 'when:' mistake
    if next(leaves(body.items), None) is None and len(ex.errors or []) == collected:
        raise SchemaError(
            "residual body is empty: every layer of it is dropped by 'when:'",
            location=loc, path=f"{path}.body", hint="put the 'when:' on the residual itself",
        )
    shortcut = Expanded([], shape)
    if raw.get("shortcut"):
        shortcut = ex.expand_list(raw["shortcut"], env, shape, f"{path}.shortcut", loc)
    if args.merge == "mul":
        _check_gate(args, body.out_shape, shortcut.out_shape, bool(raw.get("shortcut")), loc, path)
    elif body.out_shape != shortcut.out_shape:
        what = "shortcut" if raw.get("shortcut") else "input (identity shortcut)"
        raise ShapeError(
            f"residual add: body gives {_fmt(body.out_shape)} but {what} gives {_fmt(shortcut.out_shape)}",
            location=loc, path=path,
            hint="add a projection shortcut (1x1 conv with the body's stride and filters)" if not raw.get("shortcut") else "",
        )
    _protect_input(body.items)
    _protect_input(shortcut.items)
    post = Expanded([], shortcut.out_shape)
    if raw.get("post") is not None:
        post = ex.expand_list(raw["post"], env, shortcut.out_shape, f"{path}.post", loc)
    return [Group(
        "residual", args.name, loc, post.out_shape, inline=args.inline,
        parts=[body.items, shortcut.items, post.items], scale=args.scale, merge=args.merge,
    )]


def _concat(ex: _Expander, raw: Any, env: Mapping[str, Any], shape: Shape, path: str, loc: Location | None) -> list[Item]:
    args = _args(ConcatArgs, raw, path, loc)
    branches = [
        ex.expand_list(b, env, shape, f"{path}.branches[{i}]", loc_of(raw["branches"], i) or loc)
        for i, b in enumerate(raw["branches"])
    ]
    for branch in branches:
        _protect_input(branch.items)
    shapes = [b.out_shape for b in branches]
    # images join on channels with equal (H, W); flat features (F,) join end to end
    if any(len(s) != len(shapes[0]) or len(s) not in (1, 3) or s[1:] != shapes[0][1:] for s in shapes):
        listed = ", ".join(f"branch {i}: {_fmt(s)}" for i, s in enumerate(shapes))
        raise ShapeError(
            f"concat needs all branches images of equal spatial size or all flat features, got {listed}",
            location=loc, path=path,
        )
    out = (sum(s[0] for s in shapes), *shapes[0][1:])
    return [Group("concat", args.name, loc, out, inline=args.inline, parts=[b.items for b in branches])]


def _repeat(ex: _Expander, raw: Any, env: Mapping[str, Any], shape: Shape, path: str, loc: Location | None) -> list[Item]:
    args = _args(RepeatArgs, raw, path, loc)
    if args.name is not None:
        raise SchemaError("repeat has no name; name the layers it repeats or wrap it in a seq", location=loc, path=path)
    items: list[Item] = []
    for i in range(args.n):
        inner = ex.expand_list(raw["layers"], {**env, args.as_: i}, shape, f"{path}.layers", loc)
        items.extend(inner.items)
        shape = inner.out_shape
    return items


# the names a layer node dispatches on (``COMBINATOR_ARGS`` in ``_tree`` holds their arguments)
COMBINATORS: dict[str, Combinator] = {
    "seq": _seq,
    "stage": _seq,
    "residual": _residual,
    "concat": _concat,
    "repeat": _repeat,
    "aux": _aux,
}


def _check_gate(args: ResidualArgs, gate: Shape, target: Shape, explicit: bool, loc: Location | None, path: str) -> None:
    """A multiplicative gate broadcasts over the axes it reduced: each of its sizes is the
    target's or 1 (squeeze-and-excitation: (C, 1, 1) onto (C, H, W); spatial attention: (1, H, W))."""
    what = "shortcut" if explicit else "input (identity shortcut)"
    if args.scale != 1.0:
        raise SchemaError("residual 'scale' only applies to merge: add", location=loc, path=f"{path}.scale")
    if len(gate) != len(target) or any(g not in (t, 1) for g, t in zip(gate, target, strict=True)):
        raise ShapeError(
            f"residual mul: the gate (body) gives {_fmt(gate)}, which does not broadcast onto the {what} {_fmt(target)}",
            location=loc, path=path,
            hint="each gate size must equal the input's or be 1 (e.g. global pooling for a channel gate)",
        )


def _protect_input(items: list[Item]) -> None:
    """The first layers to see a shared input must not overwrite it: turn off ``inplace`` there.

    A residual body's input is also the shortcut's, a concat branch's input is every branch's and
    an aux head's input continues down the main path; an in-place ReLU first in any of them would
    corrupt the others (timm's Xception blocks start with ``ReLU(inplace=False)`` for this reason).
    ``items`` is the caller's own list; the items in it may be shared with other uses of a block
    (replayed expansions), so a changed one is replaced by a copy, never changed in place.
    """
    if items:
        items[0] = _protected(items[0])


def _protected(item: Item) -> Item:
    """``item`` with ``inplace`` off in the first layers to see its input (itself when none has it)."""
    if isinstance(item, Leaf):
        if vars(item.spec).get("inplace", False):  # a field, or none: no pydantic attribute lookup
            return replace(item, spec=item.spec.model_copy(update={"inplace": False}))
        return item
    parts = list(item.parts)
    changed = False
    for i in (0, 1) if item.kind == "residual" else range(len(parts)):
        if parts[i]:
            first = _protected(parts[i][0])
            if first is not parts[i][0]:
                parts[i], changed = [first, *parts[i][1:]], True
    return replace(item, parts=parts) if changed else item
