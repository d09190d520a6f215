"""Pydantic validation whose errors point at the YAML: file:line:col, path, did-you-mean."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

import pydantic

from ._errors import Location, SchemaError, UnknownNameError, ZooError, did_you_mean
from ._words import describe, resolve
from ._yaml import YList, YMap, loc_of

__all__ = ["format_path", "validate", "validation_errors"]

M = TypeVar("M", bound=pydantic.BaseModel)


def format_path(parts: Sequence[Any]) -> str:
    """('layers', 3, 'conv', 'kernel') -> 'layers[3].conv.kernel'."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def _locate(data: Any, parts: Sequence[Any], fallback: Location | None) -> Location | None:
    """Deepest location recorded along ``parts`` inside located data."""
    best = loc_of(data) or fallback
    node = data
    for part in parts:
        if isinstance(node, (YMap, YList)):
            here = loc_of(node, part)
            best = here or best
            try:
                node = node[part]
            except (KeyError, IndexError, TypeError):
                break
        else:
            break
    return best


def _fields_at(model: type[pydantic.BaseModel], parts: Sequence[Any]) -> list[str]:
    """Field names of the (nested, possibly optional) model that ``parts`` points into."""
    schema, depth = _field(model, parts)
    if depth < len(parts):
        return []
    root = model.model_json_schema(by_alias=True)
    for c in [schema, *(resolve(a, root) for a in schema.get("anyOf", []))]:
        if "properties" in c:
            return list(c["properties"])
    return []


def _child(node: dict[str, Any], part: Any, root: dict[str, Any]) -> dict[str, Any] | None:
    """The schema of ``node[part]``, looking through unions; None when ``part`` is pydantic's name
    for a union member (``constrained-int``, ``tuple[...]``) rather than a key or index."""
    for c in [node, *(resolve(a, root) for a in node.get("anyOf", []))]:
        if isinstance(part, str) and part in c.get("properties", {}):
            return resolve(c["properties"][part], root)
        if isinstance(part, str) and c.get("type") == "object" and isinstance(c.get("additionalProperties"), dict):
            return resolve(c["additionalProperties"], root)
        if isinstance(part, int) and c.get("type") == "array":
            items = c.get("prefixItems") or c.get("items") or {}
            if isinstance(items, list):
                return resolve(items[part], root) if part < len(items) else None
            return resolve(items, root)
    return None


def _field(model: type[pydantic.BaseModel], parts: Sequence[Any]) -> tuple[dict[str, Any], int]:
    """The schema of the value an error is about, and how many ``parts`` lead to it."""
    root = model.model_json_schema(by_alias=True)
    node = resolve(root, root)
    for k, part in enumerate(parts):
        child = _child(node, part, root)
        if child is None:
            return node, k
        node = child
    return node, len(parts)


def _show(value: Any) -> str:
    """A value as the file wrote it: true, null, 'text', [1, 2], a mapping."""
    if isinstance(value, bool):
        return str(value).lower()
    if value is None:
        return "null"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        text = "[" + ", ".join(_show(v) for v in value) + "]"
        return text if len(text) <= 60 else f"a list of {len(value)} items"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _value_at(data: Any, parts: Sequence[Any]) -> Any:
    for part in parts:
        try:
            data = data[part]
        except (KeyError, IndexError, TypeError):
            return None
    return data


def _expected(err: Any, model: type[pydantic.BaseModel], parts: list[Any]) -> tuple[str, int]:
    """'expected ...' in the zoo's words, and the length of the path it is about."""
    if err["type"] == "value_error":  # our own validators already speak in "expected ..." terms
        return str(err["ctx"]["error"]), len(parts)
    schema, depth = _field(model, parts)
    return f"expected {describe(schema, model.model_json_schema(by_alias=True))}", depth


def _enum_hint(schema: dict[str, Any], got: Any) -> str:
    """A did-you-mean among a field's allowed words ('rleu' -> 'relu')."""
    if not isinstance(got, str):
        return ""
    words = [v for c in [schema, *schema.get("anyOf", [])] for v in c.get("enum", []) if isinstance(v, str)]
    return did_you_mean(got, words)


def validation_errors(
    exc: pydantic.ValidationError,
    model: type[pydantic.BaseModel],
    data: Any,
    *,
    prefix: Sequence[Any] = (),
    error_cls: type[ZooError] = SchemaError,
    location: Location | None = None,
) -> list[ZooError]:
    """One ZooError per pydantic error, in the file's terms."""
    out: list[ZooError] = []
    seen: set[tuple[Any, ...]] = set()
    # a typo'd key also shows up as a missing one: report the unknown key first, it is the cause
    for err in sorted(exc.errors(), key=lambda e: e["type"] != "extra_forbidden"):
        parts = [p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-"))]
        path = format_path([*prefix, *parts])
        loc = _locate(data, parts, location)
        kind = err["type"]
        if kind == "extra_forbidden":
            key = parts[-1] if parts else "?"
            known = _fields_at(model, parts[:-1])
            hint = did_you_mean(str(key), known) or (f"expected one of: {', '.join(known)}" if known else "")
            out.append(UnknownNameError(f"unknown key {key!r}", location=loc, path=path, hint=hint))
        elif kind == "missing":
            out.append(error_cls(f"missing required key {parts[-1]!r}", location=loc, path=path))
        else:
            # a union reports one error per member: say once what the value may be
            expected, depth = _expected(err, model, parts)
            at = tuple(parts[:depth])
            if at in seen:
                continue
            seen.add(at)
            value = _value_at(data, at) if depth < len(parts) else err.get("input")
            hint = _enum_hint(_field(model, at)[0], value)
            out.append(error_cls(f"{expected}, got {_show(value)}", location=_locate(data, at, location),
                                 path=format_path([*prefix, *at]), hint=hint))
    return out


def validate(
    model: type[M],
    data: Any,
    *,
    prefix: Sequence[Any] = (),
    error_cls: type[ZooError] = SchemaError,
    location: Location | None = None,
) -> M:
    """Validate located data against a pydantic model; raise the first error, keep the rest."""
    try:
        return model.model_validate(data)
    except pydantic.ValidationError as exc:
        errors = validation_errors(exc, model, data, prefix=prefix, error_cls=error_cls, location=location)
        first = errors[0]
        first.others = errors[1:]
        raise first from None
