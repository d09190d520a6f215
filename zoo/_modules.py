"""The torch modules the builder emits beyond torch.nn's own.

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
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "Aux",
    "BatchNormNoScale",
    "ChannelAffine",
    "ChannelShuffle",
    "ChannelSlice",
    "Concat",
    "ConvAct",
    "FixedFilter",
    "Graph",
    "LayerNorm2d",
    "LayerScale",
    "LinearAct",
    "Network",
    "PadSame",
    "Permute",
    "Residual",
]

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
        # beside the model's own weights (a headless model has none in its head): same device and dtype
        like = next(self.parameters(), None)
        where: dict[str, Any] = {"device": like.device, "dtype": like.dtype} if like is not None else {}
        head: nn.Module = nn.Linear(self.num_features, num_classes, **where) if num_classes else nn.Identity()
        self.set_submodule(self._head(), head)
        self._reset_aux(num_classes, where)
        self.num_classes = num_classes

    def _reset_aux(self, num_classes: int, where: dict[str, Any]) -> None:
        """Auxiliary heads follow the main one: their last dense layer gets ``num_classes`` outputs;
        0 removes them (a headless model returns its features alone, in training mode too)."""
        for name in self.aux_names:
            aux = self.get_submodule(name)
            if not num_classes:
                self.set_submodule(name, nn.Identity())
                continue
            last = [n for n, m in aux.named_modules() if isinstance(m, nn.Linear)][-1]
            old = aux.get_submodule(last)
            assert isinstance(old, nn.Linear)  # found as one just above
            aux.set_submodule(last, nn.Linear(old.in_features, num_classes, bias=old.bias is not None, **where))
        if not num_classes:
            self.aux_names = []

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


def same_pads(size: Any, kernel: int, stride: int, dilation: int) -> tuple[Any, Any]:
    """TensorFlow 'SAME' padding for one dimension: (before, after); the extra pixel goes after.

    Pure arithmetic, no branch on ``size``: it works on ints and on traced sizes alike
    (``torch.fx`` proxies, ``torch.export`` symbols), so a model with 'same' padding traces.
    """
    out = (size + stride - 1) // stride
    total = (out - 1) * stride + (kernel - 1) * dilation + 1 - size
    total = (total + abs(total)) // 2  # max(total, 0) without a Python comparison
    return total // 2, total - total // 2


class PadSame(nn.Module):
    """Pads like TensorFlow's 'SAME' for the actual input size (asymmetric when needed)."""

    def __init__(self, kernel: tuple[int, int], stride: tuple[int, int], dilation: tuple[int, int], value: float = 0.0) -> None:
        super().__init__()
        self.kernel, self.stride, self.dilation, self.value = kernel, stride, dilation, value

    def forward(self, x: Tensor) -> Tensor:
        top, bottom = same_pads(x.shape[-2], self.kernel[0], self.stride[0], self.dilation[0])
        left, right = same_pads(x.shape[-1], self.kernel[1], self.stride[1], self.dilation[1])
        return F.pad(x, (left, right, top, bottom), value=self.value)

    def extra_repr(self) -> str:
        return f"kernel={self.kernel}, stride={self.stride}"


class ConvAct(nn.Conv2d):
    """A Conv2d with optional TF-'SAME' padding and a fused activation; keys stay weight/bias.

    ``pad`` and ``act`` are registered submodules (so ``torch.fx`` and every tool that walks
    ``_modules`` see them); neither holds parameters or buffers, so ``state_dict`` keys are the
    plain ``weight``/``bias`` of the convolution that torchvision and timm checkpoints use.
    """

    pad: PadSame | None
    act: nn.Module | None

    def __init__(self, *args: Any, pad: PadSame | None = None, act: nn.Module | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.register_module("pad", pad)
        self.register_module("act", act)

    def forward(self, x: Tensor) -> Tensor:
        if self.pad is not None:
            x = self.pad(x)
        x = super().forward(x)
        if self.act is not None:
            x = self.act(x)
        return x


class LinearAct(nn.Linear):
    """A Linear layer with a fused activation (a registered, parameter-free submodule); keys stay weight/bias."""

    act: nn.Module

    def __init__(self, *args: Any, act: nn.Module, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.act = act

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.act(super().forward(x))
        return out


class PoolSame(nn.Module):
    """Keras 'same' pooling: max pads with -inf; average counts only real pixels."""

    def __init__(self, kind: str, kernel: tuple[int, int], stride: tuple[int, int]) -> None:
        super().__init__()
        self.kind = kind
        self.pad = PadSame(kernel, stride, (1, 1), value=float("-inf") if kind == "max" else 0.0)
        self.kernel, self.stride = kernel, stride

    def forward(self, x: Tensor) -> Tensor:
        padded = self.pad(x)
        if self.kind == "max":
            return F.max_pool2d(padded, self.kernel, self.stride)
        summed = F.avg_pool2d(padded, self.kernel, self.stride)
        ones = self.pad(torch.ones_like(x[:1, :1]))
        return summed / F.avg_pool2d(ones, self.kernel, self.stride)  # divide by real-pixel share

    def extra_repr(self) -> str:
        return f"{self.kind}, kernel={self.kernel}, stride={self.stride}, padding=same"


class BatchNormNoScale(nn.BatchNorm2d):
    """Batch norm with a learned shift but no scale (Keras ``scale=False``)."""

    def __init__(self, num_features: int, **kwargs: Any) -> None:
        super().__init__(num_features, affine=False, **kwargs)
        self.bias = nn.Parameter(torch.zeros(num_features))

    def _check_input_dim(self, input: Tensor) -> None:
        # BatchNorm2d branches on input.dim() in Python, which torch.fx cannot trace through a
        # subclass; the builder's shape rules already guarantee a 4-D input here
        pass

    def reset_parameters(self) -> None:
        super().reset_parameters()
        if isinstance(getattr(self, "bias", None), nn.Parameter):  # absent while the parent __init__ runs
            nn.init.zeros_(self.bias)


class ChannelAffine(nn.Module):
    """Fixed per-channel ``x * scale + shift`` (not trained, not saved)."""

    scale: Tensor
    shift: Tensor

    def __init__(self, scale: list[float], shift: list[float]) -> None:
        super().__init__()
        self.values = (list(scale), list(shift))
        self.register_buffer("scale", torch.tensor(scale).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("shift", torch.tensor(shift).view(1, -1, 1, 1), persistent=False)

    def reset_parameters(self) -> None:
        with torch.no_grad():
            self.scale.copy_(torch.tensor(self.values[0]).view(1, -1, 1, 1))
            self.shift.copy_(torch.tensor(self.values[1]).view(1, -1, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.scale + self.shift


class FixedFilter(nn.Module):
    """Non-trainable image filters (edge detectors, blur, sharpen) applied to every channel."""

    weight: Tensor

    def __init__(self, kernels: list[list[list[float]]], channels: int, padding: int) -> None:
        super().__init__()
        self.kernels, self.channels, self.padding = kernels, channels, padding
        self.register_buffer("weight", self._weight(), persistent=False)

    def _weight(self) -> Tensor:
        # (K, k, k) -> (C*K, 1, k, k): each input channel filtered by each kernel
        return torch.tensor(self.kernels).unsqueeze(1).repeat(self.channels, 1, 1, 1)

    def reset_parameters(self) -> None:
        """Refill the fixed kernels (after ``to_empty`` moved the module off the meta device)."""
        with torch.no_grad():
            self.weight.copy_(self._weight().to(self.weight.device))

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.weight.to(x.dtype), padding=self.padding, groups=self.channels)


# ---------------------------------------------------------------- channel plumbing

class ChannelSlice(nn.Module):
    """Channels ``start:stop`` of the input (a view; ShuffleNetV2's split of a block's input)."""

    def __init__(self, start: int, stop: int) -> None:
        super().__init__()
        self.start, self.stop = start, stop

    def forward(self, x: Tensor) -> Tensor:
        return x[:, self.start:self.stop]  # (N, C, ...) -> (N, stop - start, ...)

    def extra_repr(self) -> str:
        return f"channels={self.start}:{self.stop}"


class ChannelShuffle(nn.Module):
    """Interleaves channel groups: torchvision's ``channel_shuffle`` op for op, so outputs match it."""

    def __init__(self, groups: int) -> None:
        super().__init__()
        self.groups = groups

    def forward(self, x: Tensor) -> Tensor:
        n, c, h, w = x.shape
        x = x.view(n, self.groups, c // self.groups, h, w)  # (N, G, C/G, H, W)
        x = torch.transpose(x, 1, 2).contiguous()  # (N, C/G, G, H, W)
        return x.view(n, c, h, w)

    def extra_repr(self) -> str:
        return f"groups={self.groups}"


class Permute(nn.Module):
    """Reorders the axes of each sample (the batch axis stays first), e.g. NCHW -> NHWC."""

    def __init__(self, dims: list[int]) -> None:
        super().__init__()
        self.dims = [0, *(d + 1 for d in dims)]

    def forward(self, x: Tensor) -> Tensor:
        return torch.permute(x, self.dims)

    def extra_repr(self) -> str:
        return f"dims={self.dims}"


class LayerNorm2d(nn.LayerNorm):
    """Layer norm over the channels of an NCHW tensor, as torchvision's and timm's ``LayerNorm2d``
    (keys weight/bias, shape (C,))."""

    def forward(self, x: Tensor) -> Tensor:
        x = x.permute(0, 2, 3, 1)  # (N, C, H, W) -> (N, H, W, C)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)  # back to (N, C, H, W)


class LayerScale(nn.Module):
    """A learnable per-channel scale, ``gamma * x`` with ``gamma`` of shape (C, 1, 1) for images or
    (F,) for flat features, starting at ``init``.

    With ``bare`` the builder registers ``gamma`` itself on the enclosing module under the node's
    name (torchvision's ConvNeXt keeps ``features.1.0.layer_scale``) and multiplies by it in the
    plan, so this module is only the parameter's factory there.
    """

    def __init__(self, shape: tuple[int, ...], init: float, *, bare: bool = False) -> None:
        super().__init__()
        self.init, self.bare = init, bare
        self.gamma = nn.Parameter(torch.full(shape, init))

    def reset_parameters(self) -> None:
        nn.init.constant_(self.gamma, self.init)

    def forward(self, x: Tensor) -> Tensor:
        return self.gamma * x
