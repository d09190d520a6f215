"""Users' own images: a torchvision ``ImageFolder`` layout read through a DataLoader with worker processes.

Layouts (``data.root``)::

    root/<class>/*.jpg                       every image; test_split (and val_split) held out per class
    root/train/<class>/...  [root/val/...]  [root/test/...]     given splits; missing ones held out

Images are decoded in the workers with PIL, resized (shorter side) and center-cropped to
``data.resize`` (default 224), and for training augmented with ``transforms.v2`` from the recipe's
``augment`` settings. Each image of each epoch gets its own seed, so the augmentation is the same
whatever the number of workers and when a run resumes mid-epoch. The workers hand uint8 batches to
the main process, which normalizes them on the device like the in-memory datasets.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from .._errors import RecipeError
from ._recipe import AugmentSection, DataSection
from ._split import AS_STORED, Batches, Feed, stratified_holdout

__all__ = ["IMAGE_SUFFIXES", "FolderSplit", "find_classes", "image_transform", "load_imagefolder", "open_image"]

IMAGE_SUFFIXES = (".bmp", ".gif", ".jpeg", ".jpg", ".png", ".tif", ".tiff", ".webp")
DEFAULT_SIZE = 224
STAT_SAMPLE = 256  # images decoded to estimate the channel statistics (normalize: standard)


@dataclass(frozen=True)
class FolderSplit:
    """Image files and their labels; decoded on demand (``ImageSplit`` of ``_split``)."""

    paths: tuple[str, ...]
    labels: torch.Tensor
    size: int
    channels: int
    augment: AugmentSection | None = None  # training split only
    workers: int = 0

    in_memory = False

    def __len__(self) -> int:
        return len(self.paths)

    def take(self, index: torch.Tensor) -> FolderSplit:
        return replace(self, paths=tuple(self.paths[int(i)] for i in index), labels=self.labels.index_select(0, index))

    def images_at(self, index: torch.Tensor) -> torch.Tensor:
        files = _Files(self.paths, self.labels, self.size, self.channels, None)
        return torch.stack([files[(int(i), None)][0] for i in index]) if len(index) else torch.zeros(0)

    def stat_images(self) -> torch.Tensor:
        step = max(1, len(self) // STAT_SAMPLE)
        return self.images_at(torch.arange(0, len(self), step)[:STAT_SAMPLE])

    def batches(self, index_batches: Sequence[torch.Tensor], pre: Any, feed: Feed = AS_STORED) -> Batches:
        seed = feed.sample_seed if self.augment is not None else None
        files = _Files(self.paths, self.labels, self.size, self.channels, self.augment if seed is not None else None)
        # (index, seed) pairs: the seed of an image is fixed by the epoch's seed and its index
        plan = [[(int(i), None if seed is None else seed + int(i)) for i in idx] for idx in index_batches]
        loader: DataLoader[tuple[torch.Tensor, int]] = DataLoader(
            files,  # indexed by (index, seed) pairs, not ints
            batch_sampler=plan,
            num_workers=self.workers,
            pin_memory=pre.device.type == "cuda",
        )
        try:
            for x, y in loader:
                yield pre.batch(x, prepared=False), y.to(pre.device, non_blocking=True)
        except RecipeError as exc:  # raised in a worker: keep its own message, not the worker's traceback
            raise RecipeError(_worker_message(exc.message)) from None


def _worker_message(text: str) -> str:
    last = text.strip().splitlines()[-1]
    return last.split("RecipeError: ", 1)[-1]


class _Files(Dataset[tuple[torch.Tensor, int]]):
    """The map-style dataset the DataLoader workers index with (image index, seed or None)."""

    def __init__(
        self, paths: Sequence[str], labels: torch.Tensor, size: int, channels: int, augment: AugmentSection | None
    ) -> None:
        self.paths, self.labels, self.size, self.channels = paths, labels, size, channels
        self.transform = image_transform(size, augment)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, item: tuple[int, int | None]) -> tuple[torch.Tensor, int]:
        index, seed = item
        image = open_image(self.paths[index], "L" if self.channels == 1 else "RGB")
        if seed is None:
            x = self.transform(image)
        else:
            with torch.random.fork_rng(devices=[]):  # never disturb the caller's generator (0 workers)
                torch.manual_seed(seed % 2**63)
                x = self.transform(image)
        return x.as_subclass(torch.Tensor), int(self.labels[index])


def open_image(path: str, mode: str) -> Any:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return image.convert(mode)
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise RecipeError(f"cannot read image {path}: {exc}") from None


def image_transform(size: int, augment: AugmentSection | None) -> Any:
    """uint8 (C, size, size): resize the shorter side, center crop; then the recipe's augmentation."""
    from torchvision.transforms import v2

    # on PIL images (single-threaded, fast for one image); a tensor only at the end
    steps: list[Any] = [v2.Resize(size, antialias=True), v2.CenterCrop(size)]
    if augment is not None and augment.enabled:
        if augment.rotation or augment.translate or augment.scale:
            steps.append(
                v2.RandomAffine(
                    degrees=augment.rotation,
                    translate=(augment.translate, augment.translate) if augment.translate else None,
                    scale=(1 - augment.scale, 1 + augment.scale) if augment.scale else None,
                    interpolation=v2.InterpolationMode.BILINEAR,
                )
            )
        if augment.crop_padding:
            steps.append(v2.RandomCrop(size, padding=augment.crop_padding))
        if augment.hflip:
            steps.append(v2.RandomHorizontalFlip())
    return v2.Compose([*steps, v2.PILToTensor()])


# --------------------------------------------------------------------------- finding the files


def find_classes(folder: Path) -> list[str]:
    """Sub-folder names, sorted (torchvision's ImageFolder order: class i is the i-th name)."""
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _files(folder: Path, classes: Sequence[str]) -> tuple[list[str], list[int]]:
    paths, labels = [], []
    for label, name in enumerate(classes):
        sub = folder / name
        if not sub.is_dir():
            continue
        found = sorted(str(p) for p in sub.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        paths += found
        labels += [label] * len(found)
    return paths, labels


def load_imagefolder(section: DataSection) -> tuple[FolderSplit, FolderSplit | None, FolderSplit, list[str]]:
    """(train, val from a val/ folder or None, test, class names) of ``data.root``."""
    root = Path(section.root)
    if not root.is_dir():
        raise RecipeError(f"data.root {root} is not a folder", path="data.root", hint=_LAYOUT_HINT)
    split_root = (root / "train").is_dir()
    top = root / "train" if split_root else root
    classes = find_classes(top)
    if len(classes) < 2:
        raise RecipeError(f"{top} has {len(classes)} class folder(s); a classifier needs at least 2", path="data.root", hint=_LAYOUT_HINT)
    size = section.resize or DEFAULT_SIZE
    channels = section.channels or 3

    def split(folder: Path, augment: AugmentSection | None = None) -> FolderSplit:
        paths, labels = _files(folder, classes)
        if not paths:
            raise RecipeError(f"no images ({', '.join(IMAGE_SUFFIXES)}) under {folder}", path="data.root", hint=_LAYOUT_HINT)
        return FolderSplit(tuple(paths), torch.tensor(labels, dtype=torch.int64), size, channels, augment, section.workers)

    train = split(top, section.augment)
    val = split(root / "val") if split_root and (root / "val").is_dir() else None
    if split_root and (root / "test").is_dir():
        test = split(root / "test")
    else:
        train, test = _hold_out(train, section)
    return train, val, test, classes


def _hold_out(train: FolderSplit, section: DataSection) -> tuple[FolderSplit, FolderSplit]:
    """Hold out ``test_split`` of each class for testing (fixed by split_seed), as a test set."""
    if section.test_split == 0:
        raise RecipeError("data.test_split is 0 and there is no test/ folder", path="data.test_split", hint=_LAYOUT_HINT)
    test_idx = stratified_holdout(train.labels, fraction=section.test_split, seed=section.split_seed)
    if len(test_idx) == 0 or len(test_idx) == len(train):
        raise RecipeError(f"data.test_split {section.test_split} of {len(train)} images leaves an empty split", path="data.test_split")
    mask = torch.ones(len(train), dtype=torch.bool)
    mask[test_idx] = False
    test = replace(train.take(test_idx), augment=None)
    return train.take(mask.nonzero().squeeze(1)), test


_LAYOUT_HINT = "expected root/<class>/<image> or root/train/<class>/<image> (with optional val/ and test/)"
