"""Predictions for image files from a run: the model, class names and preprocessing saved with it.

A run directory holds ``run_info.json`` (written when training starts): the ``zoo.build``
arguments, the class names, the data section and the channel statistics, so a prediction
preprocesses an image exactly as the run's test images were (the user never re-types mean/std).
``weights.safetensors`` carries the same information in its metadata and works on its own.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .._errors import CheckpointError, RecipeError
from ._augment import tta_probabilities
from ._checkpoint import atomic_write_text
from ._distributed import resolve_device
from ._evaluate import load_weights_file
from ._finetune import model_arguments
from ._preprocess import Preprocess
from ._recipe import DataSection, Recipe
from ._split import DataBundle

__all__ = ["Predictor", "load_predictor", "read_info", "run_info", "write_run_info"]

INFO_FILE = "run_info.json"
METADATA_KEY = "zoo"


def run_info(recipe: Recipe, data: DataBundle) -> dict[str, Any]:
    """What predicting needs: build arguments, class names, data section, statistics, stored image size."""
    channels = recipe.data.channels or data.channels
    return {
        "model": model_arguments(recipe, data.num_classes, channels=channels),
        "classes": list(data.classes),
        "data": recipe.data.model_dump(mode="json"),
        "data_channels": data.channels,
        "image_size": list(data.image_size),
        "mean": list(data.mean),
        "std": list(data.std),
    }


def write_run_info(run_dir: Path, info: dict[str, Any]) -> None:
    atomic_write_text(run_dir / INFO_FILE, json.dumps(info, indent=2) + "\n")


def read_info(source: Path) -> tuple[dict[str, Any], Path]:
    """(run info, weights file) of a run directory or a weights file."""
    if source.is_dir():
        from ._rundir import find_weights

        info_file, weights = source / INFO_FILE, find_weights(source)
    elif source.is_file():
        info_file, weights = source.parent / INFO_FILE, source
        if source.suffix == ".safetensors":
            embedded = _metadata(source)
            if embedded is not None:
                return embedded, source
    else:
        raise RecipeError(f"{source} is neither a run directory nor a weights file")
    if not info_file.is_file():
        raise CheckpointError(
            f"no {INFO_FILE} for {source}: class names and preprocessing are unknown",
            hint="predict from a run directory trained by this version, or its weights.safetensors",
        )
    try:
        info = json.loads(info_file.read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"cannot read {info_file}: {exc}") from None
    return info, weights


def _metadata(path: Path) -> dict[str, Any] | None:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            text = (f.metadata() or {}).get(METADATA_KEY)
    except (OSError, ValueError, RuntimeError) as exc:  # safetensors raises its own SafetensorError (a RuntimeError)
        raise CheckpointError(f"cannot read {path}: {exc}") from None
    return json.loads(text) if text else None


@dataclass
class Predictor:
    """A trained model with its classes and preprocessing."""

    model: nn.Module
    classes: tuple[str, ...]
    pre: Preprocess
    size: int
    mode: str  # PIL mode the stored images had: "L" or "RGB"

    @torch.no_grad()
    def __call__(self, paths: Sequence[str | Path], *, top_k: int = 5) -> list[list[tuple[str, float]]]:
        """Per image, the ``top_k`` classes with their probabilities (softmax of the logits), best first."""
        from ._imagefolder import image_transform, open_image

        transform = image_transform(self.size, None)
        images = torch.stack([transform(open_image(str(p), self.mode)).as_subclass(torch.Tensor) for p in paths])
        x = self.pre.batch(images, prepared=False)
        probs = tta_probabilities(self.model, x, self.pre.section.tta, fill=self.pre.fill).cpu()
        k = min(top_k, len(self.classes))
        values, index = probs.topk(k, dim=1)
        return [[(self.classes[int(i)], float(v)) for v, i in zip(vs, ix, strict=True)] for vs, ix in zip(values, index, strict=True)]


def load_predictor(source: Path, *, device: str = "auto") -> Predictor:
    """The model of a run directory (or weights file) with its saved class names and preprocessing."""
    import zoo

    info, weights = read_info(source)
    try:
        arguments, classes = dict(info["model"]), tuple(str(c) for c in info["classes"])
        section = DataSection.model_validate(info["data"])
        data_channels, size = int(info["data_channels"]), int(info["image_size"][0])
        mean, std = [float(v) for v in info["mean"]], [float(v) for v in info["std"]]
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise CheckpointError(f"the run information of {source} is incomplete: {exc}") from None
    dev = resolve_device(device)
    model = zoo.build(**arguments)
    try:
        model.load_state_dict(load_weights_file(weights))
    except RuntimeError as exc:
        raise CheckpointError(f"weights {weights} do not fit model {arguments.get('name')!r}: {str(exc).splitlines()[0]}") from None
    pre = Preprocess(section, data_channels=data_channels, mean=mean, std=std, device=dev)
    return Predictor(model.to(dev).eval(), classes, pre, size, "L" if data_channels == 1 else "RGB")
