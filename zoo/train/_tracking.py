"""Epoch bookkeeping that decides things: the best epoch so far (best.pt) and early stopping."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ._recipe import EarlyStoppingSection

__all__ = ["BestTracker", "EarlyStopping"]

Row = dict[str, Any]


class BestTracker:
    """The best value of the monitored metric and its epoch; without validation, the lowest train loss."""

    def __init__(self, monitor: str) -> None:
        self.monitor = monitor
        self.value: float | None = None
        self.epoch = 0

    def update(self, row: Row) -> bool:
        """Take one finished epoch's row; True when it is the new best."""
        monitor = self.monitor
        value = row[monitor] if row[monitor] is not None else -row["train_loss"]
        higher_is_better = monitor == "val_accuracy" or row[monitor] is None
        better = self.value is None or (value > self.value if higher_is_better else value < self.value)
        if better:
            self.value, self.epoch = value, row["epoch"]
        return better


class EarlyStopping:
    """Counts epochs without an improvement of more than ``min_delta``; stops after ``patience`` of them."""

    def __init__(self, section: EarlyStoppingSection | None) -> None:
        self.section = section
        self.bad_epochs = 0

    def update(self, history: Sequence[Row]) -> None:
        """Take the history whose last row is the epoch that just ended."""
        es = self.section
        row = history[-1]
        if es is None or row[es.monitor] is None:
            return
        seen = [r[es.monitor] for r in history[:-1] if r[es.monitor] is not None]
        if not seen:
            self.bad_epochs = 0
            return
        value = row[es.monitor]
        if es.monitor == "val_loss":
            improved = value < min(seen) - es.min_delta
        else:
            improved = value > max(seen) + es.min_delta
        self.bad_epochs = 0 if improved else self.bad_epochs + 1

    def message(self, epoch: int, *, best_epoch: int) -> str:
        """The line printed when it fires."""
        es = self.section
        if es is None:
            return ""
        return (
            f"early stopping after epoch {epoch}: {es.monitor} has not improved by more than "
            f"{es.min_delta:g} for {self.bad_epochs} epochs (patience {es.patience}); "
            f"best epoch {best_epoch}"
        )

    @property
    def should_stop(self) -> bool:
        return self.section is not None and self.bad_epochs >= self.section.patience
