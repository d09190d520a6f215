"""The file index: which architecture files are registered, what each one names, each file parsed.

Folders searched, in order: the shipped ``architectures/``, folders named in ``ZOO_PATH``
(``os.pathsep``-separated; a name that is not a folder is a :class:`RegistryError`), and folders
given to ``register_dir``. Files are ``*.yaml``/``*.yml``, recursively; names starting with a dot
(editor lock and backup files) are ignored.

Each :meth:`FileIndex.refresh` reads every registered file and hashes its bytes (no YAML), and takes
the name from the header scan (:mod:`zoo._headers`); a file is parsed and validated only when asked
for (or when its header is not plain enough to scan). Headers and parsed files are cached by
(path, content hash). Only regular files are read: a FIFO, a device, a dangling or looping link
becomes one of :attr:`Index.problems` and is otherwise skipped; a file that vanishes between the
scan and the read is simply not registered on that call.

A :class:`FileIndex` has no lock of its own: the :class:`~zoo._registry.Registry` that owns it calls
it under the registry's lock. Importing this module loads neither pydantic nor torch.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._errors import Location, RegistryError, SchemaError, ZooError
from ._extends import check_block_names
from ._files import read_file
from ._headers import Header, digest, scan_header

if TYPE_CHECKING:
    from ._schema import ArchitectureFile, BlockLibrary

__all__ = ["Entry", "FileIndex", "Index", "Parsed", "builtin_dir", "parse_bytes"]


def builtin_dir() -> Path:
    """The shipped architectures: inside the package when installed, beside it in a checkout."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "architectures", here.parent / "architectures"):
        if candidate.is_dir():
            return candidate
    return here / "architectures"


@dataclass(frozen=True)
class Entry:
    """One registered file as read in this scan: its bytes (later stages never re-read the file,
    so a file replaced meanwhile cannot mix two versions), their hash, and its header."""

    path: str
    digest: str
    data: bytes = field(repr=False)
    header: Header


@dataclass
class Parsed:
    """One file parsed and validated: an architecture or a block library, and its raw YAML."""

    arch: ArchitectureFile | None
    library: BlockLibrary | None
    raw: Any


@dataclass
class Index:
    """The registered files as of one scan."""

    entries: list[Entry]
    models: dict[str, Entry]  # name -> its first file
    libraries: list[Entry]
    duplicates: dict[str, list[Entry]]  # name -> the files after the first that define it
    problems: list[ZooError]  # unreadable entries and files whose header needed a failing parse


def parse_bytes(path: str, data: bytes) -> Parsed:
    """Parse and validate one file's bytes against the file schema (no cache)."""
    from ._pydantic_errors import validate
    from ._schema import ArchitectureFile, BlockLibrary
    from ._yaml import loc_of, parse_yaml

    raw = parse_yaml(data, path)
    fallback = Location(path, 1, 1)
    if not isinstance(raw, dict):
        raise SchemaError(
            f"an architecture file is a mapping (name:, input:, layers: ...), got a {type(raw).__name__.replace('Y', '').lower()}",
            location=loc_of(raw) or fallback,
        )
    if raw.get("kind") == "blocks":
        parsed = Parsed(None, validate(BlockLibrary, raw, location=fallback), raw)
    else:
        parsed = Parsed(validate(ArchitectureFile, raw, location=fallback), None, raw)
    source = parsed.arch if parsed.arch is not None else parsed.library
    check_block_names(source.blocks if source is not None else (), raw)
    return parsed


def _is_registered_name(name: str) -> bool:
    return name.endswith((".yaml", ".yml")) and not name.startswith(".")


class FileIndex:
    """The registered folders and files, the index of their names, and their parses."""

    def __init__(self) -> None:
        self.extra_dirs: list[Path] = []
        self.extra_files: list[str] = []  # with_file: one file validated beside the folders
        self.headers: dict[tuple[str, str], Header | ZooError] = {}  # (path, digest) -> header or why none
        self.cache: dict[tuple[str, str], Parsed] = {}  # (path, digest) -> parsed file
        self.index = Index([], {}, [], {}, [])
        self.key: tuple[Any, ...] | None = None  # what the index was built from; None: rebuild
        self._scanned: set[tuple[str, str]] = set()  # (path, digest) read by the current scan

    # ------------------------------------------------------------ folders

    def register_dir(self, path: str | os.PathLike[str]) -> None:
        p = Path(path).expanduser().resolve()
        if not p.is_dir():
            raise RegistryError(f"cannot register {str(path)!r}: not a directory")
        if p not in self.extra_dirs:
            self.extra_dirs.append(p)

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
        return list(dict.fromkeys([builtin_dir(), *env, *self.extra_dirs]))

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
        paths.extend(self.extra_files)
        return list(dict.fromkeys(paths))

    # ------------------------------------------------------------ reading

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
        key = (path, digest(data))
        self._scanned.add(key)
        header = self.headers.get(key)
        if header is None:
            header = scan_header(data) or self._header_by_parsing(path, key[1], data)
            self.headers[key] = header
        if isinstance(header, ZooError):
            return header
        return Entry(path, key[1], data, header)

    def _header_by_parsing(self, path: str, content: str, data: bytes) -> Header | ZooError:
        try:
            parsed = self.cache[(path, content)] = parse_bytes(path, data)
        except ZooError as exc:
            return exc
        if parsed.arch is None:
            return Header("blocks", None)
        from ._yaml import loc_of

        loc = loc_of(parsed.raw, "name")
        return Header("arch", parsed.arch.name, parsed.arch.abstract, parsed.arch.extends, loc.line if loc else 1)

    # ------------------------------------------------------------ the index

    def refresh(self) -> bool:
        """Re-index when the set of files or any file's content changed; True when it did."""
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
        if key == self.key:
            return False
        self.index = _build_index(entries, problems)
        self.key = key
        live = {(e.path, e.digest) for e in entries}
        self.cache = {k: v for k, v in self.cache.items() if k in live}
        self.headers = {k: v for k, v in self.headers.items() if k in self._scanned}  # old contents go
        return True

    def duplicate_error(self, name: str) -> RegistryError:
        first, again = self.index.models[name], self.index.duplicates[name][0]
        return RegistryError(
            f"model name {name!r} is defined twice: in {first.path} and in {again.path}",
            location=Location(again.path, again.header.line, 1),
            hint="rename one of them; names must be unique across all registered folders",
        )

    # ------------------------------------------------------------ parsing with a cache

    def parsed(self, entry: Entry) -> Parsed:
        """The entry parsed and validated; its header must agree with what YAML reads."""
        key = (entry.path, entry.digest)
        cached = self.cache.get(key)
        if cached is None:
            cached = parse_bytes(entry.path, entry.data)
            arch = cached.arch
            true = (arch.name, arch.abstract, arch.extends) if arch else (None, False, None)
            if true != (entry.header.name, entry.header.abstract, entry.header.extends):
                raise RegistryError(
                    f"the top-level lines read name={entry.header.name!r}, but the YAML gives name={true[0]!r}",
                    location=Location(entry.path, entry.header.line, 1),
                    hint="write 'name:', 'abstract:' and 'extends:' once each, as plain top-level keys",
                )
            self.cache[key] = cached
        return cached

    def parse_data(self, path: str, data: bytes) -> Parsed:
        """A file's bytes parsed, cached like the registered files (``zoo validate``)."""
        key = (path, digest(data))
        cached = self.cache.get(key)
        if cached is None:
            cached = self.cache[key] = parse_bytes(path, data)
        return cached


def _build_index(entries: list[Entry], problems: list[ZooError]) -> Index:
    """Names to their first file; later files with a taken name are duplicates."""
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
    return Index(entries, models, libraries, duplicates, problems)
