"""``zoo validate FILE``: every independent error of a file in one run (the command behind it).

Independent errors are collected together: every pydantic error of the file's structure, every
missing key the registry requires, and a static walk over all layer nodes (blocks and combinators
included) that reports unknown layer types, unknown or mistyped arguments and block parameters
wherever the values are written out (a ``${...}`` value is checked when the file is built). Only
a file clean on all of those is built, with shape inference, since a shape error after a wrong
argument would only repeat it in worse words. Paths in messages are the ones the user gave.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ._errors import Location, SchemaError, UnknownNameError, ZooError, did_you_mean, layer_hint
from ._expr import is_expression
from ._yaml import load_yaml, loc_of

__all__ = ["validate_file"]

META_KEYS = ("name", "when")
_NODE_LISTS = ("layers", "body", "shortcut", "post")  # combinator fields holding layers
_SINGLE_OK = ("post",)  # ... of which these may also be one node (the others must be lists)
_NESTED = ("branches",)  # combinator fields holding a list of layer lists (or of single nodes)
_ALWAYS = ("name", "published")  # what the registry requires of a concrete file
_UNLESS_INHERITED = ("description", "source", "input", "layers")


def validate_file(path: Path) -> list[ZooError]:
    """Every error found in the file, located as ``path`` was given (empty when it is valid)."""
    try:
        raw = load_yaml(path)
        if not isinstance(raw, dict):
            raise SchemaError(
                "a zoo file is a mapping: an architecture (name, input, layers, ...) or a recipe (model, data, ...)",
                location=loc_of(raw) or Location(str(path), 1, 1),
            )
        if "model" in raw and "layers" not in raw:
            errors = _validate_recipe(path, raw)
        else:
            errors = _validate_architecture(path, raw)
    except ZooError as exc:
        errors = exc.all_errors
    # in file order; keys missing from the whole file last (their place is the file, not a line)
    errors = sorted(_without_echoes(errors), key=lambda e: (_is_missing_key(e), e.line or 0, e.column or 0))
    return [_as_given(err, path) for err in errors]


def _is_missing_key(err: ZooError) -> bool:
    return "." not in err.path and err.message.startswith("missing required key")


def _without_echoes(errors: list[ZooError]) -> list[ZooError]:
    """A misspelt key also leaves the right one missing: report the cause ('filtres'; did you mean
    'filters'?) and not its echo ('missing filters'), so one mistake is one error."""
    suggested = {
        (e.path.rpartition(".")[0], e.hint.removeprefix("did you mean ").rstrip("?"))
        for e in errors if isinstance(e, UnknownNameError) and e.hint.startswith("did you mean ")
    }
    def echo(e: ZooError) -> bool:
        parent, _, key = e.path.rpartition(".")
        return not isinstance(e, UnknownNameError) and (parent, repr(key)) in suggested
    return [e for e in errors if not echo(e)]


def _as_given(err: ZooError, path: Path) -> ZooError:
    """Locations in the file itself carry the path as the user wrote it, not the resolved one."""
    absolute = str(path.resolve())
    if err.location is not None and err.location.file != str(path) and Path(err.location.file).resolve() == path.resolve():
        err.location = dataclasses.replace(err.location, file=str(path))
    err.notes = [note.replace(absolute, str(path)) for note in err.notes]
    err.args = (err._render(),)
    return err


def _validate_recipe(path: Path, raw: Any) -> list[ZooError]:
    from ._registry import get_spec
    from .train._overrides import load_recipe

    recipe = load_recipe(path)
    model = raw.get("model")
    try:
        spec = get_spec(recipe.model.name)  # the model must exist, with a did-you-mean if not
    except ZooError as exc:
        exc.location = loc_of(model, "name") if isinstance(model, dict) else loc_of(raw, "model")
        exc.path = "model.name"
        exc.args = (exc._render(),)
        raise
    # the build would refuse these at training time; say so now, every one of them
    params = model.get("params") if isinstance(model, dict) else None
    return [
        UnknownNameError(
            f"model {spec.name!r} has no parameter {key!r}",
            location=loc_of(params, key),
            path=f"model.params.{key}",
            hint=did_you_mean(key, spec.params) or f"its parameters: {', '.join(spec.params) or 'none'}",
        )
        for key in recipe.model.params
        if key not in spec.params
    ]


def _validate_architecture(path: Path, raw: Any) -> list[ZooError]:
    from ._registry import REGISTRY

    errors: list[ZooError] = []
    parsed = None
    try:
        parsed = REGISTRY.parse_file(path)  # pydantic pass: every structural error at once
    except ZooError as exc:
        errors.extend(exc.all_errors)
    errors.extend(_missing_keys(path, raw, {e.path for e in errors}))
    blocks: dict[str, Any] = {**REGISTRY.blocks()}
    if parsed is not None:
        blocks.update((parsed.library or parsed.arch).blocks)  # type: ignore[union-attr]
    own_blocks = raw.get("blocks") if isinstance(raw.get("blocks"), dict) else {}
    walker = _Walker(blocks, set(own_blocks), errors)
    if isinstance(raw.get("layers"), list):  # anything else is a structural error reported above
        walker.walk(raw["layers"], "layers", None)
    for bname, block in own_blocks.items():
        if isinstance(block, dict) and isinstance(block.get("layers"), list):
            walker.walk(block["layers"], f"blocks.{bname}.layers", None)
    if parsed is not None and parsed.arch is not None:
        # a name that collides with another registered file, and ``extends`` problems
        errors.extend(_resolution_errors(path, parsed.arch.name, {e.path for e in errors}))
    if errors or parsed is None or parsed.arch is None or parsed.arch.abstract:
        return errors
    return _build_once(path, parsed.arch.name, raw)


def _resolution_errors(path: Path, name: str, reported: set[str]) -> list[ZooError]:
    """A model name another registered file holds, and ``extends`` problems (unknown parent, cycle,
    misspelt inherited parameter), found beside the others rather than only once they are fixed."""
    from ._registry import REGISTRY

    try:
        REGISTRY.with_file(path).get_spec(name, allow_abstract=True)
    except ZooError as exc:
        return [e for e in exc.all_errors if e.path not in reported]
    return []


def _missing_keys(path: Path, raw: Any, reported: set[str]) -> list[ZooError]:
    """Every key the registry requires that the file lacks (not only the first)."""
    if raw.get("kind") == "blocks" or raw.get("abstract") is True:
        return []
    wanted = [*_ALWAYS, *(() if "extends" in raw else _UNLESS_INHERITED)]
    where = loc_of(raw) or Location(str(path), 1, 1)
    return [
        SchemaError(f"missing required key {key!r}", location=where, path=key)
        for key in wanted if key not in raw and key not in reported
    ]


class _Walker:
    """Static checks of layer nodes: names, argument keys and literal argument values."""

    def __init__(self, blocks: Mapping[str, Any], own_blocks: set[str], errors: list[ZooError]) -> None:
        from ._layers import PRIMITIVES
        from ._tree import COMBINATOR_ARGS

        self.primitives = PRIMITIVES
        self.combinators = COMBINATOR_ARGS
        self.blocks = blocks
        self.known = set(PRIMITIVES) | set(COMBINATOR_ARGS) | set(blocks) | own_blocks
        self.errors = errors

    def walk(self, nodes: Any, path: str, where: Location | None) -> None:
        """A list of nodes, or one node where a combinator takes either (``where``: the field's place)."""
        if isinstance(nodes, (str, dict)):
            nodes = [nodes]
        if not isinstance(nodes, list):
            return
        for i, node in enumerate(nodes):
            self.node(node, loc_of(nodes, i) or loc_of(node) or where, f"{path}[{i}]")

    def node(self, node: Any, at: Location | None, here: str) -> None:
        if isinstance(node, str):
            kind, args = node, None
        elif isinstance(node, dict) and len(node) == 1:
            kind, args = next(iter(node.items()))
        else:
            return  # the builder explains malformed nodes
        if not isinstance(kind, str) or is_expression(kind):
            return
        if kind not in self.known:
            self.errors.append(UnknownNameError(
                f"no layer or block {kind!r}", location=at, path=here, hint=layer_hint(kind, self.known),
            ))
            return
        loc = (loc_of(node, kind) if isinstance(node, dict) else None) or at
        when = args.get("when", True) if isinstance(args, dict) else True
        if not isinstance(when, bool) and not (isinstance(when, str) and is_expression(when)):
            self.errors.append(SchemaError(  # the builder's own rule, found here beside the others
                f"'when' must be true or false (or an expression giving one), got {when!r}",
                location=loc_of(args, "when") or loc, path=f"{here}.{kind}.when",
            ))
        check: Callable[[str, Any, str, Location | None], None] | None = None
        if kind in self.combinators:
            check = self.combinator
        elif kind in self.primitives:
            check = self.primitive
        elif kind in self.blocks:
            check = self.block
        if check is not None:
            check(kind, args, f"{here}.{kind}", loc)

    def primitive(self, kind: str, args: Any, path: str, loc: Location | None) -> None:
        prim = self.primitives[kind]
        if args is not None and not isinstance(args, dict):
            if prim.primary is None or is_expression(args):
                return  # the builder words a shorthand on a layer without one
            args = {prim.primary: args}
        self._check_args(prim.spec, args or {}, path, loc, what=kind)

    def combinator(self, kind: str, args: Any, path: str, loc: Location | None) -> None:
        if not isinstance(args, dict):
            return
        self._check_args(self.combinators[kind], args, path, loc, what=kind)
        for field in _NODE_LISTS:
            if isinstance(args.get(field), list) or (field in _SINGLE_OK and field in args):
                self.walk(args[field], f"{path}.{field}", loc_of(args, field) or loc)
        for field in _NESTED:
            if isinstance(args.get(field), list):
                for j, branch in enumerate(args[field]):
                    self.walk(branch, f"{path}.{field}[{j}]", loc_of(args[field], j) or loc)

    def block(self, kind: str, args: Any, path: str, loc: Location | None) -> None:
        from ._schema import REQUIRED

        params = self.blocks[kind].params
        given = args if isinstance(args, dict) else {}
        for key in given:
            if key not in params and key not in META_KEYS:
                self.errors.append(UnknownNameError(
                    f"block {kind!r} has no parameter {key!r}", location=loc_of(given, key), path=f"{path}.{key}",
                    hint=did_you_mean(key, params) or f"its parameters: {', '.join(params) or 'none'}",
                ))
        for key, default in params.items():
            if isinstance(default, str) and default == REQUIRED and key not in given:
                self.errors.append(SchemaError(f"block {kind!r} needs parameter {key!r}", location=loc, path=f"{path}.{key}"))

    def _check_args(self, model: Any, args: dict[str, Any], path: str, loc: Location | None, *, what: str) -> None:
        """Validate the written-out values; keys holding expressions or nested layers wait for the build."""
        from ._pydantic_errors import validate

        fields = set(model.model_fields) | {f.alias for f in model.model_fields.values() if f.alias}
        for key in args:
            if key not in fields and key not in META_KEYS:
                self.errors.append(UnknownNameError(
                    f"{what} has no argument {key!r}", location=loc_of(args, key), path=f"{path}.{key}",
                    hint=did_you_mean(key, fields) or f"its arguments: {', '.join(sorted(fields - set(META_KEYS)))}",
                ))
        deferred = {k for k, v in args.items() if _has_expression(v)}
        written = {k: v for k, v in args.items() if k in fields and k not in deferred}
        try:
            validate(model, _located_like(args, written), prefix=[path], location=loc)
        except ZooError as exc:
            self.errors.extend(e for e in exc.all_errors if not _about(e, path, deferred))


def _has_expression(value: Any) -> bool:
    if isinstance(value, str):
        return is_expression(value)
    if isinstance(value, list):
        return any(_has_expression(v) for v in value)
    return False


def _located_like(original: Any, subset: dict[str, Any]) -> Any:
    """``subset`` keeping the key locations of ``original`` (so errors point at the file)."""
    from ._yaml import located_map

    return located_map(subset, loc_of(original), getattr(original, "key_locs", {}))


def _about(err: ZooError, path: str, keys: set[str]) -> bool:
    """Whether an error is about one of ``keys`` (left out because they hold expressions)."""
    return any(err.path == f"{path}.{k}" or err.path.startswith(f"{path}.{k}.") for k in keys)


def _build_once(path: Path, name: str, raw: Any) -> list[ZooError]:
    """Full build of the file's architecture, resolved against the registered folders: every
    independent value or shape error, then the size limits and the ``features:`` points."""
    from ._builder import build_network
    from ._expansion import expand
    from ._features import feature_points
    from ._registry import REGISTRY

    registry = REGISTRY.with_file(path)
    spec = registry.get_spec(name, allow_abstract=True)
    errors: list[ZooError] = []
    expanded = expand(spec, registry.blocks(), {}, tuple(spec.input), collect=errors)
    if errors:
        return errors
    build_network(expanded, device="meta")
    if spec.features:
        try:
            feature_points(spec, expanded, None)
        except ZooError as exc:  # point at the feature entry in this file (or at its name)
            index = int(exc.path[len("features["):-1]) if exc.path.startswith("features[") else None
            features = raw.get("features")
            exc.location = (loc_of(features, index) if isinstance(features, list) and index is not None else None) or loc_of(raw, "name")
            exc.args = (exc._render(),)
            raise
    return []
