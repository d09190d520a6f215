"""From stored images to model inputs: batching by index, dtype, channels, normalization, resize, layout."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from ._augment import augment_batch
from ._recipe import DataSection
from ._split import Split, to_unit

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "Preprocess", "batch_indices", "stage"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
STORE_FLOAT_LIMIT = 2 * 1024**3  # bytes; below this the normalized float tensors are kept ready


def batch_indices(
    n: int,
    batch_size: int,
    *,
    generator: torch.Generator | None,
    drop_last: bool = False,
    rank: int = 0,
    world: int = 1,
    min_size: int = 1,
) -> list[torch.Tensor]:
    """Index tensors of the batches of one epoch (shuffled when a generator is given).

    With several processes the global batch is dealt out ``rank::world`` so the processes
    together see exactly the batches one process would. A trailing batch smaller than
    ``min_size`` per process is dropped (BatchNorm cannot train on a single image).
    """
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    out = []
    for start in range(0, n, batch_size):
        idx = order[start : start + batch_size]
        if len(idx) < batch_size and (drop_last or len(idx) < min_size * world):
            break
        out.append(idx[rank::world])
    return out


class Preprocess:
    """Turns stored images into model inputs: dtype, channels, normalization, resize, layout.

    Splits small enough are prepared once (:meth:`prepare`) and each batch then only needs the
    random augmentation and an optional resize; larger ones stay uint8 and are prepared per batch.
    """

    def __init__(
        self,
        section: DataSection,
        *,
        data_channels: int,
        mean: Sequence[float],
        std: Sequence[float],
        device: torch.device,
        channels_last: bool = False,
    ) -> None:
        self.section = section
        self.out_channels = section.channels or data_channels
        self.data_channels = data_channels
        self.device = device
        self.channels_last = channels_last
        mean_t, std_t = self._stats(section, mean, std)
        self.mean = mean_t.view(1, -1, 1, 1).to(device)
        self.std = std_t.view(1, -1, 1, 1).to(device)
        self.fill = (-self.mean / self.std).view(-1)  # the value a black pixel takes

    def _stats(
        self, section: DataSection, mean: Sequence[float], std: Sequence[float]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        c = self.out_channels
        if section.normalize == "unit":
            return torch.zeros(c), torch.ones(c)
        if section.normalize == "inception":
            return torch.full((c,), 0.5), torch.full((c,), 0.5)
        if section.normalize == "imagenet":
            m, s = torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)
            return (m.mean().repeat(c), s.mean().repeat(c)) if c == 1 else (m, s)
        m, s = torch.tensor(mean, dtype=torch.float32), torch.tensor(std, dtype=torch.float32)
        if c != len(m):  # statistics of the converted channels
            m, s = (m.mean().repeat(c), s.mean().repeat(c)) if c == 3 else (m.mean().view(1), s.mean().view(1))
        return m, s

    def fits_in_memory(self, split: Split) -> bool:
        n, _, h, w = split.images.shape
        return n * self.out_channels * h * w * 4 <= STORE_FLOAT_LIMIT

    def prepare(self, split: Split) -> Split:
        """The deterministic part, for a whole split: float, channels, normalization, device."""
        chunks = [self._static(chunk.to(self.device)) for chunk in torch.split(split.images, 8192)]
        return Split(torch.cat(chunks) if chunks else split.images, split.labels.to(self.device))

    def _static(self, x: torch.Tensor) -> torch.Tensor:
        x = to_unit(x)
        if x.shape[1] != self.out_channels:
            x = x.repeat(1, 3, 1, 1) if self.out_channels == 3 else x.mean(dim=1, keepdim=True)
        return (x - self.mean) / self.std

    def batch(self, images: torch.Tensor, *, prepared: bool, generator: torch.Generator | None = None) -> torch.Tensor:
        """Model input for a batch of stored (prepared or raw) images; augments when given a generator."""
        x = images.to(self.device, non_blocking=True)
        if not prepared:
            x = self._static(x)
        if generator is not None and self.section.augment.enabled:
            x = augment_batch(x, self.section.augment, generator=generator, fill=self.fill)
        size = self.section.resize
        if size is not None and (x.shape[2], x.shape[3]) != (size, size):
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def display(self, x: torch.Tensor) -> torch.Tensor:
        """Undo the normalization for showing a model input as an image in [0, 1]."""
        return (x * self.std.to(x.device) + self.mean.to(x.device)).clamp(0, 1)


def stage(pre: Preprocess, split: Split) -> tuple[Split, bool]:
    """(split, prepared): normalized on the device once when it fits, else kept raw for per-batch work."""
    if pre.fits_in_memory(split):
        return pre.prepare(split), True
    return split, False
