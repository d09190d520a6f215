"""``torch.nn`` and ``zoo._modules`` for the layer factories, imported when a layer is first built.

Every family module takes them from here, so specs, shape rules and parameter counts (what
``zoo list`` runs) never import torch; type checkers see the real modules.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import deferred

if TYPE_CHECKING:
    from torch import nn as nn

    from .. import _modules as _modules
else:
    nn = deferred("torch.nn")
    _modules = deferred("zoo._modules")

__all__ = ["_modules", "nn"]
