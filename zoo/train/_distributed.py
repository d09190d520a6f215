"""Where a process stands in a data-parallel run (torchrun), its device, and the seeds of its random streams.

Several processes share each global batch ``rank::world``; DDP averages their gradients; only
rank 0 writes files; the recipe does not change.
"""

from __future__ import annotations

import contextlib
import gc
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from .._errors import RecipeError

__all__ = ["SINGLE_PROCESS", "Dist", "epoch_seed", "init_distributed", "process_group", "resolve_device", "seed_all", "shared_run_dir"]


@dataclass(frozen=True)
class Dist:
    """Where this process stands in a (possibly single-process) data-parallel run."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1


SINGLE_PROCESS = Dist()


def init_distributed(device_name: str) -> Dist:
    """Join the process group torchrun describes in the environment (gloo on CPU, NCCL on GPU)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    import torch.distributed as tdist

    rank, local = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    if not tdist.is_initialized():
        wants_cuda = device_name.startswith("cuda") or (device_name == "auto" and torch.cuda.is_available())
        tdist.init_process_group(backend="nccl" if wants_cuda else "gloo")
    return Dist(rank=rank, world=world, local_rank=local)


def resolve_device(name: str, dist: Dist = Dist()) -> torch.device:
    """'auto' picks CUDA, then MPS, then the CPU; a device that is absent is a RecipeError."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", dist.local_rank % torch.cuda.device_count())
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available() and not dist.active:
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise RecipeError(
                f"device {name!r} is not available here (no CUDA)", path="device", hint="use device: auto"
            )
        if dist.active and device.index is None:
            device = torch.device("cuda", dist.local_rank)
    if device.type == "mps" and not (torch.backends.mps.is_available()):
        raise RecipeError("device 'mps' is not available here", path="device", hint="use device: auto")
    return device


def seed_all(seed: int) -> None:
    import random

    random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device


def epoch_seed(seed: int, epoch: int, stream: int) -> int:
    """A distinct, stable seed per (run seed, epoch, stream) so epochs never share randomness."""
    return (seed * 1_000_003 + epoch * 7919 + stream * 104_729) % (2**63)


@contextlib.contextmanager
def process_group(dist: Dist) -> Iterator[None]:
    finished = False
    try:
        yield
        finished = True
    finally:
        if dist.active:
            import torch.distributed as tdist

            if tdist.is_initialized():
                # the run's DDP wrapper holds the process group; if a reference cycle keeps it alive
                # until interpreter shutdown, gloo's threads are torn down there and the process
                # aborts ("terminate called without an active exception"): free it now
                gc.collect()
                if finished:
                    # rank 0 still writes reports after the last collective; a rank that tears gloo
                    # down before its peer is done makes the peer abort at exit (SIGABRT)
                    tdist.barrier()
                tdist.destroy_process_group()
                gc.collect()


def shared_run_dir(dist: Dist, folder: Path | None) -> Path:
    """Rank 0 decides the run directory; the others learn it."""
    if not dist.active:
        assert folder is not None
        return folder
    import torch.distributed as tdist

    box = [str(folder) if folder is not None else ""]
    tdist.broadcast_object_list(box, src=0)
    return Path(box[0])
