"""How a file's values are read wherever pydantic validates them (layer arguments, recipes):
without the lax conversions that hide mistakes. Torch-free and light: ``zoo list`` and the
training recipe both import it."""

from __future__ import annotations

import functools
from typing import Any, Literal, get_args, get_origin

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator

__all__ = ["Strict"]


def _mentions(annotation: Any, types: tuple[type, ...]) -> bool:
    return annotation in types or any(_mentions(a, types) for a in get_args(annotation))


def _words(annotation: Any) -> tuple[str, ...] | None:
    """The words a flag-or-word type takes (``bool | Literal["auto"]``: ('auto',)), or None when a
    member is neither a boolean, None, nor a literal word. A plain ``str`` member takes any word: ('',)."""
    words: list[str] = []
    for member in get_args(annotation):
        if member is bool or member is type(None):
            continue
        if member is str:
            words.append("")
        elif get_origin(member) is Literal and all(isinstance(v, str) for v in get_args(member)):
            words += get_args(member)
        else:
            return None
    return tuple(words)


@functools.lru_cache(maxsize=4096)
def _bool_rule(model: type[BaseModel], field_name: str) -> tuple[str, tuple[str, ...]]:
    """How a field's type treats booleans: 'flag' (only true/false), 'choice' (true/false or one of
    its words), 'number' (never a boolean) or 'any'. Worked out once per field: every argument of
    every layer passes through the check."""
    field = model.model_fields.get(field_name)
    annotation = field.annotation if field is not None else Any
    if annotation is Any:
        return "any", ()
    if annotation is bool or annotation == (bool | None):
        return "flag", ()
    if not _mentions(annotation, (bool,)):
        # a text field refuses a boolean by its own type, with its own message ("expected a string")
        return ("any", ()) if _mentions(annotation, (str,)) else ("number", ())
    words = _words(annotation)
    return ("choice", words) if words else ("any", ())


class Strict(BaseModel):
    """Arguments as a file writes them, without pydantic's lax conversions that hide mistakes:
    a boolean is never a number (``dense: true`` is not a 1-unit layer), a flag is only
    ``true``/``false`` (not ``"no"`` or ``1``; a flag that also takes words, such as
    ``channels_last: auto``, takes those words too), and floats are finite (NaN/inf break the network)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_confusion(cls, value: Any, info: ValidationInfo) -> Any:
        rule, words = _bool_rule(cls, info.field_name or "")
        if rule == "flag":
            if not isinstance(value, bool) and value is not None:
                raise ValueError("expected true or false")
            return value
        if rule == "choice":
            # pydantic's lax bool would read 1, "yes" or "on" as true: here only true/false or a word
            if isinstance(value, bool) or value is None or (isinstance(value, str) and ("" in words or value in words)):
                return value
            raise ValueError(f"expected true, false or {' or '.join(repr(w) for w in words if w) or 'a name'}")
        if rule == "number":
            items = value if isinstance(value, (list, tuple)) else [value]
            if any(isinstance(v, bool) for v in items):
                raise ValueError("expected a number, not a boolean")
        return value
