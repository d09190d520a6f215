"""Exit codes shared by every command (``zoo list|summary|...`` and ``zoo train|evaluate|...``):
one code per kind of failure, so a script can tell a bad file from a bad command line."""

from __future__ import annotations

import sys

from ._errors import CheckpointError, WeightsError, ZooError

__all__ = ["EXIT_FILES", "EXIT_INTERRUPTED", "EXIT_USAGE", "EXIT_USER", "fail"]

EXIT_USER = 1  # a recipe, architecture file, model name, option value or data the user gave
EXIT_USAGE = 2  # the command line itself (argparse's own code)
EXIT_FILES = 3  # a checkpoint or weights file that cannot be used
EXIT_INTERRUPTED = 130  # Ctrl-C, as a shell reports SIGINT


def fail(exc: ZooError) -> int:
    """Print every error ``exc`` carries and return its exit code."""
    for err in exc.all_errors:
        print(f"error: {err}", file=sys.stderr)
    return EXIT_FILES if isinstance(exc, (CheckpointError, WeightsError)) else EXIT_USER
