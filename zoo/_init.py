"""Weight initialization schemes an architecture file can name (``init: {conv: ..., dense: ...}``).

PyTorch's default initialization is used unless a file asks otherwise; the references' own
schemes (torchvision's ResNet and VGG re-initialize convolutions with Kaiming-normal, fan-out)
are one table entry each, so a model trained from scratch starts where its reference does.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from ._errors import UnknownNameError, did_you_mean
from ._lazy import deferred
from ._yaml import loc_of

if TYPE_CHECKING:
    import torch
    from torch import nn
else:  # checking a file's ``init:`` (``zoo list``) needs only the names; applying it needs torch
    torch = deferred("torch")
    nn = deferred("torch.nn")

__all__ = ["INIT_SCHEMES", "apply_init", "check_init"]

Scheme = Callable[["torch.Tensor"], object]

INIT_SCHEMES: dict[str, Scheme | None] = {
    "pytorch": None,  # the layer's own reset_parameters (bias included)
    "kaiming_normal_fan_out": lambda w: nn.init.kaiming_normal_(w, mode="fan_out", nonlinearity="relu"),
    "kaiming_normal": lambda w: nn.init.kaiming_normal_(w, nonlinearity="relu"),
    "xavier_uniform": lambda w: nn.init.xavier_uniform_(w),
    "normal_0.01": lambda w: nn.init.normal_(w, 0.0, 0.01),
    "trunc_normal_0.1": lambda w: nn.init.trunc_normal_(w, 0.0, 0.1, -2.0, 2.0),
    "trunc_normal_0.02": lambda w: nn.init.trunc_normal_(w, 0.0, 0.02, -2.0, 2.0),  # ConvNeXt
}
LAYER_KINDS: dict[str, Callable[[], type[nn.Module]]] = {"conv": lambda: nn.Conv2d, "dense": lambda: nn.Linear}


def check_init(init: Mapping[str, str]) -> None:
    """Unknown layer kinds or schemes are errors at the key that names them."""
    for kind, scheme in init.items():
        if kind not in LAYER_KINDS:
            raise UnknownNameError(f"init has no layer kind {kind!r}", location=loc_of(init, kind),
                                   path=f"init.{kind}", hint=did_you_mean(kind, LAYER_KINDS) or "expected conv or dense")
        if scheme not in INIT_SCHEMES:
            raise UnknownNameError(f"unknown init scheme {scheme!r}", location=loc_of(init, kind), path=f"init.{kind}",
                                   hint=did_you_mean(scheme, INIT_SCHEMES) or f"known: {', '.join(INIT_SCHEMES)}")


def apply_init(model: nn.Module, init: Mapping[str, str]) -> None:
    """Re-initialize weights of each named layer kind; their biases start at zero (torchvision's rule)."""
    with torch.no_grad():
        _apply_init(model, init)


def _apply_init(model: nn.Module, init: Mapping[str, str]) -> None:
    for kind, scheme_name in init.items():
        scheme = INIT_SCHEMES[scheme_name]
        if scheme is None:
            continue
        layer_class = LAYER_KINDS[kind]()
        for module in model.modules():
            if isinstance(module, layer_class):
                weight, bias = module.weight, module.bias
                assert isinstance(weight, torch.Tensor)  # Conv2d and Linear always have one
                scheme(weight)
                if isinstance(bias, torch.Tensor):
                    nn.init.zeros_(bias)
