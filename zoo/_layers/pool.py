"""Pooling and padding."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

from .._errors import ShapeError
from ._table import NoArgs, NonNeg, Padding, Primitive, Shape, Size2, Spec, _need_image, _none, _pair, _register
from ._torch import _modules, nn
from .conv import _spatial, window_workspace

# ---------------------------------------------------------------- pooling

class PoolSpec(Spec):
    kernel: Size2
    stride: Size2 | None = None  # defaults to the kernel, as in Keras and PyTorch
    padding: Padding = "valid"
    ceil_mode: bool = False
    count_include_pad: bool = True  # average pooling only (PyTorch default)


def _pool_shape(name: str) -> Callable[[PoolSpec, Shape], Shape]:
    def rule(s: PoolSpec, shape: Shape) -> Shape:
        stride = s.stride if s.stride is not None else s.kernel
        if isinstance(s.padding, (int, tuple)):
            k, p = _pair(s.kernel), _pair(s.padding)
            if p[0] > k[0] // 2 or p[1] > k[1] // 2:  # PyTorch refuses this in the forward pass
                raise ShapeError(
                    f"{name} padding {p[0]}x{p[1]} is more than half the kernel {k[0]}x{k[1]}",
                    hint="padding may be at most kernel // 2 (or use padding: same)",
                )
        return (shape[0], *_spatial(name, shape, s.kernel, stride, s.padding, 1, s.ceil_mode))

    return rule


def _pool_workspace(s: PoolSpec, shape: Shape) -> int:
    stride = s.stride if s.stride is not None else s.kernel
    out = (shape[0], *_spatial("pool", shape, s.kernel, stride, s.padding, 1, s.ceil_mode))
    return window_workspace(shape, out, s.kernel, stride, s.padding)


def _pool_make(kind: str) -> Callable[[PoolSpec, Shape], nn.Module]:
    def make(s: PoolSpec, shape: Shape) -> nn.Module:
        stride = s.stride if s.stride is not None else s.kernel
        if s.padding == "same":
            return _modules.PoolSame(kind, _pair(s.kernel), _pair(stride))
        pad = 0 if s.padding == "valid" else s.padding
        if kind == "max":
            return nn.MaxPool2d(s.kernel, stride, pad, ceil_mode=s.ceil_mode)
        return nn.AvgPool2d(s.kernel, stride, pad, ceil_mode=s.ceil_mode, count_include_pad=s.count_include_pad)

    return make


_register(Primitive(
    "maxpool", PoolSpec, _pool_shape("maxpool"), _pool_make("max"), primary="kernel", doc="max pooling", params=_none,
    workspace=_pool_workspace,
))
_register(Primitive(
    "avgpool", PoolSpec, _pool_shape("avgpool"), _pool_make("avg"), primary="kernel", doc="average pooling", params=_none,
    workspace=_pool_workspace,
))


class AdaptiveSpec(Spec):
    output: Size2 = 1


def _adaptive_shape(s: AdaptiveSpec, shape: Shape) -> Shape:
    c = _need_image(shape, "adaptive pooling")[0]
    return (c, *_pair(s.output))


_register(Primitive("adaptive_avgpool", AdaptiveSpec, _adaptive_shape, lambda s, shape: nn.AdaptiveAvgPool2d(s.output), primary="output", doc="average pooling to a fixed output size", params=_none))
_register(Primitive("adaptive_maxpool", AdaptiveSpec, _adaptive_shape, lambda s, shape: nn.AdaptiveMaxPool2d(s.output), primary="output", doc="max pooling to a fixed output size", params=_none))


def _global_shape(s: NoArgs, shape: Shape) -> Shape:
    return (_need_image(shape, "global pooling")[0],)


def _global(pool: Callable[[int], nn.Module]) -> Callable[[NoArgs, Shape], nn.Module]:
    # children named as timm's SelectAdaptivePool2d names them: global_pool.pool, global_pool.flatten
    return lambda s, shape: nn.Sequential(OrderedDict(pool=pool(1), flatten=nn.Flatten()))


_register(Primitive("global_avgpool", NoArgs, _global_shape, _global(lambda size: nn.AdaptiveAvgPool2d(size)), doc="(C,H,W) -> (C,)", params=_none))
_register(Primitive("global_maxpool", NoArgs, _global_shape, _global(lambda size: nn.AdaptiveMaxPool2d(size)), doc="(C,H,W) -> (C,)", params=_none))


class PadSpec(Spec):
    padding: NonNeg | tuple[NonNeg, NonNeg, NonNeg, NonNeg]  # all sides, or (left, right, top, bottom)


def _pad4(s: PadSpec) -> tuple[int, int, int, int]:
    return (s.padding,) * 4 if isinstance(s.padding, int) else s.padding


def _pad_shape(s: PadSpec, shape: Shape) -> Shape:
    c, h, w = _need_image(shape, "pad")
    l, r, t, b = _pad4(s)
    return (c, h + t + b, w + l + r)


_register(Primitive("pad", PadSpec, _pad_shape, lambda s, shape: nn.ZeroPad2d(_pad4(s)), primary="padding", doc="zero padding", params=_none))

