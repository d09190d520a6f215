"""The builder: expands a resolved architecture into a tree of layers with inferred shapes, then
materializes it into plain torch modules.

Two phases, so that every shape is checked and the parameter count known before any weight
is allocated:
  1. ``_Expander`` walks the ``layers`` list with the parameters in scope: evaluates ``${...}``,
     expands ``repeat`` and block templates, validates each primitive against its spec and infers
     its output shape. The result is a tree of ``Leaf``/``Group`` items (no tensors).
  2. ``build_network`` checks the parameter count from the primitive table's rules against the
     limit, and only then builds modules (on the target device, with their usual initialization).
"""

from __future__ import annotations

import math
import os
import re
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import torch
from pydantic import Field
from torch import nn

from ._errors import (
    ExpressionError,
    Location,
    SchemaError,
    ShapeError,
    SizeLimitError,
    UnknownNameError,
    ZooError,
    did_you_mean,
    layer_hint,
)
from ._expr import interpolate, is_expression
from ._layers import PRIMITIVES, Primitive, Shape
from ._layers._table import Strict
from ._modules import Aux, Concat, Graph, LayerScale, Network, Residual
from ._pydantic_errors import validate
from ._schema import REQUIRED, ArchitectureSpec, BlockTemplate
from ._yaml import YList, YMap, loc_of

__all__ = [
    "COMBINATOR_ARGS", "DEFAULT_MAX_ACTIVATION", "DEFAULT_MAX_PARAMS", "Expanded", "allocate", "build_network",
    "check_size", "expand", "leaf_params", "leaves", "max_activation", "max_params",
]

DEFAULT_MAX_PARAMS = 2_000_000_000  # 8 GB of float32; raise with ZOO_MAX_PARAMS or max_params=
# elements of one layer's input, output or working buffer for ONE sample (1 GiB of float32);
# ResNet-50 at 1024x1024 needs 17M. Raise with ZOO_MAX_ACTIVATION or max_activation=
DEFAULT_MAX_ACTIVATION = 2**28
MAX_LAYERS = 40_000  # leaves after expanding repeats and blocks; the largest real file has 699
MAX_REPEAT = 10_000
# nodes and layer lists visited while expanding, leaves or not: 10,000 x 10,000 nodes that
# ``when:`` removes, or empty groups, cost time without adding leaves. The largest real file
# (Inception-ResNet-v2) does about 3,000 units of work; a combinator costs 3 (it validates its
# arguments), a primitive or a list 1.
MAX_WORK = 100_000
MAX_NESTING = 100  # layer lists inside layer lists, blocks included; real files stay under 15
META_KEYS = ("name", "when")
# a module name is one state_dict key component: any text but '.', which separates components
# (torchvision's RegNet has 'block1-0'); control characters are refused as unprintable
NAME_PATTERN = r"^[^.\x00-\x1f\x7f]+$"
# names a child module cannot take: nn.Module's own attributes (``training``, ``forward``, ...)
_RESERVED = frozenset(dir(Aux({}, None))) | frozenset(dir(Network({})))


def _limit_from_env(var: str, default: int) -> int:
    raw = os.environ.get(var)
    if not raw:
        return default
    try:
        value = int(float(raw))
    except (ValueError, OverflowError):
        raise SchemaError(f"{var} must be a number, got {raw!r}") from None
    if value <= 0:
        raise SchemaError(f"{var} must be positive, got {raw!r}")
    return value


def max_params() -> int:
    return _limit_from_env("ZOO_MAX_PARAMS", DEFAULT_MAX_PARAMS)


def max_activation() -> int:
    return _limit_from_env("ZOO_MAX_ACTIVATION", DEFAULT_MAX_ACTIVATION)


# ---------------------------------------------------------------- the expanded tree

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


# ---------------------------------------------------------------- combinator arguments

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
# a test keeps it equal to the combinators _Expander dispatches on)
COMBINATOR_ARGS: dict[str, type[_Args]] = {
    "seq": SeqArgs, "stage": SeqArgs, "residual": ResidualArgs, "concat": ConcatArgs, "repeat": RepeatArgs, "aux": AuxArgs,
}


_A = TypeVar("_A", bound=_Args)


_LAYER_FIELDS = {"layers", "body", "shortcut", "post", "branches"}  # evaluated lazily, in scope


def _fmt(shape: Shape) -> str:
    return "(" + ", ".join(str(s) for s in shape) + ")"


def _is_map(x: Any) -> bool:
    return isinstance(x, dict)


# ---------------------------------------------------------------- phase 1: expansion

class _Expander:
    def __init__(self, blocks: Mapping[str, BlockTemplate], file: str) -> None:
        self.blocks = blocks
        self.file = file
        self.count = 0
        self.work = 0
        self.depth = 0
        self.calls: list[tuple[str, str]] = []  # blocks being expanded, with their arguments
        # ``zoo validate``: collect errors and go on; after the first error shapes are unreliable,
        # so only errors that do not depend on shapes are collected from then on
        self.errors: list[ZooError] | None = None
        self.combinators: dict[str, Callable[..., list[Item]]] = {
            "seq": self._seq,
            "stage": self._seq,
            "residual": self._residual,
            "concat": self._concat,
            "repeat": self._repeat,
            "aux": self._aux,
        }

    # -- helpers

    def _value(self, raw: Any, env: Mapping[str, Any], loc: Location | None, path: str) -> Any:
        """Evaluate every ${...} inside a value (not inside nested layer lists)."""
        try:
            if isinstance(raw, str) and is_expression(raw):
                return interpolate(raw, env)
            if isinstance(raw, list):
                return [self._value(v, env, loc_of(raw, i) or loc, f"{path}[{i}]") for i, v in enumerate(raw)]
            if isinstance(raw, dict):
                out: dict[str, Any] = YMap(loc=loc_of(raw)) if isinstance(raw, YMap) else {}
                for k, v in raw.items():
                    if k in _LAYER_FIELDS:
                        out[k] = v
                    else:
                        out[k] = self._value(v, env, loc_of(raw, k) or loc, f"{path}.{k}")
                if isinstance(raw, YMap) and isinstance(out, YMap):
                    out.key_locs = raw.key_locs
                return out
            return raw
        except ZooError as exc:
            if exc.location is None:
                exc.location, exc.path = loc, exc.path or path
                exc.args = (exc._render(),)
            raise

    def _split(self, raw: Any, loc: Location | None, path: str) -> tuple[str, Any]:
        """A node is 'type' or {type: args}; returns (type, args)."""
        if isinstance(raw, str):
            return raw, None
        if _is_map(raw) and len(raw) == 1:
            key = next(iter(raw))
            return key, raw[key]
        if _is_map(raw):
            keys = ", ".join(map(repr, raw))
            raise SchemaError(
                f"a layer is a mapping with one key, the layer type; found {len(raw)} keys ({keys})",
                location=loc, path=path,
                hint="arguments go inside the layer: '- conv: {filters: 32, kernel: 3}'",
            )
        raise SchemaError(
            f"a layer must be a name or a mapping {{type: arguments}}, got {type(raw).__name__.replace('Y', '').lower()}",
            location=loc, path=path,
        )

    def _known(self) -> list[str]:
        return [*PRIMITIVES, *self.combinators, *self.blocks]

    # -- the walk

    def expand_list(self, nodes: Any, env: Mapping[str, Any], shape: Shape, path: str, loc: Location | None) -> Expanded:
        if isinstance(nodes, (str, dict)):
            nodes = YList([nodes], loc=loc_of(nodes) or loc)
        if not isinstance(nodes, list):
            raise SchemaError(f"expected a list of layers, got {type(nodes).__name__}", location=loc, path=path)
        self.depth += 1
        self._work(loc, path)
        try:
            if self.depth > MAX_NESTING:
                raise SchemaError(
                    f"layers nested more than {MAX_NESTING} levels deep (blocks and combinators inside each other)",
                    location=loc, path=path,
                )
            items: list[Item] = []
            for i, raw in enumerate(nodes):
                node_loc = loc_of(nodes, i) or loc
                new = self._expand_or_collect(raw, env, shape, f"{path}[{i}]", node_loc)
                for item in new:
                    shape = item.out_shape
                items.extend(new)
            return Expanded(items, shape)
        finally:
            self.depth -= 1

    def _expand_or_collect(self, raw: Any, env: Mapping[str, Any], shape: Shape, path: str, loc: Location | None) -> list[Item]:
        if self.errors is None:
            return self.expand_node(raw, env, shape, path, loc)
        try:
            return self.expand_node(raw, env, shape, path, loc)
        except (SchemaError, ShapeError) as exc:  # size and nesting limits still stop the walk
            if not self.errors or not isinstance(exc, ShapeError):
                if not any(e.location == exc.location and e.message == exc.message for e in self.errors):
                    self.errors.append(exc)
            return []  # the node is dropped; the shape flows on unchanged

    def _work(self, loc: Location | None, path: str, units: int = 1) -> None:
        self.work += units
        if self.work > MAX_WORK:
            raise SizeLimitError(
                f"architecture expansion visits more than {MAX_WORK:,} layer nodes and lists (nested repeats?)",
                location=loc, path=path,
            )

    def _when(self, value: Any, loc: Location | None, path: str) -> bool:
        if not isinstance(value, bool):
            raise SchemaError(
                f"'when' must be true or false (or an expression giving one), got {value!r}",
                location=loc, path=f"{path}.when",
                hint="write a comparison such as ${stride != 1}" if isinstance(value, (int, float, str)) else "",
            )
        return value

    def expand_node(self, raw: Any, env: Mapping[str, Any], shape: Shape, path: str, loc: Location | None) -> list[Item]:
        self._work(loc, path)
        kind, args = self._split(raw, loc, path)
        if is_expression(kind):
            kind = str(self._value(kind, env, loc, path))
        args_loc = loc_of(raw, kind) if _is_map(raw) and kind in raw else loc
        if kind in self.combinators:
            if not _is_map(args):
                raise SchemaError(f"{kind!r} needs a mapping of arguments", location=args_loc or loc, path=f"{path}.{kind}")
            self._work(loc, path, 2)
            args = self._value(args, env, args_loc, f"{path}.{kind}")
            if not self._when(args.get("when", True), loc_of(args, "when") or args_loc, f"{path}.{kind}"):
                return []
            return self.combinators[kind](args, env, shape, f"{path}.{kind}", loc)
        meta: dict[str, Any] = {}
        if _is_map(args):
            args = self._value(args, env, args_loc, f"{path}.{kind}")
            meta = {k: args[k] for k in META_KEYS if k in args}
            rest = YMap({k: v for k, v in args.items() if k not in META_KEYS}, loc=loc_of(args))
            rest.key_locs = getattr(args, "key_locs", {})
            args = rest
        elif args is not None:
            args = self._value(args, env, args_loc, f"{path}.{kind}")
        if not self._when(meta.get("when", True), loc_of(args, "when") or args_loc, f"{path}.{kind}"):
            return []
        name = meta.get("name")
        if name is not None:
            _check_name(name, loc_of(args, "name") or args_loc, f"{path}.{kind}.name")
        if kind in PRIMITIVES:
            return [self._primitive(PRIMITIVES[kind], args, name, shape, f"{path}.{kind}", args_loc or loc)]
        if kind in self.blocks:
            return self._block(kind, args, name, env, shape, f"{path}.{kind}", args_loc or loc)
        raise UnknownNameError(f"no layer or block {kind!r}", location=loc, path=path, hint=layer_hint(kind, self._known()))

    def _count(self, loc: Location | None) -> None:
        self.count += 1
        if self.count > MAX_LAYERS:
            raise SizeLimitError(f"architecture expands to more than {MAX_LAYERS} layers", location=loc)

    def _primitive(self, prim: Primitive, args: Any, name: str | None, shape: Shape, path: str, loc: Location | None) -> Leaf:
        self._count(loc)
        if args is None:
            args = {}
        elif not _is_map(args):
            if prim.primary is None:
                raise SchemaError(f"{prim.name!r} takes no shorthand value; use a mapping of arguments", location=loc, path=path)
            args = {prim.primary: args}
        spec = validate(prim.spec, args, prefix=[path], location=loc)
        try:
            out = prim.shape(spec, shape)
        except ZooError as exc:
            exc.location, exc.path = exc.location or loc, exc.path or path
            exc.message += f" (input shape {_fmt(shape)})"
            exc.args = (exc._render(),)
            raise
        if any(s <= 0 for s in out):
            raise ShapeError(f"{prim.name} gives an empty output {_fmt(out)} from input {_fmt(shape)}", location=loc, path=path)
        return Leaf(name, prim, spec, shape, out, loc)

    def _block(self, kind: str, args: Any, name: str | None, env: Mapping[str, Any], shape: Shape, path: str, loc: Location | None) -> list[Item]:
        template = self.blocks[kind]
        args = dict(args or {}) if _is_map(args) or args is None else None
        if args is None:
            raise SchemaError(f"block {kind!r} takes a mapping of parameters", location=loc, path=path)
        for key in args:
            if key not in template.params:
                known = list(template.params)
                raise UnknownNameError(
                    f"block {kind!r} has no parameter {key!r}", location=loc, path=f"{path}.{key}",
                    hint=did_you_mean(key, known) or f"its parameters: {', '.join(known) or 'none'}",
                )
        # a block sees its input's channel count as ``in_channels`` (a declared parameter wins):
        # inverted residuals and SE widths are computed from it
        scope = bind_params(template.params, template.let, args, loc=loc, path=path, what=f"block {kind!r}",
                            base={"in_channels": shape[0]})
        call = (kind, repr(sorted(scope.items(), key=lambda kv: kv[0])) + repr(shape))
        if call in self.calls:
            # the same block with the same arguments and input expands the same way forever
            chain = " -> ".join([k for k, _ in self.calls[self.calls.index(call):]] + [kind])
            raise SchemaError(
                f"block {kind!r} uses itself with the same arguments: a cycle ({chain})",
                location=loc, path=path, hint="a recursive block needs a parameter that changes and a 'when:' that ends it",
            )
        self.calls.append(call)
        collected = len(self.errors or [])
        note = f"in block {kind!r} used at {loc or '?'} ({path})"
        try:
            layers = self.expand_list(template.layers, scope, shape, f"blocks.{kind}.layers", loc_of(template.layers) or loc)
        except ZooError as exc:
            if exc.location is None or exc.location != loc:
                _add_context(exc, note)
            raise
        finally:
            self.calls.pop()
            for found in (self.errors or [])[collected:]:  # errors collected inside this use
                _add_context(found, note)
        items = layers.items
        if len(items) == 1 and not items[0].inline:
            if name is not None:
                items[0].name = name
            if isinstance(items[0], Group):
                items[0].block = kind
            return items
        return [Group("seq", name, loc, layers.out_shape, parts=[items], block=kind)]

    # -- combinators

    def _args(self, model: type[_A], raw: Any, path: str, loc: Location | None) -> _A:
        args = validate(model, raw, prefix=[path], location=loc)
        if args.name is not None:
            _check_name(args.name, loc_of(raw, "name") or loc, f"{path}.name")
        return args

    def _seq(self, raw: Any, env: Mapping[str, Any], shape: Shape, path: str, loc: Location | None) -> list[Item]:
        args = self._args(SeqArgs, raw, path, loc)
        inner = self.expand_list(raw["layers"], env, shape, f"{path}.layers", loc)
        return [Group("seq", args.name, loc, inner.out_shape, inline=args.inline, parts=[inner.items])]

    def _aux(self, raw: Any, env: Mapping[str, Any], shape: Shape, path: str, loc: Location | None) -> list[Item]:
        args = self._args(AuxArgs, raw, path, loc)
        inner = self.expand_list(raw["layers"], env, shape, f"{path}.layers", loc)
        _protect_input(inner.items)
        return [Group("aux", args.name, loc, shape, parts=[inner.items])]

    def _residual(self, raw: Any, env: Mapping[str, Any], shape: Shape, path: str, loc: Location | None) -> list[Item]:
        args = self._args(ResidualArgs, raw, path, loc)
        body = self.expand_list(raw["body"], env, shape, f"{path}.body", loc)
        if not list(leaves(body.items)):
            raise SchemaError(
                "residual body is empty: every layer of it is dropped by 'when:'",
                location=loc, path=f"{path}.body", hint="put the 'when:' on the residual itself",
            )
        shortcut = Expanded([], shape)
        if raw.get("shortcut"):
            shortcut = self.expand_list(raw["shortcut"], env, shape, f"{path}.shortcut", loc)
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
            post = self.expand_list(raw["post"], env, shortcut.out_shape, f"{path}.post", loc)
        return [Group(
            "residual", args.name, loc, post.out_shape, inline=args.inline,
            parts=[body.items, shortcut.items, post.items], scale=args.scale, merge=args.merge,
        )]

    def _concat(self, raw: Any, env: Mapping[str, Any], shape: Shape, path: str, loc: Location | None) -> list[Item]:
        args = self._args(ConcatArgs, raw, path, loc)
        branches = [
            self.expand_list(b, env, shape, f"{path}.branches[{i}]", loc_of(raw["branches"], i) or loc)
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

    def _repeat(self, raw: Any, env: Mapping[str, Any], shape: Shape, path: str, loc: Location | None) -> list[Item]:
        args = self._args(RepeatArgs, raw, path, loc)
        if args.name is not None:
            raise SchemaError("repeat has no name; name the layers it repeats or wrap it in a seq", location=loc, path=path)
        items: list[Item] = []
        for i in range(args.n):
            inner = self.expand_list(raw["layers"], {**env, args.as_: i}, shape, f"{path}.layers", loc)
            items.extend(inner.items)
            shape = inner.out_shape
        return items


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


_MAX_CONTEXT = 10  # a recursive block would otherwise add one line per level


def _add_context(exc: ZooError, note: str) -> None:
    if note in exc.notes:
        return
    if len(exc.notes) == _MAX_CONTEXT:
        exc.add_context("... (further enclosing blocks left out)")
    if len(exc.notes) <= _MAX_CONTEXT:
        exc.add_context(note)


def _check_name(name: Any, loc: Location | None, path: str) -> None:
    if not isinstance(name, str) or not re.match(NAME_PATTERN, name):
        raise SchemaError(
            f"name must be a non-empty text without '.' (it is one state_dict key component), got {name!r}",
            location=loc, path=path,
        )
    if name in _RESERVED:
        raise SchemaError(
            f"name {name!r} is an attribute of torch.nn.Module and cannot name a layer",
            location=loc, path=path, hint=f"choose another name, such as '{name.strip('_')}_'",
        )


def _protect_input(items: list[Item]) -> None:
    """The first layers to see a shared input must not overwrite it: turn off ``inplace`` there.

    A residual body's input is also the shortcut's, a concat branch's input is every branch's and
    an aux head's input continues down the main path; an in-place ReLU first in any of them would
    corrupt the others (timm's Xception blocks start with ``ReLU(inplace=False)`` for this reason).
    """
    if not items:
        return
    first = items[0]
    if isinstance(first, Leaf):
        if getattr(first.spec, "inplace", False):
            first.spec = first.spec.model_copy(update={"inplace": False})
        return
    if first.kind == "residual":
        _protect_input(first.parts[0])
        _protect_input(first.parts[1])
    else:
        for part in first.parts:
            _protect_input(part)


def bind_params(
    declared: Mapping[str, Any], let: Mapping[str, Any], given: Mapping[str, Any],
    *, loc: Location | None, path: str, what: str, base: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Parameters in declaration order (defaults may use earlier ones), then ``let`` values,
    over ``base`` (names the builder provides)."""
    scope: dict[str, Any] = dict(base or {})
    for key, default in declared.items():
        if key in given:
            scope[key] = given[key]
        elif isinstance(default, str) and default == REQUIRED:
            raise SchemaError(f"{what} needs parameter {key!r}", location=loc, path=path)
        else:
            scope[key] = _eval_value(default, scope, loc_of(declared, key) or loc, f"params.{key}")
    for key, value in let.items():
        scope[key] = _eval_value(value, scope, loc_of(let, key) or loc, f"let.{key}")
    return scope


def _eval_value(value: Any, scope: Mapping[str, Any], loc: Location | None, path: str) -> Any:
    if isinstance(value, str) and is_expression(value):
        try:
            return interpolate(value, scope)
        except ExpressionError as exc:
            exc.location, exc.path = exc.location or loc, exc.path or path
            exc.args = (exc._render(),)
            raise
    if isinstance(value, list):
        return [_eval_value(v, scope, loc, path) for v in value]
    return value


def expand(
    spec: ArchitectureSpec, blocks: Mapping[str, BlockTemplate], params: Mapping[str, Any], input_shape: Shape,
    *, collect: list[ZooError] | None = None,
) -> Expanded:
    """Phase 1: the expanded, shape-checked tree (no tensors allocated). With ``collect``, errors
    of independent nodes are appended there and the walk goes on (``zoo validate``)."""
    expander = _Expander({**blocks, **spec.blocks}, spec.file)
    expander.errors = collect
    where = loc_of(spec.params) or Location(spec.file, 1, 1)
    scope = bind_params(spec.params, spec.let, params, loc=where, path="params", what=f"architecture {spec.name!r}")
    layers_loc = loc_of(spec.layers)
    try:
        return expander.expand_list(spec.layers, scope, tuple(input_shape), "layers", layers_loc)
    except ShapeError as exc:
        _note_input(exc, spec, input_shape)
        raise
    finally:
        for found in collect or []:
            if isinstance(found, ShapeError):
                _note_input(found, spec, input_shape)


def _note_input(exc: ZooError, spec: ArchitectureSpec, input_shape: Shape) -> None:
    """A shape error in a parent's layer may come from the child's ``input``: name where it is."""
    if exc.file is not None and exc.file != spec.file and list(input_shape) == list(spec.input):
        note = f"with input {_fmt(tuple(input_shape))} declared in {spec.file}"
        if note not in exc.notes:
            exc.add_context(note)


# ---------------------------------------------------------------- phase 2: modules

class _Namespace:
    """Children of one module: explicit names kept, the others numbered by position."""

    def __init__(self) -> None:
        self.children: dict[str, nn.Module | nn.Parameter] = {}
        self.where: dict[str, Location | None] = {}

    def add(self, item: Item, module: nn.Module | nn.Parameter) -> str:
        name = item.name if item.name is not None else str(len(self.children))
        while item.name is None and name in self.children:
            name = f"{name}_"
        if name in self.children:
            first = self.where[name]
            raise SchemaError(
                f"name {name!r} is used twice in the same module"
                + (f" (first at line {first.line})" if first else ""),
                location=item.loc,
                hint="names become state_dict keys and must be unique among siblings",
            )
        self.children[name] = module
        self.where[name] = item.loc
        return name

    def modules(self) -> dict[str, nn.Module]:
        """The children of a module that runs them in order (no bare parameters there)."""
        return {k: m for k, m in self.children.items() if isinstance(m, nn.Module)}


def _module(item: Item) -> nn.Module:
    if isinstance(item, Leaf):
        return item.primitive.make(item.spec, item.in_shape)
    if item.kind == "seq" and not any(getattr(c, "inline", False) or _bare(c) for c in item.parts[0]):
        ns = _Namespace()
        for child in item.parts[0]:
            ns.add(child, _module(child))
        return nn.Sequential(OrderedDict(ns.modules()))
    ns = _Namespace()
    plan = _plan(item, ns)
    cls: type[Graph] = {"residual": Residual, "concat": Concat, "aux": Aux}.get(item.kind, Graph)
    return cls(ns.children, plan)


def _steps(items: list[Item], ns: _Namespace) -> Any:
    steps: list[Any] = []
    for item in items:
        if isinstance(item, Group) and item.inline:
            steps.append(_plan(item, ns))
        elif _bare(item):
            steps.append(("param_mul", ns.add(item, _bare_parameter(item))))
        else:
            steps.append(ns.add(item, _module(item)))
    if not steps:
        return None
    return steps[0] if len(steps) == 1 else ("seq", tuple(steps))


def _bare(item: Item) -> bool:
    """A leaf whose parameter is registered on the enclosing module itself (``bare: true``)."""
    return isinstance(item, Leaf) and bool(getattr(item.spec, "bare", False))


def _bare_parameter(item: Item) -> nn.Parameter:
    if item.name is None:
        raise SchemaError(
            f"a bare {item.primitive.name if isinstance(item, Leaf) else item.kind} needs a name: "
            "it becomes the parameter's state_dict key", location=item.loc,
        )
    module = _module(item)
    assert isinstance(module, LayerScale)  # the only primitive with a bare form
    return module.gamma


def _plan(group: Group, ns: _Namespace) -> Any:
    if group.kind == "concat":
        return ("cat", tuple(_steps(branch, ns) or ("seq", ()) for branch in group.parts))
    if group.kind == "residual":
        body, shortcut, post = (_steps(part, ns) for part in group.parts)
        if group.merge == "mul":
            return ("mul", body, shortcut, post)
        return ("res", body, shortcut, group.scale, post)
    return _steps(group.parts[0], ns) or ("seq", ())


def allocate(module: nn.Module, device: str | torch.device, *, recurse: bool = True) -> None:
    """``Module.to_empty`` without its ``empty_like`` path, whose first call on meta tensors
    imports torch's Python reference ops (half a second, once per process)."""
    module._apply(lambda t: torch.empty(t.shape, dtype=t.dtype, device=device), recurse=recurse)  # type: ignore[no-untyped-call]


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
    with torch.device("meta"):
        return sum(p.numel() for p in leaf.primitive.make(leaf.spec, leaf.in_shape).parameters())


def leaf_activation(leaf: Leaf) -> int:
    """Elements of the largest tensor the layer reads, writes or needs on the way, per sample."""
    sizes = [math.prod(leaf.in_shape), math.prod(leaf.out_shape)]
    if leaf.primitive.workspace is not None:
        sizes.append(leaf.primitive.workspace(leaf.spec, leaf.in_shape))
    return max(sizes)


def check_activation(expanded: Expanded, limit: int | None = None) -> None:
    """Huge requests (``pad: 1000000``, a 200,000 'same' pooling kernel, a 20000x20000 input)
    are refused from the inferred shapes, before the allocator sees them."""
    limit = max_activation() if limit is None else limit
    for leaf in leaves(expanded.items):
        size = leaf_activation(leaf)
        if size > limit:
            raise SizeLimitError(
                f"{leaf.primitive.name} needs a tensor of {size:,} elements per sample (input {_fmt(leaf.in_shape)}, "
                f"output {_fmt(leaf.out_shape)}), above the limit of {limit:,}",
                location=leaf.loc,
                hint="raise it with zoo.build(..., max_activation=N) or the ZOO_MAX_ACTIVATION environment variable",
            )


def check_size(expanded: Expanded, limit: int | None = None) -> int:
    """The model's parameter count, refused above the limit before anything is allocated."""
    sizes = [(leaf_params(leaf), leaf.loc) for leaf in leaves(expanded.items)]
    total = sum(n for n, _ in sizes)
    limit = max_params() if limit is None else limit
    if total > limit:
        largest, where = max(sizes, key=lambda s: s[0])
        raise SizeLimitError(
            f"model has {total:,} parameters, above the limit of {limit:,} (the largest layer, here, has {largest:,})",
            location=where,
            hint="raise it with zoo.build(..., max_params=N) or the ZOO_MAX_PARAMS environment variable",
        )
    return total


def build_network(
    expanded: Expanded, *, device: str | torch.device | None = None, limit: int | None = None,
    activation_limit: int | None = None,
) -> Network:
    """Phase 2: the sizes are checked from the table's rules, then modules are built on the target
    device with their own initialization (``device="meta"``: shapes only, no memory)."""
    check_size(expanded, limit)
    check_activation(expanded, activation_limit)
    ns = _Namespace()
    with torch.device(device) if device is not None else nullcontext():
        for item in expanded.items:
            if isinstance(item, Group) and item.inline:
                raise SchemaError("'inline' is only meaningful inside residual, concat or seq", location=item.loc)
            if _bare(item):
                raise SchemaError("a bare parameter belongs to an enclosing seq, residual or concat, not the top level",
                                  location=item.loc, hint="wrap it in a seq, or drop 'bare: true'")
            ns.add(item, _module(item))
        return Network(ns.modules())


def builtin_names() -> set[str]:
    """The primitives and combinators: names a block may not take (the built-in would win)."""
    return set(PRIMITIVES) | set(_Expander({}, "").combinators)
