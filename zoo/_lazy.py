"""Lazy loading that keeps imports light: names a package exports from private modules, loaded on
first access, and modules deferred until an attribute is first read."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

__all__ = ["deferred", "lazy_exports"]


def lazy_exports(
    package: str, table: Mapping[str, str], namespace: dict[str, Any], exported: Sequence[str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """(``__getattr__``, ``__dir__``) for ``package``: ``table`` maps a public name to its module."""

    def getattr_(name: str) -> Any:
        module = table.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module, package), name)
        namespace[name] = value  # later lookups skip this function
        return value

    def dir_() -> list[str]:
        return sorted(set(namespace) | set(exported))

    return getattr_, dir_


class _Deferred:
    """A module imported on its first attribute access (see :func:`deferred`)."""

    def __init__(self, module: str) -> None:
        self._module = module

    def __getattr__(self, attr: str) -> Any:
        return getattr(importlib.import_module(self._module), attr)

    def __repr__(self) -> str:
        return f"<deferred module {self._module!r}>"


def deferred(module: str) -> Any:
    """``module`` (absolute name), imported when an attribute is first read from it. The primitive
    table reaches torch through this: specs, shape rules and parameter counts (``zoo list``) run
    without importing torch, and only a factory that builds a layer loads it. Type checkers see the
    real module (``if TYPE_CHECKING: from torch import nn`` / ``else: nn = deferred("torch.nn")``)."""
    return _Deferred(module)
