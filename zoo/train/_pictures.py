"""Pictures of a run (PNG): curves, the confusion matrix, misclassified images, feature maps, kernels.

Accuracy and loss curves; the confusion matrix as a heat map; a grid of misclassified images
titled ``true:predicted``; the feature maps of one image after each convolution; the first
convolution's kernels. Figures are drawn with matplotlib's object API on an Agg canvas (no pyplot
global state, no display needed; matplotlib is imported here only, never by ``import zoo``) and
every file is written atomically. Many small images are drawn as one mosaic in one axes: matplotlib
lays out and renders every axes, which is what made one axes per tile slow.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ._checkpoint import atomic_write_bytes
from ._report_text import short_name

__all__ = ["plot_confusion", "plot_curves", "plot_feature_maps", "plot_kernels", "plot_misclassified"]


def _figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Any, path: Path) -> Path:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight")
    atomic_write_bytes(path, buffer.getvalue())
    return path


def plot_curves(history: Sequence[dict[str, Any]], path: Path) -> Path:
    """Accuracy and loss per epoch, training and validation, side by side."""
    fig = _figure(11, 4)
    epochs = [r["epoch"] for r in history]
    for i, (key, title) in enumerate((("accuracy", "Accuracy"), ("loss", "Loss"))):
        ax = fig.add_subplot(1, 2, i + 1)
        ax.plot(epochs, [r[f"train_{key}"] for r in history], marker="o", label="train")
        val = [(r["epoch"], r[f"val_{key}"]) for r in history if r.get(f"val_{key}") is not None]
        if val:
            ax.plot([e for e, _ in val], [v for _, v in val], marker="o", label="validation")
        ax.set_title(f"Model {title.lower()}")
        ax.set_xlabel("Epoch")
        ax.set_ylabel(title)
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right" if key == "accuracy" else "upper right")
        if len(epochs) < 15:
            ax.set_xticks(epochs)
    return _save(fig, path)


def plot_confusion(
    matrix: torch.Tensor, classes: Sequence[str], path: Path, *, title: str = "Confusion matrix"
) -> Path:
    """Heat map with the count in every cell, true classes down, predicted across."""
    n = len(classes)
    size = max(5.0, 0.6 * n + 2)
    fig = _figure(size + 1, size)
    ax = fig.add_subplot(1, 1, 1)
    values = matrix.numpy()
    image = ax.imshow(values, cmap="Blues")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    ax.set_xticks(
        range(n),
        [short_name(c) for c in classes],
        rotation=45 if max(map(len, classes)) > 2 else 0,
        ha="right" if max(map(len, classes)) > 2 else "center",
    )
    ax.set_yticks(range(n), [short_name(c) for c in classes])
    ax.set_xlabel("Predicted label")
    ax.set_ylabel("True label")
    ax.set_title(title)
    high = values.max() if values.size else 0
    if n <= 30:
        for (r, c), v in _cells(values):
            ax.text(c, r, str(v), ha="center", va="center", fontsize=8, color="white" if v > high / 2 else "black")
    return _save(fig, path)


def _cells(values: Any) -> list[tuple[tuple[int, int], int]]:
    return [((r, c), int(values[r, c])) for r in range(values.shape[0]) for c in range(values.shape[1])]


def _mosaic(tiles: torch.Tensor, cols: int, *, per_tile: bool) -> torch.Tensor:
    """(N, C, H, W) tiles -> one (rows*(H+1)-1, cols*(W+1)-1, C) image, 1-pixel NaN gaps between tiles.

    One image in one axes costs a fraction of one axes per tile, which is what made the pictures
    slow: matplotlib lays out and renders every axes. ``per_tile`` scales each tile to [0, 1] on its
    own (feature maps, kernels: what a separate colour scale per tile used to show).
    """
    n, c, h, w = tiles.shape
    x = tiles.detach().float().cpu()
    if per_tile:
        low = x.amin(dim=(1, 2, 3), keepdim=True)
        high = x.amax(dim=(1, 2, 3), keepdim=True)
        x = (x - low) / (high - low).clamp_min(1e-12)
    rows = max(1, math.ceil(n / cols))
    out = torch.full((c, rows * (h + 1) - 1, cols * (w + 1) - 1), float("nan"))
    for i in range(n):
        r, q = divmod(i, cols)
        out[:, r * (h + 1) : r * (h + 1) + h, q * (w + 1) : q * (w + 1) + w] = x[i]
    return out.permute(1, 2, 0)  # (H, W, C) for imshow


def _show_mosaic(ax: Any, mosaic: torch.Tensor, *, cmap: str = "gray") -> None:
    """Draw a mosaic: gray or a colour map for one channel, RGB for three; gaps are white."""
    import matplotlib

    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_frame_on(False)
    if mosaic.shape[2] == 1:
        colours = matplotlib.colormaps[cmap].with_extremes(bad="white")
        ax.imshow(mosaic[:, :, 0].numpy(), cmap=colours, vmin=0, vmax=1, interpolation="nearest")
    else:
        rgb = mosaic[:, :, :3].nan_to_num(1.0).clamp(0, 1)
        ax.imshow(rgb.numpy(), interpolation="nearest")


def plot_misclassified(
    images: torch.Tensor,
    true: Sequence[int],
    predicted: Sequence[int],
    indices: Sequence[int],
    classes: Sequence[str],
    path: Path,
    *,
    total: int,
) -> Path:
    """Grid of misclassified images, each labelled ``true:predicted`` (and its test index)."""
    count = len(indices)
    cols = min(8, max(1, count))
    rows = max(1, math.ceil(count / cols))
    fig = _figure(1.6 * cols, 1.6 * rows + 0.6)
    ax = fig.add_subplot(1, 1, 1)
    if count == 0:
        ax.axis("off")
        ax.text(0.5, 0.5, "no misclassified test images", ha="center", va="center")
    else:
        h, w = images.shape[2], images.shape[3]
        big = _mosaic(images, cols, per_tile=False)
        _show_mosaic(ax, big)
        for i in range(count):
            r, q = divmod(i, cols)
            label = f"{short_name(classes[true[i]])}:{short_name(classes[predicted[i]])} #{indices[i]}"
            ax.text(q * (w + 1) + w / 2, r * (h + 1) + 1, label, ha="center", va="top", fontsize=8,
                    color="yellow", bbox={"facecolor": "black", "alpha": 0.5, "pad": 1, "linewidth": 0})  # fmt: skip
    shown = f"{count} of {total}" if total > count else f"{count}"
    fig.suptitle(f"Misclassified test images ({shown}), true:predicted #index")
    return _save(fig, path)


def plot_feature_maps(
    maps: Sequence[tuple[str, torch.Tensor]], image: torch.Tensor, path: Path, *, max_channels: int, title: str
) -> Path:
    """The input image, then one mosaic per convolution of up to ``max_channels`` maps (16 a row)."""
    cols = 16
    blocks = [(name, fm[:max_channels], len(fm)) for name, fm in maps]
    rows_per = [max(1, math.ceil(len(fm) / cols)) for _, fm, _ in blocks]
    heights = [1.5] + [r * 0.9 + 0.3 for r in rows_per]
    fig = _figure(cols * 0.9, sum(heights) + 0.5)
    grid = fig.add_gridspec(len(heights), 1, height_ratios=heights, hspace=0.4)
    ax = fig.add_subplot(grid[0, 0])
    _show_mosaic(ax, _mosaic(image.unsqueeze(0), 1, per_tile=False))
    ax.set_title("input", fontsize=8)
    for i, (name, fm, total) in enumerate(blocks):
        ax = fig.add_subplot(grid[i + 1, 0])
        _show_mosaic(ax, _mosaic(fm.unsqueeze(1), min(cols, len(fm)), per_tile=True), cmap="viridis")
        shown = f"{len(fm)} of {total}" if total > len(fm) else f"{total}"
        ax.set_title(f"conv '{name}': {shown} maps of {fm.shape[1]}x{fm.shape[2]}", fontsize=8, loc="left")
    fig.suptitle(title)
    return _save(fig, path)


def plot_kernels(weight: torch.Tensor, path: Path, *, name: str) -> Path:
    """The first convolution's kernels, each scaled to its own range (RGB when it reads 3 channels)."""
    w = weight.detach().float().cpu()
    count = w.shape[0]
    cols = min(16, count)
    rows = math.ceil(count / cols)
    fig = _figure(cols * 0.8, rows * 0.8 + 0.6)
    kernels = w if w.shape[1] == 3 else w.mean(dim=1, keepdim=True)
    ax = fig.add_subplot(1, 1, 1)
    _show_mosaic(ax, _mosaic(kernels, cols, per_tile=True))
    fig.suptitle(f"{name}: {count} kernels {tuple(w.shape[2:])}, {w.shape[1]} input channel(s)")
    return _save(fig, path)
