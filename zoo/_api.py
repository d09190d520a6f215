"""zoo.build: a registered architecture into a torch module (optionally with pretrained weights)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ._builder import build_network
from ._errors import SchemaError, UnknownNameError, did_you_mean
from ._modules import Network
from ._registry import REGISTRY
from ._schema import ArchitectureSpec

__all__ = ["build", "resolve_params"]


def resolve_params(spec: ArchitectureSpec, num_classes: int | None, in_channels: int | None, params: dict[str, Any]) -> tuple[dict[str, Any], list[int]]:
    """Caller's overrides checked against the declared parameters; the input shape to build for."""
    given = dict(params)
    if num_classes is not None:
        if "num_classes" not in spec.params:
            raise UnknownNameError(f"{spec.name!r} has no 'num_classes' parameter", location=None, path="params")
        given["num_classes"] = num_classes
    for key in given:
        if key not in spec.params:
            raise UnknownNameError(
                f"{spec.name!r} has no parameter {key!r}",
                path=f"params.{key}",
                hint=did_you_mean(key, spec.params) or f"its parameters: {', '.join(spec.params) or 'none'}",
            )
    shape = list(spec.input)
    if in_channels is not None:
        if len(shape) != 3 or not isinstance(in_channels, int) or in_channels <= 0:
            raise SchemaError(f"in_channels must be a positive int for an image model, got {in_channels!r}")
        shape[0] = in_channels
    return given, shape


def build(
    name: str,
    *,
    num_classes: int | None = None,
    in_channels: int | None = None,
    pretrained: bool | str | os.PathLike[str] | None = None,
    input_size: Sequence[int] | None = None,
    features_only: bool = False,
    out_indices: Sequence[int] | None = None,
    device: str | torch.device | None = None,
    max_params: int | None = None,
    in_chans: int | None = None,
    **params: Any,
) -> nn.Module:
    """Build a registered architecture into a plain ``torch.nn.Module`` that returns logits.

    ``num_classes``/``in_channels`` and any declared parameter override the file's defaults.
    ``input_size`` (C, H, W) builds for another input size (dense layers after ``flatten`` follow).
    ``device="meta"`` builds without allocating (for loading weights with ``assign=True``).
    ``features_only=True`` returns the backbone's feature maps at the file's ``features:`` points
    (``out_indices`` selects some); ``model.feature_info`` gives their channels and strides.

    timm's spellings work too: ``in_chans=`` for ``in_channels=``; ``num_classes=0`` removes the
    classifier (the model returns pooled features ``(N, model.num_features)``), and
    ``model.reset_classifier(n)`` puts a new one back.
    """
    in_channels = _alias_in_chans(in_channels, in_chans)
    headless = num_classes == 0 and not isinstance(num_classes, bool)
    spec = REGISTRY.get_spec(name)
    if headless:
        num_classes = None  # build with the file's head, then take it off
    given, shape = resolve_params(spec, num_classes, in_channels, params)
    if input_size is not None:
        if len(input_size) != len(shape) or not all(isinstance(v, int) and v > 0 for v in input_size):
            raise SchemaError(f"input_size must be {len(shape)} positive ints like {spec.input}, got {list(input_size)}")
        shape = list(input_size)
    model: nn.Module
    if pretrained is None or pretrained is False:
        expanded = REGISTRY.expand(spec, given, tuple(shape))
        model = build_network(expanded, device=device, limit=max_params)
        if spec.init and not (device is not None and torch.device(device).type == "meta"):
            from ._init import apply_init

            apply_init(model, spec.init)
    else:
        from ._weights import load_pretrained, resolve_source

        # published weights may need parameters of their own (torchvision's transform_input, say)
        library, _ = resolve_source(spec, pretrained)
        needs = (spec.weights or {}).get(library)
        given = {**(needs.params if needs else {}), **given}
        expanded = REGISTRY.expand(spec, given, tuple(shape))
        model = build_network(expanded, device="meta", limit=max_params)
        model = load_pretrained(model, spec, pretrained, device=device)
    if isinstance(model, Network):
        _mark_classifier(model, spec, given.get("num_classes", spec.params.get("num_classes")))
        if headless:
            model.reset_classifier(0)
    elif headless:
        raise SchemaError(f"{spec.name!r} has no classifier to remove (num_classes=0)")
    if features_only:
        from ._features import features_only as extract

        report = getattr(model, "load_report", None)
        model = extract(model, spec, expanded, out_indices)
        if report is not None:
            model.load_report = report
    return model


def _alias_in_chans(in_channels: int | None, in_chans: int | None) -> int | None:
    """timm's ``in_chans`` is another name for ``in_channels``."""
    if in_chans is None:
        return in_channels
    if in_channels is not None and in_channels != in_chans:
        raise SchemaError(f"in_chans={in_chans!r} and in_channels={in_channels!r} disagree; pass one of them")
    return in_chans


def _mark_classifier(model: Network, spec: ArchitectureSpec, num_classes: Any) -> None:
    """Remember the classifier: the last Linear layer with ``num_classes`` outputs (after any aux heads)."""
    if "num_classes" not in spec.params or not isinstance(num_classes, int):
        return
    heads = [n for n, m in model.named_modules() if isinstance(m, nn.Linear) and m.out_features == num_classes]
    if heads:
        head = model.get_submodule(heads[-1])
        assert isinstance(head, nn.Linear)
        model.classifier_name, model.num_features, model.num_classes = heads[-1], head.in_features, num_classes
