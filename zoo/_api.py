"""zoo.build: a registered architecture into a torch module (optionally with pretrained weights)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ._builder import build_network
from ._errors import SchemaError
from ._network import Network
from ._registry import REGISTRY
from ._schema import ArchitectureSpec
from ._values import is_int, positive_int, resolve_params

__all__ = ["build", "resolve_params"]


def check_device(device: Any) -> torch.device | None:
    """A device the caller named, refused early and clearly: a typo or a GPU this machine lacks."""
    if device is None:
        return None
    if not isinstance(device, (str, torch.device)):
        raise SchemaError(f"device must be a string such as 'cpu' or 'cuda:0', got {type(device).__name__}")
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError) as exc:
        raise SchemaError(f"unknown device {device!r}: {exc}", hint="expected 'cpu', 'cuda', 'cuda:0', 'mps' or 'meta'") from None
    if dev.type == "cuda" and (not torch.cuda.is_available() or (dev.index or 0) >= torch.cuda.device_count()):
        raise SchemaError(f"device {device!r} is not available on this machine (CUDA devices: {torch.cuda.device_count()})")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise SchemaError(f"device {device!r} is not available on this machine")
    return dev


def check_input_size(input_size: Any, like: Sequence[int] | None) -> list[int]:
    """``input_size`` as a list of positive ints, as long as ``like`` (any of 1 to 3 without one)."""
    want = f"{len(like)} positive ints like {list(like)}" if like is not None else "1 to 3 positive ints (C, H, W)"
    if isinstance(input_size, (str, bytes)) or not isinstance(input_size, Sequence):
        raise SchemaError(f"input_size must be {want}, got {input_size!r}")
    size_ok = len(input_size) == len(like) if like is not None else 1 <= len(input_size) <= 3
    if not size_ok or not all(is_int(v) and v > 0 for v in input_size):
        raise SchemaError(f"input_size must be {want}, got {list(input_size)!r}")
    return list(input_size)


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
    max_activation: int | None = None,
    in_chans: int | None = None,
    **params: Any,
) -> nn.Module:
    """Build a registered architecture into a plain ``torch.nn.Module`` that returns logits.

    ``num_classes``/``in_channels`` and any declared parameter override the file's defaults.
    ``input_size`` (C, H, W) builds for another input size (dense layers after ``flatten`` follow).
    ``device="meta"`` builds without allocating (for loading weights with ``assign=True``).
    ``features_only=True`` returns the backbone's feature maps at the file's ``features:`` points
    (``out_indices`` selects some); ``model.feature_info`` gives their channels and strides.
    ``max_params``/``max_activation`` raise the limits on parameters and on the elements of one
    layer's tensors per sample (defaults 2e9 and 2**28; ``ZOO_MAX_PARAMS``/``ZOO_MAX_ACTIVATION``).

    timm's spellings work too: ``in_chans=`` for ``in_channels=``; ``num_classes=0`` removes the
    classifier (the model returns pooled features ``(N, model.num_features)``), and
    ``model.reset_classifier(n)`` puts a new one back.
    """
    if max_params is not None:
        positive_int("max_params", max_params)
    if max_activation is not None:
        positive_int("max_activation", max_activation)
    if not isinstance(features_only, bool):
        raise SchemaError(f"features_only must be true or false, got {features_only!r}")
    device = check_device(device)
    in_channels = _alias_in_chans(in_channels, in_chans)
    headless = num_classes == 0 and not isinstance(num_classes, bool)
    spec = REGISTRY.get_spec(name)
    if headless:
        num_classes = None  # build with the file's head, then take it off
    given, shape = resolve_params(spec, num_classes, in_channels, params)
    if input_size is not None:
        shape = check_input_size(input_size, spec.input)
    model: nn.Module
    if pretrained is None or pretrained is False:
        expanded = REGISTRY.expand(spec, given, tuple(shape))
        model = build_network(expanded, device=device, limit=max_params, activation_limit=max_activation)
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
        model = build_network(expanded, device="meta", limit=max_params, activation_limit=max_activation)
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
        # reductions are the design's strides: read at the file's input size, whatever input_size is
        nominal = None if list(shape[1:]) == list(spec.input[1:]) else REGISTRY.expand(spec, given, (shape[0], *spec.input[1:]))
        model = extract(model, spec, expanded, out_indices, nominal)
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
