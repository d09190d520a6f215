"""Everything a run needs before its first step: data, preprocessing, model, layout, plan, optimizer, schedule.

The order is part of reproducibility: the global generator is seeded first, then the model is
built (its initialization draws from it), then the head is reset; the layout probe restores the
generator's state, so a resumed run rebuilds exactly the same objects.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .._errors import RecipeError
from ._clock import Clock
from ._datasets import load_data
from ._distributed import Dist, epoch_seed, seed_all
from ._finetune import FinetunePlan, build_model, finetune_plan, reset_parameters, set_trainable
from ._layout import choose_layout
from ._optim import make_optimizer, make_scheduler
from ._preprocess import Preprocess, batch_indices, stage
from ._recipe import Recipe
from ._split import DataBundle, ImageSplit

__all__ = ["Parts", "assemble", "epoch_batches"]


@dataclass
class Parts:
    """The objects of one run (the counters that change while it trains are in ``_epoch.Counters``)."""

    data: DataBundle
    pre: Preprocess
    train_split: ImageSplit
    train_prepared: bool
    val_split: ImageSplit | None
    val_prepared: bool
    model: nn.Module
    channels_last: bool
    plan: FinetunePlan
    trainable: int
    optimizer: torch.optim.Optimizer
    min_batch: int
    steps_per_epoch: int
    scheduler: Any
    sched_when: str
    scaler: torch.amp.GradScaler | None


def epoch_batches(recipe: Recipe, n: int, epoch: int, *, dist: Dist, min_batch: int) -> list[torch.Tensor]:
    """This process's batch indices of ``epoch``, in an order that only (seed, epoch) decides."""
    gen = torch.Generator().manual_seed(epoch_seed(recipe.seed, epoch, 0))
    return batch_indices(
        n,
        recipe.batch_size,
        generator=gen,
        drop_last=recipe.data.drop_last,
        rank=dist.rank,
        world=dist.world,
        min_size=min_batch,
    )


def assemble(
    recipe: Recipe,
    *,
    dist: Dist,
    device: torch.device,
    precision: str,
    log: Callable[[str], None],
    layout: bool | None = None,
    clock: Clock | None = None,
) -> Parts:
    """Build the run's parts; ``layout`` is a saved channels_last choice (resuming) or None to choose."""
    clock = clock or Clock()
    if recipe.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    seed_all(recipe.seed)
    with clock.phase("data"):
        data = load_data(recipe.data)
        pre = Preprocess(recipe.data, data_channels=data.channels, mean=data.mean, std=data.std, device=device)
        train_split, train_prepared = stage(pre, data.train)
        val_split, val_prepared = stage(pre, data.val) if data.val is not None else (None, False)
    with clock.phase("model"):
        model = build_model(recipe, data, channels=recipe.data.channels or data.channels).to(device)
        _dry_run(recipe, model, pre.batch(train_split.images_at(torch.arange(2)), prepared=train_prepared), data.num_classes)

    def probe() -> tuple[torch.Tensor, torch.Tensor]:
        n = min(recipe.batch_size, len(train_split))
        x = pre.batch(train_split.images_at(torch.arange(n)), prepared=train_prepared)
        return x, train_split.labels[:n].to(device)

    if layout is None:
        with clock.phase("layout_probe"):
            layout = choose_layout(
                model, setting=recipe.channels_last, device=device, precision=precision, dist=dist, probe=probe, log=log
            )
    if layout:
        model = model.to(memory_format=torch.channels_last)
        pre.channels_last = True
    plan = finetune_plan(model, recipe.finetune, lr=recipe.optimizer.lr)
    if recipe.finetune.reset_head:
        reset_parameters(model, plan.head)
    trainable = set_trainable(model, plan.frozen_at(1))
    optimizer = make_optimizer(model, plan, recipe.optimizer)
    min_batch = 2 if any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()) else 1
    steps = len(epoch_batches(recipe, len(train_split), 0, dist=dist, min_batch=min_batch))
    if steps == 0:
        raise RecipeError(
            f"batch_size {recipe.batch_size} leaves no full batch from {len(train_split)} training images",
            path="batch_size",
        )
    scheduler, when = make_scheduler(
        optimizer, recipe.schedule, optimizer_section=recipe.optimizer, epochs=recipe.epochs, steps_per_epoch=steps
    )
    scaler = torch.amp.GradScaler("cuda") if precision == "amp" else None
    if dist.active:
        torch.manual_seed(epoch_seed(recipe.seed, 0, 1000 + dist.rank))  # own dropout per process
    return Parts(
        data, pre, train_split, train_prepared, val_split, val_prepared, model, layout, plan, trainable,
        optimizer, min_batch, steps, scheduler, when, scaler,
    )  # fmt: skip


def _dry_run(recipe: Recipe, model: nn.Module, x: torch.Tensor, num_classes: int) -> None:
    """Push two images through before training: a shape problem is a recipe error, not a traceback."""
    model.eval()
    try:
        with torch.no_grad():
            out = model(x)
    except RuntimeError as exc:
        raise RecipeError(
            f"model {recipe.model.name!r} cannot take this data's images "
            f"(batches of shape {tuple(x.shape[1:])}): {str(exc).splitlines()[0]}",
            path="data.resize",
            hint="resize the images (data.resize) or choose a model made for this input",
        ) from None
    finally:
        model.train()
    if out.dim() != 2 or out.shape[1] != num_classes:
        raise RecipeError(
            f"model {recipe.model.name!r} returns shape {tuple(out.shape[1:])} per image, "
            f"expected {num_classes} class logits",
            path="model",
        )
