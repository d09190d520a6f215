"""The leaf torch modules the builder emits beyond torch.nn's own: fused convolution/dense +
activation, TensorFlow 'same' padding, channel operations, ConvNeXt's norm and layer scale.
(The containers that hold them, Graph and Network, are in ``_network.py``.)"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "BatchNormNoScale",
    "ChannelAffine",
    "ChannelShuffle",
    "ChannelSlice",
    "ConvAct",
    "FixedFilter",
    "LayerNorm2d",
    "LayerScale",
    "LinearAct",
    "PadSame",
    "Permute",
    "PoolSame",
    "same_pads",
]


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
