"""Users' own images end to end: a folder of real PNG/JPEG files trained, resumed, evaluated, predicted.

Also the CLI around training: flags that map onto the recipe, one exit code per kind of failure,
the early-stopping line, resuming a finished run, TensorBoard files, top-5, safetensors weights.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from zoo._errors import RecipeError
from zoo.train import Recipe, evaluate_main, predict_main, train, train_main
from zoo.train._datasets import load_data
from zoo.train._recipe import DataSection
from zoo_tests.recipes import recipe_over, tiny

pytestmark = pytest.mark.usefixtures("one_thread")

CLASSES = ("circle", "cross", "stripes")


def _picture(kind: str, i: int, size: int = 40) -> Any:
    """A small RGB picture of its class: a disc, a cross or stripes, at a position that moves with i."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (size + i % 5, size), color=(20 + 7 * i % 40, 30, 40))
    draw = ImageDraw.Draw(image)
    o = i % 6
    if kind == "circle":
        draw.ellipse((6 + o, 6, 30 + o, 30), fill=(230, 60, 60))
    elif kind == "cross":
        draw.line((4 + o, 4, 34 + o, 34), fill=(60, 230, 60), width=5)
        draw.line((34 + o, 4, 4 + o, 34), fill=(60, 230, 60), width=5)
    else:
        for x in range(0, size, 8):
            draw.rectangle((x, 0, x + 3, size), fill=(60, 60, 230))
    return image


def write_folder(root: Path, *, per_class: int = 10, splits: tuple[str, ...] = ()) -> Path:
    """root/<class>/*.png|jpg (or root/<split>/<class>/... for each of ``splits``); real image files."""
    for split in splits or ("",):
        for c, kind in enumerate(CLASSES):
            folder = root / split / kind
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                suffix = ".jpg" if i % 3 == 0 else ".png"  # both formats in every class
                _picture(kind, i + 17 * c).save(folder / f"img{i}{suffix}")
    return root


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_folder(tmp_path_factory.mktemp("photos") / "photos", per_class=12)


def folder_recipe(root: Path, out: Path, **overrides: Any) -> Recipe:
    data: dict[str, Any] = {
        "name": "folder",
        "model": {"name": "mnist_cnn_v1"},
        "data": {
            "dataset": "imagefolder",
            "root": str(root),
            "resize": 28,
            "workers": 0,
            "val_split": 0.2,
            "augment": {"hflip": True, "rotation": 10, "scale": 0.1},
        },
        "optimizer": {"name": "adam", "lr": 0.003},
        "epochs": 3,
        "batch_size": 4,
        "output_dir": str(out),
        "progress": False,
        "reports": {"enabled": False},
        "channels_last": False,
        "tensorboard": False,
    }
    return recipe_over(data, overrides)


def _run(main: Callable[[list[str]], int], argv: list[str]) -> tuple[int, str]:
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        status = main(argv)
    return status, buffer.getvalue()


# --------------------------------------------------------------------------- data


def test_folder_layouts_classes_and_splits(tmp_path: Path) -> None:
    flat = load_data(DataSection.model_validate({"dataset": "imagefolder", "root": str(write_folder(tmp_path / "flat")), "resize": 24}))
    assert flat.classes == CLASSES and flat.channels == 3 and flat.image_size == (24, 24)
    assert (len(flat.train), len(flat.val or []), len(flat.test)) == (22, 2, 6)  # 20% test, then 10% validation
    image = flat.test.images_at(torch.tensor([0]))
    assert image.dtype == torch.uint8 and image.shape == (1, 3, 24, 24)

    split = write_folder(tmp_path / "split", per_class=4, splits=("train", "val", "test"))
    data = load_data(DataSection.model_validate({"dataset": "imagefolder", "root": str(split), "resize": 24, "channels": 1}))
    assert (len(data.train), len(data.val or []), len(data.test)) == (12, 12, 12)  # the folders' own splits
    assert data.channels == 1 and data.test.labels.tolist() == [0] * 4 + [1] * 4 + [2] * 4


def test_a_limited_folder_keeps_every_class(photos: Path, tmp_path: Path) -> None:
    """An image folder is read class by class: the first 9 images would all be one class."""
    data = load_data(folder_recipe(photos, tmp_path / "out", data={"train_limit": 9, "validate_on": "none"}).data)
    assert len(data.train) == 9 and torch.bincount(data.train.labels).tolist() == [3, 3, 3]


@pytest.mark.parametrize("workers", [0, 2])
def test_unreadable_image_names_the_file(tmp_path: Path, workers: int) -> None:
    root = write_folder(tmp_path / "p", per_class=4)
    (root / "cross" / "broken.png").write_bytes(b"not a png at all")
    section = DataSection.model_validate(
        {"dataset": "imagefolder", "root": str(root), "resize": 16, "workers": workers, "val_split": 0}
    )
    from zoo.train._imagefolder import load_imagefolder
    from zoo.train._preprocess import Preprocess

    train_split, _, test_split, _ = load_imagefolder(section)  # listing files does not open them
    pre = Preprocess(section, data_channels=3, mean=(0.5,) * 3, std=(0.5,) * 3, device=torch.device("cpu"))
    with pytest.raises(RecipeError, match=r"cannot read image .*broken\.png"):
        for split in (train_split, test_split):
            list(split.batches(torch.arange(len(split)).split(4), pre))


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda root: None, "is not a folder"),
        (lambda root: (root / "only").mkdir(parents=True), "needs at least 2"),
        (lambda root: [(root / c).mkdir(parents=True) for c in "ab"], "no images"),
    ],
)
def test_folder_mistakes_are_recipe_errors(tmp_path: Path, setup: Callable[[Path], Any], message: str) -> None:
    root = tmp_path / "root"
    setup(root)
    with pytest.raises(RecipeError, match=message) as info:
        load_data(DataSection.model_validate({"dataset": "imagefolder", "root": str(root)}))
    assert info.value.path == "data.root"


# --------------------------------------------------------------------------- train, resume, evaluate, predict


@pytest.fixture(scope="module")
def folder_run(photos: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One uninterrupted run on the photo folder, with reports."""
    out = tmp_path_factory.mktemp("runs") / "straight"
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # as under one_thread: the resume test compares bitwise against this run
    try:
        result = train(folder_recipe(photos, out, reports={"enabled": True}))
    finally:
        torch.set_num_threads(before)
    assert result.metrics["epochs_completed"] == 3
    return out


def test_learns_the_folder_and_saves_classes_with_the_run(folder_run: Path) -> None:
    metrics = json.loads((folder_run / "metrics.json").read_text())
    assert metrics["dataset"] == "imagefolder" and metrics["test_images"] == 6
    history = metrics["history"]
    assert history[-1]["train_accuracy"] > history[0]["train_accuracy"] and metrics["test_accuracy"] > 0.5  # chance: 1/3
    info = json.loads((folder_run / "run_info.json").read_text())
    assert info["classes"] == list(CLASSES) and info["model"]["num_classes"] == 3 and info["model"]["in_channels"] == 3
    assert (folder_run / "confusion_matrix.txt").read_text().count("circle") >= 1


def test_resume_with_workers_is_bit_identical_to_a_straight_run(photos: Path, folder_run: Path, tmp_path: Path) -> None:
    """Interrupted mid-epoch with 0 workers, resumed with 2: per-image augmentation seeds make them equal."""
    recipe = folder_recipe(photos, tmp_path / "b", checkpoint={"every_steps": 2})
    with pytest.raises(KeyboardInterrupt):
        train(recipe, interrupt_after=5)
    resumed = train(folder_recipe(photos, tmp_path / "b", data={"workers": 2}, checkpoint={"every_steps": 2}), resume=True)
    a = torch.load(folder_run / "weights.pth", weights_only=True)
    b = torch.load(tmp_path / "b" / "weights.pth", weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a)
    straight = json.loads((folder_run / "metrics.json").read_text())
    assert resumed.metrics["test_loss"] == straight["test_loss"]


def test_evaluate_and_predict_from_the_run(folder_run: Path, photos: Path) -> None:
    status, out = _run(evaluate_main, [str(folder_run), "--no-pictures"])
    assert status == 0 and "test accuracy" in out and "circle" in out
    images = [str(photos / "circle" / "img0.jpg"), str(photos / "stripes" / "img4.png")]
    status, out = _run(predict_main, [str(folder_run), *images, "--top-k", "2"])
    lines = out.strip().splitlines()
    assert status == 0 and len(lines) == 2 and lines[0].startswith(images[0] + ": ")
    assert all(line.count("%") == 2 for line in lines)  # top 2 with probabilities
    status, out = _run(predict_main, [str(folder_run), *images, "--top-k", "5", "--json"])
    rows = json.loads(out)
    assert [len(r["top"]) for r in rows] == [3, 3]  # capped at the number of classes
    probs = [t["probability"] for t in rows[0]["top"]]
    assert probs == sorted(probs, reverse=True) and abs(sum(probs) - 1) < 1e-5
    assert {t["class"] for t in rows[0]["top"]} == set(CLASSES)


def test_predict_from_the_safetensors_file_alone(folder_run: Path, photos: Path, tmp_path: Path) -> None:
    """weights.safetensors carries classes and preprocessing in its metadata."""
    alone = tmp_path / "model.safetensors"
    shutil.copy(folder_run / "weights.safetensors", alone)
    image = str(photos / "cross" / "img1.png")
    _, from_run = _run(predict_main, [str(folder_run), image, "--json"])
    status, from_file = _run(predict_main, [str(alone), image, "--json"])
    assert status == 0 and json.loads(from_file) == json.loads(from_run)


def test_predict_mistakes_have_their_exit_codes(folder_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert predict_main([str(folder_run), str(tmp_path / "missing.png")]) == 1
    assert "cannot read image" in capsys.readouterr().err
    bare = tmp_path / "bare.pth"
    shutil.copy(folder_run / "weights.pth", bare)
    assert predict_main([str(bare), str(tmp_path / "x.png")]) == 3  # no run information beside it
    assert "run_info.json" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        predict_main([str(folder_run)])  # no image: usage
    assert info.value.code == 2


# --------------------------------------------------------------------------- the training CLI


def test_training_flags_map_onto_the_recipe(photos: Path, tmp_path: Path) -> None:
    recipe_file = tmp_path / "r.yaml"
    from zoo.train import dump_recipe

    recipe_file.write_text(dump_recipe(folder_recipe(photos, tmp_path / "unused")))
    out = tmp_path / "flags"
    status, stdout = _run(
        train_main,
        [str(recipe_file), "--no-progress", "--epochs", "1", "--batch-size", "6", "--lr", "0.01",
         "--device", "cpu", "--precision", "fp32", "--seed", "7", "--output", str(out)],
    )  # fmt: skip
    assert status == 0, stdout
    saved = (out / "recipe.yaml").read_text()
    for line in ("epochs: 1", "batch_size: 6", "lr: 0.01", "device: cpu", "precision: fp32", "seed: 7"):
        assert f"\n{line}" in saved or f" {line}" in saved, line
    assert stdout.strip().splitlines()[-1] == f"run directory: {out}"
    # resuming the finished run says so instead of training or evaluating again
    status, stdout = _run(train_main, [str(out), "--no-progress"])
    assert status == 0 and "already finished" in stdout


def test_exit_code_per_kind_of_failure(photos: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: {name: mnist_cnn_v1}\ndata: {dataset: imagefolder, root: nowhere}\nepochz: 3\n")
    assert train_main([str(bad)]) == 1  # user error in the recipe
    assert "did you mean 'epochs'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        train_main([str(bad), "--epochs", "three"])
    assert info.value.code == 2  # usage
    run = tmp_path / "run"
    run.mkdir()
    (run / "recipe.yaml").write_text(bad.read_text().replace("epochz", "epochs"))
    (run / "last.pt").write_bytes(b"truncated")
    assert train_main([str(run), "--no-progress"]) == 3  # a checkpoint that cannot be used


def test_early_stopping_says_so(photos: Path, tmp_path: Path) -> None:
    lines: list[str] = []
    recipe = folder_recipe(
        photos, tmp_path / "es", epochs=6, optimizer={"lr": 1e-9}, early_stopping={"patience": 1, "monitor": "val_loss", "min_delta": 1.0}
    )
    result = train(recipe, log=lines.append)
    assert result.metrics["stopped_early"] and result.metrics["epochs_completed"] == 2
    assert any(line.startswith("early stopping after epoch 2: val_loss has not improved") for line in lines)


def test_tensorboard_files_and_top5_beside_history(tmp_path: Path) -> None:
    """digits has 10 classes: top-5 accuracy is reported; TensorBoard writes event files (installed in dev)."""
    pytest.importorskip("tensorboard", reason="TensorBoard files: pip install tensorboard (in the dev extra)")
    data = {"train_limit": 96, "test_limit": 32, "val_split": 0.25}
    recipe = tiny(tmp_path / "tb", name="tb", data=data, epochs=1, tensorboard=True, optimizer={"name": "adam", "lr": 0.001})
    result = train(recipe)
    row = result.metrics["history"][0]
    assert row["val_top5_accuracy"] >= row["val_accuracy"]
    assert 0 <= result.metrics["test_top5_accuracy"] <= 1
    assert "val_top5_accuracy" in (tmp_path / "tb" / "history.csv").read_text().splitlines()[0]
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))


@pytest.mark.slow
def test_torchrun_trains_an_image_folder_with_workers(photos: Path, tmp_path: Path) -> None:
    """Two processes, each decoding its share of every global batch in a DataLoader worker: rank 0
    alone writes the run, and the run directory serves predict."""
    import os
    import socket
    import subprocess
    import sys

    from zoo.train._overrides import dump_recipe

    root = Path(__file__).resolve().parent.parent
    run_dir = tmp_path / "run"
    recipe_file = tmp_path / "ddp.yaml"
    recipe_file.write_text(dump_recipe(folder_recipe(photos, run_dir, epochs=2, data={"workers": 1})))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes=1", "--nproc_per_node=2", "--master_addr=127.0.0.1",
           f"--master_port={port}", str(root / "scripts" / "train.py"), str(recipe_file), "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("run directory:") == 1  # only rank 0 reports
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["epochs_completed"] == 2 and metrics["dataset"] == "imagefolder"
    assert json.loads((run_dir / "run_info.json").read_text())["classes"] == list(CLASSES)
    status, out = _run(predict_main, [str(run_dir), str(photos / "cross" / "img1.png"), "--top-k", "1"])
    assert status == 0 and out.count("%") == 1


def test_predict_applies_the_runs_test_time_augmentation(folder_run: Path, photos: Path, tmp_path: Path) -> None:
    """A run trained with data.tta predicts with the same views: its probabilities are the views'
    mean, not the plain network's."""
    from zoo.train._augment import tta_probabilities
    from zoo.train._imagefolder import image_transform, open_image
    from zoo.train._predict import load_predictor

    run = tmp_path / "tta_run"
    shutil.copytree(folder_run, run)
    info = json.loads((run / "run_info.json").read_text())
    info["data"]["tta"] = {"shift": 2, "hflip": True}
    (run / "run_info.json").write_text(json.dumps(info))
    images = [str(photos / "circle" / "img0.jpg"), str(photos / "cross" / "img1.png")]
    plain, views = load_predictor(folder_run, device="cpu"), load_predictor(run, device="cpu")
    assert views.pre.section.tta.enabled and not plain.pre.section.tta.enabled
    top_plain, top_views = plain(images, top_k=3), views(images, top_k=3)
    transform = image_transform(views.size, None)
    x = views.pre.batch(torch.stack([transform(open_image(p, views.mode)).as_subclass(torch.Tensor) for p in images]), prepared=False)
    with torch.no_grad():
        expected = tta_probabilities(views.model, x, views.pre.section.tta, fill=views.pre.fill)
    for row, probs in zip(top_views, expected, strict=True):
        assert {c: p for c, p in row} == pytest.approx({CLASSES[i]: float(probs[i]) for i in range(len(CLASSES))}, abs=1e-6)
    assert top_views != top_plain
