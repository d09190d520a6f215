"""Per-run timings in metrics.json, pictures on request, and the fast recipe's files (issue 13)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

import zoo
from zoo._errors import RecipeError
from zoo.train import load_recipe, recipe_from_data, train
from zoo.train._clock import Clock

ROOT = Path(__file__).resolve().parents[1]


def test_clock_adds_repeated_phases_and_marks_the_first_step_once() -> None:
    clock = Clock()
    clock.add("checkpoints", 0.25)
    clock.add("checkpoints", 0.5)
    before = time.time()
    clock.mark_first_step()
    first = clock.first_step_at
    clock.mark_first_step()
    report = clock.report()
    assert report["checkpoints"] == pytest.approx(0.75)
    assert first is not None and before <= first == clock.first_step_at
    assert report["first_step_at"] == pytest.approx(first, abs=1e-3)


def test_a_run_records_its_phases_and_draws_only_the_requested_pictures(tmp_path: Path) -> None:
    recipe = recipe_from_data(
        {
            "name": "timed",
            "model": {"name": "mnist_cnn_v1"},
            "data": {"dataset": "digits", "train_limit": 96, "test_limit": 40, "val_split": 0.25},
            "epochs": 2,
            "batch_size": 32,
            "channels_last": "auto",
            "reports": {"pictures": ["kernels"]},
            "output_dir": str(tmp_path / "run"),
            "progress": False,
        }
    )
    started = time.time()
    result = train(recipe, log=lambda _m: None)
    timings = json.loads((result.run_dir / "metrics.json").read_text())["timings"]
    expected = {"data", "model", "layout_probe", "validation", "checkpoints", "test", "reports_text"}
    assert expected | {"picture_kernels", "weights"} <= set(timings)
    assert not any(key.startswith("picture_") and key != "picture_kernels" for key in timings)
    assert started <= timings["first_step_at"] <= time.time()
    pngs = sorted(p.name for p in result.run_dir.glob("*.png"))
    assert pngs == ["kernels.png"]
    assert (result.run_dir / "classification_report.txt").is_file()


def test_unknown_picture_name_is_a_recipe_error_with_a_suggestion() -> None:
    with pytest.raises(RecipeError) as info:
        load_recipe(ROOT / "recipes" / "mnist_fast.yaml", overrides=["reports.pictures=[kernel]"])
    assert "reports.pictures" in str(info.value)


def test_fast_recipe_uses_the_fast_net_and_spends_one_epoch_of_mnist() -> None:
    recipe = load_recipe(ROOT / "recipes" / "mnist_fast.yaml")
    assert recipe.model.name == "mnist_fast_net" and recipe.epochs == 1
    assert recipe.channels_last is True and recipe.reports.pictures == []
    model = zoo.build("mnist_fast_net", device="meta")
    assert zoo.count_params(model) == 66170
