"""A dataset held in memory: ``Split`` (images and labels) and ``DataBundle`` (the splits of one dataset)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["DataBundle", "Split", "to_unit"]


@dataclass(frozen=True)
class Split:
    """Images ``(N, C, H, W)`` (uint8 0..255 or float32) and labels ``(N,)`` int64."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def take(self, index: torch.Tensor) -> Split:
        return Split(self.images.index_select(0, index), self.labels.index_select(0, index))

    def head(self, n: int | None) -> Split:
        return self if n is None or n >= len(self) else Split(self.images[:n], self.labels[:n])


@dataclass(frozen=True)
class DataBundle:
    """The splits of one dataset plus what is needed to show its images."""

    name: str
    classes: tuple[str, ...]
    train: Split
    val: Split | None
    test: Split
    mean: tuple[float, ...]  # per channel, of the [0, 1] training images
    std: tuple[float, ...]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def channels(self) -> int:
        return int(self.train.images.shape[1])

    @property
    def image_size(self) -> tuple[int, int]:
        return int(self.train.images.shape[2]), int(self.train.images.shape[3])


def to_unit(images: torch.Tensor) -> torch.Tensor:
    """Stored images (uint8 0..255 or float) as float32 in [0, 1]."""
    return images.float().div(255.0) if images.dtype == torch.uint8 else images.float()
