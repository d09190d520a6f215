"""Where a run's wall time goes: seconds per phase, written to ``metrics.json`` as ``timings``.

A run is more than its training loop (start-up imports, data loading, the memory-layout probe,
checkpoints, the final test evaluation, reports and pictures); ``benchmarks/bench_run_overhead.py``
prints this breakdown. ``first_step_at`` is the wall-clock time (``time.time()``) at which the
first training step began, so a caller that noted when it launched the command can tell how long
the start-up took.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

__all__ = ["Clock"]


class Clock:
    """Accumulates seconds per named phase; phases may repeat (checkpoints: once per epoch)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.first_step_at: float | None = None

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.add(name, time.perf_counter() - start)

    def add(self, name: str, seconds: float) -> None:
        self.seconds[name] = self.seconds.get(name, 0.0) + seconds

    def mark_first_step(self) -> None:
        if self.first_step_at is None:
            self.first_step_at = time.time()

    def report(self) -> dict[str, Any]:
        """Rounded seconds per phase, plus ``first_step_at`` when training took a step in this process."""
        out: dict[str, Any] = {name: round(value, 4) for name, value in self.seconds.items()}
        if self.first_step_at is not None:
            out["first_step_at"] = round(self.first_step_at, 4)
        return out
