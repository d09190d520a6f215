"""Reports and pictures: correct numbers, valid PNG files, the evaluate/visualize commands."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import zoo
from zoo.train import evaluate_main, train, visualize_main
from zoo.train._overrides import recipe_from_data
from zoo.train._pictures import plot_confusion, plot_curves, plot_feature_maps, plot_kernels, plot_misclassified
from zoo.train._report_text import classification_report_text, confusion_matrix, confusion_text
from zoo.train._reports import feature_maps
from zoo_tests.synthetic import write_mnist_files

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


pytestmark = pytest.mark.usefixtures("one_thread")


def assert_png(path: Path, *, min_size: tuple[int, int] = (100, 100)) -> None:
    """A real PNG that both PIL and matplotlib read back, of a sensible size."""
    data = path.read_bytes()
    assert data.startswith(PNG_SIGNATURE), path
    from PIL import Image

    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size[0] >= min_size[0] and image.size[1] >= min_size[1]
    import matplotlib.image

    pixels = matplotlib.image.imread(path)
    assert pixels.ndim == 3 and float(pixels.std()) > 0  # not a blank canvas


def test_confusion_matrix_and_text() -> None:
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    preds = torch.tensor([0, 1, 1, 1, 2, 0])
    m = confusion_matrix(labels, preds, 3)
    assert m.tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    text = confusion_text(m, ["a", "b", "c"])
    assert text.splitlines()[0].startswith("rows: true class")
    assert text.splitlines()[2].split() == ["a", "1", "1", "0"]


def test_classification_report_has_every_class() -> None:
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    preds = torch.tensor([0, 1, 1, 1, 2, 0])
    text, table = classification_report_text(labels, preds, ["zero", "one", "two"])
    for word in ("precision", "recall", "f1-score", "support", "zero", "two", "accuracy"):
        assert word in text
    assert table["one"]["recall"] == 1.0 and table["one"]["precision"] == pytest.approx(2 / 3)
    assert table["accuracy"] == pytest.approx(4 / 6)


def test_each_plot_is_a_valid_png(tmp_path: Path) -> None:
    history = [
        {
            "epoch": e,
            "train_loss": 1 / e,
            "train_accuracy": 1 - 0.5 / e,
            "val_loss": 1.2 / e,
            "val_accuracy": 1 - 0.6 / e,
        }
        for e in range(1, 6)
    ]
    assert_png(plot_curves(history, tmp_path / "curves.png"))
    m = confusion_matrix(torch.randint(0, 10, (200,)), torch.randint(0, 10, (200,)), 10)
    assert_png(plot_confusion(m, [str(i) for i in range(10)], tmp_path / "cm.png"))
    classes = ["airplane", "automobile", "bird"]
    images = torch.rand(5, 3, 32, 32)
    assert_png(
        plot_misclassified(
            images, [0, 1, 2, 0, 1], [1, 2, 0, 2, 0], [3, 8, 9, 12, 40], classes, tmp_path / "wrong.png", total=9
        )
    )
    assert_png(plot_misclassified(torch.zeros(0), [], [], [], classes, tmp_path / "none.png", total=0))
    model = zoo.build("mnist_cnn_v1")
    maps = feature_maps(model, torch.rand(1, 1, 28, 28), max_layers=8)
    assert [name for name, _ in maps] == ["0", "2", "4"] and maps[0][1].shape == (32, 26, 26)
    assert_png(plot_feature_maps(maps, torch.rand(1, 28, 28), tmp_path / "fm.png", max_channels=16, title="t"))
    assert_png(plot_kernels(model[0].weight, tmp_path / "k.png", name="conv"), min_size=(50, 20))
    rgb = torch.nn.Conv2d(3, 8, 5)
    assert_png(plot_kernels(rgb.weight, tmp_path / "k3.png", name="conv"), min_size=(50, 20))


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A short run on tiny MNIST IDX files, with every report and picture."""
    root = tmp_path_factory.mktemp("reports")
    write_mnist_files(root / "data", train=120, test=40)
    recipe = recipe_from_data(
        {
            "name": "reports",
            "model": {"name": "mnist_cnn_v1"},
            "data": {"dataset": "mnist", "root": str(root / "data"), "download": False, "val_split": 0.2},
            "optimizer": {"name": "adam", "lr": 0.003},
            "epochs": 3,
            "batch_size": 16,
            "output_dir": str(root / "run"),
            "progress": False,
        }
    )
    result = train(recipe)
    assert set(result.pictures) >= {"curves", "confusion", "misclassified", "feature_maps", "kernels"}
    return result.run_dir


def test_training_writes_every_picture_and_report(run_dir: Path) -> None:
    for name in ("curves", "confusion_matrix", "misclassified", "feature_maps", "kernels"):
        assert_png(run_dir / f"{name}.png", min_size=(50, 20))
    wrong = json.loads((run_dir / "misclassified.json").read_text())
    assert wrong["of"] == 40 and len(wrong["indices"]) == wrong["count"]
    assert all(t != p for t, p in zip(wrong["true"], wrong["predicted"], strict=True))
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert 1 - wrong["count"] / 40 == pytest.approx(metrics["test_accuracy"])
    matrix = (run_dir / "confusion_matrix.txt").read_text().splitlines()
    assert sum(int(v) for line in matrix[2:] for v in line.split()[1:]) == 40


def test_evaluate_command(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert evaluate_main([str(run_dir)]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-1] == f"reports in {run_dir / 'eval'}"
    assert out[0].startswith("test loss ") and any("precision" in line for line in out)
    assert any(line.startswith("misclassified: ") for line in out)
    result = json.loads((run_dir / "eval" / "eval.json").read_text())
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert result["test_accuracy"] == pytest.approx(metrics["test_accuracy"])
    assert_png(run_dir / "eval" / "confusion_matrix.png")
    # the best checkpoint, or a weights file with the recipe
    assert evaluate_main([str(run_dir), "--checkpoint", "best", "--no-pictures", "--out", str(run_dir / "e2")]) == 0
    assert (
        evaluate_main(
            [str(run_dir / "recipe.yaml"), "--weights", str(run_dir / "weights.pth"), "--out", str(run_dir / "e3")]
        )
        == 0
    )


def test_visualize_command(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_dir = run_dir / "pictures"
    assert visualize_main([str(run_dir), "--out", str(out_dir), "--image", "3"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1] == f"pictures in {out_dir}"
    for name in ("curves", "confusion_matrix", "misclassified", "feature_maps", "kernels"):
        assert_png(out_dir / f"{name}.png", min_size=(50, 20))
    assert visualize_main([str(run_dir), "--what", "kernals"]) == 2
    assert "did you mean 'kernels'" in capsys.readouterr().err


def test_evaluate_errors_are_clear(tmp_path: Path, run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert evaluate_main([str(run_dir / "recipe.yaml")]) == 1  # a user error (exit codes: zoo.train._cli)
    assert "--weights" in capsys.readouterr().err
    other = zoo.build("mnist_ann")
    torch.save(other.state_dict(), tmp_path / "other.pth")
    assert evaluate_main([str(run_dir), "--weights", str(tmp_path / "other.pth"), "--out", str(tmp_path / "o")]) == 3
    assert "do not fit" in capsys.readouterr().err
