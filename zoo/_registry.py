"""The registry: finds architecture files, resolves ``extends``, serves specs and models by name.

Folders searched, in order: the shipped ``architectures/``, folders named in ``ZOO_PATH``
(``os.pathsep``-separated), and folders given to :func:`register_dir`. Parsed files are cached by
(path, mtime, size), so listing after the first call costs a ``stat`` per file and an edited file
is picked up on the next call. Listing parses YAML only: it never builds a model or imports timm.
"""

from __future__ import annotations

import fnmatch
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._errors import ExtendsError, Location, RegistryError, SchemaError, UnknownNameError, did_you_mean
from ._pydantic_errors import validate
from ._schema import ArchitectureFile, ArchitectureSpec, BlockLibrary, BlockTemplate
from ._yaml import YMap, load_yaml, loc_of

__all__ = ["REGISTRY", "Registry", "builtin_dir", "get_spec", "list_models", "register_dir"]


def builtin_dir() -> Path:
    """The shipped architectures: inside the package when installed, beside it in a checkout."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "architectures", here.parent / "architectures"):
        if candidate.is_dir():
            return candidate
    return here / "architectures"


@dataclass
class _Parsed:
    stamp: tuple[int, int]
    arch: ArchitectureFile | None
    library: BlockLibrary | None
    raw: Any


class Registry:
    """Thread-safe index of architecture files and block libraries."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._extra_dirs: list[Path] = []
        self._cache: dict[Path, _Parsed] = {}
        self._specs: dict[tuple[str, tuple[Any, ...]], ArchitectureSpec] = {}
        self._index_key: tuple[Any, ...] | None = None
        self._files: dict[str, tuple[Path, ArchitectureFile, Any]] = {}
        self._blocks: dict[str, BlockTemplate] = {}
        self._expanded: OrderedDict[tuple[Any, ...], Any] = OrderedDict()  # LRU of expanded trees

    # ------------------------------------------------------------ folders

    def register_dir(self, path: str | os.PathLike[str]) -> None:
        p = Path(path).expanduser().resolve()
        if not p.is_dir():
            raise RegistryError(f"cannot register {str(path)!r}: not a directory")
        with self._lock:
            if p not in self._extra_dirs:
                self._extra_dirs.append(p)

    def dirs(self) -> list[Path]:
        env = [Path(d).expanduser().resolve() for d in os.environ.get("ZOO_PATH", "").split(os.pathsep) if d]
        seen: list[Path] = []
        for d in [builtin_dir(), *env, *self._extra_dirs]:
            if d not in seen:
                seen.append(d)
        return seen

    # ------------------------------------------------------------ parsing with a cache

    def _parse(self, path: Path) -> _Parsed:
        st = path.stat()
        stamp = (st.st_mtime_ns, st.st_size)
        cached = self._cache.get(path)
        if cached is not None and cached.stamp == stamp:
            return cached
        raw = load_yaml(path)
        if not isinstance(raw, dict):
            raise SchemaError(
                f"an architecture file is a mapping (name:, input:, layers: ...), got a {type(raw).__name__.replace('Y', '').lower()}",
                location=loc_of(raw) or Location(str(path), 1, 1),
            )
        fallback = Location(str(path), 1, 1)
        if raw.get("kind") == "blocks":
            parsed = _Parsed(stamp, None, validate(BlockLibrary, raw, location=fallback), raw)
        else:
            parsed = _Parsed(stamp, validate(ArchitectureFile, raw, location=fallback), None, raw)
        self._cache[path] = parsed
        return parsed

    def parse_file(self, path: Path) -> _Parsed:
        """One file parsed and validated against the file schema (cached like the registered ones)."""
        with self._lock:
            return self._parse(path.resolve())

    def _refresh(self) -> None:
        """Re-index when the set of files or any file changed."""
        paths: list[Path] = []
        for d in self.dirs():
            if d.is_dir():
                paths.extend(sorted(p for p in d.rglob("*.y*ml") if p.suffix in (".yaml", ".yml")))
        stamps = []
        for p in paths:
            st = p.stat()
            stamps.append((str(p), st.st_mtime_ns, st.st_size))
        key = tuple(stamps)
        if key == self._index_key:
            return
        files: dict[str, tuple[Path, ArchitectureFile, Any]] = {}
        blocks: dict[str, BlockTemplate] = {}
        block_files: dict[str, Path] = {}
        for p in paths:
            parsed = self._parse(p)
            if parsed.library is not None:
                for bname, template in parsed.library.blocks.items():
                    if bname in blocks:
                        raise RegistryError(
                            f"block {bname!r} is defined twice: in {block_files[bname]} and in {p}",
                            location=loc_of(parsed.raw["blocks"], bname),
                        )
                    blocks[bname], block_files[bname] = template, p
                continue
            assert parsed.arch is not None
            name = parsed.arch.name
            if name in files:
                raise RegistryError(
                    f"model name {name!r} is defined twice: in {files[name][0]} and in {p}",
                    location=loc_of(parsed.raw, "name"),
                    hint="rename one of them; names must be unique across all registered folders",
                )
            files[name] = (p, parsed.arch, parsed.raw)
        self._files, self._blocks, self._index_key = files, blocks, key
        self._specs.clear()
        self._expanded.clear()

    # ------------------------------------------------------------ queries

    def list_models(self, pattern: str | None = None) -> list[str]:
        with self._lock:
            self._refresh()
            names = sorted(n for n, (_, arch, _) in self._files.items() if not arch.abstract)
        if pattern is None:
            return names
        return [n for n in names if fnmatch.fnmatchcase(n, pattern)]

    def blocks(self) -> dict[str, BlockTemplate]:
        with self._lock:
            self._refresh()
            return dict(self._blocks)

    def get_spec(self, name: str, *, allow_abstract: bool = False) -> ArchitectureSpec:
        if not isinstance(name, str):
            raise RegistryError(f"model name must be a string, got {type(name).__name__}")
        with self._lock:
            self._refresh()
            if name not in self._files:
                public = [n for n, (_, a, _) in self._files.items() if not a.abstract]
                raise UnknownNameError(
                    f"unknown model {name!r}",
                    hint=did_you_mean(name, public) or "zoo.list_models() shows the registered names",
                )
            spec = self._resolve(name, ())
        if spec.abstract and not allow_abstract:
            raise RegistryError(f"{name!r} is an abstract template ({spec.file}); build a model that extends it")
        return spec

    def with_file(self, path: Path) -> Registry:
        """A separate registry over the same folders plus one file (``zoo validate`` of a file that
        may lie elsewhere, or be an edited copy of a registered one), leaving this one untouched."""
        path = path.resolve()
        other = Registry()
        other._extra_dirs = [d for d in self.dirs() if d != path.parent]  # its siblings may be broken
        with self._lock:
            other._cache = dict(self._cache)  # parsed files, keyed by stamp: reuse, do not re-parse
        with other._lock:
            other._refresh()
            parsed = other._parse(path)
            if parsed.arch is not None:
                other._files[parsed.arch.name] = (path, parsed.arch, parsed.raw)
        return other

    def expand(self, spec: ArchitectureSpec, params: dict[str, Any], shape: tuple[int, ...]) -> Any:
        """The expanded, shape-checked tree, cached per (model, parameters, input shape): building a
        model again (workers, sweeps, tests) skips expansion. Cleared when any file changes."""
        from ._builder import expand

        key = (spec.name, spec.file, repr(sorted(params.items())), shape)
        with self._lock:
            self._refresh()
            if key in self._expanded:
                self._expanded.move_to_end(key)
                return self._expanded[key]
            blocks = dict(self._blocks)
        tree = expand(spec, blocks, params, shape)
        with self._lock:
            self._expanded[key] = tree
            while len(self._expanded) > 64:
                self._expanded.popitem(last=False)
        return tree

    def _resolve(self, name: str, chain: tuple[str, ...]) -> ArchitectureSpec:
        key = (name, ())
        if key in self._specs:
            return self._specs[key]
        path, arch, raw = self._files[name]
        if arch.extends is None:
            spec = self._own(path, arch, raw, parent=None)
        else:
            where = loc_of(raw, "extends")
            if arch.extends == name or arch.extends in chain:
                cycle = " -> ".join([*chain, name, arch.extends])
                raise ExtendsError(f"'extends' forms a cycle: {cycle}", location=where, path="extends")
            if arch.extends not in self._files:
                raise ExtendsError(
                    f"{name!r} extends unknown architecture {arch.extends!r}",
                    location=where, path="extends",
                    hint=did_you_mean(arch.extends, self._files) or "",
                )
            parent = self._resolve(arch.extends, (*chain, name))
            spec = self._own(path, arch, raw, parent=parent)
        self._specs[key] = spec
        return spec

    def _own(self, path: Path, arch: ArchitectureFile, raw: Any, parent: ArchitectureSpec | None) -> ArchitectureSpec:
        """Merge a file over its parent: params and blocks merge, everything else replaces."""
        here = loc_of(raw) or Location(str(path), 1, 1)
        params = YMap({**(parent.params if parent else {}), **arch.params}, loc=loc_of(raw, "params"))
        if parent is not None:
            params.key_locs = {**getattr(parent.params, "key_locs", {}), **getattr(raw.get("params"), "key_locs", {})}
            unknown = [k for k in arch.params if k not in parent.params]
            if unknown and not arch.abstract:
                # a derived file may add parameters; it may not silently misspell an inherited one
                for k in unknown:
                    hint = did_you_mean(k, parent.params)
                    if hint:
                        raise UnknownNameError(
                            f"parameter {k!r} is not a parameter of {parent.name!r}",
                            location=loc_of(raw["params"], k), path=f"params.{k}", hint=hint,
                        )
        elif isinstance(raw.get("params"), YMap):
            params.key_locs = raw["params"].key_locs

        def pick(field: str) -> Any:
            value = getattr(arch, field)
            if value is None and parent is not None:
                return getattr(parent, field)
            return value

        spec = ArchitectureSpec(
            name=arch.name,
            file=str(path),
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
        return spec


REGISTRY = Registry()


def list_models(pattern: str | None = None) -> list[str]:
    """Registered model names, sorted; ``pattern`` is a shell glob such as ``"resnet*"``."""
    if pattern is not None and not isinstance(pattern, str):
        raise RegistryError(f"pattern must be a string such as 'resnet*', got {type(pattern).__name__}")
    return REGISTRY.list_models(pattern)


def get_spec(name: str) -> ArchitectureSpec:
    """The resolved, validated architecture (``extends`` applied)."""
    return REGISTRY.get_spec(name)


def register_dir(path: str | os.PathLike[str]) -> None:
    """Add a folder of architecture files (searched recursively) to the registry."""
    REGISTRY.register_dir(path)
