"""Phase 1 of a build: ``_Expander`` walks a file's ``layers`` with the parameters in scope, evaluates
``${...}``, expands ``repeat`` and block templates, validates each primitive against its spec and
infers its output shape. The result is a tree of ``Leaf``/``Group`` items (``_tree``); no tensors."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

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
from ._limits import MAX_LAYERS, MAX_NESTING, MAX_WORK
from ._pydantic_errors import validate
from ._schema import REQUIRED, ArchitectureSpec, BlockTemplate
from ._tree import (
    _A,
    _LAYER_FIELDS,
    META_KEYS,
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
    _is_map,
    leaves,
)
from ._yaml import YList, YMap, loc_of


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
        collected = len(self.errors or [])
        body = self.expand_list(raw["body"], env, shape, f"{path}.body", loc)
        # a body emptied by errors collected inside it (zoo validate) is not a 'when:' mistake
        if not list(leaves(body.items)) and len(self.errors or []) == collected:
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


def builtin_names() -> set[str]:
    """The primitives and combinators: names a block may not take (the built-in would win)."""
    return set(PRIMITIVES) | set(_Expander({}, "").combinators)
