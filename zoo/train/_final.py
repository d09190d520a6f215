"""The end of a run: test-set evaluation (best or last weights), reports, final weights, ``metrics.json``."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .._errors import CheckpointError
from ._checkpoint import atomic_write_bytes, atomic_write_text, load_checkpoint
from ._evaluate import test_and_report
from ._predict import METADATA_KEY, run_info
from ._run import Run

__all__ = ["TrainResult", "finish"]


@dataclass
class TrainResult:
    """What a finished run produced."""

    run_dir: Path
    metrics: dict[str, Any]
    pictures: dict[str, str] = field(default_factory=dict)


def finish(run: Run) -> TrainResult:
    """Evaluate on the test set, write reports, ``weights.pth`` and ``metrics.json`` (last: the run is done)."""
    recipe, parts = run.recipe, run.parts
    if recipe.checkpoint.test_with == "best" and (run.run_dir / "best.pt").is_file():
        best = load_checkpoint(run.run_dir / "best.pt")
        if best.get("epoch") != run.best.epoch:  # the metrics must describe the weights tested
            raise CheckpointError(
                f"{run.run_dir / 'best.pt'} holds epoch {best.get('epoch')} but the run's best epoch is {run.best.epoch}",
                hint="the file was replaced from outside the run; test with checkpoint.test_with: last",
            )
        parts.model.load_state_dict(best["model"])
    clock = run.clock
    test = test_and_report(
        parts.model,
        parts.data,
        parts.pre,
        batch_size=recipe.effective_eval_batch_size,
        precision=run.precision,
        reports_to=run.run_dir if recipe.reports.enabled else None,
        history=run.counters.history,
        section=recipe.reports,
        what=recipe.reports.pictures,
        clock=clock,
    )
    metrics = _metrics(run, test.loss, test.accuracy)
    if test.top5 is not None:
        metrics["test_top5_accuracy"] = test.top5
    if test.files:
        metrics["reports"] = test.files
    with clock.phase("weights"):
        _write_weights(run)
    metrics["timings"] = clock.report()
    atomic_write_text(run.run_dir / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    return TrainResult(run.run_dir, metrics, test.files)


def _metrics(run: Run, test_loss: float, test_acc: float) -> dict[str, Any]:
    recipe, parts, c = run.recipe, run.parts, run.counters
    seen = c.images_seen * run.dist.world  # every process trains on its share of each batch
    return {
        "recipe": recipe.name,
        "model": recipe.model.name,
        "dataset": recipe.data.dataset,
        "test_accuracy": test_acc,
        "test_loss": test_loss,
        "test_images": len(parts.data.test),
        "epochs_completed": c.epoch,
        "stopped_early": c.epoch < recipe.epochs,
        "best_epoch": run.best.epoch,
        "best_" + recipe.checkpoint.monitor: run.best.value,
        "tested_with": recipe.checkpoint.test_with,
        "train_seconds": round(c.train_seconds, 3),
        "images_per_second": round(seen / c.train_seconds, 1) if c.train_seconds else None,
        "device": str(run.device),
        "precision": run.precision,
        "channels_last": parts.channels_last,
        "world_size": run.dist.world,
        "parameters": sum(p.numel() for p in parts.model.parameters()),
        "trainable_parameters": parts.trainable,
        "history": c.history,
    }


def _write_weights(run: Run) -> None:
    """weights.pth (a plain state dict) and weights.safetensors (with the run information as metadata)."""
    from safetensors.torch import save

    state = {k: v.detach().cpu().contiguous() for k, v in run.parts.model.state_dict().items()}
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(run.run_dir / "weights.pth", buffer.getvalue())
    info = json.dumps(run_info(run.recipe, run.parts.data))
    # safetensors refuses tensors that share memory; clones make each one its own
    tensors = {k: v.clone() for k, v in state.items()}
    atomic_write_bytes(run.run_dir / "weights.safetensors", save(tensors, metadata={METADATA_KEY: info}))
