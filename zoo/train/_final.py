"""The end of a run: test-set evaluation (best or last weights), reports, final weights, ``metrics.json``."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ._checkpoint import atomic_write_bytes, atomic_write_text, load_checkpoint
from ._evaluate import evaluate_split
from ._run import Run
from ._setup import stage

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
        parts.model.load_state_dict(load_checkpoint(run.run_dir / "best.pt")["model"])
    clock = run.clock
    with clock.phase("test"):
        test_split, test_prepared = stage(parts.pre, parts.data.test)
        test_loss, test_acc, preds = evaluate_split(
            parts.model,
            test_split,
            parts.pre,
            prepared=test_prepared,
            batch_size=recipe.effective_eval_batch_size,
            precision=run.precision,
            keep_predictions=True,
        )
    metrics = _metrics(run, test_loss, test_acc)
    pictures: dict[str, str] = {}
    if recipe.reports.enabled and preds is not None:
        from ._reports import write_reports

        pictures = write_reports(
            run.run_dir,
            model=parts.model,
            data=parts.data,
            test=test_split,
            test_prepared=test_prepared,
            pre=parts.pre,
            predictions=preds,
            history=run.counters.history,
            section=recipe.reports,
            what=recipe.reports.pictures,
            clock=clock,
        )
        metrics["reports"] = pictures
    with clock.phase("weights"):
        buffer = io.BytesIO()
        torch.save({k: v.detach().cpu() for k, v in parts.model.state_dict().items()}, buffer)
        atomic_write_bytes(run.run_dir / "weights.pth", buffer.getvalue())
    metrics["timings"] = clock.report()
    atomic_write_text(run.run_dir / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    return TrainResult(run.run_dir, metrics, pictures)


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
