"""Exit codes shared by every command (``zoo list|summary|...`` and ``zoo train|evaluate|...``):
one code per kind of failure, so a script can tell a bad file from a bad command line."""

from __future__ import annotations

import gc
import sys
from typing import NoReturn

from ._errors import CheckpointError, WeightsError, ZooError

__all__ = ["EXIT_FILES", "EXIT_INTERRUPTED", "EXIT_USAGE", "EXIT_USER", "fail", "leave"]

EXIT_USER = 1  # a recipe, architecture file, model name, option value or data the user gave
EXIT_USAGE = 2  # the command line itself (argparse's own code)
EXIT_FILES = 3  # a checkpoint or weights file that cannot be used
EXIT_INTERRUPTED = 130  # Ctrl-C, as a shell reports SIGINT


def fail(exc: ZooError) -> int:
    """Print every error ``exc`` carries and return its exit code."""
    for err in exc.all_errors:
        print(f"error: {err}", file=sys.stderr)
    return EXIT_FILES if isinstance(exc, (CheckpointError, WeightsError)) else EXIT_USER


def leave(code: int) -> NoReturn:
    """End a command's process with ``code``, without the interpreter's last garbage collection.

    Only for a process's entry point (``python -m zoo``, the ``zoo`` script, ``scripts/*.py``),
    never inside a library call. After a training run the interpreter holds torch, torch._dynamo
    and scikit-learn: its final cyclic collection walks every one of their objects, 0.4-0.9 s of
    exit on this project's 2-core CPU. Freezing them skips that walk; ``atexit`` handlers, open
    files and module teardown still run as usual.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    gc.freeze()
    sys.exit(code)
