"""The registry: finds architecture files, resolves ``extends``, serves specs and models by name.

Folders searched, in order: the shipped ``architectures/``, folders named in ``ZOO_PATH``
(``os.pathsep``-separated; a name that is not a folder is a :class:`RegistryError`), and folders
given to :func:`register_dir`. Files are ``*.yaml``/``*.yml``, recursively; names starting with a
dot (editor lock and backup files) are ignored.

Listing is lazy. Each call reads every registered file and hashes its bytes (no YAML), and takes
the name from a scan of the file's top-level lines; a file is parsed and validated only when one
of its models is resolved (or when its header is not plain enough to scan). Every cache is keyed
on the content hash, so a rewrite that keeps mtime and size is seen. Only regular files are read:
a FIFO, a device, a dangling or looping link is reported by :meth:`Registry.problems` and otherwise
skipped, so it breaks no other model; a file that vanishes between the scan and the read is simply
not registered on that call. Importing this module loads neither pydantic nor torch.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import re
import stat
import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._errors import (
    ExtendsError,
    Location,
    RegistryError,
    SchemaError,
    UnknownNameError,
    ZooError,
    did_you_mean,
)
from ._files import read_file

if TYPE_CHECKING:
    from ._schema import ArchitectureFile, ArchitectureSpec, BlockLibrary, BlockTemplate

__all__ = ["REGISTRY", "Entry", "Registry", "builtin_dir", "get_spec", "list_models", "register_dir"]


def builtin_dir() -> Path:
    """The shipped architectures: inside the package when installed, beside it in a checkout."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "architectures", here.parent / "architectures"):
        if candidate.is_dir():
            return candidate
    return here / "architectures"


# ---------------------------------------------------------------- the header scan

@dataclass(frozen=True)
class Header:
    """What listing needs from a file, read from its top-level lines without parsing YAML."""

    kind: str  # "arch" | "blocks"
    name: str | None
    abstract: bool = False
    extends: str | None = None
    line: int = 1  # of ``name:`` (or ``kind:``), for messages about the name


_TOP_KEY = re.compile(rb"^(name|kind|abstract|extends)[ \t]*:(?=[ \t\r]|$)(.*)$", re.M)  # "name:x" is no key
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.\-]*")  # the schema's NAME_PATTERN
_YAML_BOOL = {w: v for v, words in ((True, "yes true on"), (False, "no false off")) for word in words.split()
              for w in (word, word.capitalize(), word.upper())}
_YAML_NULL = {"null", "Null", "NULL"}


def _scalar(raw: bytes) -> str | None:
    """A plain or simply quoted one-line scalar; None for anything YAML might read otherwise."""
    try:
        text = raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        return None
    if " #" in text or "\t#" in text:
        text = re.split(r"[ \t]#", text, maxsplit=1)[0].rstrip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        inner = text[1:-1]
        return inner if _NAME.fullmatch(inner) else None
    if text in _YAML_BOOL:
        return text
    return text if _NAME.fullmatch(text) and text not in _YAML_NULL else None


def scan_header(data: bytes) -> Header | None:
    """The header from plain top-level ``name:``/``kind:``/``abstract:``/``extends:`` lines, or
    None when they are missing, repeated or not plain (then the file is parsed to find out)."""
    found: dict[str, tuple[str, int]] = {}
    for match in _TOP_KEY.finditer(data):
        key = match.group(1).decode()
        value = _scalar(match.group(2))
        if key in found or value is None:
            return None
        found[key] = (value, data.count(b"\n", 0, match.start()) + 1)
    kind = found.get("kind", ("arch", 1))
    if kind[0] == "blocks":
        return None if set(found) - {"kind"} else Header("blocks", None, line=kind[1])
    if "kind" in found or "name" not in found:
        return None
    name, line = found["name"]
    abstract = found.get("abstract", ("false", 0))[0]
    extends = found["extends"][0] if "extends" in found else None
    if name in _YAML_BOOL or abstract not in _YAML_BOOL or extends in _YAML_BOOL:
        return None
    return Header("arch", name, _YAML_BOOL[abstract], extends, line)


def _digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


# ---------------------------------------------------------------- files

@dataclass(frozen=True)
class Entry:
    """One registered file as read in this scan: its bytes (later stages never re-read the file,
    so a file replaced meanwhile cannot mix two versions), their hash, and its header."""

    path: str
    digest: str
    data: bytes = field(repr=False)
    header: Header


@dataclass
class _Parsed:
    arch: ArchitectureFile | None
    library: BlockLibrary | None
    raw: Any


@dataclass
class _Index:
    entries: list[Entry]
    models: dict[str, Entry]  # name -> its first file
    libraries: list[Entry]
    duplicates: dict[str, list[Entry]]  # name -> the files after the first that define it
    problems: list[ZooError]  # unreadable entries and files whose header needed a failing parse


def _is_registered_name(name: str) -> bool:
    return name.endswith((".yaml", ".yml")) and not name.startswith(".")


class Registry:
    """Thread-safe index of architecture files and block libraries."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._extra_dirs: list[Path] = []
        self._extra_files: list[str] = []  # with_file: one file validated beside the folders
        self._headers: dict[tuple[str, str], Header | ZooError] = {}  # (path, digest) -> header or why none
        self._scanned: set[tuple[str, str]] = set()  # (path, digest) read by the current scan
        self._cache: dict[tuple[str, str], _Parsed] = {}  # (path, digest) -> parsed file
        self._index = _Index([], {}, [], {}, [])
        self._index_key: tuple[Any, ...] | None = None
        self._specs: dict[str, ArchitectureSpec] = {}
        self._blocks: dict[str, BlockTemplate] | None = None
        self._expanded: OrderedDict[tuple[Any, ...], Any] = OrderedDict()  # LRU of expanded trees
        self._pins = 0  # > 0 inside pinned(): no re-scan

    # ------------------------------------------------------------ folders

    def register_dir(self, path: str | os.PathLike[str]) -> None:
        p = Path(path).expanduser().resolve()
        if not p.is_dir():
            raise RegistryError(f"cannot register {str(path)!r}: not a directory")
        with self._lock:
            if p not in self._extra_dirs:
                self._extra_dirs.append(p)

    def dirs(self) -> list[Path]:
        env: list[Path] = []
        for given in os.environ.get("ZOO_PATH", "").split(os.pathsep):
            if not given:
                continue
            p = Path(given).expanduser().resolve()
            if not p.is_dir():
                raise RegistryError(
                    f"ZOO_PATH names {given!r}, which is not a directory",
                    hint=f"create it or remove it from ZOO_PATH (folders are separated by {os.pathsep!r})",
                )
            env.append(p)
        return list(dict.fromkeys([builtin_dir(), *env, *self._extra_dirs]))

    def _paths(self) -> list[str]:
        """Registered file paths, each once (folders are resolved, so a file reached through two
        overlapping folders has one spelling); plain strings: this runs on every query."""
        paths: list[str] = []
        for d in self.dirs():
            found: list[str] = []
            # os.walk does not follow links to folders (no loops); links to files are kept
            for root, subdirs, files in os.walk(d):
                subdirs[:] = [s for s in subdirs if not s.startswith(".")]
                found.extend(os.path.join(root, f) for f in files if _is_registered_name(f))
            paths.extend(sorted(found))
        paths.extend(self._extra_files)
        return list(dict.fromkeys(paths))

    def _read(self, path: str) -> Entry | ZooError | None:
        """The file as an entry; a ZooError for a file that cannot be registered; None when it
        vanished since the folder was listed (it is then simply not there on this call)."""
        try:
            st = os.stat(path)
        except OSError as exc:
            if not os.path.lexists(path):
                return None
            return RegistryError(
                f"cannot read registered file: {exc.strerror} (a dangling or looping link?)", location=Location(path, 1, 1)
            )
        if not stat.S_ISREG(st.st_mode):
            return RegistryError("not a regular file (a FIFO, device or folder); it is skipped", location=Location(path, 1, 1))
        try:
            data = read_file(path)
        except SchemaError as exc:
            return None if not os.path.lexists(path) else exc
        digest = _digest(data)
        self._scanned.add((path, digest))
        header = self._headers.get((path, digest))
        if header is None:
            header = scan_header(data) or self._header_by_parsing(path, digest, data)
            self._headers[(path, digest)] = header
        if isinstance(header, ZooError):
            return header
        return Entry(path, digest, data, header)

    def _header_by_parsing(self, path: str, digest: str, data: bytes) -> Header | ZooError:
        try:
            parsed = self._cache[(path, digest)] = self._parse_bytes(path, data)
        except ZooError as exc:
            return exc
        if parsed.arch is None:
            return Header("blocks", None)
        from ._yaml import loc_of

        loc = loc_of(parsed.raw, "name")
        return Header("arch", parsed.arch.name, parsed.arch.abstract, parsed.arch.extends, loc.line if loc else 1)

    # ------------------------------------------------------------ the index

    def _refresh(self) -> None:
        """Re-index when the set of files or any file's content changed."""
        if self._pins:
            return
        entries: list[Entry] = []
        problems: list[ZooError] = []
        self._scanned = set()
        for path in self._paths():
            got = self._read(path)
            if isinstance(got, Entry):
                entries.append(got)
            elif got is not None:
                problems.append(got)
        key = tuple((e.path, e.digest) for e in entries) + tuple(str(p) for p in problems)
        if key == self._index_key:
            return
        models: dict[str, Entry] = {}
        duplicates: dict[str, list[Entry]] = {}
        libraries: list[Entry] = []
        for e in entries:
            name = e.header.name
            if name is None:
                libraries.append(e)
            elif name in models:
                duplicates.setdefault(name, []).append(e)
            else:
                models[name] = e
        self._index = _Index(entries, models, libraries, duplicates, problems)
        self._index_key = key
        live = {(e.path, e.digest) for e in entries}
        self._cache = {k: v for k, v in self._cache.items() if k in live}
        self._headers = {k: v for k, v in self._headers.items() if k in self._scanned}  # old contents go
        self._specs.clear()
        self._blocks = None
        self._expanded.clear()

    def snapshot(self) -> _Index:
        """The current index (entries, names, libraries, duplicates, unreadable files)."""
        with self._lock:
            self._refresh()
            return self._index

    def _duplicate_error(self, name: str) -> RegistryError:
        first, again = self._index.models[name], self._index.duplicates[name][0]
        return RegistryError(
            f"model name {name!r} is defined twice: in {first.path} and in {again.path}",
            location=Location(again.path, again.header.line, 1),
            hint="rename one of them; names must be unique across all registered folders",
        )

    @contextmanager
    def pinned(self) -> Iterator[_Index]:
        """One scan for many queries (``zoo list``): inside, every query uses the index as it is
        now, and other threads wait."""
        with self._lock:
            self._refresh()
            self._pins += 1
            try:
                yield self._index
            finally:
                self._pins -= 1

    def duplicate_errors(self) -> list[RegistryError]:
        with self._lock:
            self._refresh()
            return [self._duplicate_error(name) for name in self._index.duplicates]

    def check_entry(self, entry: Entry) -> None:
        """Parse and validate one registered file (its first error is raised)."""
        with self._lock:
            self._parsed(entry)

    def problems(self) -> list[ZooError]:
        """Every registered file that cannot be used, each with its first error: unreadable
        entries, files that do not parse or validate, names defined twice."""
        with self.pinned() as index:
            found: list[ZooError] = [*index.problems, *self.duplicate_errors()]
            for e in index.entries:
                try:
                    self._parsed(e)
                except ZooError as exc:
                    found.append(exc)
            return found

    # ------------------------------------------------------------ parsing with a cache

    def _parse_bytes(self, path: str, data: bytes) -> _Parsed:
        from ._pydantic_errors import validate
        from ._schema import ArchitectureFile, BlockLibrary
        from ._yaml import parse_yaml

        raw = parse_yaml(data, path)
        fallback = Location(path, 1, 1)
        if not isinstance(raw, dict):
            from ._yaml import loc_of

            raise SchemaError(
                f"an architecture file is a mapping (name:, input:, layers: ...), got a {type(raw).__name__.replace('Y', '').lower()}",
                location=loc_of(raw) or fallback,
            )
        if raw.get("kind") == "blocks":
            parsed = _Parsed(None, validate(BlockLibrary, raw, location=fallback), raw)
        else:
            parsed = _Parsed(validate(ArchitectureFile, raw, location=fallback), None, raw)
        _check_block_names(parsed)
        return parsed

    def _parsed(self, entry: Entry) -> _Parsed:
        key = (entry.path, entry.digest)
        cached = self._cache.get(key)
        if cached is None:
            cached = self._parse_bytes(entry.path, entry.data)
            arch = cached.arch
            true = (arch.name, arch.abstract, arch.extends) if arch else (None, False, None)
            if true != (entry.header.name, entry.header.abstract, entry.header.extends):
                raise RegistryError(
                    f"the top-level lines read name={entry.header.name!r}, but the YAML gives name={true[0]!r}",
                    location=Location(entry.path, entry.header.line, 1),
                    hint="write 'name:', 'abstract:' and 'extends:' once each, as plain top-level keys",
                )
            self._cache[key] = cached
        return cached

    def parse_file(self, path: Path) -> _Parsed:
        """One file parsed and validated against the file schema (cached like the registered ones)."""
        where = str(path.resolve())
        data = read_file(where)
        key = (where, _digest(data))
        with self._lock:
            cached = self._cache.get(key)
            if cached is None:
                cached = self._cache[key] = self._parse_bytes(where, data)
            return cached

    # ------------------------------------------------------------ queries

    def list_models(self, pattern: str | None = None) -> list[str]:
        if pattern is not None and not isinstance(pattern, str):
            raise RegistryError(f"pattern must be a glob string such as 'resnet*', got {type(pattern).__name__}")
        with self._lock:
            self._refresh()
            names = sorted(n for n, e in self._index.models.items() if not e.header.abstract)
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
        for e in self._index.libraries:
            parsed = self._parsed(e)
            assert parsed.library is not None  # a library entry parses to a library (checked in _parsed)
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
            if name not in self._index.models:
                public = [n for n, e in self._index.models.items() if not e.header.abstract]
                raise UnknownNameError(f"unknown model {name!r}", hint=_suggest(name, public))
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
        other._extra_dirs = [d for d in self.dirs() if d != path.parent]  # its siblings may collide with it
        other._extra_files = [str(path)]
        with self._lock:  # parsed files and headers, keyed by content: reuse, do not re-parse
            other._cache, other._headers = dict(self._cache), dict(self._headers)
        with other._lock:
            other._refresh()
            for name, again in other._index.duplicates.items():
                mine = next((e for e in again if e.path == str(path)), None)
                if mine is not None:
                    raise RegistryError(
                        f"model name {name!r} is already registered by {other._index.models[name].path}",
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
            if self._blocks is None:
                self._blocks = self._collect_blocks()
            blocks = dict(self._blocks)
        tree = expand(spec, blocks, params, shape)
        with self._lock:
            self._expanded[key] = tree
            while len(self._expanded) > 64:
                self._expanded.popitem(last=False)
        return tree

    # ------------------------------------------------------------ extends

    def _resolve(self, name: str) -> ArchitectureSpec:
        """Walk ``extends`` up to a resolved ancestor or a root, then merge down: a loop, not
        recursion, so a chain of any length ends in a spec or a ZooError."""
        from ._yaml import loc_of

        chain = [name]
        while chain[-1] not in self._specs:
            current = chain[-1]
            if current in self._index.duplicates:
                raise self._duplicate_error(current)
            parsed = self._parsed(self._index.models[current])
            assert parsed.arch is not None  # models map to architecture files (checked in _parsed)
            parent = parsed.arch.extends
            if parent is None:
                break
            where = loc_of(parsed.raw, "extends")
            if parent in chain:
                cycle = " -> ".join([*chain, parent])
                raise ExtendsError(f"'extends' forms a cycle: {cycle}", location=where, path="extends")
            if parent not in self._index.models:
                raise ExtendsError(
                    f"{current!r} extends unknown architecture {parent!r}",
                    location=where, path="extends", hint=_suggest(parent, list(self._index.models), otherwise=""),
                )
            chain.append(parent)
        for n in reversed(chain):
            if n in self._specs:
                continue
            entry = self._index.models[n]
            parsed = self._parsed(entry)
            assert parsed.arch is not None
            base = self._specs[parsed.arch.extends] if parsed.arch.extends else None
            self._specs[n] = _own(entry.path, parsed.arch, parsed.raw, parent=base)
        return self._specs[name]


def _suggest(name: str, known: list[str], otherwise: str = "zoo.list_models() shows the registered names") -> str:
    """A did-you-mean that also catches a difference of case only (``MNIST_CNN_V1``)."""
    same = sorted(k for k in known if k.lower() == name.lower())
    if same:
        return f"did you mean {same[0]!r}? (model names are case-sensitive)"
    return did_you_mean(name, known) or otherwise


def _check_block_names(parsed: _Parsed) -> None:
    """A block may not take a built-in's name: the builder would silently use the built-in."""
    source = parsed.arch if parsed.arch is not None else parsed.library
    if source is None or not source.blocks:
        return
    from ._expansion import builtin_names

    builtin = builtin_names()
    for bname in source.blocks:
        if bname in builtin:
            where = parsed.raw["blocks"].key_locs.get(bname)
            raise SchemaError(
                f"block {bname!r} has the name of a built-in layer or combinator, which would be used instead",
                location=where, path=f"blocks.{bname}", hint="give the block a name of its own",
            )


def _own(path: str, arch: ArchitectureFile, raw: Any, parent: ArchitectureSpec | None) -> ArchitectureSpec:
    """Merge a file over its parent: params and blocks merge, everything else replaces."""
    from ._schema import ArchitectureSpec
    from ._yaml import YMap, loc_of

    here = loc_of(raw) or Location(path, 1, 1)
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
    return REGISTRY.list_models(pattern)


def get_spec(name: str) -> ArchitectureSpec:
    """The resolved, validated architecture (``extends`` applied)."""
    return REGISTRY.get_spec(name)


def register_dir(path: str | os.PathLike[str]) -> None:
    """Add a folder of architecture files (searched recursively) to the registry."""
    REGISTRY.register_dir(path)
