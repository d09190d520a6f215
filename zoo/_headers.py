"""The header scan: what listing needs from an architecture file, read without parsing YAML.

``zoo list`` and name lookups read every registered file on every call, so they take the model's
name (and ``kind``, ``abstract``, ``extends``) from a regex over the file's top-level lines. A line
that YAML might read otherwise (a flow mapping, a repeated key, a block scalar, a tag) makes the
scan give up and the caller parses the file instead. Importing this module loads no YAML parser.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

__all__ = ["Header", "digest", "scan_header"]


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


def digest(data: bytes) -> str:
    """The content hash every registry cache is keyed on (a rewrite keeping mtime and size is seen)."""
    return hashlib.blake2b(data, digest_size=16).hexdigest()
