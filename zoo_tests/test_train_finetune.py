"""The shipped fine-tuning and transfer recipes, run on tiny data with locally generated weights."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import zoo
from zoo.train import load_recipe, train
from zoo_tests.synthetic import write_cifar10_files, write_mnist_files

RECIPES = Path(__file__).resolve().parents[1] / "recipes"


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ft_data")
    write_cifar10_files(root, train=60, test=20)
    write_mnist_files(root, train=60, test=20)
    return root


def _quick(data_root: Path, out: Path, weights: Path, *extra: str) -> list[str]:
    """Overrides that keep a shipped recipe's fine-tuning plan but make it run in seconds."""
    return [
        f"data.root={data_root}",
        "data.download=false",
        "data.resize=32",
        f"finetune.pretrained={weights}",
        "epochs=3",  # the unfreezing steps at epochs 2 and 3 both happen
        "batch_size=10",
        "checkpoint.every_steps=null",
        "channels_last=false",
        "progress=false",
        "reports.enabled=false",
        f"output_dir={out}",
        *extra,
    ]


def test_cifar10_resnet18_recipe_freezes_unfreezes_and_trains_the_head(data_root: Path, tmp_path: Path) -> None:
    source = zoo.build("resnet18")  # "ImageNet" weights, made here: 1000 classes, 3 channels
    torch.save(source.state_dict(), tmp_path / "resnet18.pth")
    before = {k: v.clone() for k, v in source.state_dict().items()}
    overrides = _quick(data_root, tmp_path / "run", tmp_path / "resnet18.pth")
    recipe = load_recipe(RECIPES / "cifar10_resnet18_finetune.yaml", overrides=overrides)
    result = train(recipe)
    after = torch.load(result.run_dir / "weights.pth", weights_only=True)
    # frozen for the whole run: the stem and the first stage, BatchNorm statistics included
    for key in ("conv1.weight", "bn1.weight", "bn1.running_mean", "layer1.0.conv1.weight", "layer1.1.bn2.running_var"):
        assert torch.equal(after[key], before[key]), key
    # unfrozen at epoch 2 or 3, and the new 10-class head
    for key in ("layer2.0.conv1.weight", "layer3.0.conv1.weight", "layer4.1.conv2.weight"):
        assert not torch.equal(after[key], before[key]), key
    assert after["fc.weight"].shape == (10, 512)
    assert result.metrics["precision"] == "fp32"  # amp falls back to fp32 without CUDA


def test_mnist_transfer_recipe_adapts_rgb_weights_to_one_channel(data_root: Path, tmp_path: Path) -> None:
    torch.save(zoo.build("resnet18").state_dict(), tmp_path / "rgb.pth")
    overrides = _quick(data_root, tmp_path / "run", tmp_path / "rgb.pth")
    recipe = load_recipe(RECIPES / "mnist_transfer_resnet18.yaml", overrides=overrides)
    result = train(recipe)
    after = torch.load(result.run_dir / "weights.pth", weights_only=True)
    assert after["conv1.weight"].shape == (64, 1, 7, 7)
    assert result.metrics["trainable_parameters"] == result.metrics["parameters"]  # all unfrozen at epoch 2


def test_fashion_from_digits_recipe_reuses_a_digits_run(data_root: Path, tmp_path: Path) -> None:
    write_mnist_files(data_root, folder="FashionMNIST", train=60, test=20)
    digits = zoo.build("mnist_cnn_v1")
    torch.save(digits.state_dict(), tmp_path / "digits.pth")
    overrides = _quick(data_root, tmp_path / "run", tmp_path / "digits.pth", "data.resize=null")
    result = train(load_recipe(RECIPES / "fashion_from_digits.yaml", overrides=overrides))
    after = torch.load(result.run_dir / "weights.pth", weights_only=True)
    assert not torch.equal(after["8.weight"], digits.state_dict()["8.weight"])
    assert result.metrics["dataset"] == "fashion_mnist"
