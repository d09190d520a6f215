"""Feature extraction: a backbone that returns the outputs of named stages.

An architecture lists its feature points in ``features:`` (module paths such as ``layer1`` or
``features.3``, at most one level inside a top-level stage). The extractor keeps the model's
modules under their own names, so the backbone's ``state_dict`` keys are the full model's minus
the head, and drops everything after the last requested point.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from torch import Tensor, nn

from ._errors import SchemaError, UnknownNameError, did_you_mean
from ._schema import ArchitectureSpec
from ._tree import Expanded, Group, Item

__all__ = ["FeatureExtractor", "FeatureInfo", "feature_points", "features_only"]


def _child_names(items: list[Item]) -> list[str]:
    """Module names the builder gives these items (explicit, else registration position)."""
    names: list[str] = []
    for item in items:
        names.append(item.name if item.name is not None else str(len(names)))
    return names


def feature_points(
    spec: ArchitectureSpec, expanded: Expanded, out_indices: Sequence[int] | None, nominal: Expanded | None = None
) -> list[dict[str, Any]]:
    """[{module, num_chs, reduction}] for the requested feature points, from inferred shapes.

    ``nominal`` is the same model expanded at the file's input size, where the reductions (the
    design's strides) are read; default ``expanded``, when that is at the file's size."""
    if not spec.features:
        raise SchemaError(f"{spec.name!r} declares no 'features:' (module names whose outputs form the feature pyramid)")
    if out_indices is not None and (isinstance(out_indices, (str, bytes)) or not isinstance(out_indices, Sequence)):
        raise SchemaError(f"out_indices must be a list of ints such as [1, 2], got {out_indices!r}")
    chosen = list(range(len(spec.features))) if out_indices is None else list(out_indices)
    if not chosen or any(not isinstance(i, int) or isinstance(i, bool) for i in chosen):
        raise SchemaError(f"out_indices must be a non-empty list of ints, got {out_indices!r}")
    for i in chosen:
        if not -len(spec.features) <= i < len(spec.features):
            raise SchemaError(f"out_indices {i} out of range: {spec.name!r} has {len(spec.features)} feature points")
    height = spec.input[1] if len(spec.input) == 3 else 1
    info = []
    for i in chosen:
        shape = _point(spec, expanded, i).out_shape
        at_design = _point(spec, nominal, i).out_shape if nominal is not None else shape
        reduction = _stride(height, at_design[1]) if len(at_design) == 3 else None
        info.append({"module": spec.features[i], "num_chs": shape[0], "reduction": reduction})
    return info


def _point(spec: ArchitectureSpec, expanded: Expanded, i: int) -> Item:
    """The expanded item of feature point ``i`` (a top-level module or one inside a top-level seq)."""
    path = spec.features[i] if spec.features else ""
    top = dict(zip(_child_names(expanded.items), expanded.items, strict=True))
    head, _, rest = path.partition(".")
    item = top.get(head)
    if item is not None and rest:
        inner = item.parts[0] if isinstance(item, Group) and item.kind == "seq" else []
        item = dict(zip(_child_names(inner), inner, strict=True)).get(rest)
    if item is None:
        raise UnknownNameError(
            f"feature point {path!r} is not a module of {spec.name!r}", path=f"features[{i}]",
            hint=did_you_mean(head, top) or f"top-level modules: {', '.join(list(top)[:12])}",
        )
    return item


def _stride(height: int, out: int) -> int:
    """The nominal stride of a map ``out`` pixels high from an input ``height`` high: the nearest
    power of two (timm's convention; 299 -> 17 pixels is stride 16), else the rounded ratio."""
    ratio = height / out
    power = 2 ** round(math.log2(ratio))
    return power if abs(ratio / power - 1) < 0.2 else round(ratio)


class FeatureInfo(list[dict[str, Any]]):
    """The list of ``{module, num_chs, reduction}`` dicts, with timm's ``FeatureInfo`` accessors:
    ``channels()``, ``reduction()`` and ``module_name()`` (all points, or point ``idx``)."""

    def _get(self, key: str, idx: int | Sequence[int] | None) -> Any:
        if idx is None:
            return [d[key] for d in self]
        if isinstance(idx, int):
            return self[idx][key]
        return [self[i][key] for i in idx]

    def channels(self, idx: int | Sequence[int] | None = None) -> Any:
        return self._get("num_chs", idx)

    def reduction(self, idx: int | Sequence[int] | None = None) -> Any:
        return self._get("reduction", idx)

    def module_name(self, idx: int | Sequence[int] | None = None) -> Any:
        return self._get("module", idx)


class FeatureExtractor(nn.Module):
    """Runs the backbone and returns the requested stage outputs, shallow to deep."""

    def __init__(self, network: nn.Module, info: list[dict[str, Any]]) -> None:
        super().__init__()
        self.feature_info = FeatureInfo(info)
        wanted = [d["module"] for d in info]
        last_top = max(list(dict(network.named_children())).index(w.split(".")[0]) for w in wanted)
        for i, (name, child) in enumerate(network.named_children()):
            if i > last_top:
                break
            self.add_module(name, child)
        self.wanted = set(wanted)
        self.order = wanted

    def forward(self, x: Tensor) -> list[Tensor]:
        found: dict[str, Tensor] = {}
        for name, child in self.named_children():
            nested = [w for w in self.wanted if w.startswith(name + ".")]
            if nested and isinstance(child, nn.Sequential):
                for sub, module in child.named_children():
                    x = module(x)
                    if f"{name}.{sub}" in self.wanted:
                        found[f"{name}.{sub}"] = x
            else:
                x = child(x)
            if name in self.wanted:
                found[name] = x
        return [found[w] for w in self.order]

    def extra_repr(self) -> str:
        return "features=" + ", ".join(f"{d['module']}({d['num_chs']}ch/{d['reduction']})" for d in self.feature_info)


def features_only(
    network: nn.Module, spec: ArchitectureSpec, expanded: Expanded, out_indices: Sequence[int] | None, nominal: Expanded | None
) -> FeatureExtractor:
    return FeatureExtractor(network, feature_points(spec, expanded, out_indices, nominal))

