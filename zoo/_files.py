"""Reading a file the zoo was pointed at: regular files only, never past the size limit.

Kept apart from the YAML module so that listing (which hashes every registered file) reads files
without importing a YAML parser.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from ._errors import Location, SchemaError

__all__ = ["MAX_BYTES", "read_file"]

MAX_BYTES = 4 * 1024 * 1024


def read_file(path: str | Path) -> bytes:
    """A regular file's bytes, at most ``MAX_BYTES``: a FIFO named ``x.yaml`` must not block and
    a link to ``/dev/zero`` must not be read until memory runs out, so the file is opened without
    blocking, checked to be a regular file, and read no further than one byte past the limit."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        raise SchemaError(f"cannot read file: {exc.strerror}", location=Location(str(path), 1, 1)) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise SchemaError(
                "not a regular file (a FIFO, device or folder); only plain files are read",
                location=Location(str(path), 1, 1),
            )
        chunks: list[bytes] = []
        size = 0
        while size <= MAX_BYTES:
            # ask for what stat says is there (os.read allocates what it is asked for), plus one
            # byte to see the end or a file that grew since
            chunk = os.read(fd, min(max(st.st_size - size, 0), MAX_BYTES - size) + 1)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as exc:
        raise SchemaError(f"cannot read file: {exc.strerror}", location=Location(str(path), 1, 1)) from None
    finally:
        os.close(fd)
    if size > MAX_BYTES:
        raise SchemaError(f"file is larger than {MAX_BYTES} bytes", location=Location(str(path), 1, 1))
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)
