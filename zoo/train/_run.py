"""One training run: its parts, its counters, the epochs, and what goes into ``last.pt``.

Reproducibility: batch order and augmentation are seeded per epoch (``_epoch``); dropout uses the
global torch generator. All three states are saved in every checkpoint, so a resumed run computes
exactly what an uninterrupted one would (bitwise on the same machine and thread count, single
process).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from .._errors import CheckpointError, RecipeError
from ._checkpoint import save_checkpoint
from ._clock import Clock
from ._distributed import Dist, resolve_device
from ._epoch import Counters, EpochTrainer
from ._evaluate import Totals, evaluate_split
from ._finetune import set_trainable
from ._recipe import Recipe
from ._rundir import write_history
from ._setup import assemble
from ._step import Stepper
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
        parts, c = self.parts, self.counters
        rng: dict[str, Any] = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available() and self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        if c.aug_state is not None:
            rng["aug"] = c.aug_state
        return {
            "epoch": c.epoch,
            "step_in_epoch": c.step_in_epoch,
            "global_step": c.global_step,
            "model": {k: v.detach().cpu() for k, v in parts.model.state_dict().items()},
            "optimizer": parts.optimizer.state_dict(),
            "scheduler": parts.scheduler.state_dict() if parts.scheduler is not None else None,
            "scaler": parts.scaler.state_dict() if parts.scaler is not None else None,
            "rng": rng,
            "accum": c.accum.state() if c.accum is not None and c.step_in_epoch else None,
            "history": c.history,
            "best": {"value": self.best.value, "epoch": self.best.epoch, "bad_epochs": self.stopping.bad_epochs},
            "train_seconds": c.train_seconds,
            "images_seen": c.images_seen,
            "channels_last": parts.channels_last,
            "recipe": self.recipe.to_data(),
        }

    def save_last(self) -> None:
        if self.dist.main:
            save_checkpoint(self.run_dir / "last.pt", self.state())

    def restore(self, state: dict[str, Any]) -> None:
        parts, c = self.parts, self.counters
        try:
            parts.model.load_state_dict(state["model"])
            parts.optimizer.load_state_dict(state["optimizer"])
            if parts.scheduler is not None and state.get("scheduler") is not None:
                parts.scheduler.load_state_dict(state["scheduler"])
            if parts.scaler is not None and state.get("scaler") is not None:
                parts.scaler.load_state_dict(state["scaler"])
            c.epoch, c.step_in_epoch = int(state["epoch"]), int(state["step_in_epoch"])
            c.global_step, c.history = int(state["global_step"]), list(state["history"])
            best = state["best"]
        except (KeyError, RuntimeError, ValueError, TypeError) as exc:
            raise CheckpointError(
                f"the checkpoint in {self.run_dir} does not fit this recipe: {str(exc).splitlines()[0]}",
                hint="resume with the recipe the run was started with (its copy is recipe.yaml in the run directory)",
            ) from None
        self.best.value, self.best.epoch = best["value"], int(best["epoch"])
        self.stopping.bad_epochs = int(best["bad_epochs"])
        c.train_seconds = float(state.get("train_seconds", 0.0))
        c.images_seen = int(state.get("images_seen", 0))
        c.accum = Totals.from_state(state["accum"], self.device) if state.get("accum") else None
        c.aug_state = state["rng"].get("aug") if c.step_in_epoch else None
        if not self.dist.active:  # other processes keep their own dropout streams
            torch.set_rng_state(state["rng"]["torch"])
            if "cuda" in state["rng"] and self.device.type == "cuda":
                torch.cuda.set_rng_state(state["rng"]["cuda"], self.device)
        self._report_changes(state.get("recipe"))

    def _report_changes(self, saved: Any) -> None:
        if not isinstance(saved, dict):
            return
        now = self.recipe.to_data()
        if saved.get("epochs") != now["epochs"] and now["schedule"]["name"] == "onecycle":
            raise RecipeError(
                f"the run was started with epochs={saved.get('epochs')} and a onecycle schedule, whose length "
                f"is fixed at the start; it cannot continue with epochs={now['epochs']}",
                path="epochs",
                hint=f"start a new run from its weights: --set finetune.pretrained={self.run_dir / 'weights.pth'}",
            )
        changed = [k for k in now if k not in ("output_dir", "progress") and saved.get(k) != now[k]]
        if changed:
            self.log(f"note: resuming with settings changed since the run started: {', '.join(changed)}")

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
            row = self._end_epoch(epoch, train_loss, train_acc, time.perf_counter() - started)
            self.log(_epoch_line(row, self.recipe.epochs))

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
                row["val_loss"], row["val_accuracy"], _ = self._validate()
        c.history.append(row)
        c.epoch = epoch
        self.stepper.end_epoch(row)
        improved = self.best.update(row)
        self.stopping.update(c.history)
        with self.clock.phase("checkpoints"):
            self.save_last()
            if improved and self.dist.main:
                save_checkpoint(self.run_dir / "best.pt", {"model": self.state()["model"], "epoch": epoch})
            if self.dist.main:
                write_history(self.run_dir, c.history)
        return row

    def _validate(self) -> tuple[float, float, torch.Tensor | None]:
        parts = self.parts
        assert parts.val_split is not None
        return evaluate_split(
            parts.model,
            parts.val_split,
            parts.pre,
            prepared=parts.val_prepared,
            batch_size=self.recipe.effective_eval_batch_size,
            precision=self.precision,
            dist=self.dist,
        )


def _epoch_line(row: dict[str, Any], epochs: int) -> str:
    text = f"epoch {row['epoch']}/{epochs}: loss {row['train_loss']:.4f} acc {row['train_accuracy']:.2%}"
    if row["val_loss"] is not None:
        text += f" | val_loss {row['val_loss']:.4f} val_acc {row['val_accuracy']:.2%}"
    return text + f" | lr {row['lr']:.3g} | {row['seconds']:.1f}s"
