"""Recipes for tests: a base dictionary with per-test overrides, merged one section deep."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from zoo.train import Recipe, recipe_from_data


def recipe_over(base: dict[str, Any], overrides: dict[str, Any]) -> Recipe:
    """``base`` with ``overrides`` applied: a dict given for a section updates that section's keys,
    anything else replaces the value."""
    data = dict(base)
    for key, value in overrides.items():
        data[key] = {**data[key], **value} if isinstance(value, dict) and isinstance(data.get(key), dict) else value
    return recipe_from_data(data)


def tiny(out: Path | str, **overrides: Any) -> Recipe:
    """A recipe that trains in a second or two on a slice of the digits."""
    base: dict[str, Any] = {
        "name": "tiny",
        "model": {"name": "mnist_cnn_v1"},
        "data": {"dataset": "digits", "train_limit": 160, "test_limit": 64, "val_split": 0.2},
        "optimizer": {"name": "adam", "lr": 0.002},
        "epochs": 2,
        "batch_size": 32,
        "output_dir": str(out),
        "progress": False,
        "reports": {"enabled": False},
        "channels_last": False,  # "auto" times both layouts: pinned so that runs compare bitwise
    }
    return recipe_over(base, overrides)
