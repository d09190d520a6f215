"""The containers a built model is made of: :class:`Graph` runs a static plan over its children,
:class:`Network` is the root (timm's classifier surface, auxiliary outputs in training mode).

Combinators keep their children *flat* (registered directly on the module, in file order) and a
small static plan of names saying how data flows between them. That is what lets a YAML file give
torchvision's exact ``state_dict`` keys: ``layer1.0.conv1.weight``, ``layer1.0.downsample.0.weight``,
``Mixed_7b.branch3x3_2a.conv.weight``. The plan is plain tuples, so modules deep-copy, pickle and
``torch.compile`` like any other.

A plan step is one of
    "name"                                    call child ``name``
    ("seq", (step, ...))                      steps one after another
    ("cat", (step, ...))                      each step on the same input, concatenated on channels
    ("res", body, shortcut|None, scale, post) body(x) * scale + shortcut(x), then post
    ("mul", gate, shortcut|None, post)        gate(x) * shortcut(x), broadcast (squeeze-and-excitation)
    ("param_mul", "name")                     parameter ``name`` of this module times the input
                                              (a bare parameter such as ConvNeXt's ``layer_scale``)
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["Aux", "Concat", "Graph", "Network", "Residual", "Step"]

Step = Any  # str | tuple: see module docstring


class Graph(nn.Module):
    """Children registered flat, run by a static plan."""

    def __init__(self, children: dict[str, nn.Module | nn.Parameter], plan: Step) -> None:
        super().__init__()
        for name, child in children.items():
            if isinstance(child, nn.Parameter):
                self.register_parameter(name, child)
            else:
                self.add_module(name, child)
        self.plan = plan

    def run(self, step: Step, x: Tensor) -> Tensor:
        if isinstance(step, str):
            module: nn.Module = self._modules[step]  # type: ignore[assignment]
            out: Tensor = module(x)
            return out
        kind = step[0]
        if kind == "seq":
            for sub in step[1]:
                x = self.run(sub, x)
            return x
        if kind == "cat":
            return torch.cat([self.run(branch, x) for branch in step[1]], 1)
        if kind == "param_mul":
            scale: Tensor = self._parameters[step[1]]  # type: ignore[assignment]
            return scale * x
        if kind == "mul":  # torchvision's SqueezeExcitation order: scale = gate(x); scale * x
            _, gate, shortcut, post = step
            out = self.run(gate, x) * (x if shortcut is None else self.run(shortcut, x))
            return out if post is None else self.run(post, out)
        # "res": the torchvision/timm order: body, shortcut, scaled add, post-activation
        _, body, shortcut, scale, post = step
        out = self.run(body, x)
        identity = x if shortcut is None else self.run(shortcut, x)
        out = out + identity if scale == 1.0 else out * scale + identity
        return out if post is None else self.run(post, out)

    def forward(self, x: Tensor) -> Tensor:
        return self.run(self.plan, x)


class Residual(Graph):
    """``post(body(x) * scale + shortcut(x))`` or, with ``merge: mul``, ``post(body(x) * shortcut(x))``;
    shortcut defaults to identity."""


class Concat(Graph):
    """Branches on the same input, concatenated along channels."""


class Aux(Graph):
    """An auxiliary head: in training mode it computes its output and passes ``x`` through.

    The enclosing :class:`Network` returns ``(logits, *aux_outputs)`` in training mode, the
    convention of torchvision's GoogLeNet/Inception-v3 (which also skip aux heads in eval mode).
    """

    output: Tensor | None

    def __init__(self, children: dict[str, nn.Module | nn.Parameter], plan: Step) -> None:
        super().__init__(children, plan)
        self.output = None

    def forward(self, x: Tensor) -> Tensor:
        if self.training:
            self.output = self.run(self.plan, x)
        return x


class Network(nn.Sequential):
    """The root of a built model: a Sequential that also returns aux outputs when training."""

    classifier_name: str | None = None  # the head's module path, where the model has one (set by zoo.build)
    num_features: int = 0  # the head's input features (timm's name)
    num_classes: int = 0

    def __init__(self, children: dict[str, nn.Module]) -> None:
        super().__init__()
        for name, module in children.items():
            self.add_module(name, module)
        self.aux_names = [name for name, m in self.named_modules() if isinstance(m, Aux)]

    def get_classifier(self) -> nn.Module:
        return self.get_submodule(self._head())

    def reset_classifier(self, num_classes: int) -> None:
        """A new, freshly initialized head with ``num_classes`` outputs; 0 removes it (timm's idiom:
        the model then returns its pooled features, ``(N, num_features)``)."""
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 0:
            from ._errors import SchemaError

            raise SchemaError(f"num_classes must be a non-negative int, got {num_classes!r}")
        self._head()  # a model without a classifier says so before anything changes
        aux_heads = self._aux_heads() if num_classes else []  # and an aux head it cannot resize
        # beside the model's own weights (a headless model has none in its head): same device and dtype
        like = next(self.parameters(), None)
        where: dict[str, Any] = {"device": like.device, "dtype": like.dtype} if like is not None else {}
        head: nn.Module = nn.Linear(self.num_features, num_classes, **where) if num_classes else nn.Identity()
        self.set_submodule(self._head(), head)
        # auxiliary heads follow the main one: their last dense layer gets num_classes outputs; 0
        # removes them (a headless model returns its features alone, in training mode too)
        for aux, last, old in aux_heads:
            aux.set_submodule(last, nn.Linear(old.in_features, num_classes, bias=old.bias is not None, **where))
        if not num_classes:
            for name in self.aux_names:
                self.set_submodule(name, nn.Identity())
            self.aux_names = []
        self.num_classes = num_classes

    def _aux_heads(self) -> list[tuple[nn.Module, str, nn.Linear]]:
        """Each auxiliary head with the name and module of its last dense layer (its class scores)."""
        found = []
        for name in self.aux_names:
            aux = self.get_submodule(name)
            dense = [(aux, n, m) for n, m in aux.named_modules() if isinstance(m, nn.Linear)]
            if not dense:
                from ._errors import SchemaError

                raise SchemaError(f"auxiliary head {name!r} has no dense layer whose outputs reset_classifier could change")
            found.append(dense[-1])
        return found

    def _head(self) -> str:
        if self.classifier_name is None:
            from ._errors import SchemaError

            raise SchemaError("this model has no classifier (no final dense layer with num_classes outputs)")
        return self.classifier_name

    def forward(self, x: Tensor) -> Any:
        for module in self:
            x = module(x)
        if self.training and self.aux_names:
            outputs = []
            for name in self.aux_names:
                aux = self.get_submodule(name)
                assert isinstance(aux, Aux)
                outputs.append(aux.output)
                aux.output = None  # drop the graph reference once handed over
            return (x, *outputs)
        return x
