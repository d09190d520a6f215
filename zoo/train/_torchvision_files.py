"""MNIST, Fashion-MNIST and CIFAR-10 from their real file formats, through torchvision's dataset classes.

Files a user placed by hand are accepted (gzipped IDX files, the CIFAR-10 archive); a missing
file offline is an error that names the files and the folder. CIFAR-10 batches are pickles: one
that is not the published file is vetted by an unpickler that builds only plain data.
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
from pathlib import Path
from typing import Any

import torch

from .._errors import RecipeError
from ._recipe import DataSection
from ._split import Split

__all__ = ["CIFAR10_CLASSES", "CIFAR10_FILES", "MNIST_FILES", "load_cifar10", "load_fashion", "load_mnist"]

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
    for name in MNIST_FILES:
        _check_idx_header(raw / name, dims=1 if "labels" in name else 3, what=cls_name)
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


def _check_idx_header(path: Path, *, dims: int, what: str) -> None:
    """An IDX file starts 0x00 0x00, a type code (0x08: unsigned bytes for MNIST), the number of dims."""
    try:
        with open(path, "rb") as f:
            head = f.read(4 + 4 * dims)
    except OSError as exc:
        raise RecipeError(f"cannot read {what} from {path}: {exc.strerror or exc}") from None
    if len(head) < 4 + 4 * dims or head[:2] != b"\0\0":
        raise RecipeError(f"cannot read {what} from {path}: not an IDX file (it must start with two zero bytes and a type code)")
    if head[2] != 0x08 or head[3] != dims:
        raise RecipeError(
            f"cannot read {what} from {path}: IDX type code 0x{head[2]:02x} with {head[3]} dimensions; MNIST files hold unsigned "
            f"bytes (0x08) in {dims} dimension{'s' if dims > 1 else ''}",
            hint="the files must be the original IDX files (magic numbers 2049 for labels, 2051 for images)",
        )
    counts = struct.unpack(f">{dims}I", head[4:])
    expected = 4 + 4 * dims + math.prod(counts)
    size = path.stat().st_size
    if size != expected:
        raise RecipeError(f"cannot read {what} from {path}: it declares {counts} values ({expected} bytes with its header) but holds {size} bytes")


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
    created = _missing_ancestors(folder)
    try:
        with _quiet():
            download()
    except (OSError, RuntimeError, ValueError, tarfile.TarError) as exc:  # URLError is an OSError
        _remove_empty(created)  # a root named by mistake is left as it was found
        raise RecipeError(f"{what} files are missing in {folder} and downloading failed ({exc})", hint=hint) from None


def _missing_ancestors(folder: Path) -> list[Path]:
    """``folder`` and its parents that do not exist yet, deepest first (what a download creates)."""
    missing = []
    for p in (folder, *folder.parents):
        if p.exists():
            break
        missing.append(p)
    return missing


def _remove_empty(folders: Sequence[Path]) -> None:
    for p in folders:  # deepest first; a folder something was written into stays
        try:
            p.rmdir()
        except OSError:
            return


class _quiet:
    """Silence torchvision's download chatter (it prints each failed mirror)."""

    def __enter__(self) -> None:
        import contextlib

        self._stack = contextlib.ExitStack()
        self._stack.enter_context(contextlib.redirect_stdout(io.StringIO()))

    def __exit__(self, *exc: object) -> None:
        self._stack.close()


def load_mnist(section: DataSection) -> tuple[Split, Split, list[str]]:
    return _load_mnist_like(section, folder="MNIST", cls_name="MNIST", classes=[str(i) for i in range(10)])


def load_fashion(section: DataSection) -> tuple[Split, Split, list[str]]:
    return _load_mnist_like(section, folder="FashionMNIST", cls_name="FashionMNIST", classes=FASHION_CLASSES)


def load_cifar10(section: DataSection) -> tuple[Split, Split, list[str]]:
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
