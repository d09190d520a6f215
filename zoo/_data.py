"""Datasets as in-memory tensors, batched by index, transformed and augmented per batch.

MNIST, Fashion-MNIST and CIFAR-10 are read by torchvision's own dataset classes from the real
file formats (IDX files, CIFAR-10 python pickle batches); ``digits`` is scikit-learn's 8x8
handwritten digits upsampled to 28x28, so a first run needs no network. Every split is held as
one ``(N, C, H, W)`` tensor: a training step is one ``index_select`` plus a few batched tensor
ops, with no per-sample Python work. Augmentation draws one random affine transform per image
and applies the whole batch in one ``grid_sample``.

torchvision, scikit-learn and numpy-pickle handling are imported inside the functions that use
them so ``import zoo`` stays light.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import math
import pickle
import shutil
import struct
import tarfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ._errors import RecipeError
from ._recipe import AugmentSection, DataSection

__all__ = [
    "DataBundle",
    "Preprocess",
    "Split",
    "augment_batch",
    "batch_indices",
    "load_data",
    "write_cifar10_files",
    "write_mnist_files",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
STORE_FLOAT_LIMIT = 2 * 1024**3  # bytes; below this the normalized float tensors are kept ready

MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
CIFAR10_FILES = (*(f"data_batch_{i}" for i in range(1, 6)), "test_batch", "batches.meta")
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
FASHION_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)


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


# --------------------------------------------------------------------------- loading


def load_data(section: DataSection) -> DataBundle:
    """Load the dataset named by a recipe's data section, split off validation, apply limits."""
    loader = _LOADERS[section.dataset]
    train, test, classes = loader(section)
    train = train.head(section.train_limit)
    test = test.head(section.test_limit)
    train, val = _split_validation(train, section)
    if section.validate_on == "test":
        val = test
    elif section.validate_on == "none":
        val = None
    mean, std = _channel_stats(train.images)
    return DataBundle(section.dataset, tuple(classes), train, val, test, mean, std)


def _split_validation(train: Split, section: DataSection) -> tuple[Split, Split | None]:
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
        x = _to_unit(chunk).double()
        total += x.sum(dim=(0, 2, 3))
        total_sq += (x * x).sum(dim=(0, 2, 3))
        count += x.shape[0] * x.shape[2] * x.shape[3]
    mean = total / max(count, 1)
    std = (total_sq / max(count, 1) - mean * mean).clamp_min(1e-12).sqrt()
    return tuple(float(v) for v in mean), tuple(float(v) for v in std)


def _to_unit(images: torch.Tensor) -> torch.Tensor:
    return images.float().div(255.0) if images.dtype == torch.uint8 else images.float()


def _load_digits(section: DataSection) -> tuple[Split, Split, list[str]]:
    """scikit-learn's 1,797 8x8 digits, bilinearly upsampled to 28x28, a fixed 80/20 split."""
    from sklearn.datasets import load_digits

    raw = load_digits()
    images = torch.tensor(raw.images, dtype=torch.float32).unsqueeze(1) / 16.0
    images = F.interpolate(images, size=(28, 28), mode="bilinear", align_corners=False).clamp_(0, 1)
    labels = torch.tensor(raw.target, dtype=torch.int64)
    test_idx = _stratified_holdout(labels, fraction=0.2, seed=0)
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


def _stratified_holdout(labels: torch.Tensor, *, fraction: float, seed: int) -> torch.Tensor:
    """Indices of a per-class ``fraction`` of the samples, fixed by ``seed``, in ascending order."""
    gen = torch.Generator().manual_seed(seed)
    picked = []
    for cls in torch.unique(labels, sorted=True):
        members = (labels == cls).nonzero().squeeze(1)
        order = members[torch.randperm(len(members), generator=gen)]
        picked.append(order[: round(len(members) * fraction)])
    return torch.cat(picked).sort().values


def _load_mnist_like(
    section: DataSection, *, folder: str, cls_name: str, classes: Sequence[str]
) -> tuple[Split, Split, list[str]]:
    import torchvision.datasets as tvd

    dataset_cls = getattr(tvd, cls_name)
    raw = Path(section.root) / folder / "raw"
    _gunzip_present(raw, MNIST_FILES)
    if not all((raw / name).is_file() for name in MNIST_FILES):
        _download_or_explain(
            lambda: dataset_cls(section.root, train=True, download=True),
            section=section,
            what=cls_name,
            folder=raw,
            files=MNIST_FILES,
            note="gzipped (.gz) or not",
        )
    splits = []
    for train in (True, False):
        try:
            ds = dataset_cls(section.root, train=train, download=False)
        except (RuntimeError, AssertionError, ValueError, OSError, KeyError) as exc:
            raise RecipeError(
                f"cannot read {cls_name} from {raw}: {exc or type(exc).__name__}",
                hint="the files must be the original IDX files (magic numbers 2049/2051)",
            ) from None
        images = ds.data
        if images.dim() != 3 or images.dtype != torch.uint8 or len(ds.targets) != images.shape[0]:
            raise RecipeError(f"{cls_name} files in {raw} have unexpected shapes {tuple(images.shape)}")
        splits.append(Split(images.unsqueeze(1).contiguous(), ds.targets.to(torch.int64)))
    return splits[0], splits[1], list(classes)


def _gunzip_present(folder: Path, names: Sequence[str]) -> None:
    """Decompress ``name.gz`` files a user placed by hand (torchvision reads uncompressed files)."""
    for name in names:
        target, packed = folder / name, folder / f"{name}.gz"
        if not target.exists() and packed.is_file():
            tmp = target.with_suffix(".tmp")
            try:
                with gzip.open(packed, "rb") as src, open(tmp, "wb") as dst:
                    shutil.copyfileobj(src, dst)
                tmp.replace(target)
            except (OSError, EOFError, gzip.BadGzipFile) as exc:
                tmp.unlink(missing_ok=True)
                raise RecipeError(f"cannot decompress {packed}: {exc}") from None


def _download_or_explain(
    download: Callable[[], Any],
    *,
    section: DataSection,
    what: str,
    folder: Path,
    files: Sequence[str],
    note: str,
) -> None:
    """Try torchvision's download; when it cannot run, say exactly which files go where."""
    listing = ", ".join(files)
    hint = f"put these files ({note}) into {folder}/: {listing}"
    if not section.download:
        raise RecipeError(f"{what} files are missing and data.download is false", hint=hint)
    try:
        with _quiet():
            download()
    except (OSError, RuntimeError, ValueError, tarfile.TarError) as exc:  # URLError is an OSError
        raise RecipeError(f"{what} files are missing in {folder} and downloading failed ({exc})", hint=hint) from None


class _quiet:
    """Silence torchvision's download chatter (it prints each failed mirror)."""

    def __enter__(self) -> None:
        import contextlib

        self._stack = contextlib.ExitStack()
        self._stack.enter_context(contextlib.redirect_stdout(io.StringIO()))

    def __exit__(self, *exc: object) -> None:
        self._stack.close()


def _load_mnist(section: DataSection) -> tuple[Split, Split, list[str]]:
    return _load_mnist_like(section, folder="MNIST", cls_name="MNIST", classes=[str(i) for i in range(10)])


def _load_fashion(section: DataSection) -> tuple[Split, Split, list[str]]:
    return _load_mnist_like(section, folder="FashionMNIST", cls_name="FashionMNIST", classes=FASHION_CLASSES)


def _load_cifar10(section: DataSection) -> tuple[Split, Split, list[str]]:
    import torchvision.datasets as tvd

    folder = Path(section.root) / tvd.CIFAR10.base_folder
    archive = Path(section.root) / tvd.CIFAR10.filename
    if not all((folder / name).is_file() for name in CIFAR10_FILES):
        if archive.is_file():
            _extract_tar(archive, Path(section.root))
        else:
            _download_or_explain(
                lambda: tvd.CIFAR10(section.root, train=True, download=True),
                section=section,
                what="CIFAR-10",
                folder=folder,
                files=CIFAR10_FILES,
                note=f"the python version, or the archive {tvd.CIFAR10.filename} into {section.root}/",
            )
    official = _is_official_cifar(folder)
    if not official:
        for name in CIFAR10_FILES:
            _check_plain_pickle(folder / name)
    dataset_cls = tvd.CIFAR10 if official else _local_cifar10_class()
    splits = []
    classes: list[str] = list(CIFAR10_CLASSES)
    for train in (True, False):
        try:
            ds = dataset_cls(section.root, train=train, download=False)
        except (RuntimeError, ValueError, KeyError, OSError, EOFError, pickle.UnpicklingError) as exc:
            raise RecipeError(f"cannot read CIFAR-10 from {folder}: {exc or type(exc).__name__}") from None
        data = torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()
        splits.append(Split(data, torch.tensor(ds.targets, dtype=torch.int64)))
        classes = [str(c) for c in ds.classes]
    return splits[0], splits[1], classes


def _is_official_cifar(folder: Path) -> bool:
    """True when every file has the published md5 (then torchvision's own checks apply)."""
    import torchvision.datasets as tvd

    expected = {name: md5 for name, md5 in (*tvd.CIFAR10.train_list, *tvd.CIFAR10.test_list)}
    expected[tvd.CIFAR10.meta["filename"]] = tvd.CIFAR10.meta["md5"]
    for name, md5 in expected.items():
        path = folder / name
        if path.stat().st_size > 200 * 1024**2:
            return False
        if hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest() != md5:
            return False
    return True


def _local_cifar10_class() -> type:
    """CIFAR10 that accepts files other than the published ones (after _check_plain_pickle)."""
    import torchvision.datasets as tvd

    class LocalCIFAR10(tvd.CIFAR10):  # type: ignore[misc]
        # md5 None makes torchvision check only that the files exist; their content was vetted.
        train_list = [[name, None] for name, _ in tvd.CIFAR10.train_list]
        test_list = [[name, None] for name, _ in tvd.CIFAR10.test_list]
        meta = {**tvd.CIFAR10.meta, "md5": None}

    return LocalCIFAR10


class _PlainUnpickler(pickle.Unpickler):
    """Unpickles only containers, numbers, strings and numpy arrays: nothing that runs code."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("_codecs", "encode"),
        ("codecs", "encode"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def _check_plain_pickle(path: Path) -> None:
    """CIFAR-10 batches are pickles; one from elsewhere is vetted before torchvision loads it."""
    try:
        with open(path, "rb") as f:
            entry = _PlainUnpickler(f, encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, OSError) as exc:
        raise RecipeError(
            f"{path} is not a plain CIFAR-10 batch ({exc}); refusing to load it",
            hint="CIFAR-10 python batches hold only a dict of arrays, lists and strings",
        ) from None
    if not isinstance(entry, dict):
        raise RecipeError(f"{path} is not a CIFAR-10 batch (a {type(entry).__name__}, expected a dict)")


def _extract_tar(archive: Path, dest: Path) -> None:
    try:
        with tarfile.open(archive, "r:gz") as tar:
            tar.extractall(dest, filter="data")  # "data" refuses absolute paths, links out, devices
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise RecipeError(f"cannot extract {archive}: {exc}") from None


_LOADERS: dict[str, Callable[[DataSection], tuple[Split, Split, list[str]]]] = {
    "digits": _load_digits,
    "mnist": _load_mnist,
    "fashion_mnist": _load_fashion,
    "cifar10": _load_cifar10,
}


# --------------------------------------------------------------------------- batches


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
        x = _to_unit(x)
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


# --------------------------------------------------------------------------- test files


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
