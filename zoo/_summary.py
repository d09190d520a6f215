"""Summaries: the torchinfo table plus the published count beside the actual one."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from torch import nn

from ._errors import SchemaError, SizeLimitError

__all__ = ["Summary", "count_params", "summary"]

Convention = Literal["pytorch", "keras"]


def count_params(model: nn.Module, *, convention: Convention = "pytorch", trainable_only: bool = False) -> int:
    """Parameter count. ``keras`` also counts batch-norm moving mean and variance, as Keras'
    ``model.summary()`` does (as non-trainable parameters)."""
    params = [p for p in model.parameters() if p.requires_grad or not trainable_only]
    total = sum(p.numel() for p in params)
    if convention == "keras" and not trainable_only:
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is not None:
                total += m.running_mean.numel() + m.running_var.numel()  # type: ignore[union-attr]
    elif convention not in ("pytorch", "keras"):
        raise SchemaError(f"unknown convention {convention!r}; expected 'pytorch' or 'keras'")
    return total


@dataclass
class Summary:
    name: str
    table: str
    total_params: int
    trainable_params: int
    mult_adds: int
    input_shape: list[int]
    published: int | None
    published_source: str
    convention: Convention

    @property
    def matches(self) -> bool:
        """True when there is no published count or it equals the actual one."""
        return self.published is None or self.published == self.total_params

    def __str__(self) -> str:
        lines = [self.table, f"input: {tuple(self.input_shape)}  convention: {self.convention}"]
        lines.append(f"total params:     {self.total_params:,}")
        lines.append(f"trainable params: {self.trainable_params:,}")
        lines.append(f"mult-adds:        {self.mult_adds:,}")
        if self.published is not None:
            verdict = "matches" if self.matches else f"DIFFERS by {self.total_params - self.published:+,}"
            lines.append(f"published params: {self.published:,} ({self.published_source}) -> {verdict}")
        return "\n".join(lines)


def summary(
    model: str | nn.Module,
    *,
    input_size: Sequence[int] | None = None,
    depth: int = 3,
    convention: Convention | None = None,
    **params: object,
) -> Summary:
    """torchinfo table and counts for a registered name (or a built module with ``input_size``).

    ``convention`` defaults to the one the file's published count uses (else ``pytorch``)."""
    import torchinfo  # heavy-ish; only summaries need it

    from ._api import build, check_input_size
    from ._limits import max_activation
    from ._registry import get_spec

    if not isinstance(depth, int) or isinstance(depth, bool) or depth < 0:
        raise SchemaError(f"depth must be a non-negative integer, got {depth!r}")
    if convention is not None and convention not in ("pytorch", "keras"):
        raise SchemaError(f"unknown convention {convention!r}; expected 'pytorch' or 'keras'")

    published: int | None = None
    source = ""
    if isinstance(model, str):
        spec = get_spec(model)
        name = spec.name
        if convention is None:
            convention = spec.published.convention if spec.published else "pytorch"
        if spec.published is not None and spec.published.convention == convention and not params and input_size is None:
            published, source = spec.published.params, spec.published.source
        shape = check_input_size(input_size, spec.input) if input_size is not None else list(spec.input)
        module = build(model, input_size=shape, **params)  # type: ignore[arg-type]
    else:
        if not isinstance(model, nn.Module):
            raise SchemaError(f"summary takes a model name or a torch.nn.Module, got {type(model).__name__}")
        if input_size is None:
            raise SchemaError("summary of a module needs input_size=(C, H, W)")
        shape = check_input_size(input_size, None)
        if math.prod(shape) > max_activation():  # a module of the user's own: its input is all we can bound
            raise SizeLimitError(f"input {tuple(shape)} has more than {max_activation():,} elements per sample",
                                 hint="raise the limit with the ZOO_MAX_ACTIVATION environment variable")
        name, module = type(model).__name__, model
    convention = convention or "pytorch"
    was_training = module.training
    module.eval()
    stats = torchinfo.summary(
        module, input_size=(1, *shape), depth=depth, verbose=0, device="cpu",
        col_names=("output_size", "num_params", "mult_adds"),
    )
    module.train(was_training)
    # torchinfo totals mult-adds over leaf modules only; a fused conv/dense keeps its activation as
    # a parameter-free child, so count every layer that owns parameters directly
    stats.total_mult_adds = sum(
        layer.macs for layer in stats.summary_list
        if layer.is_leaf_layer or any(True for _ in layer.module.parameters(recurse=False))
    )
    return Summary(
        name=name,
        table=str(stats),
        total_params=count_params(module, convention=convention),
        trainable_params=count_params(module, trainable_only=True),
        mult_adds=int(stats.total_mult_adds),
        input_shape=shape,
        published=published,
        published_source=source,
        convention=convention,
    )
