"""How a file's values are read wherever pydantic validates them (layer arguments, recipes):
without the lax conversions that hide mistakes. Torch-free and light: ``zoo list`` and the
training recipe both import it."""

from __future__ import annotations

import functools
from typing import Any, get_args

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator

__all__ = ["Strict"]


def _mentions_bool(annotation: Any) -> bool:
    return annotation is bool or any(_mentions_bool(a) for a in get_args(annotation))


@functools.lru_cache(maxsize=4096)
def _bool_rule(model: type[BaseModel], field_name: str) -> str:
    """How a field's type treats booleans: 'flag' (only true/false), 'number' (never a boolean) or
    'any'. Worked out once per field: every argument of every layer passes through the check."""
    field = model.model_fields.get(field_name)
    annotation = field.annotation if field is not None else Any
    if annotation is Any:
        return "any"
    if annotation is bool or annotation == (bool | None):
        return "flag"
    return "any" if _mentions_bool(annotation) else "number"


class Strict(BaseModel):
    """Arguments as a file writes them, without pydantic's lax conversions that hide mistakes:
    a boolean is never a number (``dense: true`` is not a 1-unit layer), a flag is only
    ``true``/``false`` (not ``"no"`` or ``1``), and floats are finite (NaN/inf break the network)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_confusion(cls, value: Any, info: ValidationInfo) -> Any:
        rule = _bool_rule(cls, info.field_name or "")
        if rule == "flag":
            if not isinstance(value, bool) and value is not None:
                raise ValueError("expected true or false")
            return value
        if rule == "number":
            items = value if isinstance(value, (list, tuple)) else [value]
            if any(isinstance(v, bool) for v in items):
                raise ValueError("expected a number, not a boolean")
        return value
