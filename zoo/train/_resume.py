"""The state of a run in ``last.pt``, and continuing from it.

Saved: model, optimizer, scheduler, scaler, the global (and CUDA) generator, the augmentation
generator and running sums of an unfinished epoch, counters, history, best and early-stopping
state, the layout choice and the recipe. A resumed run continues bit-identically (single process).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from .._errors import CheckpointError, RecipeError
from ._evaluate import Totals

if TYPE_CHECKING:
    from ._run import Run

__all__ = ["capture", "restore"]


def capture(run: Run) -> dict[str, Any]:
    """The state ``last.pt`` holds, tensors on the CPU."""
    parts, c = run.parts, run.counters
    rng: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and run.device.type == "cuda":
        rng["cuda"] = torch.cuda.get_rng_state(run.device)
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
        "best": {"value": run.best.value, "epoch": run.best.epoch, "bad_epochs": run.stopping.bad_epochs},
        "train_seconds": c.train_seconds,
        "images_seen": c.images_seen,
        "channels_last": parts.channels_last,
        "recipe": run.recipe.to_data(),
    }


def restore(run: Run, state: dict[str, Any]) -> None:
    """Put ``run`` (already set up from the same recipe) where ``state`` left it."""
    try:
        _restore(run, state)
    except (KeyError, RuntimeError, ValueError, TypeError, AttributeError, IndexError) as exc:
        # a checkpoint whose digest is right can still hold the wrong structure (another tool's
        # file, another recipe's model): every part of it is read inside this guard
        raise CheckpointError(
            f"the checkpoint in {run.run_dir} does not fit this recipe: {type(exc).__name__}: "
            f"{(str(exc).splitlines() or [''])[0]}",
            hint="resume with the recipe the run was started with (its copy is recipe.yaml in the run directory)",
        ) from None
    _report_changes(run, state.get("recipe"))


def _restore(run: Run, state: dict[str, Any]) -> None:
    parts, c = run.parts, run.counters
    parts.model.load_state_dict(state["model"])
    parts.optimizer.load_state_dict(state["optimizer"])
    if parts.scheduler is not None and state.get("scheduler") is not None:
        parts.scheduler.load_state_dict(state["scheduler"])
    if parts.scaler is not None and state.get("scaler") is not None:
        parts.scaler.load_state_dict(state["scaler"])
    c.epoch, c.step_in_epoch = int(state["epoch"]), int(state["step_in_epoch"])
    c.global_step, c.history = int(state["global_step"]), [dict(row) for row in state["history"]]
    best = state["best"]
    run.best.value = None if best["value"] is None else float(best["value"])
    run.best.epoch = int(best["epoch"])
    run.stopping.bad_epochs = int(best["bad_epochs"])
    c.train_seconds = float(state.get("train_seconds", 0.0))
    c.images_seen = int(state.get("images_seen", 0))
    c.accum = Totals.from_state(state["accum"], run.device) if state.get("accum") else None
    c.aug_state = state["rng"].get("aug") if c.step_in_epoch else None
    if not run.dist.active:  # other processes keep their own dropout streams
        torch.set_rng_state(state["rng"]["torch"])
        if "cuda" in state["rng"] and run.device.type == "cuda":
            torch.cuda.set_rng_state(state["rng"]["cuda"], run.device)


def _report_changes(run: Run, saved: Any) -> None:
    if not isinstance(saved, dict):
        return
    now = run.recipe.to_data()
    if saved.get("epochs") != now["epochs"] and now["schedule"]["name"] == "onecycle":
        raise RecipeError(
            f"the run was started with epochs={saved.get('epochs')} and a onecycle schedule, whose length "
            f"is fixed at the start; it cannot continue with epochs={now['epochs']}",
            path="epochs",
            hint=f"start a new run from its weights: --set finetune.pretrained={run.run_dir / 'weights.pth'}",
        )
    changed = [k for k in now if k not in ("output_dir", "progress") and saved.get(k) != now[k]]
    if changed:
        run.log(f"note: resuming with settings changed since the run started: {', '.join(changed)}")
