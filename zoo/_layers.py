"""The primitive table: name -> (pydantic spec, output-shape rule, torch factory).

Adding a primitive is one ``_register(Primitive(...))`` call here; the builder never branches on
layer names. Shapes are ``(C, H, W)`` for images and ``(F,)`` for flat features, without batch.
Shape rules raise :class:`ShapeError` (message only; the builder adds file, line and path).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from ._errors import ShapeError
from ._modules import BatchNormNoScale, ChannelAffine, ConvAct, FixedFilter, LinearAct, PadSame, PoolSame

__all__ = ["ACTIVATIONS", "PRIMITIVES", "FILTER_KERNELS", "Primitive", "Shape"]

Shape = tuple[int, ...]
Pos = Annotated[int, Field(gt=0)]
NonNeg = Annotated[int, Field(ge=0)]
Size2 = Pos | tuple[Pos, Pos]
Padding = Literal["valid", "same"] | NonNeg | tuple[NonNeg, NonNeg]


class Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True)
class Primitive:
    name: str
    spec: type[Spec]
    shape: Callable[[Any, Shape], Shape]
    make: Callable[[Any, Shape], nn.Module]
    primary: str | None = None  # the field a scalar shorthand sets: ``maxpool: 2``
    doc: str = ""
    # learnable parameters from spec and input shape, so size limits are checked before anything
    # is built; None means "build the layer on the meta device and count"
    params: Callable[[Any, Shape], int] | None = None


def _none(spec: Any, shape: Shape) -> int:
    return 0


PRIMITIVES: dict[str, Primitive] = {}


def _register(p: Primitive) -> None:
    PRIMITIVES[p.name] = p


def _pair(v: int | tuple[int, int]) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _need_image(shape: Shape, layer: str) -> tuple[int, int, int]:
    if len(shape) != 3:
        raise ShapeError(f"{layer} needs an image input (C, H, W), got {_fmt(shape)}; put it before 'flatten'")
    return shape[0], shape[1], shape[2]


def _fmt(shape: Shape) -> str:
    return "(" + ", ".join(str(s) for s in shape) + ")"


# ---------------------------------------------------------------- activations

class NoArgs(Spec):
    pass


class InplaceSpec(Spec):
    # in place saves memory; the builder turns it off where the input is also used elsewhere
    # (the first layer of a residual body, a concat branch or an aux head)
    inplace: bool = True


class LeakyReluSpec(InplaceSpec):
    slope: float = 0.01


class HardtanhSpec(Spec):
    min: float = -1.0
    max: float = 1.0


class DimSpec(Spec):
    dim: int = 1


class GeluSpec(Spec):
    approximate: Literal["none", "tanh"] = "none"


ACTIVATIONS: dict[str, tuple[type[Spec], Callable[[Any], nn.Module]]] = {
    "relu": (InplaceSpec, lambda s: nn.ReLU(inplace=s.inplace)),
    "leaky_relu": (LeakyReluSpec, lambda s: nn.LeakyReLU(s.slope, inplace=s.inplace)),
    "tanh": (NoArgs, lambda s: nn.Tanh()),
    "hardtanh": (HardtanhSpec, lambda s: nn.Hardtanh(s.min, s.max)),
    "sigmoid": (NoArgs, lambda s: nn.Sigmoid()),
    "softmax": (DimSpec, lambda s: nn.Softmax(dim=s.dim)),
    "log_softmax": (DimSpec, lambda s: nn.LogSoftmax(dim=s.dim)),
    "gelu": (GeluSpec, lambda s: nn.GELU(approximate=s.approximate)),
    "silu": (InplaceSpec, lambda s: nn.SiLU(inplace=s.inplace)),
    "identity": (NoArgs, lambda s: nn.Identity()),
}
ActName = Literal[
    "relu", "leaky_relu", "tanh", "hardtanh", "sigmoid", "softmax", "log_softmax", "gelu", "silu", "identity"
]


def _activation(name: str | None) -> nn.Module | None:
    if name is None:
        return None
    spec_cls, factory = ACTIVATIONS[name]
    return factory(spec_cls())


def _same_shape(spec: Any, shape: Shape) -> Shape:
    return shape


for _name, (_spec, _factory) in ACTIVATIONS.items():
    _register(Primitive(_name, _spec, _same_shape, (lambda f: lambda s, shape: f(s))(_factory), doc="activation", params=_none))


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


def _static_same(kernel: Size2, stride: Size2, dilation: Size2) -> tuple[int, int] | None:
    """Symmetric padding equal to TF 'SAME' for every input size, or None when it must be dynamic."""
    k, s, d = _pair(kernel), _pair(stride), _pair(dilation)
    if s != (1, 1) or any((dd * (kk - 1)) % 2 for kk, dd in zip(k, d, strict=True)):
        return None
    return (d[0] * (k[0] - 1) // 2, d[1] * (k[1] - 1) // 2)


class ConvSpec(Spec):
    filters: Pos
    kernel: Size2
    stride: Size2 = 1
    padding: Padding = "valid"
    dilation: Size2 = 1
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
    pad: PadSame | None = None
    if padding == "same":
        static = _static_same(kernel, stride, dilation)
        if static is None:
            pad = PadSame(_pair(kernel), _pair(stride), _pair(dilation))
            torch_padding: Any = 0
        else:
            torch_padding = static
    else:
        torch_padding = 0 if padding == "valid" else padding
    args = dict(stride=stride, padding=torch_padding, dilation=dilation, groups=groups, bias=bias)
    if pad is None and act is None:
        return nn.Conv2d(in_ch, out_ch, kernel, **args)  # plain module: what torchvision emits
    return ConvAct(in_ch, out_ch, kernel, pad=pad, act=_activation(act), **args)


def _conv_make(s: ConvSpec, shape: Shape) -> nn.Module:
    return _conv_module(shape[0], s.filters, s.kernel, s.stride, s.padding, s.dilation, s.groups, s.bias, s.act)


def _conv_params(s: ConvSpec, shape: Shape) -> int:
    kh, kw = _pair(s.kernel)
    return s.filters * (shape[0] // s.groups) * kh * kw + (s.filters if s.bias else 0)


_register(Primitive("conv", ConvSpec, _conv_shape, _conv_make, primary="filters", doc="2-D convolution", params=_conv_params))


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


_register(Primitive("depthwise_conv", DepthwiseSpec, _dw_shape, _dw_make, primary="kernel", doc="per-channel conv", params=_dw_params))


class SeparableSpec(Spec):
    filters: Pos
    kernel: Size2
    stride: Size2 = 1
    padding: Padding = "valid"
    dilation: Size2 = 1
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


_register(Primitive("separable_conv", SeparableSpec, _sep_shape, _sep_make, primary="filters", doc="depthwise + pointwise", params=_sep_params))


class FilterSpec(Spec):
    kernel: str | list[str]
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
            from ._errors import UnknownNameError, did_you_mean

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
    return FixedFilter(kernels, shape[0], padding=1 if s.padding == "same" else 0)


_register(Primitive("filter", FilterSpec, _filter_shape, _filter_make, primary="kernel", doc="fixed image filter", params=_none))


# ---------------------------------------------------------------- dense and shape changes

class DenseSpec(Spec):
    units: Pos
    bias: bool = True
    act: ActName | None = None


def _dense_shape(s: DenseSpec, shape: Shape) -> Shape:
    if len(shape) != 1:
        raise ShapeError(f"dense needs flat features (F,), got {_fmt(shape)}; add 'flatten' or a global pool before it")
    return (s.units,)


def _dense_make(s: DenseSpec, shape: Shape) -> nn.Module:
    if s.act is None:
        return nn.Linear(shape[0], s.units, bias=s.bias)
    act = _activation(s.act)
    assert act is not None  # act names are validated by the spec
    return LinearAct(shape[0], s.units, bias=s.bias, act=act)


def _dense_params(s: DenseSpec, shape: Shape) -> int:
    return shape[0] * s.units + (s.units if s.bias else 0)


_register(Primitive("dense", DenseSpec, _dense_shape, _dense_make, primary="units", doc="fully connected", params=_dense_params))


def _flatten_shape(s: NoArgs, shape: Shape) -> Shape:
    return (math.prod(shape),)


_register(Primitive("flatten", NoArgs, _flatten_shape, lambda s, shape: nn.Flatten(), doc="(C,H,W) -> (C*H*W,)", params=_none))


class DropoutSpec(Spec):
    p: Annotated[float, Field(ge=0.0, le=1.0)] = 0.5


_register(Primitive("dropout", DropoutSpec, _same_shape, lambda s, shape: nn.Dropout(s.p), primary="p", doc="dropout", params=_none))


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
        return (shape[0], *_spatial(name, shape, s.kernel, stride, s.padding, 1, s.ceil_mode))

    return rule


def _pool_make(kind: str) -> Callable[[PoolSpec, Shape], nn.Module]:
    def make(s: PoolSpec, shape: Shape) -> nn.Module:
        stride = s.stride if s.stride is not None else s.kernel
        if s.padding == "same":
            return PoolSame(kind, _pair(s.kernel), _pair(stride))
        pad = 0 if s.padding == "valid" else s.padding
        if kind == "max":
            return nn.MaxPool2d(s.kernel, stride, pad, ceil_mode=s.ceil_mode)
        return nn.AvgPool2d(s.kernel, stride, pad, ceil_mode=s.ceil_mode, count_include_pad=s.count_include_pad)

    return make


_register(Primitive("maxpool", PoolSpec, _pool_shape("maxpool"), _pool_make("max"), primary="kernel", doc="max pooling", params=_none))
_register(Primitive("avgpool", PoolSpec, _pool_shape("avgpool"), _pool_make("avg"), primary="kernel", doc="average pooling", params=_none))


class AdaptiveSpec(Spec):
    output: Size2 = 1


def _adaptive_shape(s: AdaptiveSpec, shape: Shape) -> Shape:
    c = _need_image(shape, "adaptive pooling")[0]
    return (c, *_pair(s.output))


_register(Primitive("adaptive_avgpool", AdaptiveSpec, _adaptive_shape, lambda s, shape: nn.AdaptiveAvgPool2d(s.output), primary="output", params=_none))
_register(Primitive("adaptive_maxpool", AdaptiveSpec, _adaptive_shape, lambda s, shape: nn.AdaptiveMaxPool2d(s.output), primary="output", params=_none))


def _global_shape(s: NoArgs, shape: Shape) -> Shape:
    return (_need_image(shape, "global pooling")[0],)


def _global(pool: type[nn.Module]) -> Callable[[NoArgs, Shape], nn.Module]:
    return lambda s, shape: nn.Sequential(pool(1), nn.Flatten())


_register(Primitive("global_avgpool", NoArgs, _global_shape, _global(nn.AdaptiveAvgPool2d), doc="(C,H,W) -> (C,)", params=_none))
_register(Primitive("global_maxpool", NoArgs, _global_shape, _global(nn.AdaptiveMaxPool2d), doc="(C,H,W) -> (C,)", params=_none))


class PadSpec(Spec):
    padding: NonNeg | tuple[NonNeg, NonNeg, NonNeg, NonNeg]  # all sides, or (left, right, top, bottom)


def _pad4(s: PadSpec) -> tuple[int, int, int, int]:
    return (s.padding,) * 4 if isinstance(s.padding, int) else s.padding


def _pad_shape(s: PadSpec, shape: Shape) -> Shape:
    c, h, w = _need_image(shape, "pad")
    l, r, t, b = _pad4(s)
    return (c, h + t + b, w + l + r)


_register(Primitive("pad", PadSpec, _pad_shape, lambda s, shape: nn.ZeroPad2d(_pad4(s)), primary="padding", doc="zero padding", params=_none))


class AffineSpec(Spec):
    scale: list[float]  # per channel
    shift: list[float]


def _affine_shape(s: AffineSpec, shape: Shape) -> Shape:
    if len(s.scale) != shape[0] or len(s.shift) != shape[0]:
        raise ShapeError(f"affine needs {shape[0]} scale and shift values (one per channel), got {len(s.scale)} and {len(s.shift)}")
    return shape


_register(Primitive(
    "affine", AffineSpec, _affine_shape, lambda s, shape: ChannelAffine(s.scale, s.shift),
    doc="fixed per-channel x * scale + shift (e.g. torchvision's transform_input)", params=_none,
))


# ---------------------------------------------------------------- normalization

class BatchNormSpec(Spec):
    eps: Annotated[float, Field(gt=0)] = 1e-5
    momentum: Annotated[float, Field(ge=0, le=1)] | None = 0.1
    scale: bool = True  # Keras ``scale``: learn gamma
    center: bool = True  # Keras ``center``: learn beta


def _bn_make(s: BatchNormSpec, shape: Shape) -> nn.Module:
    c = shape[0]
    if len(shape) == 1:
        if not (s.scale and s.center):
            raise ShapeError("batchnorm without scale/center is only available for images")
        return nn.BatchNorm1d(c, eps=s.eps, momentum=s.momentum)
    if s.scale and s.center:
        return nn.BatchNorm2d(c, eps=s.eps, momentum=s.momentum)
    if s.center:
        return BatchNormNoScale(c, eps=s.eps, momentum=s.momentum)
    return nn.BatchNorm2d(c, eps=s.eps, momentum=s.momentum, affine=False)


def _bn_shape(s: BatchNormSpec, shape: Shape) -> Shape:
    if s.scale and not s.center:
        raise ShapeError("batchnorm with scale but without center is not supported")
    return shape


def _bn_params(s: BatchNormSpec, shape: Shape) -> int:
    return shape[0] * (int(s.scale) + int(s.center))


_register(Primitive("batchnorm", BatchNormSpec, _bn_shape, _bn_make, doc="batch normalization", params=_bn_params))


class LrnSpec(Spec):
    size: Pos = 5
    alpha: float = 1e-4
    beta: float = 0.75
    k: float = 2.0  # AlexNet paper's constants (PyTorch's default k is 1.0)


_register(Primitive(
    "lrn", LrnSpec, lambda s, shape: (_need_image(shape, "lrn"), shape)[1],
    lambda s, shape: nn.LocalResponseNorm(s.size, s.alpha, s.beta, s.k), primary="size", doc="local response norm",
    params=_none,
))
