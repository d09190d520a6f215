"""Run directories: where a run goes (``output_dir`` or ``runs/<name>-N``), which files make a run, history files."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from .._errors import CheckpointError, RecipeError
from ._checkpoint import RunLock, atomic_write_text, check_writable
from ._recipe import Recipe

__all__ = ["RUN_FILES", "find_weights", "resolve_run_dir", "write_history"]

RUN_FILES = (
    "last.pt",
    "best.pt",
    "metrics.json",
    "history.json",
    "history.csv",
    "weights.pth",
    "weights.safetensors",
    "run_info.json",
)


def _holds_run(folder: Path) -> bool:
    return any((folder / name).exists() for name in RUN_FILES)


def resolve_run_dir(recipe: Recipe, *, resume: bool, overwrite: bool, root: Path | None = None) -> Path:
    """The run directory: ``output_dir`` exactly, or ``runs/<name>``, ``runs/<name>-2``, ...

    An explicit ``output_dir`` that already holds a run is refused unless resuming or
    overwriting; the default one moves on to the next free name (created atomically, so two
    processes started together never share one).
    """
    base = Path(root or ".") / "runs"
    if recipe.output_dir is not None:
        folder = Path(recipe.output_dir)
        if not resume and _holds_run(folder):
            if not overwrite:
                raise RecipeError(
                    f"run directory {folder} already holds a run",
                    path="output_dir",
                    hint="continue it with --resume, replace it with --overwrite, or choose another output_dir",
                )
            _clear_run(folder)
        return folder
    if resume:
        candidates = [p for p in _default_dirs(base, recipe.name) if (p / "last.pt").is_file()]
        if candidates:
            return max(candidates, key=lambda p: (p / "last.pt").stat().st_mtime)
        return base / recipe.name
    check_writable(base)
    for i in range(1, 10_000):
        folder = base / (recipe.name if i == 1 else f"{recipe.name}-{i}")
        try:
            folder.mkdir()
            return folder
        except FileExistsError:
            if not any(folder.iterdir()):
                return folder
    raise RecipeError(f"no free run directory name under {base}", path="output_dir")


def _default_dirs(base: Path, name: str) -> list[Path]:
    if not base.is_dir():
        return []
    return [p for p in base.iterdir() if p.is_dir() and (p.name == name or _numbered(p.name, name))]


def _numbered(candidate: str, name: str) -> bool:
    head, sep, tail = candidate.rpartition("-")
    return bool(sep) and head == name and tail.isdigit()


def _clear_run(folder: Path) -> None:
    with RunLock(folder):
        for name in RUN_FILES:
            (folder / name).unlink(missing_ok=True)


def write_history(run_dir: Path, history: list[dict[str, Any]]) -> None:
    """history.json and history.csv, rewritten atomically after every epoch."""
    atomic_write_text(run_dir / "history.json", json.dumps(history, indent=2) + "\n")
    out = io.StringIO()
    columns = ["epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr", "seconds"]
    if any(row.get("val_top5_accuracy") is not None for row in history):
        columns.insert(5, "val_top5_accuracy")
    writer = csv.DictWriter(out, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in history:
        writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in columns})
    atomic_write_text(run_dir / "history.csv", out.getvalue())


def find_weights(run_dir: Path, which: str = "final") -> Path:
    """weights.pth ('final'), best.pt or last.pt of a run directory."""
    names = {"final": ["weights.pth", "last.pt"], "best": ["best.pt"], "last": ["last.pt"]}[which]
    for name in names:
        if (run_dir / name).is_file():
            return run_dir / name
    raise CheckpointError(f"no {' or '.join(names)} in {run_dir}", hint="is this a run directory of a started run?")
