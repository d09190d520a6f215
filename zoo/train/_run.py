"""One training run: its parts, its counters, the epochs, and what goes into ``last.pt``.

Reproducibility: batch order and augmentation are seeded per epoch (``_epoch``); dropout uses the
global torch generator. All three states are saved in every checkpoint, so a resumed run computes
exactly what an uninterrupted one would (bitwise on the same machine and thread count, single
process).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .._errors import RecipeError
from ._checkpoint import save_checkpoint
from ._clock import Clock
from ._distributed import Dist, resolve_device
from ._epoch import Counters, EpochTrainer
from ._evaluate import evaluate_split
from ._finetune import set_trainable
from ._recipe import Recipe
from ._resume import capture, restore
from ._rundir import write_history
from ._setup import assemble
from ._step import Stepper
from ._tensorboard import EventLog
from ._tracking import BestTracker, EarlyStopping

__all__ = ["Run"]

Log = Callable[[str], None]


class Run:
    """State of one training run; its methods are the phases of :func:`zoo.train.train`."""

    def __init__(self, recipe: Recipe, run_dir: Path, *, dist: Dist, progress: bool, log: Log) -> None:
        self.recipe = recipe
        self.run_dir = run_dir
        self.dist = dist
        self.progress = progress and dist.main
        self.log = log if dist.main else (lambda _msg: None)
        self.device = resolve_device(recipe.device, dist)
        self.precision = self._precision()
        self.counters = Counters()
        self.best = BestTracker(recipe.checkpoint.monitor)
        self.stopping = EarlyStopping(recipe.early_stopping)
        self.events = EventLog(run_dir, wanted=recipe.tensorboard if dist.main else False)
        self.clock = Clock()

    def _precision(self) -> str:
        wanted = self.recipe.precision
        if wanted == "amp" and self.device.type != "cuda":
            self.log(f"note: precision 'amp' needs CUDA; training in fp32 on {self.device.type}")
            return "fp32"
        return wanted  # bf16 on the CPU: autocast supports it (slower than fp32 on many CPUs)

    def setup(self, *, layout: bool | None = None) -> None:
        """Data, model, optimizer, schedule; ``layout`` is a saved channels_last choice (resuming)."""
        self.parts = assemble(
            self.recipe,
            dist=self.dist,
            device=self.device,
            precision=self.precision,
            log=self.log,
            layout=layout,
            clock=self.clock,
        )
        self.stepper = Stepper(self.recipe, self.parts, device=self.device, precision=self.precision, dist=self.dist)
        self.epochs = EpochTrainer(
            self.recipe,
            self.parts,
            self.stepper,
            self.counters,
            dist=self.dist,
            device=self.device,
            progress=self.progress,
            save_last=self.save_last,
        )

    # ---- checkpoints

    def state(self) -> dict[str, Any]:
        """Everything ``last.pt`` holds (see ``_resume``)."""
        return capture(self)

    def save_last(self) -> None:
        if self.dist.main:
            save_checkpoint(self.run_dir / "last.pt", self.state())

    def restore(self, state: dict[str, Any]) -> None:
        """Continue from a ``last.pt`` state (a state that does not fit the recipe is a CheckpointError)."""
        restore(self, state)

    # ---- epochs

    def fit(self, *, interrupt_after: int | None = None) -> None:
        plan = self.parts.plan
        while self.counters.epoch < self.recipe.epochs and not self.stopping.should_stop:
            epoch = self.counters.epoch + 1
            frozen = plan.frozen_at(epoch)
            if epoch > 1 and frozen != plan.frozen_at(epoch - 1):
                self.parts.trainable = set_trainable(self.parts.model, frozen)
                self.log(f"epoch {epoch}: unfroze parameters; {self.parts.trainable:,} now train")
                self.stepper.wrap()  # DDP must see the new set of trainable parameters
            started = time.perf_counter()
            self.clock.mark_first_step()
            train_loss, train_acc = self.epochs.run(epoch, frozen, interrupt_after=interrupt_after)
            _check_finite(train_loss, epoch)
            row = self._end_epoch(epoch, train_loss, train_acc, time.perf_counter() - started)
            self.log(_epoch_line(row, self.recipe.epochs))
            if self.stopping.should_stop and epoch < self.recipe.epochs:
                self.log(self.stopping.message(epoch, best_epoch=self.best.epoch))

    def _end_epoch(self, epoch: int, train_loss: float, train_acc: float, seconds: float) -> dict[str, Any]:
        parts, c = self.parts, self.counters
        row: dict[str, Any] = {
            "epoch": epoch,
            "train_loss": train_loss,
            "train_accuracy": train_acc,
            "val_loss": None,
            "val_accuracy": None,
            "lr": parts.optimizer.param_groups[0]["lr"],
            "seconds": round(seconds, 3),
        }
        if parts.val_split is not None:
            with self.clock.phase("validation"):
                scores = evaluate_split(
                    parts.model,
                    parts.val_split,
                    parts.pre,
                    prepared=parts.val_prepared,
                    batch_size=self.recipe.effective_eval_batch_size,
                    precision=self.precision,
                    dist=self.dist,
                )
            row["val_loss"], row["val_accuracy"] = scores.loss, scores.accuracy
            if scores.top5 is not None:
                row["val_top5_accuracy"] = scores.top5
        c.history.append(row)
        c.epoch = epoch
        self.stepper.end_epoch(row)
        improved = self.best.update(row)
        self.stopping.update(c.history)
        # best.pt before last.pt: a kill between the two leaves last.pt at the previous epoch, and
        # the resumed run redoes this epoch bit-identically (rewriting the same best.pt); the other
        # order could leave last.pt naming this epoch as best while best.pt holds an older one
        with self.clock.phase("checkpoints"):
            if improved and self.dist.main:
                save_checkpoint(self.run_dir / "best.pt", {"model": self.state()["model"], "epoch": epoch})
            self.save_last()
            if self.dist.main:
                write_history(self.run_dir, c.history)
        if self.dist.main:
            self.events.write(row)
        return row



def _check_finite(train_loss: float, epoch: int) -> None:
    """A diverged run stops with an error instead of training on NaN and reporting chance accuracy."""
    if not math.isfinite(train_loss):
        raise RecipeError(
            f"the training loss became {train_loss} in epoch {epoch}: the run diverged "
            "(last.pt keeps the previous epoch)",
            path="optimizer.lr",
            hint="lower optimizer.lr, add schedule warm-up or grad_clip, or check the data's normalization",
        )


def _epoch_line(row: dict[str, Any], epochs: int) -> str:
    text = f"epoch {row['epoch']}/{epochs}: loss {row['train_loss']:.4f} acc {row['train_accuracy']:.2%}"
    if row["val_loss"] is not None:
        text += f" | val_loss {row['val_loss']:.4f} val_acc {row['val_accuracy']:.2%}"
    if row.get("val_top5_accuracy") is not None:
        text += f" top5 {row['val_top5_accuracy']:.2%}"
    return text + f" | lr {row['lr']:.3g} | {row['seconds']:.1f}s"
