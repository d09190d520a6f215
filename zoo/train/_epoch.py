"""One training epoch: the batches in their seeded order, the steps, the progress bar, checkpoints inside it.

The order of the batches of epoch ``e`` and the augmentation of its images come from generators
seeded by ``(seed, e)``; a checkpoint inside an epoch saves the augmentation generator and the
running sums, so a run resumed mid-epoch continues exactly where it stopped.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from ._distributed import Dist, epoch_seed
from ._evaluate import Totals
from ._finetune import freeze_bn_stats
from ._recipe import Recipe
from ._setup import Parts, epoch_batches
from ._split import Feed
from ._step import Stepper

__all__ = ["Counters", "EpochTrainer"]


@dataclass
class Counters:
    """Where a run stands; all of it goes into ``last.pt``."""

    history: list[dict[str, Any]] = field(default_factory=list)
    global_step: int = 0
    epoch: int = 0  # completed epochs
    step_in_epoch: int = 0
    accum: Totals | None = None  # running sums of an unfinished epoch
    aug_state: torch.Tensor | None = None  # augmentation generator of an unfinished epoch
    train_seconds: float = 0.0
    images_seen: int = 0


class EpochTrainer:
    """Trains one epoch at a time, from ``counters.step_in_epoch`` on."""

    def __init__(
        self,
        recipe: Recipe,
        parts: Parts,
        stepper: Stepper,
        counters: Counters,
        *,
        dist: Dist,
        device: torch.device,
        progress: bool,
        save_last: Callable[[], None],
    ) -> None:
        self.recipe, self.parts, self.stepper, self.counters = recipe, parts, stepper, counters
        self.dist, self.device, self.progress, self.save_last = dist, device, progress, save_last

    def run(self, epoch: int, frozen: frozenset[str], *, interrupt_after: int | None) -> tuple[float, float]:
        """Train 1-based ``epoch``; returns its (mean loss, accuracy) over every process."""
        recipe, parts, c = self.recipe, self.parts, self.counters
        batches = epoch_batches(recipe, len(parts.train_split), epoch, dist=self.dist, min_batch=parts.min_batch)
        aug = torch.Generator().manual_seed(epoch_seed(recipe.seed, epoch, 1 + self.dist.rank))
        if c.aug_state is not None and c.step_in_epoch:
            aug.set_state(c.aug_state)
        totals = c.accum if (c.accum is not None and c.step_in_epoch) else Totals.zeros(self.device)
        self.stepper.module.train()
        if recipe.finetune.frozen_bn_eval and frozen:
            freeze_bn_stats(parts.model, frozen)
        bar = self._bar(epoch, len(batches), c.step_in_epoch)
        tick = time.perf_counter()
        split = parts.train_split
        todo = batches[c.step_in_epoch :]
        seed = epoch_seed(recipe.seed, epoch, 2)  # decoded images: one augmentation seed per image
        try:
            stream = split.batches(todo, parts.pre, Feed(parts.train_prepared, generator=aug, sample_seed=seed))
            for step, (x, y) in enumerate(stream, start=c.step_in_epoch):
                logits, loss = self.stepper(x, y)
                totals.add(logits, y, loss)
                c.images_seen += int(y.shape[0])
                c.global_step += 1
                c.step_in_epoch = step + 1
                if bar is not None:
                    bar.update(1)
                    if step % 10 == 0 or step + 1 == len(batches):
                        mean_loss, acc = totals.means()
                        bar.set_postfix(loss=f"{mean_loss:.4f}", acc=f"{acc:.2%}", refresh=False)
                self._maybe_checkpoint_inside(step + 1, len(batches), totals, aug)
                if interrupt_after is not None and c.global_step >= interrupt_after:
                    raise KeyboardInterrupt(f"interrupted after step {c.global_step}")
        finally:
            c.train_seconds += time.perf_counter() - tick
            if bar is not None:
                bar.close()
        c.step_in_epoch, c.accum, c.aug_state = 0, None, None
        return totals.reduce(self.dist).means()

    def _maybe_checkpoint_inside(self, done: int, total: int, totals: Totals, aug: torch.Generator) -> None:
        every = self.recipe.checkpoint.every_steps
        if every is None or done == total or self.counters.global_step % every:
            return
        self.counters.accum, self.counters.aug_state = totals, aug.get_state()
        self.save_last()

    def _bar(self, epoch: int, total: int, initial: int) -> Any:
        if not self.progress:
            return None
        from tqdm.auto import tqdm

        return tqdm(
            total=total,
            initial=initial,
            desc=f"epoch {epoch}/{self.recipe.epochs}",
            unit="batch",
            dynamic_ncols=True,
            leave=False,
            file=sys.stderr,
        )
