"""``zoo validate FILE``: every error of a file, not only the first (the command behind it).

Three passes, each run only if the previous found nothing (a later pass would repeat the
earlier errors in worse words): the file's structure (every pydantic error), a static walk over all
layer nodes (unknown layer types and argument keys everywhere, blocks included), and finally a
full build of the architecture with shape inference.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ._errors import Location, SchemaError, UnknownNameError, ZooError, did_you_mean
from ._layers import PRIMITIVES
from ._yaml import load_yaml, loc_of

__all__ = ["validate_file"]

_COMBINATOR_LISTS = {"seq": ("layers",), "stage": ("layers",), "aux": ("layers",), "repeat": ("layers",),
                     "residual": ("body", "shortcut", "post"), "concat": ("branches",)}


def validate_file(path: Path) -> list[ZooError]:
    try:
        raw = load_yaml(path)
        if not isinstance(raw, dict):
            raise SchemaError(
                "a zoo file is a mapping: an architecture (name, input, layers, ...) or a recipe (model, data, ...)",
                location=loc_of(raw) or Location(str(path), 1, 1),
            )
        if "model" in raw and "layers" not in raw:
            return _validate_recipe(path, raw)
        return _validate_architecture(path, raw)
    except ZooError as exc:
        return exc.all_errors


def _validate_recipe(path: Path, raw: Any) -> list[ZooError]:
    from ._registry import get_spec
    from .train._overrides import load_recipe

    recipe = load_recipe(path)
    try:
        get_spec(recipe.model.name)  # the model must exist, with a did-you-mean if not
    except ZooError as exc:
        model = raw.get("model")
        exc.location = loc_of(model, "name") if isinstance(model, dict) else loc_of(raw, "model")
        exc.path = "model.name"
        exc.args = (exc._render(),)
        raise
    return []


def _validate_architecture(path: Path, raw: Any) -> list[ZooError]:
    from ._registry import REGISTRY

    parsed = REGISTRY.parse_file(path)  # pydantic pass: raises with all errors attached
    blocks = {**REGISTRY.blocks()}
    if parsed.library is not None:
        blocks.update(parsed.library.blocks)
    if parsed.arch is not None:
        blocks.update(parsed.arch.blocks)
    errors: list[ZooError] = []
    known = set(PRIMITIVES) | set(_COMBINATOR_LISTS) | set(blocks)
    lists: list[tuple[Any, str]] = [(raw.get("layers"), "layers")]
    for bname, block in (raw.get("blocks") or {}).items():
        if isinstance(block, dict):
            lists.append((block.get("layers"), f"blocks.{bname}.layers"))
    for nodes, where in lists:
        _walk(nodes, where, known, errors)
    if errors or parsed.arch is None or parsed.arch.abstract:
        return errors
    _build_once(path, parsed.arch.name)
    return []


def _walk(nodes: Any, path: str, known: set[str], errors: list[ZooError]) -> None:
    if not isinstance(nodes, list):
        return
    for i, node in enumerate(nodes):
        here = f"{path}[{i}]"
        kind = node if isinstance(node, str) else next(iter(node)) if isinstance(node, dict) and len(node) == 1 else None
        if kind is None or "${" in kind:
            continue
        if kind not in known:
            errors.append(UnknownNameError(
                f"unknown layer or block {kind!r}", location=loc_of(nodes, i), path=here,
                hint=did_you_mean(kind, known) or "",
            ))
            continue
        args = node[kind] if isinstance(node, dict) else None
        prim = PRIMITIVES.get(kind)
        if prim is not None and isinstance(args, dict):
            fields = set(prim.spec.model_fields) | {"name", "when"}
            for key in args:
                if key not in fields:
                    errors.append(UnknownNameError(
                        f"{kind} has no argument {key!r}", location=loc_of(args, key), path=f"{here}.{kind}.{key}",
                        hint=did_you_mean(key, fields) or f"its arguments: {', '.join(sorted(prim.spec.model_fields))}",
                    ))
        for field in _COMBINATOR_LISTS.get(kind, ()):
            sub = args.get(field) if isinstance(args, dict) else None
            if field == "branches" and isinstance(sub, list):
                for j, branch in enumerate(sub):
                    _walk(branch if isinstance(branch, list) else [branch], f"{here}.{kind}.branches[{j}]", known, errors)
            else:
                _walk(sub if isinstance(sub, list) else [sub] if sub else [], f"{here}.{kind}.{field}", known, errors)


def _build_once(path: Path, name: str) -> None:
    """Full build of the file's architecture, resolved against the registered folders."""
    from ._builder import build_network, expand
    from ._registry import REGISTRY

    registry = REGISTRY.with_file(path)
    spec = registry.get_spec(name, allow_abstract=True)
    build_network(expand(spec, registry.blocks(), {}, tuple(spec.input)), device="meta")
