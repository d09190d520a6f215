"""Pydantic validation whose errors point at the YAML: file:line:col, path, did-you-mean."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

import pydantic

from ._errors import Location, SchemaError, UnknownNameError, ZooError, did_you_mean
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
    """Field names of the (nested) pydantic model that ``parts`` points into."""
    current: Any = model
    for part in parts:
        if isinstance(part, int) or not (isinstance(current, type) and issubclass(current, pydantic.BaseModel)):
            return []
        field = current.model_fields.get(part)
        if field is None:
            return []
        current = field.annotation
    if isinstance(current, type) and issubclass(current, pydantic.BaseModel):
        return [f.alias or name for name, f in current.model_fields.items()]
    return []


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
            got = err.get("input")
            shown = repr(got) if not isinstance(got, (dict, list)) else type(got).__name__.replace("Y", "").lower()
            msg = err["msg"][0].lower() + err["msg"][1:]
            out.append(error_cls(f"{msg} (got {shown[:80]})", location=loc, path=path))
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
