"""Values in scope during expansion: a layer's arguments with their ``${...}`` evaluated, the
parameters a file or block declares bound to what its caller gives, and the caller's overrides
(``zoo.build(name, num_classes=..., in_channels=...)``) checked against the declaration.

Torch-free: ``zoo list`` runs all of this without importing torch.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ._errors import ExpressionError, Location, SchemaError, UnknownNameError, ZooError, did_you_mean
from ._expr import interpolate, is_expression
from ._schema import REQUIRED, ArchitectureSpec
from ._tree import _LAYER_FIELDS
from ._yaml import YMap, loc_of, located_map

__all__ = ["bind_params", "is_int", "positive_int", "resolve_params", "resolve_values"]


def resolve_values(raw: Any, env: Mapping[str, Any], loc: Location | None, path: str) -> Any:
    """Evaluate every ${...} inside a value (not inside nested layer lists: those are evaluated
    when they are expanded, in their own scope). An error points at the value that caused it."""
    try:
        return _resolve(raw, env)
    except ZooError as exc:
        if exc.location is not None:
            raise
    # the fast walk keeps no positions; the located one fails the same way, at the failing value
    return _resolve_located(raw, env, loc, path)


def _resolve(raw: Any, env: Mapping[str, Any]) -> Any:
    if isinstance(raw, str):
        return interpolate(raw, env) if "${" in raw else raw
    if isinstance(raw, list):
        if getattr(raw, "flat", False):  # parsed scalars with no '${': nothing to evaluate
            return list(raw)
        return [_resolve(v, env) for v in raw]
    if isinstance(raw, dict):
        dyn = getattr(raw, "dyn", None)
        if dyn is None:  # not from the parser: look at every value
            return _like(raw, {k: v if k in _LAYER_FIELDS else _resolve(v, env) for k, v in raw.items()})
        if not dyn:  # parsed scalars with no '${': the walk would give an equal copy
            return raw
        out = _like(raw, raw)
        for k in dyn:  # in the mapping's order, so the first error is the one the walk would meet
            if k not in _LAYER_FIELDS:
                value = raw[k]
                out[k] = interpolate(value, env) if isinstance(value, str) else _resolve(value, env)
        return out
    return raw


def _resolve_located(raw: Any, env: Mapping[str, Any], loc: Location | None, path: str) -> Any:
    """:func:`_resolve`, tracking where each value is: an error is given the innermost position."""
    try:
        if isinstance(raw, str):
            return interpolate(raw, env) if "${" in raw else raw
        if isinstance(raw, list):
            return [_resolve_located(v, env, loc_of(raw, i) or loc, f"{path}[{i}]") for i, v in enumerate(raw)]
        if isinstance(raw, dict):
            return _like(raw, {
                k: v if k in _LAYER_FIELDS else _resolve_located(v, env, loc_of(raw, k) or loc, f"{path}.{k}")
                for k, v in raw.items()
            })
        return raw
    except ZooError as exc:
        if exc.location is None:
            exc.location, exc.path = loc, exc.path or path
            exc.args = (exc._render(),)
        raise


def _like(raw: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """``values`` as the kind of mapping ``raw`` is: a YMap keeps its positions (for later errors)."""
    if not isinstance(raw, YMap):
        return values
    return located_map(values, raw.loc, raw.key_locs)


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
        elif _is_plain(default):
            scope[key] = default
        else:
            scope[key] = _eval_value(default, scope, loc_of(declared, key) or loc, f"params.{key}")
    for key, value in let.items():
        scope[key] = value if _is_plain(value) else _eval_value(value, scope, loc_of(let, key) or loc, f"let.{key}")
    return scope


def _is_plain(value: Any) -> bool:
    """What :func:`_eval_value` gives back as it is (then its position need not be looked up)."""
    return not isinstance(value, list) and not (isinstance(value, str) and "${" in value)


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


def resolve_params(
    spec: ArchitectureSpec, num_classes: int | None, in_channels: int | None, params: dict[str, Any],
) -> tuple[dict[str, Any], list[int]]:
    """Caller's overrides checked against the declared parameters; the input shape to build for."""
    given = dict(params)
    if num_classes is not None:
        positive_int("num_classes", num_classes)
        if "num_classes" not in spec.params:
            raise UnknownNameError(f"{spec.name!r} has no 'num_classes' parameter", location=None, path="params")
        given["num_classes"] = num_classes
    for key in given:
        if key not in spec.params:
            raise UnknownNameError(
                f"{spec.name!r} has no parameter {key!r}",
                path=f"params.{key}",
                hint=did_you_mean(key, spec.params) or f"its parameters: {', '.join(spec.params) or 'none'}",
            )
    shape = list(spec.input)
    if in_channels is not None:
        if len(shape) != 3 or not is_int(in_channels) or in_channels <= 0:
            raise SchemaError(f"in_channels must be a positive int for an image model, got {in_channels!r}")
        shape[0] = in_channels
    return given, shape


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def positive_int(what: str, value: Any) -> int:
    if not is_int(value) or value <= 0:
        raise SchemaError(f"{what} must be a positive integer, got {value!r}")
    return int(value)
