"""The trainer: one recipe in, one run directory out.

A run directory holds ``recipe.yaml`` (the resolved recipe), ``last.pt`` (everything needed to
continue: model, optimizer, scheduler, scaler, RNG states, position inside the epoch, history),
``best.pt`` (the best weights by the monitored metric), ``weights.pth`` (the final weights as a
plain state dict, usable as ``finetune.pretrained`` of another recipe), ``history.json`` /
``history.csv`` (per epoch, rewritten atomically after each one), ``metrics.json`` (written last:
its presence means the run finished) and the reports and pictures.

Reproducibility: the order of the batches of epoch ``e`` and the augmentation of its images come
from generators seeded by ``(seed, e)``; dropout uses the global torch generator. All three states
are saved in every checkpoint, so a resumed run computes exactly what an uninterrupted one would
(bitwise on the same machine and thread count, single process).

Several processes (``torchrun``) share each global batch ``rank::world``; DDP averages their
gradients; only rank 0 writes files; the recipe does not change.
"""

from __future__ import annotations

import contextlib
import csv
import fnmatch
import io
import json
import math
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from ._checkpoint import (
    RunLock,
    atomic_write_bytes,
    atomic_write_text,
    check_free_space,
    check_writable,
    load_checkpoint,
    remove_stale_temporaries,
    save_checkpoint,
)
from ._data import DataBundle, Preprocess, Split, batch_indices, load_data
from ._errors import CheckpointError, RecipeError, ZooError, did_you_mean
from ._recipe import FinetuneSection, OptimizerSection, Recipe, ScheduleSection, dump_recipe

__all__ = [
    "Dist",
    "EvalContext",
    "TrainResult",
    "build_model",
    "evaluate_split",
    "find_weights",
    "finetune_plan",
    "load_for_evaluation",
    "load_weights_file",
    "make_optimizer",
    "make_scheduler",
    "resolve_device",
    "resolve_run_dir",
    "train",
]

Log = Callable[[str], None]
RUN_FILES = ("last.pt", "best.pt", "metrics.json", "history.json", "history.csv", "weights.pth")


# --------------------------------------------------------------------------- small pieces


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


def _init_distributed(device_name: str) -> Dist:
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


def _seed_all(seed: int) -> None:
    import random

    random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device


def _epoch_seed(seed: int, epoch: int, stream: int) -> int:
    """A distinct, stable seed per (run seed, epoch, stream) so epochs never share randomness."""
    return (seed * 1_000_003 + epoch * 7919 + stream * 104_729) % (2**63)


@dataclass
class TrainResult:
    """What a finished run produced."""

    run_dir: Path
    metrics: dict[str, Any]
    pictures: dict[str, str] = field(default_factory=dict)


# --------------------------------------------------------------------------- run directory


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


# --------------------------------------------------------------------------- model and fine-tuning


def build_model(recipe: Recipe, bundle: DataBundle, *, channels: int) -> nn.Module:
    """Build the recipe's registry model for the data's classes and channels."""
    import zoo

    spec = zoo.get_spec(recipe.model.name)
    params = dict(recipe.model.params)
    num_classes = params.pop("num_classes", None) or recipe.model.num_classes or bundle.num_classes
    in_channels = recipe.model.in_channels or channels
    declared = list(spec.input)[0] if len(spec.input) == 3 else None
    pretrained = recipe.finetune.pretrained
    try:
        return zoo.build(
            recipe.model.name,
            num_classes=num_classes,
            in_channels=in_channels if in_channels != declared else None,
            pretrained=pretrained if pretrained not in (None, False) else None,
            **params,
        )
    except ZooError as exc:
        exc.add_context(f"while building model {recipe.model.name!r} for recipe {recipe.name!r}")
        raise


def _matches(name: str, pattern: str) -> bool:
    """A pattern names a parameter or any module above it: 'layer1' matches 'layer1.0.conv1.weight'."""
    return fnmatch.fnmatchcase(name, pattern) or fnmatch.fnmatchcase(name, pattern + ".*")


@dataclass(frozen=True)
class FinetunePlan:
    """Which parameters train when, and in which optimizer group."""

    frozen: frozenset[str]  # frozen at the start
    unfreeze: tuple[tuple[int, frozenset[str]], ...]  # (1-based epoch, names) in epoch order
    groups: tuple[tuple[str, tuple[str, ...], dict[str, float]], ...]  # (label, names, options)
    head: tuple[str, ...]

    def frozen_at(self, epoch: int) -> frozenset[str]:
        """Names frozen during 1-based ``epoch``."""
        out = set(self.frozen)
        for start, names in self.unfreeze:
            if start <= epoch:
                out -= names
        return frozenset(out)


def _select(names: Sequence[str], patterns: Sequence[str], *, where: str, modules: Sequence[str]) -> list[str]:
    picked: list[str] = []
    for i, pattern in enumerate(patterns):
        hits = [n for n in names if _matches(n, pattern)]
        if not hits:
            raise RecipeError(
                f"pattern {pattern!r} matches no parameter of the model",
                path=f"{where}[{i}]",
                hint=did_you_mean(pattern, modules) or f"module names look like: {', '.join(modules[:6])}",
            )
        picked.extend(h for h in hits if h not in picked)
    return picked


def _module_names(names: Sequence[str]) -> list[str]:
    out: list[str] = []
    for name in names:
        parts = name.split(".")
        for i in range(1, len(parts)):
            prefix = ".".join(parts[:i])
            if prefix not in out:
                out.append(prefix)
    return out


def finetune_plan(model: nn.Module, section: FinetuneSection, *, lr: float) -> FinetunePlan:
    """Resolve the recipe's name patterns against the model's parameters (errors name the pattern)."""
    names = [n for n, _ in model.named_parameters()]
    modules = _module_names(names)
    if section.head is not None:
        head = _select(names, section.head, where="finetune.head", modules=modules)
    else:  # the last module that has parameters: the classifier the builder re-initialized
        last_module = names[-1].rpartition(".")[0]
        head = [n for n in names if n.rpartition(".")[0] == last_module]
    frozen = set(_select(names, section.freeze, where="finetune.freeze", modules=modules))
    if section.freeze_backbone:
        frozen |= set(names) - set(head)
    unfreeze = []
    for i, step in enumerate(sorted(section.unfreeze, key=lambda s: s.epoch)):
        picked = _select(names, step.params, where=f"finetune.unfreeze[{i}].params", modules=modules)
        unfreeze.append((step.epoch, frozenset(picked)))
    groups: list[tuple[str, tuple[str, ...], dict[str, float]]] = []
    taken: set[str] = set()
    specs = [(f"group{i}", g.params, g.lr, g.lr_scale, g.weight_decay) for i, g in enumerate(section.groups)]
    if section.head_lr_scale is not None:
        specs.append(("head", head, None, section.head_lr_scale, None))
    for i, (label, patterns, g_lr, scale, wd) in enumerate(specs):
        where = f"finetune.groups[{i}].params" if label != "head" else "finetune.head"
        members = [n for n in _select(names, patterns, where=where, modules=modules) if n not in taken]
        taken.update(members)
        options: dict[str, float] = {"lr": g_lr if g_lr is not None else lr * (scale or 1.0)}
        if wd is not None:
            options["weight_decay"] = wd
        if members:
            groups.append((label, tuple(members), options))
    rest = tuple(n for n in names if n not in taken)
    if rest:
        groups.insert(0, ("base", rest, {"lr": lr}))
    return FinetunePlan(frozenset(frozen), tuple(unfreeze), tuple(groups), tuple(head))


def reset_parameters(model: nn.Module, names: Sequence[str]) -> None:
    """Re-initialize the modules owning ``names`` (a new head on a pretrained backbone)."""
    owners = {n.rpartition(".")[0] for n in names}
    for mod_name, module in model.named_modules():
        if mod_name in owners and hasattr(module, "reset_parameters"):
            module.reset_parameters()


def set_trainable(model: nn.Module, frozen: frozenset[str]) -> int:
    """requires_grad off for ``frozen`` and on for the rest; returns the trainable count."""
    count = 0
    for name, p in model.named_parameters():
        p.requires_grad_(name not in frozen)
        count += p.numel() if name not in frozen else 0
    return count


def _freeze_bn_stats(model: nn.Module, frozen: frozenset[str]) -> None:
    """Frozen BatchNorm layers keep their running statistics (eval mode while training)."""
    for mod_name, module in model.named_modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            own = [f"{mod_name}.{n}" if mod_name else n for n, _ in module.named_parameters(recurse=False)]
            if own and all(n in frozen for n in own):
                module.eval()


# --------------------------------------------------------------------------- optimizer and schedule


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


# --------------------------------------------------------------------------- evaluation


@dataclass
class Totals:
    """Sums over batches, kept as tensors on the device so no step waits for the GPU."""

    loss: torch.Tensor
    correct: torch.Tensor
    count: torch.Tensor

    @classmethod
    def zeros(cls, device: torch.device) -> Totals:
        z = torch.zeros((), dtype=torch.float64, device=device)
        return cls(z.clone(), z.clone(), z.clone())

    def add(self, logits: torch.Tensor, labels: torch.Tensor, loss: torch.Tensor) -> None:
        n = labels.shape[0]
        self.loss += loss.detach().double() * n
        self.correct += (logits.detach().argmax(dim=1) == labels).sum()
        self.count += n

    def reduce(self, dist: Dist) -> Totals:
        if dist.active:
            import torch.distributed as tdist

            stacked = torch.stack([self.loss, self.correct, self.count])
            tdist.all_reduce(stacked)
            return Totals(stacked[0], stacked[1], stacked[2])
        return self

    def means(self) -> tuple[float, float]:
        count = max(float(self.count), 1.0)
        return float(self.loss) / count, float(self.correct) / count

    def state(self) -> dict[str, torch.Tensor]:
        return {"loss": self.loss.cpu(), "correct": self.correct.cpu(), "count": self.count.cpu()}

    @classmethod
    def from_state(cls, state: dict[str, torch.Tensor], device: torch.device) -> Totals:
        return cls(state["loss"].to(device), state["correct"].to(device), state["count"].to(device))


def _autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager[Any]:
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    if precision == "amp" and device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.float16)
    return contextlib.nullcontext()


@torch.no_grad()
def evaluate_split(
    model: nn.Module,
    split: Split,
    pre: Preprocess,
    *,
    prepared: bool,
    batch_size: int,
    precision: str = "fp32",
    dist: Dist = Dist(),
    keep_predictions: bool = False,
) -> tuple[float, float, torch.Tensor | None]:
    """(mean loss, accuracy, predictions or None) of ``model`` on ``split``, in eval mode."""
    was_training = model.training
    model.eval()
    device = pre.device
    totals = Totals.zeros(device)
    preds: list[torch.Tensor] = []
    for idx in batch_indices(len(split), batch_size, generator=None, rank=dist.rank, world=dist.world):
        idx = idx.to(split.images.device)
        x = pre.batch(split.images.index_select(0, idx), prepared=prepared)
        y = split.labels.index_select(0, idx).to(device)
        with _autocast(device, precision):
            logits = model(x)
        loss = F.cross_entropy(logits.float(), y)
        totals.add(logits, y, loss)
        if keep_predictions:
            preds.append(logits.argmax(dim=1).cpu())
    model.train(was_training)
    loss_mean, acc = totals.reduce(dist).means()
    return loss_mean, acc, (torch.cat(preds) if keep_predictions and preds else None)


# --------------------------------------------------------------------------- the run


class _Run:
    """State of one training run; methods are the phases of :func:`train`."""

    def __init__(self, recipe: Recipe, run_dir: Path, *, dist: Dist, progress: bool, log: Log) -> None:
        self.recipe = recipe
        self.run_dir = run_dir
        self.dist = dist
        self.progress = progress and dist.main
        self.log = log if dist.main else (lambda _msg: None)
        self.device = resolve_device(recipe.device, dist)
        self.precision = self._precision()
        self.history: list[dict[str, Any]] = []
        self.global_step = 0
        self.epoch = 0  # completed epochs
        self.step_in_epoch = 0
        self.best_value: float | None = None
        self.best_epoch = 0
        self.bad_epochs = 0
        self.accum: Totals | None = None
        self.aug_state: torch.Tensor | None = None
        self.train_seconds = 0.0
        self.images_seen = 0
        self.channels_last = False

    def _precision(self) -> str:
        wanted = self.recipe.precision
        if wanted == "amp" and self.device.type != "cuda":
            self.log(f"note: precision 'amp' needs CUDA; training in fp32 on {self.device.type}")
            return "fp32"
        if wanted == "bf16" and self.device.type == "cpu":
            return "bf16"  # CPU autocast supports bfloat16 (slower than fp32 on many CPUs)
        return wanted

    # ---- setup

    def setup(self, *, layout: bool | None = None) -> None:
        """Data, model, optimizer, schedule; ``layout`` is a saved channels_last choice (resuming)."""
        recipe = self.recipe
        if recipe.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
        _seed_all(recipe.seed)
        self.data = load_data(recipe.data)
        channels = recipe.data.channels or self.data.channels
        self.pre = Preprocess(
            recipe.data,
            data_channels=self.data.channels,
            mean=self.data.mean,
            std=self.data.std,
            device=self.device,
        )
        self.train_split, self.train_prepared = self._stage(self.data.train)
        self.val_split: Split | None = None
        self.val_prepared = False
        if self.data.val is not None:
            self.val_split, self.val_prepared = self._stage(self.data.val)
        self.model = build_model(recipe, self.data, channels=channels).to(self.device)
        self._dry_run()
        self.channels_last = self._choose_layout() if layout is None else layout
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
            self.pre.channels_last = True
        self.plan = finetune_plan(self.model, recipe.finetune, lr=recipe.optimizer.lr)
        if recipe.finetune.reset_head:
            reset_parameters(self.model, self.plan.head)
        self.trainable = set_trainable(self.model, self.plan.frozen_at(1))
        self.optimizer = make_optimizer(self.model, self.plan, recipe.optimizer)
        has_bn = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in self.model.modules())
        self.min_batch = 2 if has_bn else 1
        self.steps_per_epoch = len(self._batches(0))
        if self.steps_per_epoch == 0:
            raise RecipeError(
                f"batch_size {recipe.batch_size} leaves no full batch from {len(self.train_split)} training images",
                path="batch_size",
            )
        self.scheduler, self.sched_when = make_scheduler(
            self.optimizer,
            recipe.schedule,
            optimizer_section=recipe.optimizer,
            epochs=recipe.epochs,
            steps_per_epoch=self.steps_per_epoch,
        )
        self.scaler = torch.amp.GradScaler("cuda") if self.precision == "amp" else None
        if self.dist.active:
            torch.manual_seed(_epoch_seed(recipe.seed, 0, 1000 + self.dist.rank))  # own dropout per process
        self._wrap()

    def _stage(self, split: Split) -> tuple[Split, bool]:
        if self.pre.fits_in_memory(split):
            return self.pre.prepare(split), True
        return split, False

    def _dry_run(self) -> None:
        """Push two images through before training: a shape problem is a recipe error, not a traceback."""
        x = self.pre.batch(self.train_split.images[:2], prepared=self.train_prepared)
        self.model.eval()
        try:
            with torch.no_grad():
                out = self.model(x)
        except RuntimeError as exc:
            raise RecipeError(
                f"model {self.recipe.model.name!r} cannot take this data's images "
                f"(batches of shape {tuple(x.shape[1:])}): {str(exc).splitlines()[0]}",
                path="data.resize",
                hint="resize the images (data.resize) or choose a model made for this input",
            ) from None
        finally:
            self.model.train()
        if out.dim() != 2 or out.shape[1] != self.data.num_classes:
            raise RecipeError(
                f"model {self.recipe.model.name!r} returns shape {tuple(out.shape[1:])} per image, "
                f"expected {self.data.num_classes} class logits",
                path="model",
            )

    def _choose_layout(self) -> bool:
        """channels_last: as the recipe says, or on 'auto' the faster layout for this model here."""
        setting = self.recipe.channels_last
        if setting != "auto":
            return bool(setting)
        has_conv = any(isinstance(m, nn.Conv2d) for m in self.model.modules())
        if not has_conv or self.device.type not in ("cpu", "cuda"):
            return False
        if self.device.type == "cuda":
            return self.precision in ("amp", "bf16")  # tensor cores prefer NHWC
        choice = False
        if self.dist.main:
            plain, nhwc = self._time_layouts()
            choice = nhwc < 0.9 * plain  # a clear win only: timing noise must not flip the choice
            self.log(
                f"memory layout: {'channels_last' if choice else 'contiguous (NCHW)'} "
                f"(a step takes {nhwc * 1e3:.1f} ms channels_last, {plain * 1e3:.1f} ms NCHW)"
            )
        if self.dist.active:  # every process must use rank 0's choice
            import torch.distributed as tdist

            box = [choice]
            tdist.broadcast_object_list(box, src=0)
            choice = bool(box[0])
        return choice

    def _time_layouts(self) -> tuple[float, float]:
        """Seconds per training step (forward + backward) of a copy of the model in both layouts.

        The copy and a saved RNG state keep the probe from touching the run: the real model,
        its optimizer and the random streams are exactly as if it had not happened.
        """
        import copy

        rng = torch.get_rng_state()
        n = min(self.recipe.batch_size, len(self.train_split))
        x = self.pre.batch(self.train_split.images[:n], prepared=self.train_prepared)
        y = self.train_split.labels[:n].to(self.device)
        times = []
        for layout in (torch.contiguous_format, torch.channels_last):
            probe = copy.deepcopy(self.model).to(memory_format=layout).train()
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

    def _wrap(self) -> None:
        """The module the steps run: DDP and/or torch.compile around the plain model."""
        module: nn.Module = self.model
        if self.dist.active:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            module = DistributedDataParallel(self.model, device_ids=ids)
        if self.recipe.compile:
            module = torch.compile(module)  # type: ignore[assignment]
        self.step_module = module

    def _batches(self, epoch: int) -> list[torch.Tensor]:
        gen = torch.Generator().manual_seed(_epoch_seed(self.recipe.seed, epoch, 0))
        return batch_indices(
            len(self.train_split),
            self.recipe.batch_size,
            generator=gen,
            drop_last=self.recipe.data.drop_last,
            rank=self.dist.rank,
            world=self.dist.world,
            min_size=self.min_batch,
        )

    # ---- checkpoints

    def state(self) -> dict[str, Any]:
        rng: dict[str, Any] = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available() and self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        if self.aug_state is not None:
            rng["aug"] = self.aug_state
        return {
            "epoch": self.epoch,
            "step_in_epoch": self.step_in_epoch,
            "global_step": self.global_step,
            "model": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "rng": rng,
            "accum": self.accum.state() if self.accum is not None and self.step_in_epoch else None,
            "history": self.history,
            "best": {"value": self.best_value, "epoch": self.best_epoch, "bad_epochs": self.bad_epochs},
            "train_seconds": self.train_seconds,
            "images_seen": self.images_seen,
            "channels_last": self.channels_last,
            "recipe": self.recipe.to_data(),
        }

    def save_last(self) -> None:
        if self.dist.main:
            save_checkpoint(self.run_dir / "last.pt", self.state())

    def restore(self, state: dict[str, Any]) -> None:
        try:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            if self.scheduler is not None and state.get("scheduler") is not None:
                self.scheduler.load_state_dict(state["scheduler"])
            if self.scaler is not None and state.get("scaler") is not None:
                self.scaler.load_state_dict(state["scaler"])
            self.epoch = int(state["epoch"])
            self.step_in_epoch = int(state["step_in_epoch"])
            self.global_step = int(state["global_step"])
            self.history = list(state["history"])
            best = state["best"]
        except (KeyError, RuntimeError, ValueError, TypeError) as exc:
            raise CheckpointError(
                f"the checkpoint in {self.run_dir} does not fit this recipe: {str(exc).splitlines()[0]}",
                hint="resume with the recipe the run was started with (its copy is recipe.yaml in the run directory)",
            ) from None
        self.best_value, self.best_epoch, self.bad_epochs = best["value"], int(best["epoch"]), int(best["bad_epochs"])
        self.train_seconds = float(state.get("train_seconds", 0.0))
        self.images_seen = int(state.get("images_seen", 0))
        self.accum = Totals.from_state(state["accum"], self.device) if state.get("accum") else None
        self.aug_state = state["rng"].get("aug") if self.step_in_epoch else None
        if not self.dist.active:  # other processes keep their own dropout streams
            torch.set_rng_state(state["rng"]["torch"])
            if "cuda" in state["rng"] and self.device.type == "cuda":
                torch.cuda.set_rng_state(state["rng"]["cuda"], self.device)
        self._report_changes(state.get("recipe"))

    def _report_changes(self, saved: Any) -> None:
        if not isinstance(saved, dict):
            return
        now = self.recipe.to_data()
        if saved.get("epochs") != now["epochs"] and now["schedule"]["name"] == "onecycle":
            raise RecipeError(
                f"the run was started with epochs={saved.get('epochs')} and a onecycle schedule, whose length "
                f"is fixed at the start; it cannot continue with epochs={now['epochs']}",
                path="epochs",
                hint=f"start a new run from its weights: --set finetune.pretrained={self.run_dir / 'weights.pth'}",
            )
        changed = [k for k in now if k not in ("output_dir", "progress") and saved.get(k) != now[k]]
        if changed:
            self.log(f"note: resuming with settings changed since the run started: {', '.join(changed)}")

    # ---- training

    def fit(self, *, interrupt_after: int | None = None) -> None:
        recipe = self.recipe
        while self.epoch < recipe.epochs and not self._should_stop():
            epoch = self.epoch + 1
            frozen = self.plan.frozen_at(epoch)
            if epoch > 1 and frozen != self.plan.frozen_at(epoch - 1):
                self.trainable = set_trainable(self.model, frozen)
                self.log(f"epoch {epoch}: unfroze parameters; {self.trainable:,} now train")
                self._wrap()  # DDP must see the new set of trainable parameters
            started = time.perf_counter()
            train_loss, train_acc = self._train_epoch(epoch, frozen, interrupt_after=interrupt_after)
            row = self._end_epoch(epoch, train_loss, train_acc, time.perf_counter() - started)
            self.log(self._epoch_line(row))

    def _should_stop(self) -> bool:
        es = self.recipe.early_stopping
        return es is not None and self.bad_epochs >= es.patience

    def _train_epoch(self, epoch: int, frozen: frozenset[str], *, interrupt_after: int | None) -> tuple[float, float]:
        recipe = self.recipe
        batches = self._batches(epoch)
        aug = torch.Generator().manual_seed(_epoch_seed(recipe.seed, epoch, 1 + self.dist.rank))
        if self.aug_state is not None and self.step_in_epoch:
            aug.set_state(self.aug_state)
        totals = self.accum if (self.accum is not None and self.step_in_epoch) else Totals.zeros(self.device)
        self.step_module.train()
        if recipe.finetune.frozen_bn_eval and frozen:
            _freeze_bn_stats(self.model, frozen)
        bar = self._bar(epoch, len(batches), self.step_in_epoch)
        tick = time.perf_counter()
        images, labels = self.train_split.images, self.train_split.labels
        try:
            for step in range(self.step_in_epoch, len(batches)):
                idx = batches[step].to(images.device)
                x = self.pre.batch(images.index_select(0, idx), prepared=self.train_prepared, generator=aug)
                y = labels.index_select(0, idx).to(self.device, non_blocking=True)
                logits, loss = self._step(x, y)
                totals.add(logits, y, loss)
                self.images_seen += int(idx.shape[0])
                self.global_step += 1
                self.step_in_epoch = step + 1
                if bar is not None:
                    bar.update(1)
                    if step % 10 == 0 or step + 1 == len(batches):
                        mean_loss, acc = totals.means()
                        bar.set_postfix(loss=f"{mean_loss:.4f}", acc=f"{acc:.2%}", refresh=False)
                self._maybe_checkpoint_inside(step + 1, len(batches), totals, aug)
                if interrupt_after is not None and self.global_step >= interrupt_after:
                    raise KeyboardInterrupt(f"interrupted after step {self.global_step}")
        finally:
            self.train_seconds += time.perf_counter() - tick
            if bar is not None:
                bar.close()
        self.step_in_epoch = 0
        self.accum = None
        self.aug_state = None
        return totals.reduce(self.dist).means()

    def _step(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with _autocast(self.device, self.precision):
            logits = self.step_module(x)
            loss = F.cross_entropy(logits.float(), y, label_smoothing=self.recipe.loss.label_smoothing)
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:
            torch.autograd.backward(self.scaler.scale(loss))
            self._clip(unscale=True)
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            torch.autograd.backward(loss)
            self._clip(unscale=False)
            self.optimizer.step()
        if self.sched_when == "step":
            self.scheduler.step()
        return logits, loss

    def _clip(self, *, unscale: bool) -> None:
        if self.recipe.grad_clip is None:
            return
        if unscale and self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.recipe.grad_clip)

    def _maybe_checkpoint_inside(self, done: int, total: int, totals: Totals, aug: torch.Generator) -> None:
        every = self.recipe.checkpoint.every_steps
        if every is None or done == total or self.global_step % every:
            return
        self.accum, self.aug_state = totals, aug.get_state()
        self.save_last()

    def _bar(self, epoch: int, total: int, initial: int) -> Any:
        if not self.progress:
            return None
        from tqdm.auto import tqdm

        return tqdm(
            total=total,
            initial=initial,
            desc=f"epoch {epoch}/{self.recipe.epochs}",
            unit="batch",
            dynamic_ncols=True,
            leave=False,
            file=sys.stderr,
        )

    def _end_epoch(self, epoch: int, train_loss: float, train_acc: float, seconds: float) -> dict[str, Any]:
        row: dict[str, Any] = {
            "epoch": epoch,
            "train_loss": train_loss,
            "train_accuracy": train_acc,
            "val_loss": None,
            "val_accuracy": None,
            "lr": self.optimizer.param_groups[0]["lr"],
            "seconds": round(seconds, 3),
        }
        if self.val_split is not None:
            row["val_loss"], row["val_accuracy"], _ = evaluate_split(
                self.model,
                self.val_split,
                self.pre,
                prepared=self.val_prepared,
                batch_size=self.recipe.effective_eval_batch_size,
                precision=self.precision,
                dist=self.dist,
            )
        self.history.append(row)
        self.epoch = epoch
        self._step_epoch_schedule(row)
        improved = self._track_best(row)
        self.save_last()
        if improved and self.dist.main:
            save_checkpoint(self.run_dir / "best.pt", {"model": self.state()["model"], "epoch": epoch})
        if self.dist.main:
            write_history(self.run_dir, self.history)
        return row

    def _step_epoch_schedule(self, row: dict[str, Any]) -> None:
        if self.sched_when == "epoch":
            self.scheduler.step()
        elif self.sched_when == "metric":
            value = row[self.recipe.schedule.monitor]
            if value is not None:
                self.scheduler.step(value)

    def _track_best(self, row: dict[str, Any]) -> bool:
        monitor = self.recipe.checkpoint.monitor
        value = row[monitor] if row[monitor] is not None else -row["train_loss"]
        better = self.best_value is None or (
            value > self.best_value if monitor == "val_accuracy" or row[monitor] is None else value < self.best_value
        )
        if better:
            self.best_value, self.best_epoch = value, row["epoch"]
        es = self.recipe.early_stopping
        if es is not None and row[es.monitor] is not None:
            self.bad_epochs = self._early_stopping_count(es.monitor, es.min_delta, row[es.monitor])
        return better

    def _early_stopping_count(self, monitor: str, min_delta: float, value: float) -> int:
        seen = [r[monitor] for r in self.history[:-1] if r[monitor] is not None]
        if not seen:
            return 0
        best = min(seen) if monitor == "val_loss" else max(seen)
        improved = value < best - min_delta if monitor == "val_loss" else value > best + min_delta
        return 0 if improved else self.bad_epochs + 1

    def _epoch_line(self, row: dict[str, Any]) -> str:
        text = (
            f"epoch {row['epoch']}/{self.recipe.epochs}: loss {row['train_loss']:.4f} acc {row['train_accuracy']:.2%}"
        )
        if row["val_loss"] is not None:
            text += f" | val_loss {row['val_loss']:.4f} val_acc {row['val_accuracy']:.2%}"
        return text + f" | lr {row['lr']:.3g} | {row['seconds']:.1f}s"

    # ---- the end

    def finish(self) -> TrainResult:
        if self.recipe.checkpoint.test_with == "best" and (self.run_dir / "best.pt").is_file():
            self.model.load_state_dict(load_checkpoint(self.run_dir / "best.pt")["model"])
        test_split, test_prepared = self._stage(self.data.test)
        test_loss, test_acc, preds = evaluate_split(
            self.model,
            test_split,
            self.pre,
            prepared=test_prepared,
            batch_size=self.recipe.effective_eval_batch_size,
            precision=self.precision,
            keep_predictions=True,
        )
        metrics = self._metrics(test_loss, test_acc)
        pictures: dict[str, str] = {}
        if self.recipe.reports.enabled and preds is not None:
            from ._reports import write_reports

            pictures = write_reports(
                self.run_dir,
                model=self.model,
                data=self.data,
                test=test_split,
                test_prepared=test_prepared,
                pre=self.pre,
                predictions=preds,
                history=self.history,
                section=self.recipe.reports,
            )
            metrics["reports"] = pictures
        buffer = io.BytesIO()
        torch.save({k: v.detach().cpu() for k, v in self.model.state_dict().items()}, buffer)
        atomic_write_bytes(self.run_dir / "weights.pth", buffer.getvalue())
        atomic_write_text(self.run_dir / "metrics.json", json.dumps(metrics, indent=2) + "\n")
        return TrainResult(self.run_dir, metrics, pictures)

    def _metrics(self, test_loss: float, test_acc: float) -> dict[str, Any]:
        seen = self.images_seen * self.dist.world  # every process trains on its share of each batch
        return {
            "recipe": self.recipe.name,
            "model": self.recipe.model.name,
            "dataset": self.recipe.data.dataset,
            "test_accuracy": test_acc,
            "test_loss": test_loss,
            "test_images": len(self.data.test),
            "epochs_completed": self.epoch,
            "stopped_early": self.epoch < self.recipe.epochs,
            "best_epoch": self.best_epoch,
            "best_" + self.recipe.checkpoint.monitor: self.best_value,
            "tested_with": self.recipe.checkpoint.test_with,
            "train_seconds": round(self.train_seconds, 3),
            "images_per_second": round(seen / self.train_seconds, 1) if self.train_seconds else None,
            "device": str(self.device),
            "precision": self.precision,
            "channels_last": self.channels_last,
            "world_size": self.dist.world,
            "parameters": sum(p.numel() for p in self.model.parameters()),
            "trainable_parameters": self.trainable,
            "history": self.history,
        }


def write_history(run_dir: Path, history: list[dict[str, Any]]) -> None:
    """history.json and history.csv, rewritten atomically after every epoch."""
    atomic_write_text(run_dir / "history.json", json.dumps(history, indent=2) + "\n")
    out = io.StringIO()
    columns = ["epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr", "seconds"]
    writer = csv.DictWriter(out, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in history:
        writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in columns})
    atomic_write_text(run_dir / "history.csv", out.getvalue())


def _check_space(run: _Run) -> None:
    weights = sum(p.numel() * p.element_size() for p in run.model.parameters())
    # last.pt (weights + up to two optimizer slots), best.pt, weights.pth, a temporary copy
    check_free_space(run.run_dir, needed=weights * 8 + 16 * 1024**2)


@contextlib.contextmanager
def _process_group(dist: Dist) -> Iterator[None]:
    finished = False
    try:
        yield
        finished = True
    finally:
        if dist.active:
            import torch.distributed as tdist

            if tdist.is_initialized():
                if finished:
                    # rank 0 still writes reports after the last collective; a rank that tears gloo
                    # down before its peer is done makes the peer abort at exit (SIGABRT)
                    tdist.barrier()
                tdist.destroy_process_group()


def _shared_run_dir(dist: Dist, folder: Path | None) -> Path:
    """Rank 0 decides the run directory; the others learn it."""
    if not dist.active:
        assert folder is not None
        return folder
    import torch.distributed as tdist

    box = [str(folder) if folder is not None else ""]
    tdist.broadcast_object_list(box, src=0)
    return Path(box[0])


def train(
    recipe: Recipe,
    *,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool | None = None,
    log: Log = print,
    interrupt_after: int | None = None,
) -> TrainResult:
    """Train ``recipe`` into its run directory and evaluate it on the test set.

    ``resume`` continues from the run directory's ``last.pt`` (a run without one starts fresh);
    ``interrupt_after`` raises KeyboardInterrupt after that many optimizer steps (tests use it to
    stand for a crash).
    """
    dist = _init_distributed(recipe.device)
    with _process_group(dist):
        folder = resolve_run_dir(recipe, resume=resume, overwrite=overwrite) if dist.main else None
        run_dir = _shared_run_dir(dist, folder)
        lock = RunLock(run_dir)
        if dist.main:
            check_writable(run_dir)
            lock.acquire()
        try:
            if dist.main:
                remove_stale_temporaries(run_dir)
            return _train_locked(
                recipe, run_dir, dist=dist, resume=resume, progress=progress, log=log, interrupt_after=interrupt_after
            )
        except KeyboardInterrupt:
            if dist.main and (run_dir / "last.pt").is_file():
                log(f"interrupted; the last complete checkpoint is {run_dir / 'last.pt'}")
            raise
        finally:
            lock.release()


def _train_locked(
    recipe: Recipe,
    run_dir: Path,
    *,
    dist: Dist,
    resume: bool,
    progress: bool | None,
    log: Log,
    interrupt_after: int | None,
) -> TrainResult:
    run = _Run(recipe, run_dir, dist=dist, progress=recipe.progress if progress is None else progress, log=log)
    last = run_dir / "last.pt"
    state = load_checkpoint(last, map_location="cpu") if resume and last.is_file() else None
    saved_layout = state.get("channels_last") if state is not None else None
    run.setup(layout=bool(saved_layout) if saved_layout is not None else None)
    if dist.main:
        _check_space(run)
    if state is not None:
        run.restore(state)
        where = f"epoch {run.epoch + 1}" + (f", step {run.step_in_epoch}" if run.step_in_epoch else "")
        if dist.main:
            log(f"resuming {run_dir} at {where}")
    elif resume and dist.main:
        log(f"note: {run_dir} has no checkpoint yet; starting from the beginning")
    if dist.main:  # after restore: a recipe the checkpoint refuses never replaces the run's own
        atomic_write_text(run_dir / "recipe.yaml", dump_recipe(recipe))
    if dist.main:
        log(
            f"training {recipe.model.name} on {recipe.data.dataset} ({len(run.train_split)} train, "
            f"{len(run.val_split) if run.val_split is not None else 0} val, {len(run.data.test)} test images) "
            f"on {run.device}" + (f" x{dist.world} processes" if dist.active else "")
        )
    run.fit(interrupt_after=interrupt_after)
    if not dist.main:
        return TrainResult(run_dir, {})
    return run.finish()


# --------------------------------------------------------------------------- evaluation outside training


@dataclass
class EvalContext:
    """A trained model with its data, ready for evaluate/visualize."""

    recipe: Recipe
    data: DataBundle
    pre: Preprocess
    model: nn.Module
    weights: Path


def find_weights(run_dir: Path, which: str = "final") -> Path:
    """weights.pth ('final'), best.pt or last.pt of a run directory."""
    names = {"final": ["weights.pth", "last.pt"], "best": ["best.pt"], "last": ["last.pt"]}[which]
    for name in names:
        if (run_dir / name).is_file():
            return run_dir / name
    raise CheckpointError(f"no {' or '.join(names)} in {run_dir}", hint="is this a run directory of a started run?")


def load_weights_file(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from a zoo checkpoint, a plain .pth state dict or a .safetensors file, loaded safely."""
    from ._weights import read_weights  # the one reader of weight files (zoo.build(pretrained=...) uses it too)

    return read_weights(path)


def load_for_evaluation(recipe: Recipe, *, weights: Path, device: str | None = None) -> EvalContext:
    """Data, preprocessing and the model of ``recipe`` with ``weights`` loaded (no pretrained download)."""
    finetune = recipe.finetune.model_copy(update={"pretrained": None})
    recipe = recipe.model_copy(update={"finetune": finetune, "device": device or recipe.device})
    dev = resolve_device(recipe.device)
    data = load_data(recipe.data)
    pre = Preprocess(recipe.data, data_channels=data.channels, mean=data.mean, std=data.std, device=dev)
    model = build_model(recipe, data, channels=recipe.data.channels or data.channels)
    state = load_weights_file(weights)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise CheckpointError(
            f"weights {weights} do not fit model {recipe.model.name!r}: {str(exc).splitlines()[0]}",
            hint="evaluate with the recipe the weights were trained with",
        ) from None
    return EvalContext(recipe, data, pre, model.to(dev).eval(), weights)
