"""The recipe's model and its fine-tuning plan: which parameters are frozen when, and in which optimizer group.

Patterns name parameters or any module above them (``layer1`` matches ``layer1.0.conv1.weight``);
a pattern that matches nothing is a RecipeError with a did-you-mean over the model's module names.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from torch import nn

from .._errors import RecipeError, ZooError, did_you_mean
from ._recipe import FinetuneSection, Recipe
from ._split import DataBundle

__all__ = [
    "FinetunePlan",
    "build_model",
    "finetune_plan",
    "freeze_bn_stats",
    "model_arguments",
    "reset_parameters",
    "set_trainable",
]


def build_model(recipe: Recipe, bundle: DataBundle, *, channels: int) -> nn.Module:
    """Build the recipe's registry model for the data's classes and channels."""
    import zoo

    pretrained = recipe.finetune.pretrained
    try:
        return zoo.build(
            **model_arguments(recipe, bundle.num_classes, channels=channels),
            pretrained=pretrained if pretrained not in (None, False) else None,
        )
    except ZooError as exc:
        exc.add_context(f"while building model {recipe.model.name!r} for recipe {recipe.name!r}")
        raise


def model_arguments(recipe: Recipe, num_classes: int, *, channels: int) -> dict[str, Any]:
    """``zoo.build`` keyword arguments (no weights) of the recipe's model for this data (saved with a run)."""
    import zoo

    spec = zoo.get_spec(recipe.model.name)
    params = dict(recipe.model.params)
    classes = params.pop("num_classes", None) or recipe.model.num_classes or num_classes
    in_channels = recipe.model.in_channels or channels
    if in_channels != channels:
        raise RecipeError(
            f"model.in_channels is {in_channels} but the batches have {channels} channel{'s' if channels > 1 else ''}",
            path="model.in_channels",
            hint=f"set data.channels: {in_channels} to convert the images, or drop model.in_channels "
            "(the model's first convolution then takes the data's channels)",
        )
    declared = list(spec.input)[0] if len(spec.input) == 3 else None
    return {
        "name": recipe.model.name,
        "num_classes": classes,
        "in_channels": in_channels if in_channels != declared else None,
        **params,
    }


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
    if names and frozen >= set(names):
        # nothing would train in epoch 1: backward would fail inside autograd
        raise RecipeError(
            f"finetune.freeze{' with freeze_backbone' if section.freeze_backbone else ''} leaves no parameter "
            f"to train in epoch 1 (all {len(names)} are frozen)",
            path="finetune.freeze",
            hint="keep the head trainable (freeze_backbone does) or unfreeze from epoch 1",
        )
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


def freeze_bn_stats(model: nn.Module, frozen: frozenset[str]) -> None:
    """Frozen BatchNorm layers keep their running statistics (eval mode while training)."""
    for mod_name, module in model.named_modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            own = [f"{mod_name}.{n}" if mod_name else n for n, _ in module.named_parameters(recurse=False)]
            if own and all(n in frozen for n in own):
                module.eval()
