"""Tiny synthetic datasets in the real file formats (MNIST IDX, CIFAR-10 python batches), for tests.

Each class is a distinct blob pattern, so a model can learn it: tests run the real torchvision
loaders on these files without any download.
"""

from __future__ import annotations

import gzip
import math
import pickle
import struct
from pathlib import Path

import torch

from zoo.train._torchvision_files import CIFAR10_CLASSES

__all__ = ["write_cifar10_files", "write_mnist_files"]


def write_mnist_files(
    root: str | Path, *, folder: str = "MNIST", train: int = 64, test: int = 32, seed: int = 0, gz: bool = False
) -> Path:
    """Write a tiny synthetic dataset in the real MNIST IDX layout (``root/folder/raw``).

    Each class is a distinct blob pattern, so a model can learn it: tests and benchmarks run the
    real torchvision loader on it without any download.
    """
    raw = Path(root) / folder / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator().manual_seed(seed)
    for prefix, n in (("train", train), ("t10k", test)):
        labels = torch.arange(n) % 10
        images = _synthetic_images(labels, channels=1, size=28, generator=gen)[:, 0]
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", images, gz=gz)
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels.to(torch.uint8), gz=gz)
    return raw


def _write_idx(path: Path, data: torch.Tensor, *, gz: bool) -> None:
    magic = 0x0800 | data.dim()  # 0x08: unsigned byte
    header = struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in data.shape)
    payload = header + data.contiguous().numpy().tobytes()
    if gz:
        Path(f"{path}.gz").write_bytes(gzip.compress(payload))
    else:
        path.write_bytes(payload)


def write_cifar10_files(root: str | Path, *, train: int = 50, test: int = 20, seed: int = 0) -> Path:
    """Write tiny synthetic CIFAR-10 python batches (5 train batches, test batch, batches.meta)."""
    folder = Path(root) / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator().manual_seed(seed)
    per_batch = math.ceil(train / 5)
    labels_all = torch.arange(train) % 10
    images_all = _synthetic_images(labels_all, channels=3, size=32, generator=gen)
    for i in range(5):
        part = slice(i * per_batch, min(train, (i + 1) * per_batch))
        _write_cifar_batch(
            folder / f"data_batch_{i + 1}", images_all[part], labels_all[part], f"training batch {i + 1}"
        )
    labels = torch.arange(test) % 10
    _write_cifar_batch(
        folder / "test_batch", _synthetic_images(labels, channels=3, size=32, generator=gen), labels, "testing batch 1"
    )
    meta = {"label_names": list(CIFAR10_CLASSES), "num_cases_per_batch": per_batch, "num_vis": 3072}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    return folder


def _write_cifar_batch(path: Path, images: torch.Tensor, labels: torch.Tensor, name: str) -> None:
    entry = {
        "batch_label": name,
        "labels": [int(v) for v in labels],
        "data": images.reshape(len(images), -1).numpy(),  # rows of 3072 bytes: R plane, G, B
        "filenames": [f"img_{i}.png" for i in range(len(images))],
    }
    path.write_bytes(pickle.dumps(entry, protocol=2))


def _synthetic_images(labels: torch.Tensor, *, channels: int, size: int, generator: torch.Generator) -> torch.Tensor:
    """uint8 images where class k is a bright square at one of 10 positions, plus noise."""
    n = len(labels)
    images = torch.randint(0, 60, (n, channels, size, size), generator=generator, dtype=torch.uint8)
    cell = size // 4
    for i, label in enumerate(labels.tolist()):
        row, col = divmod(int(label), 4)
        y, x = row * cell + 1, col * cell + 1
        images[i, :, y : y + cell - 2, x : x + cell - 2] = 200 + 5 * (label % 10)
        if channels == 3:
            images[i, label % 3, y : y + cell - 2, x : x + cell - 2] = 255
    return images
