"""Loading recipes with file:line:col errors, ``--set`` overrides, and writing the resolved recipe.

Overrides (``--set optimizer.lr=0.01``) are applied to the parsed data before validation; their
values are parsed as YAML scalars/flow collections (``5`` is an int, ``[1, 2]`` a list), and an
unknown key is refused with a did-you-mean before anything runs.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from .._errors import RecipeError, ZooError, did_you_mean
from .._pydantic_errors import validate
from .._yaml import YMap, load_yaml, parse_yaml
from ._recipe import Recipe

__all__ = ["apply_overrides", "dump_recipe", "load_recipe", "parse_override", "recipe_from_data"]


# --------------------------------------------------------------------------- overrides


def parse_override(text: str) -> tuple[list[str], Any]:
    """'optimizer.lr=0.01' -> (['optimizer', 'lr'], 0.01); the value is YAML (so 5 is an int)."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise RecipeError(f"--set {text!r}: expected KEY=VALUE, e.g. --set epochs=5")
    parts = key.split(".")
    if any(not p for p in parts):
        raise RecipeError(f"--set {text!r}: empty part in the dotted key {key!r}")
    if raw.strip() == "":
        return parts, ""
    try:
        value = parse_yaml(raw, f"--set {key}")
    except ZooError as exc:
        raise RecipeError(f"--set {text!r}: cannot parse the value: {exc.message}") from None
    return parts, value


def _section_model(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model inside ``X | None`` or ``X`` (None for plain values and dicts)."""
    candidates = getattr(annotation, "__args__", None) or (annotation,)
    for candidate in candidates:
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def _check_key_path(parts: Sequence[str], text: str) -> None:
    """Refuse a key the schema does not have, naming the closest one (before anything runs)."""
    model: type[BaseModel] | None = Recipe
    for depth, part in enumerate(parts):
        if model is None:
            return  # below a free-form mapping (model.params): any key is accepted here
        fields = model.model_fields
        if part not in fields:
            where = ".".join(parts[:depth]) or "recipe"
            hint = did_you_mean(part, fields) or f"expected one of: {', '.join(fields)}"
            raise RecipeError(f"--set {text}: {where} has no key {part!r}", hint=hint)
        annotation = fields[part].annotation
        model = _section_model(annotation)
        is_mapping = getattr(annotation, "__origin__", None) is dict or annotation is dict
        if model is None and not is_mapping and depth < len(parts) - 1:
            raise RecipeError(f"--set {text}: {'.'.join(parts[: depth + 1])} is a value, not a section")


def apply_overrides(data: Any, overrides: Sequence[str]) -> tuple[Any, list[str]]:
    """Apply ``--set`` overrides to parsed recipe data; returns (new data, overridden paths)."""
    if not isinstance(data, dict):
        return data, []  # validation reports "expected a mapping" with the file's location
    data = copy.copy(data)
    touched: list[str] = []
    for text in overrides:
        parts, value = parse_override(text)
        _check_key_path(parts, text)
        node: dict[str, Any] = data
        for part in parts[:-1]:
            child = node.get(part)
            child = copy.copy(child) if isinstance(child, dict) else {}
            node[part] = child
            node = child
        node[parts[-1]] = value
        touched.append(".".join(parts))
    return data, touched


# --------------------------------------------------------------------------- loading


def recipe_from_data(data: Any, *, overrides: Sequence[str] = ()) -> Recipe:
    """Validate parsed data (after ``--set`` overrides) into a Recipe; errors are RecipeErrors."""
    data, touched = apply_overrides(data, overrides)
    try:
        return validate(Recipe, data, error_cls=RecipeError)
    except ZooError as exc:
        raise _blame_override(exc, touched, overrides) from None


def _blame_override(exc: ZooError, touched: list[str], overrides: Sequence[str]) -> ZooError:
    """An error in an overridden value points at the --set option, not at the recipe file."""
    for path, text in zip(touched, overrides, strict=False):
        if exc.path == path or exc.path.startswith(path + ".") or exc.path.startswith(path + "["):
            return RecipeError(f"--set {text}: {exc.message}", path=exc.path, hint=exc.hint)
    return exc if isinstance(exc, RecipeError) else _as_recipe_error(exc)


def _as_recipe_error(exc: ZooError) -> RecipeError:
    """Schema problems in a recipe (unknown keys, bad YAML) are recipe errors to the caller."""
    err = RecipeError(exc.message, location=exc.location, path=exc.path, hint=exc.hint)
    err.others = exc.others
    err.__cause__ = exc
    return err


def load_recipe(path: str | Path, *, overrides: Sequence[str] = ()) -> Recipe:
    """Load and validate a recipe file, applying ``--set KEY=VALUE`` overrides."""
    p = Path(path)
    if p.is_dir():
        p = p / "recipe.yaml"  # a run directory: its resolved recipe
    if not p.is_file():
        raise RecipeError(f"recipe file not found: {p}")
    try:
        data = load_yaml(p)
    except ZooError as exc:
        raise _as_recipe_error(exc) from None
    if isinstance(data, YMap) and "name" not in data:
        data["name"] = p.stem  # a recipe is named after its file unless it says otherwise
    return recipe_from_data(data, overrides=overrides)


def dump_recipe(recipe: Recipe) -> str:
    """The fully resolved recipe as YAML (defaults written out), as saved in a run directory."""
    import yaml

    header = f"# resolved recipe {recipe.name!r}: every default written out; load it with --resume\n"
    return header + yaml.safe_dump(recipe.to_data(), sort_keys=False, default_flow_style=None)
