"""TensorBoard event files beside ``history.csv``: one scalar per history column per epoch.

Optional: with ``tensorboard: null`` (the default) they are written when the tensorboard package
is installed; ``true`` without it is a RecipeError; ``false`` never. Imported only when used.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from .._errors import RecipeError

__all__ = ["EventLog"]

SCALARS = ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "val_top5_accuracy", "lr")


class EventLog:
    """Writes each finished epoch's row as scalars ``loss/train``, ``accuracy/val``, ... (rank 0 only)."""

    def __init__(self, run_dir: Path, *, wanted: bool | None) -> None:
        installed = importlib.util.find_spec("tensorboard") is not None
        if wanted and not installed:
            raise RecipeError(
                "tensorboard: true, but the tensorboard package is not installed",
                path="tensorboard",
                hint="pip install tensorboard, or set tensorboard: false",
            )
        self.run_dir = run_dir
        self.enabled = installed and wanted is not False
        self.writer: Any = None

    def write(self, row: dict[str, Any]) -> None:
        if not self.enabled:
            return
        if self.writer is None:
            # opened at the first finished epoch, not at start-up: importing TensorBoard's writer
            # would delay the first training step
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(log_dir=str(self.run_dir))
        for key in SCALARS:
            if row.get(key) is not None:
                split, _, metric = key.partition("_")
                tag = "lr" if key == "lr" else f"{metric}/{split}"
                self.writer.add_scalar(tag, row[key], global_step=row["epoch"])
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
