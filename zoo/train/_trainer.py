"""The trainer: one recipe in, one run directory out.

A run directory holds ``recipe.yaml`` (the resolved recipe), ``last.pt`` (everything needed to
continue: model, optimizer, scheduler, scaler, RNG states, position inside the epoch, history),
``best.pt`` (the best weights by the monitored metric), ``weights.pth`` (the final weights as a
plain state dict, usable as ``finetune.pretrained`` of another recipe), ``history.json`` /
``history.csv`` (per epoch, rewritten atomically after each one), ``metrics.json`` (written last:
its presence means the run finished) and the reports and pictures.

The pieces: ``_setup`` (data, model, optimizer), ``_run`` (epochs and checkpoints), ``_epoch``
(steps inside an epoch), ``_final`` (test evaluation, reports, weights), ``_distributed``
(torchrun), ``_rundir`` (where the run goes).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ._checkpoint import (
    RunLock,
    atomic_write_text,
    check_free_space,
    check_writable,
    load_checkpoint,
    remove_stale_temporaries,
)
from ._distributed import Dist, init_distributed, process_group, shared_run_dir
from ._final import TrainResult, finish
from ._overrides import dump_recipe
from ._predict import run_info, write_run_info
from ._recipe import Recipe
from ._run import Run
from ._rundir import resolve_run_dir, write_history

__all__ = ["RunInterrupted", "TrainResult", "train"]

Log = Callable[[str], None]


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C (or a test's ``interrupt_after``) during a run; says whether ``--resume`` can continue it."""

    def __init__(self, run_dir: Path, *, resumable: bool) -> None:
        super().__init__(f"interrupted {'after' if resumable else 'before'} the first checkpoint of {run_dir}")
        self.run_dir, self.resumable = run_dir, resumable


def train(
    recipe: Recipe,
    *,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool | None = None,
    log: Log = print,
    interrupt_after: int | None = None,
) -> TrainResult:
    """Train ``recipe`` into its run directory and evaluate it on the test set.

    ``resume`` continues from the run directory's ``last.pt`` (a run without one starts fresh);
    ``interrupt_after`` raises KeyboardInterrupt after that many optimizer steps (tests use it to
    stand for a crash).
    """
    dist = init_distributed(recipe.device)
    with process_group(dist):
        folder = resolve_run_dir(recipe, resume=resume, overwrite=overwrite) if dist.main else None
        run_dir = shared_run_dir(dist, folder)
        lock = RunLock(run_dir)
        if dist.main:
            check_writable(run_dir)
            lock.acquire()
        try:
            if dist.main:
                remove_stale_temporaries(run_dir)
            return _train_locked(
                recipe, run_dir, dist=dist, resume=resume, progress=progress, log=log, interrupt_after=interrupt_after
            )
        except KeyboardInterrupt as exc:
            resumable = (run_dir / "last.pt").is_file()
            if dist.main and resumable:
                log(f"interrupted; the last complete checkpoint is {run_dir / 'last.pt'}")
            raise RunInterrupted(run_dir, resumable=resumable) from exc
        finally:
            lock.release()


def _train_locked(
    recipe: Recipe,
    run_dir: Path,
    *,
    dist: Dist,
    resume: bool,
    progress: bool | None,
    log: Log,
    interrupt_after: int | None,
) -> TrainResult:
    last = run_dir / "last.pt"
    state = load_checkpoint(last, map_location="cpu") if resume and last.is_file() else None
    if state is not None and _finished(recipe, run_dir, state):
        log(
            f"{run_dir} already finished ({int(state['epoch'])} epochs); nothing to train. Its results are in "
            f"{run_dir / 'metrics.json'}; to train longer, resume with a larger --epochs"
        )
        return TrainResult(run_dir, json.loads((run_dir / "metrics.json").read_text()))
    run = Run(recipe, run_dir, dist=dist, progress=recipe.progress if progress is None else progress, log=log)
    try:
        return _run_locked(run, state, resume=resume, log=log, interrupt_after=interrupt_after)
    finally:
        run.events.close()


def _finished(recipe: Recipe, run_dir: Path, state: dict[str, Any]) -> bool:
    """True when the run wrote its metrics and has nothing left to do under this recipe."""
    if not (run_dir / "metrics.json").is_file():
        return False
    es = recipe.early_stopping
    stopped = es is not None and int(state.get("best", {}).get("bad_epochs", 0)) >= es.patience
    return int(state.get("epoch", 0)) >= recipe.epochs or stopped


def _run_locked(
    run: Run, state: dict[str, Any] | None, *, resume: bool, log: Log, interrupt_after: int | None
) -> TrainResult:
    recipe, run_dir, dist = run.recipe, run.run_dir, run.dist
    saved_layout = state.get("channels_last") if state is not None else None
    run.setup(layout=bool(saved_layout) if saved_layout is not None else None)
    if dist.main:
        _check_space(run)
    if state is not None:
        run.restore(state)
        if dist.main:  # continuing a finished run with more epochs: it is unfinished until it ends again
            (run_dir / "metrics.json").unlink(missing_ok=True)
            write_history(run_dir, run.counters.history)  # a kill between last.pt and the history files: they catch up
        c = run.counters
        where = f"epoch {c.epoch + 1}" + (f", step {c.step_in_epoch}" if c.step_in_epoch else "")
        if dist.main:
            log(f"resuming {run_dir} at {where}")
    elif resume and dist.main:
        log(f"note: {run_dir} has no checkpoint yet; starting from the beginning")
    if dist.main:  # after restore: a recipe the checkpoint refuses never replaces the run's own
        atomic_write_text(run_dir / "recipe.yaml", dump_recipe(recipe))
        write_run_info(run_dir, run_info(recipe, run.parts.data))  # classes and preprocessing, for predict
    if dist.main:
        log(
            f"training {recipe.model.name} on {recipe.data.dataset} ({len(run.parts.train_split)} train, "
            f"{len(run.parts.val_split) if run.parts.val_split is not None else 0} val, {len(run.parts.data.test)} test images) "
            f"on {run.device}" + (f" x{dist.world} processes" if dist.active else "")
        )
    run.fit(interrupt_after=interrupt_after)
    if not dist.main:
        return TrainResult(run_dir, {})
    return finish(run)


def _check_space(run: Run) -> None:
    weights = sum(p.numel() * p.element_size() for p in run.parts.model.parameters())
    # last.pt (weights + up to two optimizer slots), best.pt, weights.pth, a temporary copy
    check_free_space(run.run_dir, needed=weights * 8 + 16 * 1024**2)
