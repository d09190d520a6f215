"""Datasets: the real torchvision loaders on tiny files in the real formats; batching; augmentation."""

from __future__ import annotations

import os
import pickle
import urllib.error
from pathlib import Path
from typing import Any

import pytest
import torch

from zoo._errors import RecipeError
from zoo.train._augment import augment_batch, tta_probabilities
from zoo.train._datasets import load_data
from zoo.train._preprocess import Preprocess, batch_indices
from zoo.train._recipe import AugmentSection, DataSection, TTASection
from zoo.train._torchvision_files import CIFAR10_FILES, MNIST_FILES
from zoo_tests.synthetic import write_cifar10_files, write_mnist_files


def _section(**kw: Any) -> DataSection:
    return DataSection.model_validate(kw)


def test_mnist_idx_files_load_through_torchvision(tmp_path: Path) -> None:
    raw = write_mnist_files(tmp_path, train=40, test=20)
    assert raw == tmp_path / "MNIST" / "raw"
    data = load_data(_section(dataset="mnist", root=str(tmp_path), val_split=0.25, download=False))
    assert data.train.images.shape == (30, 1, 28, 28) and data.train.images.dtype == torch.uint8
    assert len(data.val) == 10 and len(data.test) == 20  # type: ignore[arg-type]
    assert data.test.labels.tolist() == [i % 10 for i in range(20)]
    assert data.classes == tuple(str(i) for i in range(10)) and data.channels == 1


def test_gzipped_mnist_files_are_accepted(tmp_path: Path) -> None:
    write_mnist_files(tmp_path, folder="FashionMNIST", train=20, test=10, gz=True)
    data = load_data(_section(dataset="fashion_mnist", root=str(tmp_path), validate_on="none", download=False))
    assert len(data.train) == 20 and data.val is None
    assert data.classes[0] == "T-shirt/top"


def test_missing_files_offline_say_which_files_go_where(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(RecipeError) as info:
        load_data(_section(dataset="mnist", root=str(tmp_path), download=False))
    text = str(info.value)
    assert str(tmp_path / "MNIST" / "raw") in text and all(name in text for name in MNIST_FILES)

    def offline(*_a: Any, **_k: Any) -> None:
        raise urllib.error.URLError("Name or service not known")

    import torchvision.datasets.utils as tvu

    monkeypatch.setattr(tvu, "urlopen", offline, raising=False)
    monkeypatch.setattr(tvu, "_urlretrieve", offline, raising=False)
    monkeypatch.setattr(tvu, "download_url", offline)
    import torchvision.datasets.cifar as tvc
    import torchvision.datasets.mnist as tvm

    monkeypatch.setattr(tvm, "download_and_extract_archive", offline)
    monkeypatch.setattr(tvc, "download_and_extract_archive", offline)
    with pytest.raises(RecipeError, match="downloading failed") as info:
        load_data(_section(dataset="cifar10", root=str(tmp_path)))
    text = str(info.value)
    assert "cifar-10-batches-py" in text and all(name in text for name in CIFAR10_FILES)


def test_corrupt_idx_file_is_a_recipe_error(tmp_path: Path) -> None:
    raw = write_mnist_files(tmp_path, train=20, test=10)
    (raw / "train-images-idx3-ubyte").write_bytes(b"\x00\x00\x09\x03garbage")
    with pytest.raises(RecipeError, match="cannot read MNIST"):
        load_data(_section(dataset="mnist", root=str(tmp_path), download=False))


def test_cifar10_pickle_batches_load_through_torchvision(tmp_path: Path) -> None:
    write_cifar10_files(tmp_path, train=50, test=20)
    data = load_data(_section(dataset="cifar10", root=str(tmp_path), val_split=0.2, download=False))
    assert data.train.images.shape == (40, 3, 32, 32) and len(data.test) == 20
    assert data.classes[0] == "airplane" and data.num_classes == 10
    assert len(data.mean) == 3


def test_cifar10_pickle_that_runs_code_is_refused(tmp_path: Path) -> None:
    folder = write_cifar10_files(tmp_path, train=50, test=20)
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self) -> tuple[Any, ...]:
            return (os.system, (f"touch {marker}",))

    (folder / "data_batch_3").write_bytes(pickle.dumps({"data": Evil(), "labels": []}, protocol=2))
    with pytest.raises(RecipeError, match="refusing"):
        load_data(_section(dataset="cifar10", root=str(tmp_path), download=False))
    assert not marker.exists()


def test_digits_are_28x28_with_a_fixed_disjoint_split() -> None:
    a = load_data(_section(dataset="digits", val_split=0.1))
    b = load_data(_section(dataset="digits", val_split=0.1))
    assert a.train.images.shape[1:] == (1, 28, 28)
    assert len(a.train) + len(a.val) + len(a.test) == 1797  # type: ignore[arg-type]
    assert 350 <= len(a.test) <= 365
    assert torch.equal(a.test.images, b.test.images) and torch.equal(a.val.images, b.val.images)  # type: ignore[union-attr]
    assert set(a.test.labels.tolist()) == set(range(10))
    limited = load_data(_section(dataset="digits", validate_on="test", train_limit=100, test_limit=50))
    assert len(limited.train) == 100 and limited.val is limited.test and len(limited.test) == 50


def test_limits_take_a_seeded_sample_with_each_class_share() -> None:
    """A class-sorted set (an image folder's order) limited to N gives every class its share, not
    the first classes everything; split_seed moves the sample and nothing else does."""
    from zoo.train._split import stratified_sample

    labels = torch.arange(3).repeat_interleave(torch.tensor([50, 30, 20]))  # sorted by class
    picked = stratified_sample(labels, 11, seed=0)
    assert len(picked) == 11 and torch.equal(picked, picked.sort().values) and len(set(picked.tolist())) == 11
    # shares 5.5 / 3.3 / 2.2: the floors give 5 + 3 + 2, the largest remainder (0.5) the eleventh
    assert torch.bincount(labels[picked]).tolist() == [6, 3, 2]
    assert torch.equal(picked, stratified_sample(labels, 11, seed=0))
    assert not torch.equal(picked, stratified_sample(labels, 11, seed=1))
    assert torch.equal(stratified_sample(labels, 100, seed=4), torch.arange(100))

    full = load_data(_section(dataset="digits", validate_on="test"))
    a = load_data(_section(dataset="digits", validate_on="test", train_limit=200, test_limit=60))
    b = load_data(_section(dataset="digits", validate_on="test", train_limit=200, test_limit=60, split_seed=1))
    for limited, whole in ((a.train, full.train), (a.test, full.test)):
        shares = torch.bincount(whole.labels, minlength=10) * len(limited) / len(whole)
        assert (torch.bincount(limited.labels, minlength=10) - shares).abs().max() < 1
    assert not torch.equal(a.train.labels, b.train.labels) or not torch.equal(a.train.images, b.train.images)
    assert torch.equal(load_data(_section(dataset="digits", validate_on="test", train_limit=200)).train.images, a.train.images)


def test_batches_cover_each_index_once_and_shard_across_processes() -> None:
    gen = torch.Generator().manual_seed(3)
    batches = batch_indices(103, 10, generator=gen)
    assert sorted(torch.cat(batches).tolist()) == list(range(103))
    assert len(batches) == 11
    single = batch_indices(103, 10, generator=torch.Generator().manual_seed(3), world=1)
    shards = [batch_indices(103, 10, generator=torch.Generator().manual_seed(3), rank=r, world=2) for r in (0, 1)]
    for step, whole in enumerate(single):
        assert sorted(torch.cat([shards[0][step], shards[1][step]]).tolist()) == sorted(whole.tolist())
    # a trailing batch of one image is dropped when BatchNorm needs two
    assert len(batch_indices(21, 10, generator=None, min_size=2)) == 2
    assert len(batch_indices(25, 10, generator=None, drop_last=True)) == 2


def test_augmentation_is_reproducible_and_identity_when_off() -> None:
    x = torch.rand(8, 1, 28, 28)
    off = AugmentSection()
    same = augment_batch(x, off, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(same, x, atol=1e-5)
    aug = AugmentSection(rotation=15, scale=0.1, translate=0.1, hflip=True)
    a = augment_batch(x, aug, generator=torch.Generator().manual_seed(1))
    b = augment_batch(x, aug, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and not torch.allclose(a, x)
    # pad-and-crop moves whole pixels: every output pixel is an input pixel or the fill
    crop = augment_batch(x, AugmentSection(crop_padding=2), generator=torch.Generator().manual_seed(2))
    values = torch.cat([x.flatten(), torch.zeros(1)]).sort().values
    out = crop.flatten()
    pos = torch.searchsorted(values, out).clamp(1, len(values) - 1)
    nearest = torch.minimum((values[pos] - out).abs(), (values[pos - 1] - out).abs())
    assert float(nearest.max()) < 1e-4


def test_preprocess_normalizes_converts_channels_and_resizes() -> None:
    section = _section(dataset="digits", normalize="standard", channels=3, resize=32)
    pre = Preprocess(section, data_channels=1, mean=(0.2,), std=(0.3,), device=torch.device("cpu"))
    raw = torch.full((2, 1, 28, 28), 51, dtype=torch.uint8)  # 0.2 after scaling: the mean
    x = pre.batch(raw, prepared=False)
    assert x.shape == (2, 3, 32, 32) and torch.allclose(x, torch.zeros_like(x), atol=1e-5)
    prepared = pre.prepare(load_data(_section(dataset="digits", validate_on="none")).test)
    assert prepared.images.dtype == torch.float32 and prepared.images.shape[1] == 3
    assert torch.allclose(pre.display(torch.zeros(1, 3, 4, 4)), torch.full((1, 3, 4, 4), 0.2))


def test_digits_read_without_importing_scikit_learn_equal_load_digits() -> None:
    """The digits come from the file scikit-learn's load_digits reads, without its 1-1.5 s import."""
    import subprocess
    import sys

    import numpy as np
    from sklearn.datasets import load_digits

    from zoo.train._datasets import digits_arrays

    images, target = digits_arrays()
    raw = load_digits()
    assert np.array_equal(images, raw.images) and np.array_equal(target, raw.target) and images.shape == (1797, 8, 8)
    code = "import sys; from zoo.train._datasets import digits_arrays; digits_arrays(); print('sklearn' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_test_time_views_are_whole_pixel_shifts_filled_with_black_and_mirrors() -> None:
    """shift 1: the image and its copies moved one pixel each way; hflip doubles them. The result
    is the mean of the views' probabilities."""
    x = torch.rand(3, 1, 6, 6)
    fill = torch.tensor([-0.5])  # black after normalization
    seen: list[torch.Tensor] = []

    def model(v: torch.Tensor) -> torch.Tensor:
        seen.append(v.clone())
        return v.flatten(1)[:, :4] * 3  # (N, 4) logits that depend on the pixels

    probs = tta_probabilities(model, x, TTASection(shift=1), fill=fill)
    assert len(seen) == 5 and torch.equal(seen[0], x)
    shifted = [x[..., 1:-1, 2:], x[..., 1:-1, :-2], x[..., 2:, 1:-1], x[..., :-2, 1:-1]]  # each way once
    matches = [[torch.allclose(v[..., 1:-1, 1:-1], s, atol=1e-6) for s in shifted] for v in seen[1:]]
    assert all(sum(row) == 1 for row in matches) and all(sum(col) == 1 for col in zip(*matches, strict=True))
    for v in seen[1:]:  # exactly one border row or column is empty, and it is black
        border = [v[..., 0, :], v[..., -1, :], v[..., :, 0], v[..., :, -1]]
        assert sum(bool((b == -0.5).all()) for b in border) == 1
    expected = torch.stack([torch.softmax(model(v), dim=1) for v in seen[:5]]).mean(0)
    assert torch.allclose(probs, expected) and torch.allclose(probs.sum(1), torch.ones(3))
    seen.clear()
    tta_probabilities(model, x, TTASection(shift=1, hflip=True), fill=fill)
    assert len(seen) == 10 and torch.equal(seen[1], x.flip(-1))


def test_test_time_augmentation_scores_the_views_mean_and_is_checked_in_the_recipe() -> None:
    """evaluate_split with data.tta: accuracy and loss from the mean probabilities of the views."""
    from zoo.train._evaluate import evaluate_split

    data = load_data(_section(dataset="digits", validate_on="none"))
    section = _section(dataset="digits", validate_on="none", normalize="standard", tta={"shift": 2})
    pre = Preprocess(section, data_channels=1, mean=data.mean, std=data.std, device=torch.device("cpu"))
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 5, stride=3), torch.nn.Flatten(), torch.nn.LazyLinear(10))
    test = data.test.take(torch.arange(64))
    x = pre.batch(test.images_at(torch.arange(64)), prepared=False)
    model(x)  # the lazy layer takes its size
    scores = evaluate_split(model, test, pre, prepared=False, batch_size=16)
    with torch.no_grad():
        probs = tta_probabilities(model, x, section.tta, fill=pre.fill)
    assert scores.accuracy == pytest.approx(float((probs.argmax(1) == test.labels).float().mean()))
    assert scores.loss == pytest.approx(float(torch.nn.functional.nll_loss(probs.log(), test.labels)), rel=1e-5)
    plain = Preprocess(_section(dataset="digits", validate_on="none", normalize="standard"),
                       data_channels=1, mean=data.mean, std=data.std, device=torch.device("cpu"))
    assert evaluate_split(model, test, plain, prepared=False, batch_size=16).loss != pytest.approx(scores.loss)
    with pytest.raises(Exception, match="shift"):
        _section(dataset="digits", tta={"shift": 9})
