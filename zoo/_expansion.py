"""Phase 1 of a build: ``_Expander`` walks a file's ``layers`` with the parameters in scope, evaluates
``${...}`` (``_values``), dispatches combinators (``_combinators``), expands block templates,
validates each primitive against its spec and infers its output shape. The result is a tree of
``Leaf``/``Group`` items (``_tree``); no tensors, and no torch: ``zoo list`` counts from it.

Memos keep the walk linear in what the files write rather than in what they expand to, all
shared by every expansion in the process (``zoo list`` expands every model): a primitive's
validated spec per (spec class, arguments); a combinator's validated arguments (``_combinators``);
and a block's expanded items per (template, bound parameters, input shape, use site, primitive
table), replayed where the block names inside it find the same templates (another model's file
may define one otherwise), with the same limit accounting (layers, work, nesting) as expanding
them again. Replays share their nested items: nothing changes an expanded item in place.
"""

from __future__ import annotations

from collections import ChainMap
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ._combinators import COMBINATORS
from ._errors import (
    Location,
    SchemaError,
    ShapeError,
    SizeLimitError,
    UnknownNameError,
    ZooError,
    did_you_mean,
    layer_hint,
)
from ._expr import is_expression
from ._layers import PRIMITIVES, Primitive, Shape
from ._limits import MAX_LAYERS, MAX_NESTING, MAX_WORK
from ._pydantic_errors import validate
from ._schema import ArchitectureSpec, BlockTemplate
from ._tree import META_KEYS, Expanded, Group, Item, Leaf, _check_name, _fmt, _is_map, _name_checked
from ._values import bind_params, resolve_values
from ._yaml import YList, YMap, loc_of, located_map

__all__ = ["bind_params", "builtin_names", "expand"]

_META = frozenset(META_KEYS)
_SPECS: dict[tuple[type, str], Any] = {}  # (spec class, repr of its arguments) -> the validated spec
_MAX_SPECS = 8192  # distinct layer configurations remembered; the shipped files have about 2,000


_Call = tuple[str, str, Shape]  # a block use: (block, its bound scope's values, input shape)


def _scope_key(scope: dict[str, Any]) -> str:
    """The bound values as a key that tells apart what ``repr`` tells apart (1, 1.0 and true; 0.0
    and -0.0). The names need not be in it: a block's scope has the same names in the same order
    at every use (base, declared, let), and the key goes with the block."""
    return repr(tuple(scope.values()))


@dataclass(frozen=True)
class _Replay:
    """A block's expansion as it first came out, what it cost against the limits, and what else it
    depended on: the templates its nested block names found and the primitive table (objects kept
    alive here, so that the ids in the memo's keys stay theirs)."""

    items: list[Item]
    out_shape: Shape
    layers: int
    work: int
    depth: int  # nesting levels it reached below the use site
    template: BlockTemplate
    lookups: dict[str, BlockTemplate]  # block name -> the template it resolved to, inside this expansion
    table: tuple[tuple[str, Primitive], ...]


# The block memo, shared by every expansion in the process (``zoo list`` expands every model, and
# ResNet-50/101/152 or the EfficientNets use the same templates with the same arguments):
# (id of the template, its use, where it is used, id of the primitive table) -> its expansion.
_REPLAYS: dict[tuple[int, _Call, Location | None, int], _Replay] = {}
_MAX_REPLAYS = 4096  # block uses remembered; the shipped models have about 2,400 distinct ones
_TABLE: list[tuple[tuple[str, Primitive], ...]] = [()]


def _table() -> tuple[tuple[str, Primitive], ...]:
    """The primitive table as it is now, the same object while it does not change."""
    now = tuple(PRIMITIVES.items())
    if now != _TABLE[0]:
        _TABLE[0] = now
    return _TABLE[0]


class _Expander:
    def __init__(self, blocks: Mapping[str, BlockTemplate], file: str) -> None:
        self.blocks = blocks
        self._templates: dict[str, BlockTemplate] = {}  # names found in ``blocks`` (a ChainMap: slow lookups)
        self.file = file
        self.count = 0
        self.work = 0
        self.depth = 0
        self.deepest = 0  # the deepest nesting reached so far (for the block memo's accounting)
        self.calls: list[_Call] = []  # blocks being expanded, with their arguments
        # per block being expanded, the block names looked up inside it (what its replay depends on)
        self.lookups: list[dict[str, BlockTemplate]] = []
        self.table = _table()
        # ``zoo validate``: collect errors and go on; after the first error shapes are unreliable,
        # so only errors that do not depend on shapes are collected from then on
        self.errors: list[ZooError] | None = None

    # -- helpers

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

    def _template(self, kind: str) -> BlockTemplate | None:
        template = self._templates.get(kind)
        if template is None and kind in self.blocks:
            template = self._templates[kind] = self.blocks[kind]
        if template is not None and self.lookups:
            self.lookups[-1][kind] = template
        return template

    def _known(self) -> list[str]:
        return [*PRIMITIVES, *COMBINATORS, *self.blocks]

    # -- the walk

    def expand_list(self, nodes: Any, env: Mapping[str, Any], shape: Shape, path: str, loc: Location | None) -> Expanded:
        if isinstance(nodes, (str, dict)):
            nodes = YList([nodes], loc=loc_of(nodes) or loc)
        if not isinstance(nodes, list):
            raise SchemaError(f"expected a list of layers, got {type(nodes).__name__}", location=loc, path=path)
        self.depth += 1
        self.deepest = max(self.deepest, self.depth)
        self._work(loc, path)
        try:
            if self.depth > MAX_NESTING:
                raise SchemaError(
                    f"layers nested more than {MAX_NESTING} levels deep (blocks and combinators inside each other)",
                    location=loc, path=path,
                )
            items: list[Item] = []
            expand = self.expand_node if self.errors is None else self._expand_or_collect
            item_locs = nodes.item_locs if type(nodes) is YList and len(nodes.item_locs) == len(nodes) else None
            for i, raw in enumerate(nodes):
                # loc_of(nodes, i), spelled out: this runs once per layer node
                node_loc = (getattr(raw, "loc", None) or item_locs[i] if item_locs is not None else loc_of(nodes, i)) or loc
                new = expand(raw, env, shape, f"{path}[{i}]", node_loc)
                if new:
                    shape = new[-1].out_shape
                    items += new
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
        if type(raw) is YMap and len(raw) == 1:  # the common '{type: args}', without _split's checks
            kind, args = next(iter(raw.items()))
        else:
            kind, args = self._split(raw, loc, path)
        if is_expression(kind):
            kind = str(resolve_values(kind, env, loc, path))
        args_loc = _value_loc(raw, kind) if isinstance(raw, dict) and kind in raw else loc
        where = f"{path}.{kind}"
        if kind in COMBINATORS:
            if not isinstance(args, dict):
                raise SchemaError(f"{kind!r} needs a mapping of arguments", location=args_loc or loc, path=where)
            self._work(loc, path, 2)
            args = resolve_values(args, env, args_loc, where)
            if "when" in args and not self._when(args["when"], loc_of(args, "when") or args_loc, where):
                return []
            return COMBINATORS[kind](self, args, env, shape, where, loc)
        meta: dict[str, Any] = {}
        if isinstance(args, dict):
            resolved = resolve_values(args, env, args_loc, where)
            # a YMap without 'name'/'when' is what taking them out would copy (nothing changes it later)
            if type(resolved) is not YMap or not _META.isdisjoint(resolved):
                meta = {k: resolved[k] for k in META_KEYS if k in resolved}
                if resolved is not args and type(resolved) is YMap:  # a copy already: take them out of it
                    for k in meta:
                        del resolved[k]
                else:
                    rest = {k: v for k, v in resolved.items() if k not in META_KEYS}
                    resolved = located_map(rest, loc_of(resolved), getattr(resolved, "key_locs", {}))
            args = resolved
        elif args is not None:
            args = resolve_values(args, env, args_loc, where)
        if "when" in meta and not self._when(meta["when"], loc_of(args, "when") or args_loc, where):
            return []
        name = meta.get("name")
        if name is not None and not _name_checked(name):
            _check_name(name, loc_of(args, "name") or args_loc, f"{where}.name")
        if kind in PRIMITIVES:
            return [self._primitive(PRIMITIVES[kind], args, name, shape, where, args_loc or loc)]
        if self._template(kind) is not None:
            return self._block(kind, args, name, shape, where, args_loc or loc)
        raise UnknownNameError(f"no layer or block {kind!r}", location=loc, path=path, hint=layer_hint(kind, self._known()))

    def _count(self, loc: Location | None) -> None:
        self.count += 1
        if self.count > MAX_LAYERS:
            raise SizeLimitError(f"architecture expands to more than {MAX_LAYERS} layers", location=loc)

    def _primitive(self, prim: Primitive, args: Any, name: str | None, shape: Shape, path: str, loc: Location | None) -> Leaf:
        self._count(loc)
        if args is None:
            args = {}
        elif not isinstance(args, dict):
            if prim.primary is None:
                raise SchemaError(f"{prim.name!r} takes no shorthand value; use a mapping of arguments", location=loc, path=path)
            args = {prim.primary: args}
        spec = _validated(prim, args, path, loc)
        try:
            out = prim.shape(spec, shape)
        except ZooError as exc:
            exc.location, exc.path = exc.location or loc, exc.path or path
            exc.message += f" (input shape {_fmt(shape)})"
            exc.args = (exc._render(),)
            raise
        if out and min(out) <= 0:
            raise ShapeError(f"{prim.name} gives an empty output {_fmt(out)} from input {_fmt(shape)}", location=loc, path=path)
        return Leaf(name, prim, spec, shape, out, loc)

    def _block(self, kind: str, args: Any, name: str | None, shape: Shape, path: str, loc: Location | None) -> list[Item]:
        template = self._templates[kind]  # found by expand_node
        args = dict(args or {}) if isinstance(args, dict) or args is None else None
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
        call = (kind, _scope_key(scope), tuple(shape))
        if call in self.calls:
            # the same block with the same arguments and input expands the same way forever
            chain = " -> ".join([c[0] for c in self.calls[self.calls.index(call):]] + [kind])
            raise SchemaError(
                f"block {kind!r} uses itself with the same arguments: a cycle ({chain})",
                location=loc, path=path, hint="a recursive block needs a parameter that changes and a 'when:' that ends it",
            )
        key = (id(template), call, loc, id(self.table))
        layers = self._replay(key) or self._expand_block(kind, template, scope, call, key, path, loc)
        items = layers.items
        if len(items) == 1 and not items[0].inline:
            if name is not None:
                items[0].name = name
            if isinstance(items[0], Group):
                items[0].block = kind
            return items
        return [Group("seq", name, loc, layers.out_shape, parts=[items], block=kind)]

    def _expand_block(
        self, kind: str, template: BlockTemplate, scope: dict[str, Any], call: _Call, key: tuple[Any, ...],
        path: str, loc: Location | None,
    ) -> Expanded:
        """Expand a block's layers for real, and remember them for the next identical use."""
        shape = call[2]
        self.calls.append(call)
        self.lookups.append({})
        collected = len(self.errors or [])
        layers_before, work_before, deepest_before = self.count, self.work, self.deepest
        self.deepest = self.depth
        try:
            layers = self.expand_list(template.layers, scope, shape, f"blocks.{kind}.layers", loc_of(template.layers) or loc)
        except ZooError as exc:
            if exc.location is None or exc.location != loc:
                _add_context(exc, _use_note(kind, loc, path))
            raise
        finally:
            self.calls.pop()
            lookups = self.lookups.pop()
            if self.lookups:  # what this use depends on, its enclosing uses depend on too
                self.lookups[-1].update(lookups)
            for found in (self.errors or [])[collected:]:  # errors collected inside this use
                _add_context(found, _use_note(kind, loc, path))
            depth, self.deepest = self.deepest - self.depth, max(self.deepest, deepest_before)
        if self.errors is None:  # a walk that collects errors may have dropped nodes: nothing to replay
            if len(_REPLAYS) >= _MAX_REPLAYS:
                _REPLAYS.clear()
            _REPLAYS[key] = _Replay(
                _copy(layers.items), layers.out_shape, self.count - layers_before, self.work - work_before, depth,
                template, lookups, self.table,
            )
        return layers

    def _replay(self, key: tuple[Any, ...]) -> Expanded | None:
        """A copy of the block's earlier expansion (in this model or another), counted as if
        expanded again; None when there is none, when a block name inside it finds another template
        here (another model's file defines it), or when the limits would stop it part-way (then the
        real walk raises where they do)."""
        memo = _REPLAYS.get(key)
        if memo is None or self.errors is not None:
            return None
        if self.count + memo.layers > MAX_LAYERS or self.work + memo.work > MAX_WORK or self.depth + memo.depth > MAX_NESTING:
            return None
        if any(self._template(name) is not template for name, template in memo.lookups.items()):
            return None
        self.count += memo.layers
        self.work += memo.work
        self.deepest = max(self.deepest, self.depth + memo.depth)
        return Expanded(_copy(memo.items), memo.out_shape)


def _value_loc(raw: Any, key: str) -> Location | None:
    """``loc_of(raw, key)`` for a key in the mapping, without its dispatch (once per layer node)."""
    if type(raw) is YMap:
        return getattr(raw[key], "loc", None) or raw.key_locs.get(key) or raw.loc
    return loc_of(raw, key)


def _validated(prim: Primitive, args: Any, path: str, loc: Location | None) -> Any:
    """The primitive's spec from its arguments; an identical set of arguments (by repr, which tells
    1, 1.0 and true apart) reuses the spec validated before. Specs are frozen, so sharing is safe."""
    key = (prim.spec, repr(args))
    spec = _SPECS.get(key)
    if spec is None:
        spec = validate(prim.spec, args, prefix=[path], location=loc)
        if len(_SPECS) >= _MAX_SPECS:
            _SPECS.clear()
        _SPECS[key] = spec
    return spec


def _copy(items: list[Item]) -> list[Item]:
    """Fresh top-level Leaf/Group objects over the same specs, shapes and nested items: the caller
    renames the first item, which a replayed expansion must not share. Nothing changes nested
    items in place (``_protect_input`` replaces what it changes), so they are shared, not copied."""
    return [
        Leaf(item.name, item.primitive, item.spec, item.in_shape, item.out_shape, item.loc, item.inline)
        if isinstance(item, Leaf) else
        Group(item.kind, item.name, item.loc, item.out_shape, item.inline, item.parts, item.scale, item.merge, item.block)
        for item in items
    ]


def _use_note(kind: str, loc: Location | None, path: str) -> str:
    """The context line an error inside a block's use gets (made only for an error)."""
    return f"in block {kind!r} used at {loc or '?'} ({path})"


_MAX_CONTEXT = 10  # a recursive block would otherwise add one line per level


def _add_context(exc: ZooError, note: str) -> None:
    if note in exc.notes:
        return
    if len(exc.notes) == _MAX_CONTEXT:
        exc.add_context("... (further enclosing blocks left out)")
    if len(exc.notes) <= _MAX_CONTEXT:
        exc.add_context(note)


def expand(
    spec: ArchitectureSpec, blocks: Mapping[str, BlockTemplate], params: Mapping[str, Any], input_shape: Shape,
    *, collect: list[ZooError] | None = None,
) -> Expanded:
    """Phase 1: the expanded, shape-checked tree (no tensors allocated). With ``collect``, errors
    of independent nodes are appended there and the walk goes on (``zoo validate``)."""
    # the file's own blocks win; ``blocks`` (the libraries') is only looked into for other names
    expander = _Expander(ChainMap(dict(spec.blocks), blocks), spec.file)  # type: ignore[arg-type]  # only read
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


def builtin_names() -> set[str]:
    """The primitives and combinators: names a block may not take (the built-in would win)."""
    return set(PRIMITIVES) | set(COMBINATORS)
