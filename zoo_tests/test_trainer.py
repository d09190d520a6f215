"""The trainer end to end: accuracy, files, resume, crashes, locks, fine-tuning, torchrun."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

import zoo
from zoo._errors import CheckpointError, RecipeError
from zoo.train import dump_recipe, recipe_from_data, train, train_main
from zoo.train._checkpoint import RunLock, load_checkpoint, save_checkpoint
from zoo.train._finetune import finetune_plan, set_trainable
from zoo.train._optim import make_optimizer, make_scheduler
from zoo_tests.recipes import tiny

ROOT = Path(__file__).resolve().parents[1]
TRAIN_SCRIPT = ROOT / "scripts" / "train.py"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
CHILD_ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


pytestmark = pytest.mark.usefixtures("one_thread")


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "weights.pth", weights_only=True)  # type: ignore[no-any-return]


def history_without_time(metrics: dict[str, Any]) -> list[dict[str, Any]]:
    return [{k: v for k, v in row.items() if k != "seconds"} for row in metrics["history"]]


# --------------------------------------------------------------------------- the quickstart


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str, float]]:
    """The README's first command, run once through the CLI: (run dir, stdout, seconds)."""
    run_dir = tmp_path_factory.mktemp("quick") / "run"
    out = tmp_path_factory.mktemp("quick_out") / "stdout.txt"
    started = time.perf_counter()
    import contextlib
    import io

    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        status = train_main([str(ROOT / "recipes" / "quickstart_digits.yaml"), "--set", f"output_dir={run_dir}"])
    seconds = time.perf_counter() - started
    out.write_text(buffer.getvalue())
    assert status == 0, buffer.getvalue()
    yield run_dir, buffer.getvalue(), seconds


def test_quickstart_reaches_95_percent_quickly(quickstart: tuple[Path, str, float]) -> None:
    run_dir, _, seconds = quickstart
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["test_accuracy"] >= 0.95, metrics["test_accuracy"]
    assert metrics["model"] == "mnist_cnn_v1" and metrics["dataset"] == "digits"
    assert seconds < 180  # about 20-40 s on two cores; generous for a loaded machine


def test_quickstart_prints_accuracy_pictures_and_run_dir_last(quickstart: tuple[Path, str, float]) -> None:
    run_dir, stdout, _ = quickstart
    lines = stdout.strip().splitlines()
    assert lines[-1] == f"run directory: {run_dir}"
    assert any(line.startswith("test accuracy ") for line in lines)
    assert any("pictures" in line and str(run_dir) in line for line in lines)
    assert sum(line.startswith("epoch ") for line in lines) == 8


def test_run_directory_contents(quickstart: tuple[Path, str, float]) -> None:
    run_dir, _, _ = quickstart
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert {"test_accuracy", "test_loss", "history"} <= set(metrics)
    assert len(metrics["history"]) == 8
    assert {"epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr"} <= set(metrics["history"][0])
    csv_lines = (run_dir / "history.csv").read_text().splitlines()
    assert csv_lines[0].startswith("epoch,train_loss,train_accuracy,val_loss,val_accuracy") and len(csv_lines) == 9
    state = load_checkpoint(run_dir / "last.pt")
    assert {"model", "optimizer", "scheduler", "rng", "epoch", "history"} <= set(state)
    assert state["epoch"] == 8
    raw = torch.load(run_dir / "last.pt", weights_only=True)  # a plain, safe torch file
    assert raw["format"] == "zoo-checkpoint/1"
    assert (run_dir / "best.pt").is_file() and (run_dir / "recipe.yaml").is_file()
    for name in ("curves", "confusion_matrix", "misclassified", "feature_maps", "kernels"):
        data = (run_dir / f"{name}.png").read_bytes()
        assert data.startswith(PNG_SIGNATURE), name
    assert "precision" in (run_dir / "classification_report.txt").read_text()
    # the final weights are a plain state dict usable as pretrained weights of another recipe
    model = zoo.build("mnist_cnn_v1", pretrained=str(run_dir / "weights.pth"))
    assert isinstance(model, torch.nn.Module)


# --------------------------------------------------------------------------- resume


def test_resume_after_interruption_gives_identical_weights(tmp_path: Path) -> None:
    settings: dict[str, Any] = {
        "model": {"name": "mnist_deep_cnn"},  # has dropout: the RNG state must be restored too
        "data": {"train_limit": 64, "val_split": 0.25, "augment": {"rotation": 10, "translate": 0.1}},
        "schedule": {"name": "onecycle"},
        "batch_size": 8,  # 6 steps per epoch
        "checkpoint": {"every_steps": 4},
    }
    straight = train(tiny(tmp_path / "a", **settings))
    with pytest.raises(KeyboardInterrupt):
        train(tiny(tmp_path / "b", **settings), interrupt_after=9)  # "killed" in epoch 2 after its 3rd step
    state = load_checkpoint(tmp_path / "b" / "last.pt")  # written inside epoch 2, after its 2nd step
    assert (state["epoch"], state["step_in_epoch"], state["global_step"]) == (1, 2, 8)
    resumed = train(tiny(tmp_path / "b", **settings), resume=True)
    a, b = weights(tmp_path / "a"), weights(tmp_path / "b")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert history_without_time(straight.metrics) == history_without_time(resumed.metrics)
    assert straight.metrics["test_loss"] == resumed.metrics["test_loss"]


def test_resume_at_an_epoch_boundary_with_plateau_schedule(tmp_path: Path) -> None:
    settings: dict[str, Any] = {
        "epochs": 3,
        "schedule": {"name": "plateau", "patience": 0},
        "optimizer": {"name": "sgd", "lr": 0.05, "momentum": 0.9},
    }
    straight = train(tiny(tmp_path / "a", **settings))
    with pytest.raises(KeyboardInterrupt):
        train(tiny(tmp_path / "b", **settings), interrupt_after=6)  # epoch 2, after last.pt of epoch 1
    resumed = train(tiny(tmp_path / "b", **settings), resume=True)
    a, b = weights(tmp_path / "a"), weights(tmp_path / "b")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert history_without_time(straight.metrics) == history_without_time(resumed.metrics)


def test_auto_memory_layout_is_chosen_once_and_kept_on_resume(tmp_path: Path) -> None:
    with pytest.raises(KeyboardInterrupt):
        train(tiny(tmp_path / "run", channels_last="auto"), interrupt_after=5)
    chosen = load_checkpoint(tmp_path / "run" / "last.pt")["channels_last"]
    assert isinstance(chosen, bool)
    resumed = train(tiny(tmp_path / "run", channels_last="auto"), resume=True)
    assert resumed.metrics["channels_last"] is chosen


def _start_training(recipe_file: Path, run_dir: Path, *extra: str) -> subprocess.Popen[bytes]:
    cmd = [
        sys.executable,
        str(TRAIN_SCRIPT),
        str(recipe_file),
        "--no-progress",
        "--set",
        f"output_dir={run_dir}",
        *extra,
    ]
    return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=CHILD_ENV)


def _wait_for_new_checkpoint(proc: subprocess.Popen[bytes], last: Path, timeout: float = 120) -> bool:
    """True once the process has written a checkpoint of its own (last.pt newer than before)."""
    before = last.stat().st_mtime_ns if last.exists() else -1
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if last.exists() and last.stat().st_mtime_ns != before:
            return True
        time.sleep(0.01)
    return False


def test_sigkill_at_random_moments_then_resume_finishes(tmp_path: Path) -> None:
    recipe = tiny(
        tmp_path / "unused", epochs=3, batch_size=8, data={"train_limit": 600}, checkpoint={"every_steps": 3}
    )  # 60 steps per epoch, a checkpoint every 3 steps
    recipe_file = tmp_path / "kill.yaml"
    recipe_file.write_text(dump_recipe(recipe))
    run_dir = tmp_path / "run"
    last = run_dir / "last.pt"
    rng = random.Random(20240601)
    steps_seen = []
    for attempt in range(3):
        proc = _start_training(recipe_file, run_dir, *(["--resume"] if attempt else []))
        try:
            started = _wait_for_new_checkpoint(proc, last)
            assert started, proc.communicate()[0].decode()
            time.sleep(rng.uniform(0.0, 0.6))  # anywhere: mid-step, mid-checkpoint-write, mid-validation
            assert proc.poll() is None, "the run finished before it could be killed"
            os.kill(proc.pid, signal.SIGKILL)
        finally:
            proc.wait(timeout=60)
            if proc.stdout is not None:
                proc.stdout.close()
        state = load_checkpoint(last)  # the last complete checkpoint is intact and verifies
        steps_seen.append(state["global_step"])
    assert steps_seen == sorted(steps_seen) and steps_seen[-1] > steps_seen[0]  # each restart made progress
    final = subprocess.run(
        [
            sys.executable,
            str(TRAIN_SCRIPT),
            str(recipe_file),
            "--no-progress",
            "--resume",
            "--set",
            f"output_dir={run_dir}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env=CHILD_ENV,
    )
    assert final.returncode == 0, final.stderr
    assert final.stdout.strip().splitlines()[-1] == f"run directory: {run_dir}"
    assert "resuming" in final.stdout
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["epochs_completed"] == 3 and [r["epoch"] for r in metrics["history"]] == [1, 2, 3]
    assert not list(run_dir.glob(".*.zoo-tmp"))  # half-written temporaries were cleaned up
    # and the result is exactly what an uninterrupted run computes
    straight = train(recipe_from_data({**recipe.to_data(), "output_dir": str(tmp_path / "straight")}))
    a, b = weights(tmp_path / "straight"), weights(run_dir)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert straight.metrics["test_loss"] == metrics["test_loss"]


# --------------------------------------------------------------------------- broken checkpoints


@pytest.fixture
def finished_run(tmp_path: Path) -> Path:
    train(tiny(tmp_path / "run", epochs=1))
    return tmp_path / "run"


def test_truncated_checkpoint_is_detected(finished_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    last = finished_run / "last.pt"
    data = last.read_bytes()
    last.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="cannot be loaded safely"):
        load_checkpoint(last)
    recipe_file = finished_run / "recipe.yaml"
    status = train_main(
        [str(recipe_file), "--resume", "--no-progress", "--set", "epochs=2", "--set", f"output_dir={finished_run}"]
    )
    assert status == 3 and "error:" in capsys.readouterr().err  # a checkpoint that cannot be used


def test_flipped_bytes_are_detected(finished_run: Path) -> None:
    last = finished_run / "last.pt"
    state = load_checkpoint(last)
    state["model"]["0.weight"][0, 0, 0, 0] += 1.0  # a silent change in a tensor...
    payload = torch.load(last, weights_only=True)
    payload["state"] = state  # ...under the old digest
    torch.save(payload, last)
    with pytest.raises(CheckpointError, match="sha256"):
        load_checkpoint(last)
    # and raw byte damage somewhere in the file
    save_checkpoint(last, state)
    blob = bytearray(last.read_bytes())
    for i in range(len(blob) // 3, len(blob) // 3 + 64):
        blob[i] ^= 0xFF
    last.write_bytes(bytes(blob))
    with pytest.raises(CheckpointError):
        load_checkpoint(last)


def test_pickle_that_runs_code_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self) -> tuple[Any, ...]:
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "evil.pt"
    torch.save({"format": "zoo-checkpoint/1", "state": Evil()}, path)
    with pytest.raises(CheckpointError, match="cannot be loaded safely"):
        load_checkpoint(path)
    assert not marker.exists()


# --------------------------------------------------------------------------- run directory safety


def test_second_process_on_the_same_run_dir_is_refused(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from zoo.train._checkpoint import RunLock; RunLock(sys.argv[1]).acquire(); "
            "print('locked', flush=True); time.sleep(60)",
            str(run_dir),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        with pytest.raises(CheckpointError, match=f"in use by another process \\(pid {holder.pid}\\)"):
            train(tiny(run_dir), resume=True)
        with pytest.raises(CheckpointError):
            RunLock(run_dir).acquire()
    finally:
        holder.kill()
        holder.wait()
        if holder.stdout is not None:
            holder.stdout.close()
    with RunLock(run_dir):  # the kernel released the dead holder's lock
        pass


def test_existing_run_is_not_overwritten_by_accident(finished_run: Path) -> None:
    with pytest.raises(RecipeError, match="already holds a run"):
        train(tiny(finished_run, epochs=1))
    result = train(tiny(finished_run, epochs=1), overwrite=True)
    assert result.run_dir == finished_run


def test_default_run_dirs_are_numbered(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    first = train(tiny(tmp_path, epochs=1, output_dir=None))
    second = train(tiny(tmp_path, epochs=1, output_dir=None))
    assert first.run_dir == Path("runs/tiny") and second.run_dir == Path("runs/tiny-2")


@pytest.fixture
def unwritable_dir(tmp_path: Path) -> Iterator[Path]:
    """A directory this process cannot create files in (root ignores modes: make it immutable)."""
    folder = tmp_path / "readonly"
    folder.mkdir()
    folder.chmod(0o555)
    if os.geteuid() != 0:
        yield folder
        return
    if shutil.which("chattr") and subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode == 0:
        try:
            yield folder
        finally:
            subprocess.run(["chattr", "-i", str(folder)], check=True)
        return
    yield Path("/sys")  # a kernel file system refuses new folders even to root


def test_read_only_output_dir_fails_before_training(unwritable_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = unwritable_dir / "run"
    with pytest.raises(RecipeError, match="not writable") as info:
        train(tiny(target))
    assert info.value.path == "output_dir"
    assert "training" not in capsys.readouterr().out  # refused before any data or model was loaded


def test_full_disk_is_reported_before_training(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(shutil, "disk_usage", lambda _p: usage._replace(free=1000))
    with pytest.raises(RecipeError, match="not enough free disk space"):
        train(tiny(tmp_path / "run"))
    assert not (tmp_path / "run" / "last.pt").exists()


# --------------------------------------------------------------------------- recipe features


def test_fine_tuning_freezes_what_the_recipe_freezes(tmp_path: Path) -> None:
    source = zoo.build("mnist_cnn_v1")
    torch.save(source.state_dict(), tmp_path / "pretrained.pth")
    before = {k: v.clone() for k, v in source.state_dict().items()}
    recipe = tiny(
        tmp_path / "run",
        epochs=1,
        finetune={"pretrained": str(tmp_path / "pretrained.pth"), "freeze": ["0", "2"], "reset_head": True},
    )
    result = train(recipe)
    after = weights(result.run_dir)
    for key in ("0.weight", "0.bias", "2.weight", "2.bias"):
        assert torch.equal(after[key], before[key]), key  # frozen: untouched
    for key in ("4.weight", "6.weight", "8.weight"):
        assert not torch.equal(after[key], before[key]), key  # trained
    assert result.metrics["trainable_parameters"] < result.metrics["parameters"]

    # the same plan on a live model: frozen parameters get no gradient at all
    model = zoo.build("mnist_cnn_v1", pretrained=str(tmp_path / "pretrained.pth"))
    plan = finetune_plan(model, recipe.finetune, lr=0.01)
    set_trainable(model, plan.frozen_at(1))
    model(torch.rand(4, 1, 28, 28)).sum().backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    assert grads["0.weight"] is None and grads["2.bias"] is None
    assert grads["4.weight"] is not None and grads["8.bias"] is not None


def test_backbone_freeze_groups_and_gradual_unfreezing(tmp_path: Path) -> None:
    model = zoo.build("mnist_cnn_v1")
    recipe = tiny(
        tmp_path,
        epochs=3,
        finetune={
            "freeze_backbone": True,
            "unfreeze": [{"epoch": 2, "params": ["4", "6", "7"]}, {"epoch": 3, "params": ["0", "2"]}],
            "groups": [{"params": ["0", "2"], "lr_scale": 0.1}, {"params": ["4"], "lr": 0.0005}],
        },
    )
    plan = finetune_plan(model, recipe.finetune, lr=0.002)
    assert plan.head == ("8.weight", "8.bias")
    assert "8.weight" not in plan.frozen_at(1) and "0.weight" in plan.frozen_at(1) and "6.bias" in plan.frozen_at(1)
    assert "6.bias" not in plan.frozen_at(2) and "0.weight" in plan.frozen_at(2)
    assert plan.frozen_at(3) == frozenset()
    optimizer = make_optimizer(model, plan, recipe.optimizer)
    lrs = {g["name"]: g["lr"] for g in optimizer.param_groups}
    assert lrs == {"base": 0.002, "group0": pytest.approx(0.0002), "group1": 0.0005}
    result = train(recipe)
    assert result.metrics["trainable_parameters"] == result.metrics["parameters"]  # all unfrozen by the end


def test_bad_pattern_names_the_recipe_key(tmp_path: Path) -> None:
    with pytest.raises(RecipeError, match="matches no parameter") as info:
        train(tiny(tmp_path / "run", finetune={"freeze": ["layer9"]}))
    assert info.value.path == "finetune.freeze[0]"


@pytest.mark.parametrize("schedule", ["step", "multistep", "cosine", "onecycle", "plateau"])
def test_every_schedule_survives_a_safe_checkpoint_round_trip(schedule: str, tmp_path: Path) -> None:
    model = zoo.build("mnist_cnn_v1")
    recipe = tiny(tmp_path, schedule={"name": schedule, "milestones": [1], "warmup_epochs": 1})
    plan = finetune_plan(model, recipe.finetune, lr=recipe.optimizer.lr)
    optimizer = make_optimizer(model, plan, recipe.optimizer)
    sched, _ = make_scheduler(
        optimizer, recipe.schedule, optimizer_section=recipe.optimizer, epochs=2, steps_per_epoch=5
    )
    model(torch.rand(2, 1, 28, 28)).sum().backward()
    optimizer.step()
    sched.step(1.0) if schedule == "plateau" else sched.step()
    save_checkpoint(tmp_path / "s.pt", {"scheduler": sched.state_dict(), "optimizer": optimizer.state_dict()})
    state = load_checkpoint(tmp_path / "s.pt")
    sched.load_state_dict(state["scheduler"])
    optimizer.load_state_dict(state["optimizer"])


def test_early_stopping_stops_when_validation_stalls(tmp_path: Path) -> None:
    result = train(
        tiny(
            tmp_path / "run",
            epochs=6,
            optimizer={"name": "sgd", "lr": 1e-12},
            early_stopping={"patience": 1, "min_delta": 0.01},
        )
    )
    assert result.metrics["stopped_early"] and result.metrics["epochs_completed"] == 2


def test_options_channels_last_label_smoothing_and_clipping(tmp_path: Path) -> None:
    result = train(
        tiny(
            tmp_path / "run",
            epochs=1,
            channels_last=True,
            grad_clip=1.0,
            loss={"label_smoothing": 0.1},
            data={"normalize": "standard", "augment": {"crop_padding": 2}},
        )
    )
    assert 0 <= result.metrics["test_accuracy"] <= 1


def test_model_that_cannot_take_the_images_is_a_recipe_error(tmp_path: Path) -> None:
    with pytest.raises(RecipeError, match="data.resize|cannot take") as info:
        train(tiny(tmp_path / "run", model={"name": "lenet5"}, data={"resize": 12}))
    assert info.value.path == "data.resize"
    result = train(tiny(tmp_path / "ok", epochs=1, model={"name": "lenet5"}, data={"resize": 32}))
    assert result.metrics["epochs_completed"] == 1


def test_mnist_idx_and_cifar_pickles_end_to_end(tmp_path: Path) -> None:
    from zoo_tests.synthetic import write_cifar10_files, write_mnist_files

    write_mnist_files(tmp_path / "data", train=60, test=20)
    write_cifar10_files(tmp_path / "data", train=50, test=20)
    mnist = train(
        tiny(
            tmp_path / "m",
            epochs=1,
            data={
                "dataset": "mnist",
                "root": str(tmp_path / "data"),
                "download": False,
                "train_limit": None,
                "test_limit": None,
            },
        )
    )
    assert mnist.metrics["test_images"] == 20
    cifar = train(
        tiny(
            tmp_path / "c",
            epochs=1,
            model={"name": "cifar10_cnn"},
            batch_size=10,
            data={
                "dataset": "cifar10",
                "root": str(tmp_path / "data"),
                "download": False,
                "train_limit": None,
                "test_limit": None,
                "augment": {"hflip": True},
            },
        )
    )
    assert cifar.metrics["test_images"] == 20 and cifar.metrics["dataset"] == "cifar10"


# --------------------------------------------------------------------------- torchrun


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_torchrun_two_processes_on_cpu(tmp_path: Path) -> None:
    recipe_file = tmp_path / "ddp.yaml"
    recipe_file.write_text(dump_recipe(tiny(tmp_path / "unused", epochs=2, device="cpu")))
    run_dir = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nnodes=1",
        "--nproc_per_node=2",
        "--master_addr=127.0.0.1",
        f"--master_port={_free_port()}",
        str(TRAIN_SCRIPT),
        str(recipe_file),
        "--no-progress",
        "--set",
        f"output_dir={run_dir}",
    ]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300, env=CHILD_ENV)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip().splitlines()[-1] == f"run directory: {run_dir}"
    assert done.stdout.count("run directory:") == 1  # only rank 0 reports
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["epochs_completed"] == 2
    assert metrics["history"][-1]["val_accuracy"] is not None


def test_a_run_directory_continues_with_more_epochs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    train(tiny(tmp_path / "run", epochs=1, schedule={"name": "onecycle", "pct_start": 0.5}))
    run = str(tmp_path / "run")
    assert train_main([run, "--set", "epochs=2", "--no-progress"]) == 1  # a one-cycle schedule cannot grow
    assert "onecycle" in capsys.readouterr().err
    assert "epochs: 1\n" in (tmp_path / "run" / "recipe.yaml").read_text()  # the refused recipe was not saved
    assert train_main([run, "--set", "epochs=2", "--set", "schedule.name=none", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "resuming" in out and out.strip().splitlines()[-1] == f"run directory: {run}"
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["epochs_completed"] == 2


def test_a_failing_write_keeps_the_previous_checkpoint(finished_run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from zoo.train import _checkpoint

    last = finished_run / "last.pt"
    before = last.read_bytes()

    def disk_full(_fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(_checkpoint.os, "fsync", disk_full)
    with pytest.raises(CheckpointError, match="No space left on device"):
        save_checkpoint(last, {"model": {}})
    assert last.read_bytes() == before and not list(finished_run.glob(".*.zoo-tmp"))
