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

import os
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field
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
)
from ._expr import interpolate, is_expression
from ._layers import PRIMITIVES, Primitive, Shape
from ._modules import Aux, Concat, Graph, Network, Residual
from ._pydantic_errors import validate
from ._schema import REQUIRED, ArchitectureSpec, BlockTemplate
from ._yaml import YList, YMap, loc_of

__all__ = ["DEFAULT_MAX_PARAMS", "Expanded", "allocate", "build_network", "check_size", "expand", "leaf_params", "leaves", "max_params"]

DEFAULT_MAX_PARAMS = 2_000_000_000  # 8 GB of float32; raise with ZOO_MAX_PARAMS or max_params=
MAX_LAYERS = 100_000  # leaves after expanding repeats and blocks; the largest real CNN has < 2,000
MAX_REPEAT = 10_000
META_KEYS = ("name", "when")


def max_params() -> int:
    raw = os.environ.get("ZOO_MAX_PARAMS")
    if not raw:
        return DEFAULT_MAX_PARAMS
    try:
        return int(float(raw))
    except ValueError:
        raise SchemaError(f"ZOO_MAX_PARAMS must be a number, got {raw!r}") from None


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


Item = Leaf | Group


@dataclass
class Expanded:
    items: list[Item]
    out_shape: Shape


# ---------------------------------------------------------------- combinator arguments

class _Args(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(None, pattern=r"^[A-Za-z0-9_]+$")
    when: Any = True


class SeqArgs(_Args):
    layers: list[Any] = Field(min_length=1)
    inline: bool = False


class ResidualArgs(_Args):
    body: list[Any] = Field(min_length=1)
    shortcut: list[Any] | None = None
    post: Any = None
    scale: float = 1.0
    merge: str = Field("add", pattern="^add$")
    inline: bool = False


class ConcatArgs(_Args):
    branches: list[Any] = Field(min_length=1)
    inline: bool = False


class RepeatArgs(_Args):
    n: int = Field(ge=0, le=MAX_REPEAT)
    as_: str = Field("i", alias="as", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    layers: list[Any] = Field(min_length=1)


class AuxArgs(_Args):
    layers: list[Any] = Field(min_length=1)


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
        items: list[Item] = []
        for i, raw in enumerate(nodes):
            node_loc = loc_of(nodes, i) or loc
            new = self.expand_node(raw, env, shape, f"{path}[{i}]", node_loc)
            for item in new:
                shape = item.out_shape
            items.extend(new)
        return Expanded(items, shape)

    def expand_node(self, raw: Any, env: Mapping[str, Any], shape: Shape, path: str, loc: Location | None) -> list[Item]:
        kind, args = self._split(raw, loc, path)
        if is_expression(kind):
            kind = str(self._value(kind, env, loc, path))
        args_loc = loc_of(raw, kind) if _is_map(raw) and kind in raw else loc
        if kind in self.combinators:
            if not _is_map(args):
                raise SchemaError(f"{kind!r} needs a mapping of arguments", location=args_loc or loc, path=f"{path}.{kind}")
            args = self._value(args, env, args_loc, f"{path}.{kind}")
            if not args.get("when", True):
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
        if not meta.get("when", True):
            return []
        name = meta.get("name")
        if name is not None and (not isinstance(name, str) or not name.replace("_", "a").isalnum()):
            raise SchemaError(f"name must be letters, digits and '_', got {name!r}", location=args_loc, path=f"{path}.{kind}.name")
        if kind in PRIMITIVES:
            return [self._primitive(PRIMITIVES[kind], args, name, shape, f"{path}.{kind}", args_loc or loc)]
        if kind in self.blocks:
            return self._block(kind, args, name, env, shape, f"{path}.{kind}", args_loc or loc)
        raise UnknownNameError(
            f"unknown layer or block {kind!r}",
            location=loc, path=path,
            hint=did_you_mean(kind, self._known()) or "see zoo.list_layers() for primitives",
        )

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
        scope = bind_params(template.params, template.let, args, loc=loc, path=path, what=f"block {kind!r}")
        try:
            layers = self.expand_list(template.layers, scope, shape, f"blocks.{kind}.layers", loc_of(template.layers) or loc)
        except ZooError as exc:
            if exc.location is None or exc.location != loc:
                exc.add_context(f"in block {kind!r} used at {loc or '?'} ({path})")
            raise
        items = layers.items
        if len(items) == 1 and not items[0].inline:
            if name is not None:
                items[0].name = name
            return items
        return [Group("seq", name, loc, layers.out_shape, parts=[items])]

    # -- combinators

    def _seq(self, raw: Any, env: Mapping[str, Any], shape: Shape, path: str, loc: Location | None) -> list[Item]:
        args = validate(SeqArgs, raw, prefix=[path], location=loc)
        inner = self.expand_list(raw["layers"], env, shape, f"{path}.layers", loc)
        return [Group("seq", args.name, loc, inner.out_shape, inline=args.inline, parts=[inner.items])]

    def _aux(self, raw: Any, env: Mapping[str, Any], shape: Shape, path: str, loc: Location | None) -> list[Item]:
        args = validate(AuxArgs, raw, prefix=[path], location=loc)
        inner = self.expand_list(raw["layers"], env, shape, f"{path}.layers", loc)
        _protect_input(inner.items)
        return [Group("aux", args.name, loc, shape, parts=[inner.items])]

    def _residual(self, raw: Any, env: Mapping[str, Any], shape: Shape, path: str, loc: Location | None) -> list[Item]:
        args = validate(ResidualArgs, raw, prefix=[path], location=loc)
        body = self.expand_list(raw["body"], env, shape, f"{path}.body", loc)
        shortcut = Expanded([], shape)
        if raw.get("shortcut"):
            shortcut = self.expand_list(raw["shortcut"], env, shape, f"{path}.shortcut", loc)
        if body.out_shape != shortcut.out_shape:
            what = "shortcut" if raw.get("shortcut") else "input (identity shortcut)"
            raise ShapeError(
                f"residual add: body gives {_fmt(body.out_shape)} but {what} gives {_fmt(shortcut.out_shape)}",
                location=loc, path=path,
                hint="add a projection shortcut (1x1 conv with the body's stride and filters)" if not raw.get("shortcut") else "",
            )
        _protect_input(body.items)
        _protect_input(shortcut.items)
        post = Expanded([], body.out_shape)
        if raw.get("post") is not None:
            post = self.expand_list(raw["post"], env, body.out_shape, f"{path}.post", loc)
        return [Group(
            "residual", args.name, loc, post.out_shape, inline=args.inline,
            parts=[body.items, shortcut.items, post.items], scale=args.scale,
        )]

    def _concat(self, raw: Any, env: Mapping[str, Any], shape: Shape, path: str, loc: Location | None) -> list[Item]:
        args = validate(ConcatArgs, raw, prefix=[path], location=loc)
        branches = [
            self.expand_list(b, env, shape, f"{path}.branches[{i}]", loc_of(raw["branches"], i) or loc)
            for i, b in enumerate(raw["branches"])
        ]
        for branch in branches:
            _protect_input(branch.items)
        shapes = [b.out_shape for b in branches]
        if any(len(s) != 3 or s[1:] != shapes[0][1:] for s in shapes):
            listed = ", ".join(f"branch {i}: {_fmt(s)}" for i, s in enumerate(shapes))
            raise ShapeError(f"concat needs equal spatial sizes, got {listed}", location=loc, path=path)
        out = (sum(s[0] for s in shapes), *shapes[0][1:])
        return [Group("concat", args.name, loc, out, inline=args.inline, parts=[b.items for b in branches])]

    def _repeat(self, raw: Any, env: Mapping[str, Any], shape: Shape, path: str, loc: Location | None) -> list[Item]:
        args = validate(RepeatArgs, raw, prefix=[path], location=loc)
        if args.name is not None:
            raise SchemaError("repeat has no name; name the layers it repeats or wrap it in a seq", location=loc, path=path)
        items: list[Item] = []
        for i in range(args.n):
            inner = self.expand_list(raw["layers"], {**env, args.as_: i}, shape, f"{path}.layers", loc)
            items.extend(inner.items)
            shape = inner.out_shape
        return items


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
    *, loc: Location | None, path: str, what: str,
) -> dict[str, Any]:
    """Parameters in declaration order (defaults may use earlier ones), then ``let`` values."""
    scope: dict[str, Any] = {}
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


def expand(spec: ArchitectureSpec, blocks: Mapping[str, BlockTemplate], params: Mapping[str, Any], input_shape: Shape) -> Expanded:
    """Phase 1: the expanded, shape-checked tree (no tensors allocated)."""
    expander = _Expander({**blocks, **spec.blocks}, spec.file)
    where = loc_of(spec.params) or Location(spec.file, 1, 1)
    scope = bind_params(spec.params, spec.let, params, loc=where, path="params", what=f"architecture {spec.name!r}")
    layers_loc = loc_of(spec.layers)
    return expander.expand_list(spec.layers, scope, tuple(input_shape), "layers", layers_loc)


# ---------------------------------------------------------------- phase 2: modules

class _Namespace:
    """Children of one module: explicit names kept, the others numbered by position."""

    def __init__(self) -> None:
        self.children: dict[str, nn.Module] = {}
        self.where: dict[str, Location | None] = {}

    def add(self, item: Item, module: nn.Module) -> str:
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


def _module(item: Item) -> nn.Module:
    if isinstance(item, Leaf):
        return item.primitive.make(item.spec, item.in_shape)
    if item.kind == "seq" and not any(getattr(c, "inline", False) for c in item.parts[0]):
        ns = _Namespace()
        for child in item.parts[0]:
            ns.add(child, _module(child))
        return nn.Sequential(OrderedDict(ns.children))
    ns = _Namespace()
    plan = _plan(item, ns)
    cls: type[Graph] = {"residual": Residual, "concat": Concat, "aux": Aux}.get(item.kind, Graph)
    return cls(ns.children, plan)


def _steps(items: list[Item], ns: _Namespace) -> Any:
    steps: list[Any] = []
    for item in items:
        if isinstance(item, Group) and item.inline:
            steps.append(_plan(item, ns))
        else:
            steps.append(ns.add(item, _module(item)))
    if not steps:
        return None
    return steps[0] if len(steps) == 1 else ("seq", tuple(steps))


def _plan(group: Group, ns: _Namespace) -> Any:
    if group.kind == "concat":
        return ("cat", tuple(_steps(branch, ns) or ("seq", ()) for branch in group.parts))
    if group.kind == "residual":
        body, shortcut, post = (_steps(part, ns) for part in group.parts)
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


def build_network(expanded: Expanded, *, device: str | torch.device | None = None, limit: int | None = None) -> Network:
    """Phase 2: the size is checked from the table's rules, then modules are built on the target
    device with their own initialization (``device="meta"``: shapes only, no memory)."""
    check_size(expanded, limit)
    ns = _Namespace()
    with torch.device(device) if device is not None else nullcontext():
        for item in expanded.items:
            if isinstance(item, Group) and item.inline:
                raise SchemaError("'inline' is only meaningful inside residual, concat or seq", location=item.loc)
            ns.add(item, _module(item))
        return Network(ns.children)


def builtin_names() -> set[str]:
    """The primitives and combinators: names a block may not take (the built-in would win)."""
    return set(PRIMITIVES) | set(_Expander({}, "").combinators)
