"""Optimizers over a fine-tuning plan's parameter groups, and learning-rate schedules."""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
from torch import nn

from .._errors import RecipeError
from ._finetune import FinetunePlan
from ._recipe import OptimizerSection, ScheduleSection

__all__ = ["make_optimizer", "make_scheduler"]


def make_optimizer(model: nn.Module, plan: FinetunePlan, section: OptimizerSection) -> torch.optim.Optimizer:
    """The recipe's optimizer over the plan's groups (frozen parameters included: no gradient, no step)."""
    by_name = dict(model.named_parameters())
    groups = [{"params": [by_name[n] for n in names], "name": label, **opts} for label, names, opts in plan.groups]
    common: dict[str, Any] = {"lr": section.lr, "weight_decay": section.weight_decay}
    if section.eps is not None:
        common["eps"] = section.eps
    if section.name in ("sgd", "adam", "adamw") and _fused_supported(model):
        common["fused"] = True  # one kernel per step instead of a Python loop over the tensors
    if section.name == "sgd":
        common.pop("eps", None)
        return torch.optim.SGD(groups, momentum=section.momentum, nesterov=section.nesterov, **common)
    if section.name == "adam":
        return torch.optim.Adam(groups, betas=section.betas, **common)
    if section.name == "adamw":
        return torch.optim.AdamW(groups, betas=section.betas, **common)
    if section.name == "rmsprop":
        return torch.optim.RMSprop(groups, momentum=section.momentum, **common)
    return torch.optim.Adadelta(groups, **common)


def _fused_supported(model: nn.Module) -> bool:
    """Fused SGD/Adam/AdamW kernels exist for floating-point parameters on the CPU and CUDA."""
    devices = {p.device.type for p in model.parameters()}
    return len(devices) == 1 and devices <= {"cpu", "cuda"} and all(p.is_floating_point() for p in model.parameters())


def make_scheduler(
    optimizer: torch.optim.Optimizer,
    section: ScheduleSection,
    *,
    optimizer_section: OptimizerSection,
    epochs: int,
    steps_per_epoch: int,
) -> tuple[Any, str]:
    """(scheduler or None, when it steps: 'step', 'epoch' or 'metric')."""
    sched = torch.optim.lr_scheduler
    total = max(1, epochs * steps_per_epoch)
    if section.name == "none":
        return None, "none"
    if section.name == "step":
        return sched.StepLR(optimizer, step_size=section.step_size, gamma=section.gamma), "epoch"
    if section.name == "multistep":
        return sched.MultiStepLR(optimizer, milestones=section.milestones, gamma=section.gamma), "epoch"
    if section.name == "plateau":
        mode: Literal["min", "max"] = "min" if section.monitor == "val_loss" else "max"
        return (
            sched.ReduceLROnPlateau(
                optimizer, mode=mode, factor=section.factor, patience=section.patience, min_lr=section.min_lr
            ),
            "metric",
        )
    if section.name == "onecycle":
        if section.pct_start * total < 2 or total - section.pct_start * total < 2:
            raise RecipeError(
                f"a onecycle schedule needs at least 2 steps to rise and 2 to fall; this run has {total} steps "
                f"and schedule.pct_start {section.pct_start}",
                path="schedule.pct_start",
                hint="train longer, use smaller batches, or another schedule",
            )
        cycle_momentum = optimizer_section.name in ("adam", "adamw") or (
            optimizer_section.name == "sgd" and optimizer_section.momentum > 0
        )
        return (
            sched.OneCycleLR(
                optimizer,
                max_lr=[g["lr"] for g in optimizer.param_groups],
                total_steps=total,
                pct_start=section.pct_start,
                div_factor=section.div_factor,
                final_div_factor=section.final_div_factor,
                cycle_momentum=cycle_momentum,
            ),
            "step",
        )
    warmup = int(round(section.warmup_epochs * steps_per_epoch))
    floor = section.min_lr / optimizer_section.lr

    def cosine(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

    return sched.LambdaLR(optimizer, cosine), "step"
