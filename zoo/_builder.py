"""The builder: expands a resolved architecture into a tree of layers with inferred shapes, then
materializes it into plain torch modules.

Two phases, so that every shape is checked and the parameter count known before any weight
is allocated:
  1. ``_Expander`` walks the ``layers`` list with the parameters in scope: evaluates ``${...}``,
     expands ``repeat`` and block templates, validates each primitive against its spec and infers
     its output shape. The result is a tree of ``Leaf``/``Group`` items (no tensors).
  2. ``build_network`` checks the parameter count from the primitive table's rules against the
     limit, and only then builds modules (on the target device, with their usual initialization).
"""

from __future__ import annotations

from collections import OrderedDict
from contextlib import nullcontext
from typing import Any

import torch
from torch import nn

from ._errors import (
    Location,
    SchemaError,
    SizeLimitError,
)
from ._limits import max_activation, max_params
from ._modules import LayerScale
from ._network import Aux, Concat, Graph, Network, Residual
from ._tree import Expanded, Group, Item, Leaf, _fmt, leaf_activation, leaf_params, leaves


class _Namespace:
    """Children of one module: explicit names kept, the others numbered by position."""

    def __init__(self) -> None:
        self.children: dict[str, nn.Module | nn.Parameter] = {}
        self.where: dict[str, Location | None] = {}

    def add(self, item: Item, module: nn.Module | nn.Parameter) -> str:
        name = item.name if item.name is not None else str(len(self.children))
        while item.name is None and name in self.children:
            name = f"{name}_"
        if name in self.children:
            first = self.where[name]
            raise SchemaError(
                f"name {name!r} is used twice in the same module"
                + (f" (first at line {first.line})" if first else ""),
                location=item.loc,
                hint="names become state_dict keys and must be unique among siblings",
            )
        self.children[name] = module
        self.where[name] = item.loc
        return name

    def modules(self) -> dict[str, nn.Module]:
        """The children of a module that runs them in order (no bare parameters there)."""
        return {k: m for k, m in self.children.items() if isinstance(m, nn.Module)}


def _module(item: Item) -> nn.Module:
    if isinstance(item, Leaf):
        return item.primitive.make(item.spec, item.in_shape)
    if item.kind == "seq" and not any(getattr(c, "inline", False) or _bare(c) for c in item.parts[0]):
        ns = _Namespace()
        for child in item.parts[0]:
            ns.add(child, _module(child))
        return nn.Sequential(OrderedDict(ns.modules()))
    ns = _Namespace()
    plan = _plan(item, ns)
    cls: type[Graph] = {"residual": Residual, "concat": Concat, "aux": Aux}.get(item.kind, Graph)
    return cls(ns.children, plan)


def _steps(items: list[Item], ns: _Namespace) -> Any:
    steps: list[Any] = []
    for item in items:
        if isinstance(item, Group) and item.inline:
            steps.append(_plan(item, ns))
        elif _bare(item):
            steps.append(("param_mul", ns.add(item, _bare_parameter(item))))
        else:
            steps.append(ns.add(item, _module(item)))
    if not steps:
        return None
    return steps[0] if len(steps) == 1 else ("seq", tuple(steps))


def _bare(item: Item) -> bool:
    """A leaf whose parameter is registered on the enclosing module itself (``bare: true``)."""
    return isinstance(item, Leaf) and bool(getattr(item.spec, "bare", False))


def _bare_parameter(item: Item) -> nn.Parameter:
    if item.name is None:
        raise SchemaError(
            f"a bare {item.primitive.name if isinstance(item, Leaf) else item.kind} needs a name: "
            "it becomes the parameter's state_dict key", location=item.loc,
        )
    module = _module(item)
    assert isinstance(module, LayerScale)  # the only primitive with a bare form
    return module.gamma


def _plan(group: Group, ns: _Namespace) -> Any:
    if group.kind == "concat":
        return ("cat", tuple(_steps(branch, ns) or ("seq", ()) for branch in group.parts))
    if group.kind == "residual":
        body, shortcut, post = (_steps(part, ns) for part in group.parts)
        if group.merge == "mul":
            return ("mul", body, shortcut, post)
        return ("res", body, shortcut, group.scale, post)
    return _steps(group.parts[0], ns) or ("seq", ())


def allocate(module: nn.Module, device: str | torch.device, *, recurse: bool = True) -> None:
    """``Module.to_empty`` without its ``empty_like`` path, whose first call on meta tensors
    imports torch's Python reference ops (half a second, once per process)."""
    module._apply(lambda t: torch.empty(t.shape, dtype=t.dtype, device=device), recurse=recurse)  # type: ignore[no-untyped-call]


def check_activation(expanded: Expanded, limit: int | None = None) -> None:
    """Huge requests (``pad: 1000000``, a 200,000 'same' pooling kernel, a 20000x20000 input)
    are refused from the inferred shapes, before the allocator sees them."""
    limit = max_activation() if limit is None else limit
    for leaf in leaves(expanded.items):
        size = leaf_activation(leaf)
        if size > limit:
            raise SizeLimitError(
                f"{leaf.primitive.name} needs a tensor of {size:,} elements per sample (input {_fmt(leaf.in_shape)}, "
                f"output {_fmt(leaf.out_shape)}), above the limit of {limit:,}",
                location=leaf.loc,
                hint="raise it with zoo.build(..., max_activation=N) or the ZOO_MAX_ACTIVATION environment variable",
            )


def check_size(expanded: Expanded, limit: int | None = None) -> int:
    """The model's parameter count, refused above the limit before anything is allocated."""
    sizes = [(leaf_params(leaf), leaf.loc) for leaf in leaves(expanded.items)]
    total = sum(n for n, _ in sizes)
    limit = max_params() if limit is None else limit
    if total > limit:
        largest, where = max(sizes, key=lambda s: s[0])
        raise SizeLimitError(
            f"model has {total:,} parameters, above the limit of {limit:,} (the largest layer, here, has {largest:,})",
            location=where,
            hint="raise it with zoo.build(..., max_params=N) or the ZOO_MAX_PARAMS environment variable",
        )
    return total


def build_network(
    expanded: Expanded, *, device: str | torch.device | None = None, limit: int | None = None,
    activation_limit: int | None = None,
) -> Network:
    """Phase 2: the sizes are checked from the table's rules, then modules are built on the target
    device with their own initialization (``device="meta"``: shapes only, no memory)."""
    check_size(expanded, limit)
    check_activation(expanded, activation_limit)
    ns = _Namespace()
    with torch.device(device) if device is not None else nullcontext():
        for item in expanded.items:
            if isinstance(item, Group) and item.inline:
                raise SchemaError("'inline' is only meaningful inside residual, concat or seq", location=item.loc)
            if _bare(item):
                raise SchemaError("a bare parameter belongs to an enclosing seq, residual or concat, not the top level",
                                  location=item.loc, hint="wrap it in a seq, or drop 'bare: true'")
            ns.add(item, _module(item))
        return Network(ns.modules())
