"""Hostile and mistaken input to the training stack: every case ends in a ZooError (or one CLI
error line), nothing outside the run's own files is touched, and a run killed between any two of
its file writes resumes to exactly what an uninterrupted run computes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from zoo._errors import CheckpointError, RecipeError
from zoo.train import _checkpoint as checkpoint_module
from zoo.train import train, visualize_main
from zoo.train._checkpoint import RunLock, save_checkpoint
from zoo.train._cli import EXIT_USER, _interrupted, _read_history
from zoo.train._trainer import RunInterrupted
from zoo_tests.recipes import tiny
from zoo_tests.synthetic import write_mnist_files
from zoo_tests.test_trainer import ROOT, weights

pytestmark = pytest.mark.usefixtures("one_thread")


# --------------------------------------------------------------------------- recipes that cannot train


def test_freezing_every_parameter_is_a_recipe_error(tmp_path: Path) -> None:
    with pytest.raises(RecipeError, match="leaves no parameter to train") as info:
        train(tiny(tmp_path / "run", finetune={"freeze": ["*"]}))
    assert info.value.path == "finetune.freeze"


def test_a_diverging_run_stops_with_an_error_instead_of_exiting_zero(tmp_path: Path) -> None:
    with pytest.raises(RecipeError, match="the training loss became nan in epoch 1") as info:
        train(tiny(tmp_path / "run", optimizer={"lr": 1e30}, epochs=3))
    assert info.value.path == "optimizer.lr"
    assert not (tmp_path / "run" / "metrics.json").exists()  # the run is not reported as finished


def test_model_in_channels_against_the_data_names_the_right_key(tmp_path: Path) -> None:
    with pytest.raises(RecipeError, match="model.in_channels is 3 but the batches have 1 channel") as info:
        train(tiny(tmp_path / "run", model={"name": "mnist_cnn_v1", "in_channels": 3}))
    assert "data.channels: 3" in info.value.hint and "resize" not in str(info.value)


# --------------------------------------------------------------------------- data files


def _mnist(tmp_path: Path) -> Path:
    return write_mnist_files(tmp_path / "data", train=40, test=20)


def test_labels_outside_the_classes_are_refused_before_training(tmp_path: Path) -> None:
    raw = _mnist(tmp_path)
    labels = raw / "train-labels-idx1-ubyte"
    data = bytearray(labels.read_bytes())
    data[-1] = 42  # a label no MNIST class has: cross-entropy would fail mid-epoch
    labels.write_bytes(bytes(data))
    with pytest.raises(RecipeError, match="include 42, outside 0..9"):
        train(tiny(tmp_path / "run", data={"dataset": "mnist", "root": str(tmp_path / "data"), "download": False}))


@pytest.mark.parametrize(("offset", "value", "text"), [(2, 0x0B, "IDX type code 0x0b"), (3, 2, "with 2 dimensions"), (0, 7, "not an IDX file")])
def test_idx_headers_are_checked(tmp_path: Path, offset: int, value: int, text: str) -> None:
    raw = _mnist(tmp_path)
    images = raw / "train-images-idx3-ubyte"
    data = bytearray(images.read_bytes())
    data[offset] = value
    images.write_bytes(bytes(data))
    with pytest.raises(RecipeError, match=text):
        train(tiny(tmp_path / "run", data={"dataset": "mnist", "root": str(tmp_path / "data"), "download": False}))


def test_truncated_idx_file_is_refused(tmp_path: Path) -> None:
    raw = _mnist(tmp_path)
    images = raw / "t10k-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:-100])
    with pytest.raises(RecipeError, match="declares"):
        train(tiny(tmp_path / "run", data={"dataset": "mnist", "root": str(tmp_path / "data"), "download": False}))


def test_a_failed_download_leaves_no_folders_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torchvision.datasets.mnist as tvm

    def offline(*args: Any, **kwargs: Any) -> None:
        raise OSError("network unreachable")

    monkeypatch.setattr(tvm, "download_and_extract_archive", offline)
    typo = tmp_path / "dtaa"  # a root named by mistake
    with pytest.raises(RecipeError, match="downloading failed"):
        train(tiny(tmp_path / "run", data={"dataset": "mnist", "root": str(typo)}))
    assert not typo.exists()


# --------------------------------------------------------------------------- run directories


def test_lock_that_is_a_directory_is_a_checkpoint_error(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    (run_dir / ".lock").mkdir(parents=True)
    with pytest.raises(CheckpointError, match="its .lock is a directory"):
        train(tiny(run_dir))


def test_lock_that_is_a_symlink_never_touches_its_target(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    precious = tmp_path / "precious.txt"
    precious.write_text("the user's own file\n")
    (run_dir / ".lock").symlink_to(precious)
    with pytest.raises(CheckpointError, match="its .lock is a symlink"):
        RunLock(run_dir).acquire()
    assert precious.read_text() == "the user's own file\n"


@pytest.mark.parametrize("in_cwd", [False, True], ids=["output_dir", "current_dir"])
def test_only_the_librarys_own_temporaries_are_removed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, in_cwd: bool) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    mine = run_dir / ".notes.tmp"
    mine.write_text("keep me")
    stale = run_dir / ".last.pt.abc123.zoo-tmp"  # what a process killed mid-write leaves
    stale.write_bytes(b"half a checkpoint")
    if in_cwd:
        monkeypatch.chdir(run_dir)
    train(tiny("." if in_cwd else run_dir))
    assert mine.read_text() == "keep me" and not stale.exists()


def test_checkpoint_with_a_valid_digest_but_a_broken_structure(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    # digest right, content wrong: another program's dictionary under the zoo's format tag
    save_checkpoint(run_dir / "last.pt", {"epoch": "one", "model": [1, 2, 3], "best": None})
    with pytest.raises(CheckpointError, match="does not fit this recipe"):
        train(tiny(run_dir), resume=True)


@pytest.mark.parametrize(
    "content",
    ['{"epoch": 1', "[1, 2, 3]", '[{"epoch": "1", "train_loss": 0.5}]', '[{"epoch": 1, "train_loss": "low"}]', "[" * 100000],
    ids=["truncated", "numbers", "epoch-text", "loss-text", "deep"],
)
def test_malformed_history_json_is_a_checkpoint_error(tmp_path: Path, content: str) -> None:
    (tmp_path / "history.json").write_text(content)
    with pytest.raises(CheckpointError, match="history"):
        _read_history(tmp_path)


# --------------------------------------------------------------------------- the command line


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory, one_thread: None) -> Path:
    run_dir = tmp_path_factory.mktemp("hardening") / "run"
    train(tiny(run_dir, epochs=1))
    return run_dir


@pytest.mark.parametrize("image", ["-5", "100000"])
def test_visualize_refuses_an_image_index_outside_the_test_set(
    finished: Path, image: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert visualize_main([str(finished), "--what", "feature_maps", "--image", image]) == EXIT_USER
    err = capsys.readouterr().err
    assert f"--image {image} is not a test image index: the test set has images 0..63" in err


def test_evaluate_out_hint_names_the_flag(finished: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from zoo.train import evaluate_main

    blocker = tmp_path / "file"
    blocker.write_text("")
    assert evaluate_main([str(finished), "--out", str(blocker / "sub")]) == EXIT_USER
    err = capsys.readouterr().err
    assert "--out PATH" in err and "output_dir" not in err


def test_interrupt_before_the_first_checkpoint_does_not_suggest_resume(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(RunInterrupted) as info:
        train(tiny(tmp_path / "run"), interrupt_after=1)
    assert not info.value.resumable
    assert _interrupted(info.value) == 130
    assert "--resume" not in capsys.readouterr().err
    with pytest.raises(RunInterrupted) as info:
        train(tiny(tmp_path / "run2", checkpoint={"every_steps": 1}), interrupt_after=2)
    assert info.value.resumable and _interrupted(info.value) == 130
    assert f"zoo train {tmp_path / 'run2'} --resume" in capsys.readouterr().err


def test_make_model_cards_help_writes_nothing(tmp_path: Path) -> None:
    cards = ROOT / "docs" / "models.md"
    before = cards.stat().st_mtime_ns
    out = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "make_model_cards.py"), "--help"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=120,
    )
    assert out.returncode == 0 and "usage:" in out.stdout
    assert cards.stat().st_mtime_ns == before


# --------------------------------------------------------------------------- kill between any two writes

KILL_SETTINGS: dict[str, Any] = {
    "epochs": 3,
    "batch_size": 32,  # 4 steps an epoch
    "checkpoint": {"every_steps": 3, "test_with": "best"},  # a mid-epoch checkpoint, and best.pt matters
    "schedule": {"name": "cosine"},
}


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory: pytest.TempPathFactory, one_thread: None) -> tuple[Path, dict[str, Any], int]:
    """An uninterrupted run, and how many files it wrote."""
    run_dir = tmp_path_factory.mktemp("straight") / "run"
    writes = 0
    original = checkpoint_module.atomic_write_bytes

    def counting(path: str | Path, data: bytes) -> None:
        nonlocal writes
        writes += 1
        original(path, data)

    checkpoint_module.atomic_write_bytes = counting  # type: ignore[assignment]
    try:
        metrics = train(tiny(run_dir, **KILL_SETTINGS)).metrics
    finally:
        checkpoint_module.atomic_write_bytes = original  # type: ignore[assignment]
    return run_dir, metrics, writes


def _killed_at_write(k: int, run_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run until the k-th file write and stop there, as a SIGKILL between two writes would."""
    original = checkpoint_module.atomic_write_bytes
    count = 0

    def dying(path: str | Path, data: bytes) -> None:
        nonlocal count
        count += 1
        if count == k:
            raise KeyboardInterrupt(f"killed before writing {Path(path).name}")
        original(path, data)

    with monkeypatch.context() as m:
        m.setattr(checkpoint_module, "atomic_write_bytes", dying)
        with pytest.raises(KeyboardInterrupt):
            train(tiny(run_dir, **KILL_SETTINGS))


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(k=st.integers(min_value=1, max_value=40))
def test_a_kill_between_any_two_writes_resumes_to_the_same_run(
    k: int, straight_run: tuple[Path, dict[str, Any], int], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    straight_dir, expected, writes = straight_run
    k = 1 + (k - 1) % writes
    run_dir = Path(tempfile.mkdtemp(prefix=f"killed-{k}-", dir=tmp_path)) / "run"  # tmp_path is shared by examples
    _killed_at_write(k, run_dir, monkeypatch)
    resumed = train(tiny(run_dir, **KILL_SETTINGS), resume=True).metrics
    a, b = weights(straight_dir), weights(run_dir)
    assert all(torch.equal(a[key], b[key]) for key in a), f"weights differ after a kill at write {k}"
    for key in ("best_epoch", "best_val_accuracy", "test_loss", "test_accuracy", "epochs_completed"):
        assert resumed[key] == expected[key], f"{key} after a kill at write {k}"
    history = json.loads((run_dir / "history.json").read_text())
    assert [row["epoch"] for row in history] == [1, 2, 3]
    assert torch.load(run_dir / "best.pt", weights_only=True)["state"]["epoch"] == expected["best_epoch"]
