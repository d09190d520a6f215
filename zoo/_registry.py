"""The registry: serves architecture specs and block templates by name, thread-safely.

It owns a :class:`~zoo._file_index.FileIndex` (which files are registered, what each one names,
each file parsed; the folders searched are listed there) and resolves ``extends`` chains into
specs (the merge itself is :mod:`zoo._extends`). Listing is lazy: every query re-reads and hashes
the registered files, and a file is parsed only when one of its models is resolved. Every cache is
keyed on content, so a rewrite that keeps mtime and size is seen; when any file changes, resolved
specs, the block table and expanded trees are dropped. One re-entrant lock guards all of it.
Importing this module loads neither pydantic nor torch.
"""

from __future__ import annotations

import fnmatch
import os
import threading
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._errors import Location, RegistryError, UnknownNameError, ZooError
from ._extends import extends_chain, merge, suggest
from ._file_index import Entry, FileIndex, Index, Parsed, builtin_dir
from ._files import read_file

if TYPE_CHECKING:
    from ._schema import ArchitectureSpec, BlockTemplate

__all__ = ["REGISTRY", "Entry", "Registry", "builtin_dir", "get_spec", "list_models", "register_dir"]


class Registry:
    """Thread-safe index of architecture files and block libraries."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self.files = FileIndex()
        self._specs: dict[str, ArchitectureSpec] = {}
        self._blocks: dict[str, BlockTemplate] | None = None
        self._expanded: OrderedDict[tuple[Any, ...], Any] = OrderedDict()  # LRU of expanded trees
        self._pins = 0  # > 0 inside pinned(): no re-scan

    # ------------------------------------------------------------ folders and the index

    def register_dir(self, path: str | os.PathLike[str]) -> None:
        with self._lock:
            self.files.register_dir(path)

    def dirs(self) -> list[Path]:
        with self._lock:
            return self.files.dirs()

    def forget(self) -> None:
        """Re-index on the next query, dropping resolved specs, blocks and expanded trees (parsed
        files stay: they are keyed by content)."""
        with self._lock:
            self.files.key = None

    def _refresh(self) -> None:
        """Re-index when the set of files or any file's content changed."""
        if self._pins:
            return
        if self.files.refresh():
            self._specs.clear()
            self._blocks = None
            self._expanded.clear()

    def snapshot(self) -> Index:
        """The current index (entries, names, libraries, duplicates, unreadable files)."""
        with self._lock:
            self._refresh()
            return self.files.index

    @contextmanager
    def pinned(self) -> Iterator[Index]:
        """One scan for many queries (``zoo list``): inside, every query uses the index as it is
        now, and other threads wait."""
        with self._lock:
            self._refresh()
            self._pins += 1
            try:
                yield self.files.index
            finally:
                self._pins -= 1

    # ------------------------------------------------------------ files that cannot be used

    def duplicate_errors(self) -> list[RegistryError]:
        with self._lock:
            self._refresh()
            return [self.files.duplicate_error(name) for name in self.files.index.duplicates]

    def check_entry(self, entry: Entry) -> None:
        """Parse and validate one registered file (its first error is raised)."""
        with self._lock:
            self.files.parsed(entry)

    def problems(self) -> list[ZooError]:
        """Every registered file that cannot be used, each with its first error: unreadable
        entries, files that do not parse or validate, names defined twice."""
        with self.pinned() as index:
            found: list[ZooError] = [*index.problems, *self.duplicate_errors()]
            for e in index.entries:
                try:
                    self.files.parsed(e)
                except ZooError as exc:
                    found.append(exc)
            return found

    def parse_file(self, path: Path) -> Parsed:
        """One file parsed and validated against the file schema (cached like the registered ones)."""
        where = str(path.resolve())
        data = read_file(where)
        with self._lock:
            return self.files.parse_data(where, data)

    # ------------------------------------------------------------ queries

    def list_models(self, pattern: str | None = None) -> list[str]:
        if pattern is not None and not isinstance(pattern, str):
            raise RegistryError(f"pattern must be a glob string such as 'resnet*', got {type(pattern).__name__}")
        with self._lock:
            self._refresh()
            names = sorted(n for n, e in self.files.index.models.items() if not e.header.abstract)
        if pattern is None:
            return names
        return [n for n in names if fnmatch.fnmatchcase(n, pattern)]

    def blocks(self) -> dict[str, BlockTemplate]:
        with self._lock:
            self._refresh()
            if self._blocks is None:
                self._blocks = self._collect_blocks()
            return dict(self._blocks)

    def _collect_blocks(self) -> dict[str, BlockTemplate]:
        from ._yaml import loc_of

        blocks: dict[str, BlockTemplate] = {}
        where: dict[str, str] = {}
        for e in self.files.index.libraries:
            parsed = self.files.parsed(e)
            assert parsed.library is not None  # a library entry parses to a library (checked in parsed)
            for bname, template in parsed.library.blocks.items():
                if bname in blocks:
                    raise RegistryError(
                        f"block {bname!r} is defined twice: in {where[bname]} and in {e.path}",
                        location=loc_of(parsed.raw["blocks"], bname),
                    )
                blocks[bname], where[bname] = template, e.path
        return blocks

    def get_spec(self, name: str, *, allow_abstract: bool = False) -> ArchitectureSpec:
        if not isinstance(name, str):
            raise RegistryError(f"model name must be a string, got {type(name).__name__}")
        with self._lock:
            self._refresh()
            models = self.files.index.models
            if name not in models:
                public = [n for n, e in models.items() if not e.header.abstract]
                raise UnknownNameError(f"unknown model {name!r}", hint=suggest(name, public))
            spec = self._resolve(name)
        if spec.abstract and not allow_abstract:
            raise RegistryError(f"{name!r} is an abstract template ({spec.file}); build a model that extends it")
        return spec

    def with_file(self, path: Path) -> Registry:
        """A separate registry over the same folders plus one file (``zoo validate`` of a file that
        may lie elsewhere), leaving this one untouched. A file whose model name is already
        registered by another file is a RegistryError: registering it would be one too."""
        path = path.resolve()
        other = Registry()
        other.files.extra_dirs = [d for d in self.dirs() if d != path.parent]  # its siblings may collide with it
        other.files.extra_files = [str(path)]
        with self._lock:  # parsed files and headers, keyed by content: reuse, do not re-parse
            other.files.cache, other.files.headers = dict(self.files.cache), dict(self.files.headers)
        with other._lock:
            other._refresh()
            index = other.files.index
            for name, again in index.duplicates.items():
                mine = next((e for e in again if e.path == str(path)), None)
                if mine is not None:
                    raise RegistryError(
                        f"model name {name!r} is already registered by {index.models[name].path}",
                        location=Location(mine.path, mine.header.line, 1),
                        hint="rename it; names must be unique across the shipped and registered folders",
                    )
        return other

    def expand(self, spec: ArchitectureSpec, params: dict[str, Any], shape: tuple[int, ...]) -> Any:
        """The expanded, shape-checked tree, cached per (model, parameters, input shape): building a
        model again (workers, sweeps, tests) skips expansion. Cleared when any file changes."""
        from ._expansion import expand

        key = (spec.name, spec.file, repr(sorted(params.items())), shape)
        with self._lock:
            self._refresh()
            if key in self._expanded:
                self._expanded.move_to_end(key)
                return self._expanded[key]
        tree = expand(spec, _LibraryBlocks(self), params, shape)
        with self._lock:
            self._expanded[key] = tree
            while len(self._expanded) > 64:
                self._expanded.popitem(last=False)
        return tree

    # ------------------------------------------------------------ extends

    def _resolve(self, name: str) -> ArchitectureSpec:
        """Walk ``extends`` up to a resolved ancestor or a root, then merge down: a loop, not
        recursion, so a chain of any length ends in a spec or a ZooError."""
        chain = extends_chain(self.files, self._specs, name)
        for n in reversed(chain):
            if n in self._specs:
                continue
            entry = self.files.index.models[n]
            parsed = self.files.parsed(entry)
            assert parsed.arch is not None  # models map to architecture files (checked in FileIndex.parsed)
            base = self._specs[parsed.arch.extends] if parsed.arch.extends else None
            self._specs[n] = merge(entry.path, parsed.arch, parsed.raw, parent=base)
        return self._specs[name]


class _LibraryBlocks(Mapping[str, "BlockTemplate"]):
    """The library files' blocks, collected at the first lookup: a model made of primitives and its
    own blocks (mnist_fast_net) is built without parsing every library file (13 of them, 0.08 s
    of a first build in a fresh process)."""

    def __init__(self, registry: Registry) -> None:
        self._registry = registry
        self._blocks: dict[str, BlockTemplate] | None = None

    def _all(self) -> dict[str, BlockTemplate]:
        if self._blocks is None:
            self._blocks = self._registry.blocks()
        return self._blocks

    def __getitem__(self, name: str) -> BlockTemplate:
        return self._all()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._all())

    def __len__(self) -> int:
        return len(self._all())


REGISTRY = Registry()


def list_models(pattern: str | None = None) -> list[str]:
    """Registered model names, sorted; ``pattern`` is a shell glob such as ``"resnet*"``."""
    return REGISTRY.list_models(pattern)


def get_spec(name: str) -> ArchitectureSpec:
    """The resolved, validated architecture (``extends`` applied)."""
    return REGISTRY.get_spec(name)


def register_dir(path: str | os.PathLike[str]) -> None:
    """Add a folder of architecture files (searched recursively) to the registry."""
    REGISTRY.register_dir(path)
