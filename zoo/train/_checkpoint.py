"""Checkpoints and run directories that survive crashes: atomic writes, checksums, a lock.

* Every file the trainer writes goes to a temporary file in the same folder, is flushed and
  fsync'ed, then renamed over the target (``os.replace`` is atomic), so a process killed at any
  moment leaves either the previous complete file or the new complete file.
* A checkpoint is an ordinary ``torch.save`` dictionary of tensors and plain values (it loads with
  ``torch.load(weights_only=True)``) plus a ``sha256`` digest computed over its content; a
  truncated file fails to load, a flipped bit fails the digest, and both are CheckpointErrors.
* A run directory is locked with ``flock`` for as long as a process writes to it; the kernel drops
  the lock when the process dies (even by SIGKILL), so a crash never leaves a stale lock, and a
  second process aiming at the same directory is refused.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import shutil
import struct
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import torch

from .._errors import CheckpointError, RecipeError

__all__ = [
    "CHECKPOINT_FORMAT",
    "RunLock",
    "atomic_write_bytes",
    "atomic_write_text",
    "check_free_space",
    "check_writable",
    "digest",
    "load_checkpoint",
    "save_checkpoint",
]

CHECKPOINT_FORMAT = "zoo-checkpoint/1"
TMP_SUFFIX = ".zoo-tmp"  # temporaries of atomic writes; the only files remove_stale_temporaries touches


# --------------------------------------------------------------------------- atomic files


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers only ever see the old or the new content."""
    target = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=TMP_SUFFIX, dir=target.parent)
    except OSError as exc:
        raise CheckpointError(f"cannot write {target}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError):  # a full disk, a vanished folder: the previous file is untouched
            raise CheckpointError(
                f"cannot write {target}: {exc.strerror or exc}",
                hint="the previous version of the file, if any, is intact",
            ) from None
        raise
    _fsync_dir(target.parent)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable (POSIX); a no-op where directories cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some filesystems cannot fsync a directory; the rename has happened regardless
        pass
    finally:
        os.close(fd)


def remove_stale_temporaries(folder: Path) -> int:
    """Delete ``.name.XXXX.zoo-tmp`` files left by a process killed mid-write (call under the lock).

    Only this library's own suffix: a user's ``.notes.tmp`` in the same folder is not ours to delete.
    """
    removed = 0
    for tmp in folder.glob(f".*{TMP_SUFFIX}"):
        if not tmp.is_file() or tmp.is_symlink():
            continue
        with contextlib.suppress(OSError):
            tmp.unlink()
            removed += 1
    return removed


# --------------------------------------------------------------------------- checkpoints


def digest(obj: Any) -> str:
    """sha256 over a nested structure of dicts, lists, tensors and plain values (order-stable)."""
    h = hashlib.sha256()
    _feed(h, obj)
    return h.hexdigest()


def _feed(h: Any, obj: Any) -> None:
    if isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous()
        h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    elif isinstance(obj, Mapping):
        h.update(b"D%d" % len(obj))
        for key in sorted(obj, key=repr):
            h.update(repr(key).encode())
            _feed(h, obj[key])
    elif isinstance(obj, (list, tuple)):
        h.update(b"L%d" % len(obj))
        for item in obj:
            _feed(h, item)
    elif isinstance(obj, float):
        h.update(b"F" + struct.pack("<d", obj))
    else:
        h.update(f"V{type(obj).__name__}:{obj!r}".encode())


def save_checkpoint(path: str | Path, state: Mapping[str, Any]) -> None:
    """Atomically write a checkpoint with its format tag and content digest."""
    payload = {"format": CHECKPOINT_FORMAT, "state": dict(state)}
    payload["sha256"] = digest(payload["state"])
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load_checkpoint(path: str | Path, *, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint safely (``weights_only=True``) and verify it; CheckpointError otherwise."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"checkpoint not found: {p}")
    try:
        payload = torch.load(p, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises RuntimeError, UnpicklingError, EOFError, zip errors...
        raise CheckpointError(
            f"checkpoint {p} cannot be loaded safely: {_first_line(exc)}",
            hint="it is truncated or corrupted, or it holds Python objects other than tensors and plain data",
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{p} is not a zoo checkpoint (no {CHECKPOINT_FORMAT!r} format tag)")
    state = payload.get("state")
    if not isinstance(state, dict) or digest(state) != payload.get("sha256"):
        raise CheckpointError(f"checkpoint {p} is corrupted: its content does not match its sha256 digest")
    return state


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


# --------------------------------------------------------------------------- run directory


def check_writable(folder: str | Path, *, option: str = "output_dir") -> Path:
    """Create ``folder`` and prove it is writable with a probe file, before any training starts.

    ``option`` is what the user set to name the folder (a recipe key or a command-line flag).
    """
    p = Path(folder)
    try:
        p.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-probe.", dir=p)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise RecipeError(
            f"output directory {p} is not writable: {exc.strerror or exc}",
            path=option if not option.startswith("-") else "",
            hint=f"choose another one with {'--set output_dir=PATH' if option == 'output_dir' else option + ' PATH'}",
        ) from None
    return p


def check_free_space(folder: str | Path, *, needed: int) -> None:
    """Refuse to start when the disk cannot hold the checkpoints the run will write."""
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return  # unknown: the atomic writes will still never leave a half file behind
    if free < needed:
        raise RecipeError(
            f"not enough free disk space in {folder}: {free / 1e6:.1f} MB free, "
            f"the checkpoints of this run need about {needed / 1e6:.1f} MB",
            path="output_dir",
        )


class RunLock:
    """An exclusive, crash-safe lock on a run directory (``flock`` on ``.lock``)."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.path = self.folder / ".lock"
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        try:
            # O_NOFOLLOW: a .lock that is a symlink must not truncate (and get a pid written into) its target
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
        except OSError as exc:
            kind = "a symlink" if self.path.is_symlink() else "a directory" if self.path.is_dir() else "unusable"
            raise CheckpointError(
                f"cannot lock run directory {self.folder}: its .lock is {kind} ({exc.strerror or exc})",
                hint=f"remove {self.path} if no other run uses this folder",
            ) from None
        try:
            _lock_fd(fd)
        except BlockingIOError:
            holder = _read_pid(fd)
            os.close(fd)
            raise CheckpointError(
                f"run directory {self.folder} is in use by another process" + (f" (pid {holder})" if holder else ""),
                hint="two processes must not write one run; wait for it or choose another output_dir",
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock
            self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()


def _lock_fd(fd: int) -> None:
    try:
        import fcntl
    except ImportError:  # Windows: a byte-range lock that also dies with the process
        import msvcrt

        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)  # type: ignore[attr-defined]
        except OSError:
            raise BlockingIOError from None
        return
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)


def _read_pid(fd: int) -> str:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        return os.read(fd, 32).decode(errors="replace").strip()
    except OSError:
        return ""


@contextlib.contextmanager
def locked_run_dir(folder: str | Path) -> Iterator[RunLock]:
    """``with locked_run_dir(p):`` checks the folder is writable, then holds its lock."""
    check_writable(folder)
    with RunLock(folder) as lock:
        remove_stale_temporaries(Path(folder))
        yield lock
