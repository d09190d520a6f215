"""Channel plumbing: slice, chunk, channel_shuffle, permute and the learnable layer_scale.

ShuffleNetV2 splits a block's input in two (``chunk``) and interleaves the halves after the merge
(``channel_shuffle``); ConvNeXt runs its pointwise layers channels-last (``permute``, then
``layernorm`` and ``dense: {last_axis: true}``) and scales each residual branch by a learnable
per-channel ``layer_scale``.
"""

from __future__ import annotations

from pydantic import Field

from .._errors import ShapeError
from ._table import (
    NonNeg,
    Pos,
    Primitive,
    Shape,
    Spec,
    _fmt,
    _need_image,
    _none,
    _register,
    _same_shape,
)
from ._torch import _modules


class SliceSpec(Spec):
    start: int = 0  # Python slice bounds over the channel axis; negative counts from the end
    stop: int | None = None


def _bounds(s: SliceSpec, channels: int) -> tuple[int, int]:
    start, stop, _ = slice(s.start, s.stop).indices(channels)
    if stop <= start:
        raise ShapeError(f"slice {s.start}:{'' if s.stop is None else s.stop} of {channels} channels is empty")
    return start, stop


def _slice_shape(s: SliceSpec, shape: Shape) -> Shape:
    start, stop = _bounds(s, shape[0])
    return (stop - start, *shape[1:])


_register(Primitive(
    "slice", SliceSpec, _slice_shape, lambda s, shape: _modules.ChannelSlice(*_bounds(s, shape[0])),
    doc="channels start:stop of the input (a view)", params=_none,
))


class ChunkSpec(Spec):
    chunks: Pos = 2  # equal parts of the channel axis
    index: NonNeg = 0  # the part this node passes on


def _chunk_bounds(s: ChunkSpec, channels: int) -> tuple[int, int]:
    if channels % s.chunks:
        raise ShapeError(f"chunk needs channels divisible by {s.chunks}, got {channels}")
    if s.index >= s.chunks:
        raise ShapeError(f"chunk index {s.index} is out of range for {s.chunks} chunks (0 to {s.chunks - 1})")
    size = channels // s.chunks
    return s.index * size, (s.index + 1) * size


def _chunk_shape(s: ChunkSpec, shape: Shape) -> Shape:
    start, stop = _chunk_bounds(s, shape[0])
    return (stop - start, *shape[1:])


_register(Primitive(
    "chunk", ChunkSpec, _chunk_shape, lambda s, shape: _modules.ChannelSlice(*_chunk_bounds(s, shape[0])), primary="index",
    doc="part index of chunks equal parts of the channels (torch.chunk; ShuffleNetV2's split)", params=_none,
))


class ShuffleSpec(Spec):
    groups: Pos = 2


def _shuffle_shape(s: ShuffleSpec, shape: Shape) -> Shape:
    c, _, _ = _need_image(shape, "channel_shuffle")
    if c % s.groups:
        raise ShapeError(f"channel_shuffle needs channels divisible by groups={s.groups}, got {c}")
    return shape


_register(Primitive(
    "channel_shuffle", ShuffleSpec, _shuffle_shape, lambda s, shape: _modules.ChannelShuffle(s.groups), primary="groups",
    doc="interleave channel groups (ShuffleNet)", params=_none,
))


class PermuteSpec(Spec):
    dims: list[NonNeg] = Field(min_length=1)  # the sample's axes in their new order; batch stays first


def _permute_shape(s: PermuteSpec, shape: Shape) -> Shape:
    if sorted(s.dims) != list(range(len(shape))):
        raise ShapeError(
            f"permute dims must order the input's {len(shape)} axes 0..{len(shape) - 1} (batch excluded), got {s.dims}"
        )
    return tuple(shape[d] for d in s.dims)


_register(Primitive(
    "permute", PermuteSpec, _permute_shape, lambda s, shape: _modules.Permute(s.dims), primary="dims",
    doc="reorder the axes of each sample: [1, 2, 0] turns (C, H, W) into (H, W, C)", params=_none,
))


class LayerScaleSpec(Spec):
    init: float = 1e-6  # every channel's scale starts here (ConvNeXt, CaiT)
    bare: bool = False  # the parameter itself, named by the node, on the enclosing module


def _layer_scale_shape(s: LayerScaleSpec, shape: Shape) -> Shape:
    if len(shape) not in (1, 3):
        raise ShapeError(f"layer_scale needs an image (C, H, W) or flat features (F,), got {_fmt(shape)}")
    return _same_shape(s, shape)


def _layer_scale_make(s: LayerScaleSpec, shape: Shape) -> _modules.LayerScale:
    return _modules.LayerScale((shape[0], 1, 1) if len(shape) == 3 else (shape[0],), s.init, bare=s.bare)


_register(Primitive(
    "layer_scale", LayerScaleSpec, _layer_scale_shape, _layer_scale_make, primary="init",
    doc="learnable per-channel scale gamma * x, gamma (C, 1, 1) or (F,); bare: the parameter sits on the enclosing module",
    params=lambda s, shape: shape[0],
))
