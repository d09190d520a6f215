"""The primitive table: name -> (pydantic spec, output-shape rule, torch factory).

Adding a primitive is one ``_register(Primitive(...))`` call in the family module it belongs to
(``activations``, ``channels``, ``conv``, ``dense``, ``pool``, ``norm``, ``regularize``; importing them below fills the table); the builder never branches on
layer names. Shapes are ``(C, H, W)`` for images and ``(F,)`` for flat features, without batch.
Shape rules raise :class:`ShapeError` (message only; the builder adds file, line and path).
Specs, shape rules and parameter counts run without torch (``zoo list`` never imports it): the
factories reach ``torch.nn`` and ``zoo._modules`` through ``_lazy.deferred``, loaded on first build.
"""

from __future__ import annotations

from . import activations, channels, conv, dense, norm, pool, regularize  # noqa: F401  (each registers its primitives)
from ._table import PRIMITIVES, Primitive, Shape
from .activations import ACTIVATIONS
from .conv import FILTER_KERNELS

__all__ = ["ACTIVATIONS", "FILTER_KERNELS", "PRIMITIVES", "Primitive", "Shape"]
