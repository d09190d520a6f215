"""The splits of a dataset: ``Split`` (images held in memory) and the ``ImageSplit`` interface the
trainer uses, which the image-folder split (``_imagefolder.FolderSplit``, decoded by DataLoader
workers) implements too; ``DataBundle`` holds the splits of one dataset."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import torch

if TYPE_CHECKING:
    from ._preprocess import Preprocess

__all__ = ["AS_STORED", "Batches", "DataBundle", "Feed", "ImageSplit", "Split", "stratified_holdout", "stratified_sample", "to_unit"]

Batches = Iterator[tuple[torch.Tensor, torch.Tensor]]  # (model input, labels on the device)


@dataclass(frozen=True)
class Feed:
    """How a split's stored images become a batch."""

    prepared: bool = False  # in memory: already normalized on the device (``_preprocess.stage``)
    generator: torch.Generator | None = None  # in memory: augment whole batches from this generator
    # decoded images: augment each image from sample_seed + its index (the same whatever the number
    # of workers, and when a run resumes mid-epoch)
    sample_seed: int | None = None


AS_STORED = Feed()


class ImageSplit(Protocol):
    """What the trainer needs of a split, wherever its images live."""

    @property
    def labels(self) -> torch.Tensor: ...  # (N,) int64

    @property
    def in_memory(self) -> bool: ...

    @property
    def channels(self) -> int: ...

    def __len__(self) -> int: ...

    def take(self, index: torch.Tensor) -> ImageSplit: ...

    def images_at(self, index: torch.Tensor) -> torch.Tensor:
        """Stored images (uint8, or normalized floats for a prepared split), ``(len(index), C, H, W)``."""
        ...

    def stat_images(self) -> torch.Tensor:
        """Images to compute the channel statistics from (all, or a sample)."""
        ...

    def batches(self, index_batches: Sequence[torch.Tensor], pre: Preprocess, feed: Feed = AS_STORED) -> Batches:
        """Model inputs and labels of each batch of indices (augmented as ``feed`` says)."""
        ...


@dataclass(frozen=True)
class Split:
    """Images ``(N, C, H, W)`` (uint8 0..255 or float32) and labels ``(N,)`` int64, in memory."""

    images: torch.Tensor
    labels: torch.Tensor

    in_memory = True

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def channels(self) -> int:
        return int(self.images.shape[1])

    def take(self, index: torch.Tensor) -> Split:
        return Split(self.images.index_select(0, index), self.labels.index_select(0, index))

    def images_at(self, index: torch.Tensor) -> torch.Tensor:
        return self.images.index_select(0, index.to(self.images.device))

    def stat_images(self) -> torch.Tensor:
        return self.images

    def batches(self, index_batches: Sequence[torch.Tensor], pre: Preprocess, feed: Feed = AS_STORED) -> Batches:
        # one index_select and a few batched tensor ops per step: no per-image Python work
        for idx in index_batches:
            idx = idx.to(self.images.device)
            x = pre.batch(self.images.index_select(0, idx), prepared=feed.prepared, generator=feed.generator)
            yield x, self.labels.index_select(0, idx).to(pre.device, non_blocking=True)


@dataclass(frozen=True)
class DataBundle:
    """The splits of one dataset plus what is needed to show its images."""

    name: str
    classes: tuple[str, ...]
    train: ImageSplit
    val: ImageSplit | None
    test: ImageSplit
    mean: tuple[float, ...]  # per channel, of the [0, 1] training images
    std: tuple[float, ...]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def channels(self) -> int:
        return self.train.channels

    @property
    def image_size(self) -> tuple[int, int]:
        h, w = self.train.images_at(torch.zeros(1, dtype=torch.int64)).shape[2:]
        return int(h), int(w)


def to_unit(images: torch.Tensor) -> torch.Tensor:
    """Stored images (uint8 0..255 or float) as float32 in [0, 1]."""
    return images.float().div(255.0) if images.dtype == torch.uint8 else images.float()


def stratified_holdout(labels: torch.Tensor, *, fraction: float, seed: int) -> torch.Tensor:
    """Indices of a per-class ``fraction`` of the samples, fixed by ``seed``, in ascending order."""
    classes, counts = torch.unique(labels, sorted=True, return_counts=True)
    return _pick_per_class(labels, classes, [round(int(c) * fraction) for c in counts], seed)


def stratified_sample(labels: torch.Tensor, n: int, *, seed: int) -> torch.Tensor:
    """Indices of exactly ``n`` samples with each class's share of the whole (largest remainders),
    fixed by ``seed``, in ascending order. A dataset stored class by class (an image folder) gives
    every class its share rather than the first classes everything."""
    classes, counts = torch.unique(labels, sorted=True, return_counts=True)
    exact = counts.double() * n / len(labels)
    quotas = exact.floor().long()
    # the classes with the largest fractional parts take the samples the floors left over
    quotas[torch.argsort(exact - quotas, descending=True, stable=True)[: n - int(quotas.sum())]] += 1
    return _pick_per_class(labels, classes, quotas.tolist(), seed)


def _pick_per_class(labels: torch.Tensor, classes: torch.Tensor, quotas: list[int], seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    picked = []
    for cls, quota in zip(classes, quotas, strict=True):
        members = (labels == cls).nonzero().squeeze(1)
        picked.append(members[torch.randperm(len(members), generator=gen)][:quota])
    # ascending: the sample keeps the data's own order, which makes runs easy to compare
    return torch.cat(picked).sort().values
