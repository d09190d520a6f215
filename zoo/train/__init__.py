"""The training stack: YAML recipes in, run directories out (``zoo train|evaluate|visualize``).

    from zoo.train import load_recipe, train
    result = train(load_recipe("recipes/mnist_cnn_v1.yaml", overrides=["epochs=1"]))
    result.metrics["test_accuracy"], result.run_dir

Modules, by responsibility: ``_recipe`` (schema), ``_overrides`` (loading, ``--set``),
``_datasets`` / ``_torchvision_files`` / ``_split`` (data), ``_preprocess`` and ``_augment``
(batches), ``_trainer`` (``train``), ``_setup`` / ``_run`` / ``_epoch`` / ``_step`` / ``_layout``
/ ``_tracking`` / ``_final`` (the loop), ``_finetune`` (frozen parameters, groups),
``_optim`` (optimizers, schedules), ``_distributed`` (torchrun, devices, seeds),
``_checkpoint`` and ``_rundir`` (files), ``_evaluate`` (evaluation), ``_reports`` (reports:
``_report_text`` for the tables, ``_pictures`` for the PNGs), ``_imagefolder`` (users' image
folders), ``_predict`` (predictions from a run), ``_tensorboard``, ``_cli`` (the commands).
Names load on first use, so importing this package is as cheap as ``import zoo``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports as _lazy_exports

if TYPE_CHECKING:
    from ._cli import evaluate_main, predict_main, train_main, visualize_main
    from ._evaluate import EvalContext, load_for_evaluation
    from ._final import TrainResult
    from ._overrides import dump_recipe, load_recipe, recipe_from_data
    from ._recipe import Recipe
    from ._rundir import find_weights
    from ._trainer import train

__all__ = [
    "EvalContext",
    "Recipe",
    "TrainResult",
    "dump_recipe",
    "evaluate_main",
    "find_weights",
    "load_for_evaluation",
    "load_recipe",
    "predict_main",
    "recipe_from_data",
    "train",
    "train_main",
    "visualize_main",
]

# public name -> private module that defines it, imported on first access
_LAZY = {
    "EvalContext": "._evaluate",
    "Recipe": "._recipe",
    "TrainResult": "._final",
    "dump_recipe": "._overrides",
    "evaluate_main": "._cli",
    "find_weights": "._rundir",
    "load_for_evaluation": "._evaluate",
    "load_recipe": "._overrides",
    "predict_main": "._cli",
    "recipe_from_data": "._overrides",
    "train": "._trainer",
    "train_main": "._cli",
    "visualize_main": "._cli",
}


__getattr__, __dir__ = _lazy_exports(__name__, _LAZY, globals(), __all__)
