"""Evaluation: loss/accuracy sums over batches, a split in eval mode, and a trained model loaded for evaluation."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .._errors import CheckpointError
from ._augment import tta_probabilities
from ._clock import Clock
from ._datasets import load_data
from ._distributed import SINGLE_PROCESS, Dist, resolve_device
from ._finetune import build_model
from ._preprocess import Preprocess, batch_indices, stage
from ._recipe import Recipe, ReportsSection
from ._reports import PICTURES, write_reports
from ._split import DataBundle, Feed, ImageSplit

__all__ = [
    "EvalContext",
    "Scores",
    "TestResult",
    "Totals",
    "autocast",
    "evaluate_split",
    "load_for_evaluation",
    "load_weights_file",
    "test_and_report",
]


@dataclass
class Totals:
    """Sums over batches, kept as tensors on the device so no step waits for the GPU."""

    loss: torch.Tensor
    correct: torch.Tensor
    count: torch.Tensor

    @classmethod
    def zeros(cls, device: torch.device) -> Totals:
        z = torch.zeros((), dtype=torch.float64, device=device)
        return cls(z.clone(), z.clone(), z.clone())

    def add(self, logits: torch.Tensor, labels: torch.Tensor, loss: torch.Tensor) -> None:
        n = labels.shape[0]
        self.loss += loss.detach().double() * n
        self.correct += (logits.detach().argmax(dim=1) == labels).sum()
        self.count += n

    def reduce(self, dist: Dist) -> Totals:
        if dist.active:
            import torch.distributed as tdist

            stacked = torch.stack([self.loss, self.correct, self.count])
            tdist.all_reduce(stacked)
            return Totals(stacked[0], stacked[1], stacked[2])
        return self

    def means(self) -> tuple[float, float]:
        count = max(float(self.count), 1.0)
        return float(self.loss) / count, float(self.correct) / count

    def state(self) -> dict[str, torch.Tensor]:
        return {"loss": self.loss.cpu(), "correct": self.correct.cpu(), "count": self.count.cpu()}

    @classmethod
    def from_state(cls, state: dict[str, torch.Tensor], device: torch.device) -> Totals:
        return cls(state["loss"].to(device), state["correct"].to(device), state["count"].to(device))


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager[Any]:
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    if precision == "amp" and device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.float16)
    return contextlib.nullcontext()


@dataclass
class Scores:
    """A split's mean loss, top-1 accuracy, top-5 accuracy (more than 5 classes only) and predictions."""

    loss: float
    accuracy: float
    top5: float | None
    predictions: torch.Tensor | None  # (N,) on the CPU, when asked for


@torch.no_grad()
def evaluate_split(
    model: nn.Module,
    split: ImageSplit,
    pre: Preprocess,
    *,
    prepared: bool,
    batch_size: int,
    precision: str = "fp32",
    dist: Dist = SINGLE_PROCESS,
    keep_predictions: bool = False,
) -> Scores:
    """Loss, accuracy (and predictions) of ``model`` on ``split``, in eval mode."""
    was_training = model.training
    model.eval()
    device = pre.device
    totals = Totals.zeros(device)
    top5 = torch.zeros((), dtype=torch.float64, device=device)
    preds: list[torch.Tensor] = []
    num_classes = 0
    index_batches = batch_indices(len(split), batch_size, generator=None, rank=dist.rank, world=dist.world)
    for x, y in split.batches(index_batches, pre, Feed(prepared)):
        with autocast(device, precision):
            logits = _logits(model, x, pre)
        loss = F.cross_entropy(logits.float(), y)
        totals.add(logits, y, loss)
        num_classes = logits.shape[1]
        if num_classes > 5:
            top5 += (logits.topk(5, dim=1).indices == y[:, None]).any(dim=1).sum()
        if keep_predictions:
            preds.append(logits.argmax(dim=1).cpu())
    model.train(was_training)
    totals = totals.reduce(dist)
    if dist.active:
        import torch.distributed as tdist

        tdist.all_reduce(top5)
    loss_mean, acc = totals.means()
    return Scores(
        loss_mean,
        acc,
        float(top5) / max(float(totals.count), 1.0) if num_classes > 5 else None,
        torch.cat(preds) if keep_predictions and preds else None,
    )


def _logits(model: nn.Module, x: torch.Tensor, pre: Preprocess) -> torch.Tensor:
    """The model's logits for ``x``; with test-time augmentation the log of the views' mean
    probabilities, which argmax, top-5 and cross-entropy read as they read logits."""
    tta = pre.section.tta
    if not tta.enabled:
        logits: torch.Tensor = model(x)
        return logits
    return tta_probabilities(model, x, tta, fill=pre.fill).clamp_min(1e-12).log()


@dataclass
class TestResult:
    """A model's test-set numbers, predictions and the report files written from them."""

    loss: float
    accuracy: float
    top5: float | None  # more than 5 classes only
    split: ImageSplit  # the test split as evaluated (normalized on the device when it fits)
    predictions: torch.Tensor  # (N,) predicted class per test image, on the CPU
    files: dict[str, str]


def test_and_report(
    model: nn.Module,
    data: DataBundle,
    pre: Preprocess,
    *,
    batch_size: int,
    precision: str = "fp32",
    reports_to: Path | None,
    history: Sequence[dict[str, Any]],
    section: ReportsSection,
    what: Sequence[str] = PICTURES,
    clock: Clock | None = None,
) -> TestResult:
    """Evaluate on the test split; with ``reports_to``, write the reports and pictures there."""
    with clock.phase("test") if clock is not None else contextlib.nullcontext():  # the reports time themselves
        split, prepared = stage(pre, data.test)
        scores = evaluate_split(
            model, split, pre, prepared=prepared, batch_size=batch_size, precision=precision, keep_predictions=True
        )
    predictions = scores.predictions if scores.predictions is not None else torch.zeros(0, dtype=torch.int64)
    files: dict[str, str] = {}
    if reports_to is not None and len(predictions):
        files = write_reports(
            reports_to,
            model=model,
            data=data,
            test=split,
            test_prepared=prepared,
            pre=pre,
            predictions=predictions,
            history=history,
            section=section,
            what=what,
            clock=clock,
        )
    return TestResult(scores.loss, scores.accuracy, scores.top5, split, predictions, files)


@dataclass
class EvalContext:
    """A trained model with its data, ready for evaluate/visualize."""

    recipe: Recipe
    data: DataBundle
    pre: Preprocess
    model: nn.Module
    weights: Path


def load_weights_file(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from a zoo checkpoint, a plain .pth state dict or a .safetensors file, loaded safely."""
    from .._weights import read_weights  # the one reader of weight files (zoo.build(pretrained=...) uses it too)

    return read_weights(path)


def load_for_evaluation(recipe: Recipe, *, weights: Path, device: str | None = None) -> EvalContext:
    """Data, preprocessing and the model of ``recipe`` with ``weights`` loaded (no pretrained download)."""
    finetune = recipe.finetune.model_copy(update={"pretrained": None})
    recipe = recipe.model_copy(update={"finetune": finetune, "device": device or recipe.device})
    dev = resolve_device(recipe.device)
    data = load_data(recipe.data)
    pre = Preprocess(recipe.data, data_channels=data.channels, mean=data.mean, std=data.std, device=dev)
    model = build_model(recipe, data, channels=recipe.data.channels or data.channels)
    state = load_weights_file(weights)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise CheckpointError(
            f"weights {weights} do not fit model {recipe.model.name!r}: {str(exc).splitlines()[0]}",
            hint="evaluate with the recipe the weights were trained with",
        ) from None
    return EvalContext(recipe, data, pre, model.to(dev).eval(), weights)
