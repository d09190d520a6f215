"""``extends``: the chain of files a model extends, and one file merged over its parent's spec.

``params``, ``let`` and ``blocks`` merge key by key; every other key replaces the parent's. A
concrete (not ``abstract``) result must have the keys the registry requires; a derived file may
add parameters but not misspell an inherited one. Also here: the did-you-mean for model names and
the rule that a block may not take a built-in's name (both checked per file before merging).
Importing this module loads neither pydantic nor torch.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from ._errors import ExtendsError, Location, SchemaError, UnknownNameError, did_you_mean

if TYPE_CHECKING:
    from ._file_index import FileIndex
    from ._schema import ArchitectureFile, ArchitectureSpec

__all__ = ["check_block_names", "extends_chain", "merge", "suggest"]


def suggest(name: str, known: list[str], otherwise: str = "zoo.list_models() shows the registered names") -> str:
    """A did-you-mean that also catches a difference of case only (``MNIST_CNN_V1``)."""
    same = sorted(k for k in known if k.lower() == name.lower())
    if same:
        return f"did you mean {same[0]!r}? (model names are case-sensitive)"
    return did_you_mean(name, known) or otherwise


def check_block_names(names: Iterable[str], raw: Any) -> None:
    """A block may not take a built-in's name: the builder would silently use the built-in.
    ``names`` are a file's block names, ``raw`` the file's parsed YAML (for the location)."""
    names = list(names)
    if not names:
        return
    from ._expansion import builtin_names

    builtin = builtin_names()
    for bname in names:
        if bname in builtin:
            where = raw["blocks"].key_locs.get(bname)
            raise SchemaError(
                f"block {bname!r} has the name of a built-in layer or combinator, which would be used instead",
                location=where, path=f"blocks.{bname}", hint="give the block a name of its own",
            )


def extends_chain(files: FileIndex, resolved: Mapping[str, ArchitectureSpec], name: str) -> list[str]:
    """``name``, its parent, ... up to a ``resolved`` spec or a root: a loop, not recursion, so a
    chain of any length ends. A cycle, an unknown parent or a name defined twice is an error."""
    from ._yaml import loc_of

    index = files.index
    chain = [name]
    while chain[-1] not in resolved:
        current = chain[-1]
        if current in index.duplicates:
            raise files.duplicate_error(current)
        parsed = files.parsed(index.models[current])
        assert parsed.arch is not None  # models map to architecture files (checked in FileIndex.parsed)
        parent = parsed.arch.extends
        if parent is None:
            break
        where = loc_of(parsed.raw, "extends")
        if parent in chain:
            cycle = " -> ".join([*chain, parent])
            raise ExtendsError(f"'extends' forms a cycle: {cycle}", location=where, path="extends")
        if parent not in index.models:
            raise ExtendsError(
                f"{current!r} extends unknown architecture {parent!r}",
                location=where, path="extends", hint=suggest(parent, list(index.models), otherwise=""),
            )
        chain.append(parent)
    return chain


def merge(path: str, arch: ArchitectureFile, raw: Any, parent: ArchitectureSpec | None) -> ArchitectureSpec:
    """Merge a file over its parent: params and blocks merge, everything else replaces."""
    from ._schema import ArchitectureSpec
    from ._yaml import YMap, loc_of

    here = loc_of(raw) or Location(path, 1, 1)
    params = YMap({**(parent.params if parent else {}), **arch.params}, loc=loc_of(raw, "params"))
    if parent is not None:
        params.key_locs = {**getattr(parent.params, "key_locs", {}), **getattr(raw.get("params"), "key_locs", {})}
        _check_inherited_params(arch, raw, parent)
    elif isinstance(raw.get("params"), YMap):
        params.key_locs = raw["params"].key_locs

    def pick(field: str) -> Any:
        value = getattr(arch, field)
        if value is None and parent is not None:
            return getattr(parent, field)
        return value

    spec = ArchitectureSpec(
        name=arch.name,
        file=path,
        chain=[*(parent.chain if parent else []), arch.name],
        description=pick("description") or "",
        source=pick("source") or "",
        input=pick("input") or [],
        params=params,
        let={**(parent.let if parent else {}), **arch.let},
        published=arch.published if arch.published is not None else (parent.published if parent and arch.abstract else None),
        reference=arch.reference,
        features=pick("features"),
        init=raw["init"] if arch.init is not None else (parent.init if parent else None),
        weights={str(k): v for k, v in arch.weights.items()} if arch.weights else (parent.weights if parent else None),
        blocks={**(parent.blocks if parent else {}), **arch.blocks},
        layers=raw["layers"] if arch.layers is not None else (parent.layers if parent else []),
        abstract=arch.abstract,
    )
    if spec.init is not None:
        from ._init import check_init

        check_init(spec.init)
    if not arch.abstract:
        _check_required(spec, here)
    return spec


def _check_inherited_params(arch: ArchitectureFile, raw: Any, parent: ArchitectureSpec) -> None:
    """A derived file may add parameters; it may not silently misspell an inherited one."""
    from ._yaml import loc_of

    if arch.abstract:
        return
    for k in arch.params:
        hint = did_you_mean(k, parent.params) if k not in parent.params else None
        if hint:
            raise UnknownNameError(
                f"parameter {k!r} is not a parameter of {parent.name!r}",
                location=loc_of(raw["params"], k), path=f"params.{k}", hint=hint,
            )


def _check_required(spec: ArchitectureSpec, here: Location) -> None:
    """What a concrete model needs, directly or through ``extends``."""
    for field in ("description", "source", "input"):
        if not getattr(spec, field):
            raise SchemaError(f"missing required key {field!r}", location=here, path=field)
    if not spec.layers:
        raise SchemaError("missing required key 'layers' (directly or through 'extends')", location=here, path="layers")
    if spec.published is None:
        raise SchemaError(
            "missing required key 'published' (the published parameter count, its source and convention)",
            location=here, path="published",
        )
