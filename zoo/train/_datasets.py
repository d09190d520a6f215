"""Datasets as in-memory tensors: which loader a recipe names, validation split, channel statistics.

MNIST, Fashion-MNIST and CIFAR-10 are read by torchvision's own dataset classes from the real
file formats (``_torchvision_files``); ``digits`` is scikit-learn's 8x8 handwritten digits
upsampled to 28x28, so a first run needs no network. Every split is held as one ``(N, C, H, W)``
tensor: a training step is one ``index_select`` plus a few batched tensor ops (``_preprocess``),
with no per-sample Python work.

torchvision and scikit-learn are imported inside the functions that use them so ``import zoo``
stays light.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from .._errors import RecipeError
from ._imagefolder import load_imagefolder
from ._recipe import DataSection
from ._split import DataBundle, ImageSplit, Split, stratified_holdout, stratified_sample, to_unit
from ._torchvision_files import load_cifar10, load_fashion, load_mnist

__all__ = ["digits_arrays", "load_data"]


def load_data(section: DataSection) -> DataBundle:
    """Load the dataset named by a recipe's data section, split off validation, apply limits."""
    train, given_val, test, classes = _LOADERS[section.dataset](section)
    for name, split in (("training", train), ("test", test)):
        _check_labels(split, classes, name, section)
    train = _limited(train, section.train_limit, section)
    test = _limited(test, section.test_limit, section)
    if given_val is not None and section.validate_on == "split":
        val: ImageSplit | None = given_val  # the folder's own val/ split
    else:
        train, val = _split_validation(train, section)
    if section.validate_on == "test":
        val = test
    elif section.validate_on == "none":
        val = None
    mean, std = _channel_stats(train.stat_images())
    return DataBundle(section.dataset, tuple(classes), train, val, test, mean, std)


def _check_labels(split: ImageSplit, classes: list[str], name: str, section: DataSection) -> None:
    """Labels outside 0..classes-1 would reach cross-entropy as an index error mid-training."""
    if len(split) == 0:
        raise RecipeError(f"the {section.dataset} {name} set in {section.root} holds no images")
    low, high = int(split.labels.min()), int(split.labels.max())
    if low < 0 or high >= len(classes):
        bad = low if low < 0 else high
        raise RecipeError(
            f"the {section.dataset} {name} labels in {section.root} include {bad}, outside 0..{len(classes) - 1} "
            f"({len(classes)} classes)",
            path="data.root",
            hint="the label files do not belong to this dataset, or they are corrupted",
        )


def _limited(split: ImageSplit, limit: int | None, section: DataSection) -> ImageSplit:
    """A random ``limit`` images with each class's share, fixed by split_seed (not the first ones:
    an image folder is stored class by class)."""
    if limit is None or limit >= len(split):
        return split
    return split.take(stratified_sample(split.labels, limit, seed=section.split_seed))


def _split_validation(train: ImageSplit, section: DataSection) -> tuple[ImageSplit, ImageSplit | None]:
    """Hold out ``val_split`` of the training set with a permutation that only split_seed moves."""
    if section.validate_on != "split" or section.val_split == 0:
        return train, None
    n_val = max(1, round(len(train) * section.val_split))
    if n_val >= len(train):
        raise RecipeError(f"data.val_split {section.val_split} leaves no training images out of {len(train)}")
    perm = torch.randperm(len(train), generator=torch.Generator().manual_seed(section.split_seed))
    # Sorting keeps the original order inside each part, which makes runs easy to compare.
    val_idx, train_idx = perm[:n_val].sort().values, perm[n_val:].sort().values
    return train.take(train_idx), train.take(val_idx)


def _channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of [0, 1] images, computed in chunks to bound memory."""
    c = images.shape[1]
    total = torch.zeros(c, dtype=torch.float64)
    total_sq = torch.zeros(c, dtype=torch.float64)
    count = 0
    for chunk in torch.split(images, 4096):
        x = to_unit(chunk).double()
        total += x.sum(dim=(0, 2, 3))
        total_sq += (x * x).sum(dim=(0, 2, 3))
        count += x.shape[0] * x.shape[2] * x.shape[3]
    mean = total / max(count, 1)
    std = (total_sq / max(count, 1) - mean * mean).clamp_min(1e-12).sqrt()
    return tuple(float(v) for v in mean), tuple(float(v) for v in std)


def digits_arrays() -> tuple[Any, Any]:
    """scikit-learn's digits as (images (1797, 8, 8) in 0..16, labels): the file ``load_digits``
    reads, read directly when it is where scikit-learn keeps it, because importing scikit-learn
    takes 1-1.5 s, the largest part of starting a run on the offline digits."""
    import importlib.util

    import numpy as np

    found = importlib.util.find_spec("sklearn")  # locates the package without importing it
    folders = list(found.submodule_search_locations or []) if found is not None else []
    for folder in folders:
        path = Path(folder) / "datasets" / "data" / "digits.csv.gz"
        if path.is_file():
            table = np.loadtxt(path, delimiter=",")  # 64 pixel values then the label, per row
            return table[:, :-1].reshape(-1, 8, 8), table[:, -1].astype(np.int64)
    from sklearn.datasets import load_digits  # another layout: the public API

    raw = load_digits()
    return raw.images, raw.target


def _load_digits(section: DataSection) -> tuple[Split, Split, list[str]]:
    """scikit-learn's 1,797 8x8 digits, bilinearly upsampled to 28x28, a fixed 80/20 split."""
    pixels, target = digits_arrays()
    images = torch.tensor(pixels, dtype=torch.float32).unsqueeze(1) / 16.0
    images = F.interpolate(images, size=(28, 28), mode="bilinear", align_corners=False).clamp_(0, 1)
    labels = torch.tensor(target, dtype=torch.int64)
    test_idx = stratified_holdout(labels, fraction=0.2, seed=0)
    mask = torch.ones(len(labels), dtype=torch.bool)
    mask[test_idx] = False
    train_idx = mask.nonzero().squeeze(1)
    # Stored as uint8 like the real datasets, so every dataset takes the same path afterwards.
    stored = (images * 255).round_().to(torch.uint8)
    return (
        Split(stored[train_idx], labels[train_idx]),
        Split(stored[test_idx], labels[test_idx]),
        [str(i) for i in range(10)],
    )


Loaded = tuple[ImageSplit, ImageSplit | None, ImageSplit, list[str]]  # train, given val, test, classes


def _in_memory(load: Callable[[DataSection], tuple[Split, Split, list[str]]]) -> Callable[[DataSection], Loaded]:
    def loader(section: DataSection) -> Loaded:
        train, test, classes = load(section)
        return train, None, test, classes

    return loader


# dataset name -> loader; the in-memory datasets are small enough to hold as tensors, an image
# folder is read by DataLoader workers (the trainer takes whichever split the loader returns)
_LOADERS: dict[str, Callable[[DataSection], Loaded]] = {
    "digits": _in_memory(_load_digits),
    "mnist": _in_memory(load_mnist),
    "fashion_mnist": _in_memory(load_fashion),
    "cifar10": _in_memory(load_cifar10),
    "imagefolder": load_imagefolder,
}
