"""Memory layout: channels_last as the recipe says, or on 'auto' the faster layout for this model here."""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ._distributed import Dist

__all__ = ["choose_layout", "time_layouts"]


def choose_layout(
    model: nn.Module,
    *,
    setting: bool | str,
    device: torch.device,
    precision: str,
    dist: Dist,
    probe: Callable[[], tuple[torch.Tensor, torch.Tensor]],
    log: Callable[[str], None],
) -> bool:
    """True for channels_last; ``probe`` gives one training batch (x, y) to time on 'auto' (CPU)."""
    if setting != "auto":
        return bool(setting)
    has_conv = any(isinstance(m, nn.Conv2d) for m in model.modules())
    if not has_conv or device.type not in ("cpu", "cuda"):
        return False
    if device.type == "cuda":
        return precision in ("amp", "bf16")  # tensor cores prefer NHWC
    choice = False
    if dist.main:
        plain, nhwc = time_layouts(model, *probe())
        choice = nhwc < 0.9 * plain  # a clear win only: timing noise must not flip the choice
        log(
            f"memory layout: {'channels_last' if choice else 'contiguous (NCHW)'} "
            f"(a step takes {nhwc * 1e3:.1f} ms channels_last, {plain * 1e3:.1f} ms NCHW)"
        )
    if dist.active:  # every process must use rank 0's choice
        import torch.distributed as tdist

        box = [choice]
        tdist.broadcast_object_list(box, src=0)
        choice = bool(box[0])
    return choice


def time_layouts(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """Seconds per training step (forward + backward) of a copy of ``model``: (NCHW, channels_last).

    The copy and a saved RNG state keep the probe from touching the run: the real model, its
    optimizer and the random streams are exactly as if it had not happened.
    """
    rng = torch.get_rng_state()
    times = []
    for layout in (torch.contiguous_format, torch.channels_last):
        probe = copy.deepcopy(model).to(memory_format=layout).train()
        xl = x.contiguous(memory_format=layout)
        best = math.inf
        for i in range(5):
            start = time.perf_counter()
            torch.autograd.backward(F.cross_entropy(probe(xl), y))
            if i >= 2:  # the first steps pick kernels and allocate
                best = min(best, time.perf_counter() - start)
        times.append(best)
        del probe
    torch.set_rng_state(rng)
    return times[0], times[1]
