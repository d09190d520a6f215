"""Evaluation reports: what the seed documents show after training, written into one folder.

:func:`write_reports` writes the text reports (:mod:`._report_text`: classification report,
confusion matrix, misclassified indices) and the pictures asked for (:mod:`._pictures`: curves,
confusion heat map, misclassified images, feature maps, kernels), timing each through the run's
clock. The model probe here runs the model on one test image and keeps each convolution's output.
matplotlib and scikit-learn are imported by those modules only, never by ``import zoo``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ._clock import Clock
from ._pictures import plot_confusion, plot_curves, plot_feature_maps, plot_kernels, plot_misclassified
from ._preprocess import Preprocess
from ._recipe import ReportsSection
from ._report_text import write_text_reports
from ._split import DataBundle, ImageSplit

__all__ = ["PICTURES", "feature_maps", "write_reports"]

PICTURES = ("curves", "confusion", "misclassified", "feature_maps", "kernels")


# --------------------------------------------------------------------------- model probes


def _convolutions(model: nn.Module) -> list[tuple[str, nn.Conv2d]]:
    return [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Conv2d)]


@torch.no_grad()
def feature_maps(model: nn.Module, x: torch.Tensor, *, max_layers: int) -> list[tuple[str, torch.Tensor]]:
    """The output of each of the first ``max_layers`` convolutions for a batch of one image."""
    captured: list[tuple[str, torch.Tensor]] = []
    handles = []
    for name, conv in _convolutions(model)[:max_layers]:

        def hook(_m: nn.Module, _inp: Any, out: torch.Tensor, name: str = name) -> None:
            captured.append((name, out[0].detach().float().cpu()))

        handles.append(conv.register_forward_hook(hook))
    was_training = model.training
    model.eval()
    try:
        model(x)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return captured


# --------------------------------------------------------------------------- everything


def write_reports(
    out_dir: Path,
    *,
    model: nn.Module,
    data: DataBundle,
    test: ImageSplit,
    test_prepared: bool,
    pre: Preprocess,
    predictions: torch.Tensor,
    history: Sequence[dict[str, Any]],
    section: ReportsSection,
    what: Sequence[str] = PICTURES,
    clock: Clock | None = None,
) -> dict[str, str]:
    """Write the text reports and the pictures into ``out_dir``; returns name -> path."""
    clock = clock or Clock()
    out_dir.mkdir(parents=True, exist_ok=True)
    labels = test.labels.cpu()
    preds = predictions.cpu()
    classes = data.classes
    with clock.phase("reports_text"):
        written, matrix, wrong = write_text_reports(out_dir, labels, preds, classes)
    convs = _convolutions(model)
    if "curves" in what and history:
        with clock.phase("picture_curves"):
            written["curves"] = str(plot_curves(history, out_dir / "curves.png"))
    if "confusion" in what:
        with clock.phase("picture_confusion"):
            written["confusion"] = str(plot_confusion(matrix, classes, out_dir / "confusion_matrix.png"))
    if "misclassified" in what:
        with clock.phase("picture_misclassified"):
            shown = wrong[: section.max_misclassified]
            images = _display_images(test, shown, pre, prepared=test_prepared)
            written["misclassified"] = str(
                plot_misclassified(
                    images,
                    labels[shown].tolist(),
                    preds[shown].tolist(),
                    shown.tolist(),
                    classes,
                    out_dir / "misclassified.png",
                    total=len(wrong),
                )
            )
    if "feature_maps" in what and convs:
        with clock.phase("picture_feature_maps"):
            written["feature_maps"] = str(
                _draw_feature_maps(out_dir, model, test, test_prepared, pre, labels, preds, classes, section)
            )
    if "kernels" in what and convs:
        with clock.phase("picture_kernels"):
            name, first = convs[0]
            written["kernels"] = str(
                plot_kernels(first.weight, out_dir / "kernels.png", name=f"first convolution '{name}'")
            )
    return written


def _draw_feature_maps(
    out_dir: Path,
    model: nn.Module,
    test: ImageSplit,
    test_prepared: bool,
    pre: Preprocess,
    labels: torch.Tensor,
    preds: torch.Tensor,
    classes: Sequence[str],
    section: ReportsSection,
) -> Path:
    index = min(section.image_index, len(test) - 1)
    idx = torch.tensor([index])
    x = pre.batch(test.images_at(idx), prepared=test_prepared)
    maps = feature_maps(model, x, max_layers=section.max_feature_layers)
    title = f"Feature maps of test image #{index} (label {classes[int(labels[index])]}, predicted {classes[int(preds[index])]})"
    return plot_feature_maps(
        maps, pre.display(x)[0].cpu(), out_dir / "feature_maps.png", max_channels=section.max_channels, title=title
    )


def _display_images(split: ImageSplit, index: torch.Tensor, pre: Preprocess, *, prepared: bool) -> torch.Tensor:
    if len(index) == 0:
        return torch.zeros(0)
    x = split.images_at(index)
    if prepared:
        return pre.display(x).cpu()
    return pre.display(pre.batch(x, prepared=False)).cpu()
