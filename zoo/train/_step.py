"""One optimizer step: forward under autocast, loss, backward (scaled under amp), clipping, per-step schedule."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ._distributed import Dist
from ._evaluate import autocast
from ._recipe import Recipe
from ._setup import Parts

__all__ = ["Stepper"]


class Stepper:
    """Runs training steps on the parts of a run; ``module`` is the model as the steps see it (DDP, compiled)."""

    def __init__(self, recipe: Recipe, parts: Parts, *, device: torch.device, precision: str, dist: Dist) -> None:
        self.recipe = recipe
        self.parts = parts
        self.device = device
        self.precision = precision
        self.dist = dist
        self.module: nn.Module = parts.model
        self.wrap()

    def wrap(self) -> None:
        """Wrap the plain model again (DDP must see the current set of trainable parameters)."""
        module: nn.Module = self.parts.model
        if self.dist.active:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            module = DistributedDataParallel(self.parts.model, device_ids=ids)
        if self.recipe.compile:
            module = torch.compile(module)  # type: ignore[assignment]
        self.module = module

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits, loss) of one step on batch ``x`` with labels ``y``; the parameters are updated."""
        parts = self.parts
        with autocast(self.device, self.precision):
            logits = self.module(x)
            loss = F.cross_entropy(logits.float(), y, label_smoothing=self.recipe.loss.label_smoothing)
        parts.optimizer.zero_grad(set_to_none=True)
        if parts.scaler is not None:
            torch.autograd.backward(parts.scaler.scale(loss))
            self._clip(unscale=True)
            parts.scaler.step(parts.optimizer)
            parts.scaler.update()
        else:
            torch.autograd.backward(loss)
            self._clip(unscale=False)
            parts.optimizer.step()
        if parts.sched_when == "step":
            parts.scheduler.step()
        return logits, loss

    def _clip(self, *, unscale: bool) -> None:
        if self.recipe.grad_clip is None:
            return
        if unscale and self.parts.scaler is not None:
            self.parts.scaler.unscale_(self.parts.optimizer)
        torch.nn.utils.clip_grad_norm_(self.parts.model.parameters(), self.recipe.grad_clip)

    def end_epoch(self, row: dict[str, Any]) -> None:
        """Step a per-epoch or per-metric schedule after an epoch."""
        parts = self.parts
        if parts.sched_when == "epoch":
            parts.scheduler.step()
        elif parts.sched_when == "metric":
            value = row[self.recipe.schedule.monitor]
            if value is not None:
                parts.scheduler.step(value)
