"""What ``zoo list`` shows: each registered model's parameter count, counted from its expansion
with the primitive table's rules (no model is built), and each broken file with its first error.

Counts are cached in memory and on disk (``$ZOO_CACHE_DIR``, else ``$XDG_CACHE_HOME/zoo`` or
``~/.cache/zoo``), keyed on a hash of the bytes of every file a count depends on (the model's file,
its ``extends`` chain, the block libraries) and of the zoo's own source. A listing whose files are
unchanged reads them, hashes them and looks the rows up: it imports neither torch nor pydantic.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import json
import os
import threading
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._errors import SchemaError, ZooError
from ._files import read_file
from ._registry import REGISTRY, Entry, Registry

if TYPE_CHECKING:
    from ._tree import Expanded

__all__ = ["Catalog", "Row", "cache_file", "catalog", "count_expanded"]

CACHE_VERSION = 1
MAX_CACHE_BYTES = 2 * 1024 * 1024  # oldest rows are dropped beyond this (well under read_file's limit)


@dataclass(frozen=True)
class Row:
    """One model as ``zoo list`` shows it."""

    name: str
    params: int  # counted under the published convention and ``published.with_params``
    published: int | None
    convention: str
    source: str
    description: str
    pretrained: list[str]  # libraries with published weights (the file's ``reference:``)
    input: list[int]
    file: str

    @property
    def matches(self) -> bool:
        return self.published is None or self.published == self.params

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "matches": self.matches}


@dataclass
class Catalog:
    rows: list[Row]
    problems: list[str]  # "file:line:col: message", one per broken file or model


def count_expanded(expanded: Expanded, *, convention: str = "pytorch") -> int:
    """Parameters of an expanded tree from the primitive table's rules; ``keras`` adds what
    Keras counts as non-trainable parameters (batch-norm moving statistics)."""
    from ._tree import Leaf, leaf_params

    total = 0
    stack = [expanded.items]  # a walk with a stack: nested generators pass each leaf up every level
    while stack:
        for item in stack.pop():
            if isinstance(item, Leaf):
                total += leaf_params(item)
                if convention == "keras" and item.primitive.statistics is not None:
                    total += item.primitive.statistics(item.spec, item.in_shape)
            else:
                stack.extend(item.parts)
    return total


# ---------------------------------------------------------------- cache keys

_CODE: str | None = None


def _code_digest() -> str:
    """Hash of the package's source: a count depends on the primitive rules and the builder."""
    global _CODE
    if _CODE is None:
        h = hashlib.blake2b(f"v{CACHE_VERSION}".encode(), digest_size=16)
        for path in sorted(Path(__file__).resolve().parent.rglob("*.py")):
            h.update(path.name.encode() + b"\0" + path.read_bytes())
        _CODE = h.hexdigest()
    return _CODE


def _file_key(entry: Entry) -> str:
    return hashlib.blake2b(f"{_code_digest()}|file|{entry.path}|{entry.digest}".encode(), digest_size=16).hexdigest()


def _model_key(registry_index: Any, name: str) -> str:
    """Everything a model's row depends on: its file and every file up its ``extends`` chain (with
    how many files claim each name), and every block library."""
    h = hashlib.blake2b(f"{_code_digest()}|model|{name}".encode(), digest_size=16)
    seen: set[str] = set()
    current: str | None = name
    while current is not None and current not in seen and current in registry_index.models:
        seen.add(current)
        entry = registry_index.models[current]
        h.update(f"|{entry.path}|{entry.digest}|{len(registry_index.duplicates.get(current, []))}".encode())
        current = entry.header.extends
    h.update(f"|parent:{current}".encode())
    for lib in registry_index.libraries:
        h.update(f"|lib:{lib.path}|{lib.digest}".encode())
    return h.hexdigest()


# ---------------------------------------------------------------- the disk cache

def cache_file() -> Path:
    root = os.environ.get("ZOO_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "zoo"
    )
    return Path(root) / "catalog.json"


class _Cache:
    """Rows by key, in memory for the process and on disk across processes."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.rows: dict[str, dict[str, Any]] = {}
        self.loaded_from: Path | None = None
        self.new: dict[str, dict[str, Any]] = {}

    def _read_disk(self, path: Path) -> dict[str, dict[str, Any]]:
        try:
            data = json.loads(read_file(path))
        except (SchemaError, ValueError):
            return {}  # no cache yet, or a damaged one: the rows are counted again and rewritten
        if not isinstance(data, dict) or data.get("version") != CACHE_VERSION or not isinstance(data.get("rows"), dict):
            return {}
        return {k: v for k, v in data["rows"].items() if isinstance(v, dict)}

    def use(self, path: Path) -> None:
        """Rows from this file (read once per process, or again when the folder changes)."""
        if self.loaded_from != path:
            self.rows, self.loaded_from = self._read_disk(path), path

    def get(self, key: str) -> dict[str, Any] | None:
        return self.rows.get(key)

    def put(self, key: str, row: dict[str, Any]) -> None:
        self.rows[key] = self.new[key] = row

    def save(self, path: Path) -> None:
        """Merge the new rows into the file (another process may have written it meanwhile) and
        replace it atomically. A folder that cannot be written only costs speed next time."""
        if not self.new:
            return
        rows = {**self._read_disk(path), **self.new}
        self.new = {}
        text = json.dumps({"version": CACHE_VERSION, "rows": rows})
        while len(text) > MAX_CACHE_BYTES and rows:
            rows = dict(list(rows.items())[len(rows) // 2:])  # oldest half out
            text = json.dumps({"version": CACHE_VERSION, "rows": rows})
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(text)
            os.replace(tmp, path)
        except OSError:
            tmp.unlink(missing_ok=True)
            return
        self.rows, self.loaded_from = rows, path


_CACHE = _Cache()


# ---------------------------------------------------------------- rows

def _row(registry: Registry, name: str) -> dict[str, Any]:
    """A model's row, or its first error."""
    from ._values import resolve_params

    try:
        spec = registry.get_spec(name)
        published = spec.published
        convention = published.convention if published else "pytorch"
        given, shape = resolve_params(spec, None, None, dict(published.with_params) if published else {})
        count = count_expanded(registry.expand(spec, given, tuple(shape)), convention=convention)
    except ZooError as exc:
        return {"error": str(exc)}
    return asdict(Row(
        name=name, params=count, published=published.params if published else None, convention=convention,
        source=spec.source, description=spec.description,
        pretrained=sorted(spec.reference.libraries()) if spec.reference else [],
        input=list(spec.input), file=spec.file,
    ))


def _file_check(registry: Registry, entry: Entry) -> dict[str, Any]:
    try:
        registry.check_entry(entry)
    except ZooError as exc:
        return {"error": str(exc)}
    return {"ok": True}


_ROW_TYPES: dict[str, tuple[type, ...]] = {
    "name": (str,), "params": (int,), "published": (int, type(None)), "convention": (str,), "source": (str,),
    "description": (str,), "pretrained": (list,), "input": (list,), "file": (str,),
}


def _as_row(data: dict[str, Any]) -> Row | None:
    """A cached row, or None when it is not one (another version of the zoo, a hand edit): then
    the model is counted again."""
    if set(data) != set(_ROW_TYPES) or not all(
        isinstance(data[k], types) and not isinstance(data[k], bool) for k, types in _ROW_TYPES.items()
    ):
        return None
    return Row(**data)


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Counting a cold listing parses every file and expands every model: hundreds of thousands of
    short-lived objects, which set off the cyclic collector over and over, each time walking every
    live parse tree (about a tenth of a cold ``zoo list``). They form no cycles, so the collector is
    paused while counting and given back as it was."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def catalog(pattern: str | None = None, *, registry: Registry = REGISTRY) -> Catalog:
    """Rows for the registered models matching ``pattern``, and the first error of every broken
    file or model (whatever the pattern: a broken file anywhere in the path is worth knowing)."""
    rows: list[Row] = []
    problems: list[str] = []
    where = cache_file()
    with registry.pinned() as index, _CACHE.lock, _collector_paused():
        _CACHE.use(where)
        problems += [str(p) for p in index.problems]
        problems += [str(p) for p in registry.duplicate_errors()]
        for entry in index.entries:
            key = _file_key(entry)
            check = _CACHE.get(key)
            if check is None:
                _CACHE.put(key, check := _file_check(registry, entry))
            if "error" in check:
                problems.append(str(check["error"]))
        shown = set(registry.list_models(pattern))
        for name in registry.list_models():  # every model, so that every broken one is reported
            key = _model_key(index, name)
            data = _CACHE.get(key)
            row = None if data is None or "error" in data else _as_row(data)
            if data is None or (row is None and "error" not in data):
                _CACHE.put(key, data := _row(registry, name))
                row = None if "error" in data else _as_row(data)
            if row is not None:
                if name in shown:
                    rows.append(row)
            else:
                problems.append(str(data["error"]))
        _CACHE.save(where)
    return Catalog(rows, list(dict.fromkeys(problems)))
