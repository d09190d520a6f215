"""Convolutions: conv, depthwise, separable, and fixed image filters."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Literal

from pydantic import Field

from .._errors import ShapeError
from ._table import Padding, Pos, Primitive, Shape, Size2, Spec, _need_image, _none, _pair, _register
from ._torch import _modules, nn
from .activations import ActName, _activation

# ---------------------------------------------------------------- convolution

def _conv_out(size: int, k: int, s: int, p_total: int, d: int) -> int:
    return (size + p_total - d * (k - 1) - 1) // s + 1


def _spatial(
    what: str, shape: Shape, kernel: Size2, stride: Size2, padding: Padding, dilation: Size2 = 1, ceil: bool = False
) -> tuple[int, int]:
    """Output (H, W) of a sliding window, with Keras/TF semantics for 'same'."""
    _, h, w = _need_image(shape, what)
    k, s, d = _pair(kernel), _pair(stride), _pair(dilation)
    out = []
    for size, kk, ss, dd, i in ((h, k[0], s[0], d[0], 0), (w, k[1], s[1], d[1], 1)):
        span = dd * (kk - 1) + 1
        if padding == "same":
            out.append(-(-size // ss))
            continue
        p = 0 if padding == "valid" else _pair(padding)[i]
        if span > size + 2 * p:
            raise ShapeError(
                f"{what} kernel {k[0]}x{k[1]} (span {span}) is larger than its input "
                f"{h}x{w} (padding {p}); the input is too small at this depth"
            )
        n = size + 2 * p - span
        o = (-(-n // ss) if ceil else n // ss) + 1
        if ceil and (o - 1) * ss >= size + p:  # PyTorch: the last window must start inside the input
            o -= 1
        out.append(o)
    return out[0], out[1]


def _padded(shape: Shape, kernel: Size2, stride: Size2, padding: Padding, dilation: Size2 = 1) -> tuple[int, int]:
    """(H, W) after the padding the forward pass materializes (TF 'same' pads the tensor itself)."""
    _, h, w = shape
    if padding != "same":
        p = (0, 0) if padding == "valid" else _pair(padding)
        return h + 2 * p[0], w + 2 * p[1]
    k, s, d = _pair(kernel), _pair(stride), _pair(dilation)
    out = []
    for size, kk, ss, dd in ((h, k[0], s[0], d[0]), (w, k[1], s[1], d[1])):
        out.append(size + max((-(-size // ss) - 1) * ss + dd * (kk - 1) + 1 - size, 0))
    return out[0], out[1]


def window_workspace(shape: Shape, out: Shape, kernel: Size2, stride: Size2, padding: Padding,
                     dilation: Size2 = 1, unfold_groups: int = 0) -> int:
    """Largest extra buffer of a sliding window, per sample: the padded input, and for a
    convolution (``unfold_groups`` > 0) the unfolded input of one group (im2col)."""
    ph, pw = _padded(shape, kernel, stride, padding, dilation)
    padded = shape[0] * ph * pw
    if not unfold_groups:
        return padded
    kh, kw = _pair(kernel)
    return max(padded, shape[0] // unfold_groups * kh * kw * out[1] * out[2])


def _static_same(kernel: Size2, stride: Size2, dilation: Size2) -> tuple[int, int] | None:
    """Symmetric padding equal to TF 'SAME' for every input size, or None when it must be dynamic."""
    k, s, d = _pair(kernel), _pair(stride), _pair(dilation)
    if k == (1, 1):
        return (0, 0)  # a 1x1 window never needs padding, whatever the stride
    if s != (1, 1) or any((dd * (kk - 1)) % 2 for kk, dd in zip(k, d, strict=True)):
        return None
    return (d[0] * (k[0] - 1) // 2, d[1] * (k[1] - 1) // 2)


class _Window(Spec):
    """What every convolution over a window shares (subclasses add their own fields after these)."""

    filters: Pos
    kernel: Size2
    stride: Size2 = 1
    padding: Padding = "valid"
    dilation: Size2 = 1


class ConvSpec(_Window):
    groups: Pos = 1
    bias: bool = True
    act: ActName | None = None


def _conv_shape(s: ConvSpec, shape: Shape) -> Shape:
    c = _need_image(shape, "conv")[0]
    if c % s.groups or s.filters % s.groups:
        raise ShapeError(f"conv groups={s.groups} must divide both input channels {c} and filters {s.filters}")
    return (s.filters, *_spatial("conv", shape, s.kernel, s.stride, s.padding, s.dilation))


def _conv_module(
    in_ch: int, out_ch: int, kernel: Size2, stride: Size2, padding: Padding, dilation: Size2,
    groups: int, bias: bool, act: str | None,
) -> nn.Module:
    pad: _modules.PadSame | None = None
    if padding == "same":
        static = _static_same(kernel, stride, dilation)
        if static is None:
            pad = _modules.PadSame(_pair(kernel), _pair(stride), _pair(dilation))
            torch_padding: Any = 0
        else:
            torch_padding = static
    else:
        torch_padding = 0 if padding == "valid" else padding
    args = dict(stride=stride, padding=torch_padding, dilation=dilation, groups=groups, bias=bias)
    if pad is None and act is None:
        return nn.Conv2d(in_ch, out_ch, kernel, **args)  # plain module: what torchvision emits
    return _modules.ConvAct(in_ch, out_ch, kernel, pad=pad, act=_activation(act), **args)


def _conv_make(s: ConvSpec, shape: Shape) -> nn.Module:
    return _conv_module(shape[0], s.filters, s.kernel, s.stride, s.padding, s.dilation, s.groups, s.bias, s.act)


def _conv_params(s: ConvSpec, shape: Shape) -> int:
    kh, kw = _pair(s.kernel)
    return s.filters * (shape[0] // s.groups) * kh * kw + (s.filters if s.bias else 0)


def _conv_workspace(s: ConvSpec, shape: Shape) -> int:
    return window_workspace(shape, _conv_shape(s, shape), s.kernel, s.stride, s.padding, s.dilation, s.groups)


_register(Primitive(
    "conv", ConvSpec, _conv_shape, _conv_make, primary="filters", doc="2-D convolution", params=_conv_params,
    workspace=_conv_workspace,
))


class DepthwiseSpec(Spec):
    kernel: Size2
    stride: Size2 = 1
    padding: Padding = "valid"
    dilation: Size2 = 1
    multiplier: Pos = 1
    bias: bool = True
    act: ActName | None = None


def _dw_shape(s: DepthwiseSpec, shape: Shape) -> Shape:
    c = _need_image(shape, "depthwise_conv")[0]
    return (c * s.multiplier, *_spatial("depthwise_conv", shape, s.kernel, s.stride, s.padding, s.dilation))


def _dw_make(s: DepthwiseSpec, shape: Shape) -> nn.Module:
    c = shape[0]
    return _conv_module(c, c * s.multiplier, s.kernel, s.stride, s.padding, s.dilation, c, s.bias, s.act)


def _dw_params(s: DepthwiseSpec, shape: Shape) -> int:
    kh, kw = _pair(s.kernel)
    out = shape[0] * s.multiplier
    return out * kh * kw + (out if s.bias else 0)


def _dw_workspace(s: DepthwiseSpec, shape: Shape) -> int:
    return window_workspace(shape, _dw_shape(s, shape), s.kernel, s.stride, s.padding, s.dilation, shape[0])


_register(Primitive(
    "depthwise_conv", DepthwiseSpec, _dw_shape, _dw_make, primary="kernel", doc="per-channel conv", params=_dw_params,
    workspace=_dw_workspace,
))


class SeparableSpec(_Window):
    multiplier: Pos = 1
    bias: bool = True
    act: ActName | None = None


def _sep_shape(s: SeparableSpec, shape: Shape) -> Shape:
    _need_image(shape, "separable_conv")
    return (s.filters, *_spatial("separable_conv", shape, s.kernel, s.stride, s.padding, s.dilation))


def _sep_make(s: SeparableSpec, shape: Shape) -> nn.Module:
    # Keras SeparableConv2D: depthwise without bias, then a 1x1 pointwise conv carrying the bias
    c = shape[0]
    depthwise = _conv_module(c, c * s.multiplier, s.kernel, s.stride, s.padding, s.dilation, c, False, None)
    pointwise = _conv_module(c * s.multiplier, s.filters, 1, 1, 0, 1, 1, s.bias, s.act)
    return nn.Sequential(OrderedDict(depthwise=depthwise, pointwise=pointwise))


def _sep_params(s: SeparableSpec, shape: Shape) -> int:
    kh, kw = _pair(s.kernel)
    mid = shape[0] * s.multiplier
    return mid * kh * kw + mid * s.filters + (s.filters if s.bias else 0)


def _sep_workspace(s: SeparableSpec, shape: Shape) -> int:
    out = _sep_shape(s, shape)
    mid = shape[0] * s.multiplier * out[1] * out[2]  # the depthwise output feeding the pointwise conv
    return max(mid, window_workspace(shape, out, s.kernel, s.stride, s.padding, s.dilation, shape[0]))


_register(Primitive(
    "separable_conv", SeparableSpec, _sep_shape, _sep_make, primary="filters", doc="depthwise + pointwise",
    params=_sep_params, workspace=_sep_workspace,
))


class FilterSpec(Spec):
    kernel: str | list[str] = Field(description="name of a fixed 3x3 kernel, or a list of names (one output group each)")
    padding: Literal["valid", "same"] = "same"


FILTER_KERNELS: dict[str, list[list[float]]] = {
    "identity": [[0, 0, 0], [0, 1, 0], [0, 0, 0]],
    "vertical_edges": [[1, 0, -1], [1, 0, -1], [1, 0, -1]],
    "horizontal_edges": [[1, 1, 1], [0, 0, 0], [-1, -1, -1]],
    "edge_diagonal": [[1, 0, -1], [0, 0, 0], [-1, 0, 1]],
    "edge_laplacian": [[0, 1, 0], [1, -4, 1], [0, 1, 0]],
    "edge_all": [[-1, -1, -1], [-1, 8, -1], [-1, -1, -1]],
    "sharpen": [[0, -1, 0], [-1, 5, -1], [0, -1, 0]],
    "box_blur": [[1 / 9] * 3] * 3,
    "gaussian_blur": [[1 / 16, 2 / 16, 1 / 16], [2 / 16, 4 / 16, 2 / 16], [1 / 16, 2 / 16, 1 / 16]],
}


def _filter_names(s: FilterSpec) -> list[str]:
    names = [s.kernel] if isinstance(s.kernel, str) else list(s.kernel)
    for name in names:
        if name not in FILTER_KERNELS:
            from .._errors import UnknownNameError, did_you_mean

            raise UnknownNameError(
                f"unknown filter kernel {name!r}",
                hint=did_you_mean(name, FILTER_KERNELS) or f"known: {', '.join(FILTER_KERNELS)}",
            )
    return names


def _filter_shape(s: FilterSpec, shape: Shape) -> Shape:
    c = _need_image(shape, "filter")[0]
    return (c * len(_filter_names(s)), *_spatial("filter", shape, 3, 1, s.padding))


def _filter_make(s: FilterSpec, shape: Shape) -> nn.Module:
    kernels = [FILTER_KERNELS[n] for n in _filter_names(s)]
    return _modules.FixedFilter(kernels, shape[0], padding=1 if s.padding == "same" else 0)


_register(Primitive("filter", FilterSpec, _filter_shape, _filter_make, primary="kernel", doc="fixed image filter", params=_none))
