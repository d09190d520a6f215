"""Augmentation of a whole batch at once: one random affine transform per image in one ``grid_sample``."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from ._recipe import AugmentSection, TTASection

__all__ = ["augment_batch", "tta_probabilities"]


def augment_batch(
    x: torch.Tensor, aug: AugmentSection, *, generator: torch.Generator, fill: torch.Tensor | None = None
) -> torch.Tensor:
    """One random affine transform per image (rotation, zoom, shift, flip) in one grid_sample.

    The random numbers come from ``generator`` on the CPU, always the same count per image, so a
    run is reproducible and resumable whatever the device. ``fill`` is the value of an empty
    pixel (black after normalization).
    """
    n, _, h, w = x.shape
    r = torch.rand((n, 7), generator=generator, dtype=torch.float64)
    angle = (r[:, 0] * 2 - 1) * math.radians(aug.rotation)
    zoom = 1 + (r[:, 1] * 2 - 1) * aug.scale
    tx = (r[:, 2] * 2 - 1) * aug.translate * 2  # normalized coordinates span 2
    ty = (r[:, 3] * 2 - 1) * aug.translate * 2
    if aug.crop_padding:
        p = aug.crop_padding
        tx = tx + ((r[:, 4] * (2 * p + 1)).floor().clamp_max(2 * p) - p) * 2 / w
        ty = ty + ((r[:, 5] * (2 * p + 1)).floor().clamp_max(2 * p) - p) * 2 / h
    flip = torch.where((r[:, 6] < 0.5) & aug.hflip, -1.0, 1.0).double()
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    theta = torch.stack([torch.stack([cos * flip, -sin, tx], 1), torch.stack([sin * flip, cos, ty], 1)], 1).to(
        device=x.device, dtype=x.dtype
    )
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    if fill is None:
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    fill = fill.view(1, -1, 1, 1).to(x)
    return F.grid_sample(x - fill, grid, mode="bilinear", padding_mode="zeros", align_corners=False) + fill


def tta_probabilities(
    model: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, tta: TTASection, *, fill: torch.Tensor
) -> torch.Tensor:
    """Class probabilities (N, classes) averaged over the test-time views of the batch ``x``: the
    images, their copies moved ``tta.shift`` pixels each way (empty pixels take ``fill``, black
    after normalization) and, with ``tta.hflip``, the mirror images of all of them. With test-time
    augmentation off the one view is ``x`` itself: the softmax of the model's logits."""
    f = fill.view(1, -1, 1, 1).to(x)
    s = tta.shift
    offsets = [(0, 0), (s, 0), (-s, 0), (0, s), (0, -s)] if s else [(0, 0)]
    h, w = x.shape[-2:]
    padded = F.pad(x - f, (s, s, s, s))  # (N, C, H + 2s, W + 2s), zeros = empty pixels
    total = torch.zeros((), device=x.device)
    views = 0
    for dx, dy in offsets:
        view = padded[..., s + dy : s + dy + h, s + dx : s + dx + w] + f if dx or dy else x  # (N, C, H, W)
        for mirrored in (False, True) if tta.hflip else (False,):
            total = total + F.softmax(model(view.flip(-1) if mirrored else view).float(), dim=1)
            views += 1
    return total / views
