"""``zoo draw``: the network as a diagram, each node with its output shape.

Drawn from the expanded tree (no weights): a top-to-bottom chain of boxes, blocks and combinators
collapsed to one box at ``depth`` 1 and opened one level per extra depth, residual and concat
branches side by side above their merge, in the manner of Keras' ``plot_model(show_shapes=True)``.
matplotlib renders SVG or PNG; SVG text stays text, so names can be searched in the file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._errors import SchemaError

__all__ = ["draw"]

Point = tuple[float, float]
BOX_W, BOX_H = 0.9, 0.62  # of a 1 x 1 cell
COLORS = {"leaf": "#e8f0fe", "group": "#fdf3d8", "merge": "#e6f4ea", "input": "#eeeeee"}


def _fmt(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join(str(s) for s in shape) + ")"


@dataclass
class _Box:
    title: str
    shape: str
    color: str
    width: float = 1.0
    height: float = 1.0

    def place(self, ax: Any, x: float, y: float) -> tuple[list[Point], Point]:
        from matplotlib.patches import FancyBboxPatch

        cx, top = x + self.width / 2, y + (1 - BOX_H) / 2
        ax.add_patch(FancyBboxPatch((cx - BOX_W / 2, top), BOX_W, BOX_H, boxstyle="round,pad=0.0,rounding_size=0.06",
                                    facecolor=self.color, edgecolor="#555555", linewidth=0.8))
        ax.text(cx, top + BOX_H * 0.36, self.title, ha="center", va="center", fontsize=7.5, fontweight="bold")
        ax.text(cx, top + BOX_H * 0.74, self.shape, ha="center", va="center", fontsize=7, color="#333333")
        return [(cx, top)], (cx, top + BOX_H)


@dataclass
class _Chain:
    parts: list[Any] = field(default_factory=list)

    @property
    def width(self) -> float:
        return float(max((p.width for p in self.parts), default=1.0))

    @property
    def height(self) -> float:
        return float(sum(p.height for p in self.parts))

    def place(self, ax: Any, x: float, y: float) -> tuple[list[Point], Point]:
        entries: list[Point] = []
        exit_: Point | None = None
        for part in self.parts:
            ins, out = part.place(ax, x + (self.width - part.width) / 2, y)
            if exit_ is None:
                entries = ins
            else:
                for target in ins:
                    _arrow(ax, exit_, target)
            exit_ = out
            y += part.height
        if exit_ is None:  # an empty branch: the identity, a straight line through
            cx = x + self.width / 2
            return [(cx, y)], (cx, y)
        return entries, exit_


@dataclass
class _Fork:
    branches: list[_Chain]
    merge: _Box

    @property
    def width(self) -> float:
        return sum(b.width for b in self.branches)

    @property
    def height(self) -> float:
        return max(b.height for b in self.branches) + self.merge.height

    def place(self, ax: Any, x: float, y: float) -> tuple[list[Point], Point]:
        body = max(b.height for b in self.branches)
        merge_in, merge_out = self.merge.place(ax, x + (self.width - self.merge.width) / 2, y + body)
        entries: list[Point] = []
        for branch in self.branches:
            ins, out = branch.place(ax, x, y)
            if not branch.parts:
                ins = [(out[0], y + 0.1)]  # identity: a line from the fork's top to the merge
                ax.plot([out[0], out[0]], [y + 0.1, y + body + 0.05], color="#777777", linewidth=0.8)
                out = (out[0], y + body + 0.05)
            entries.extend(ins)
            _arrow(ax, out, merge_in[0], into_merge=True)
            x += branch.width
        return entries, merge_out


def _arrow(ax: Any, start: Point, end: Point, *, into_merge: bool = False) -> None:
    """A connector with right angles: down, across, down (across just above a merge, so branch
    lines run in their own column until they meet)."""
    (x1, y1), (x2, y2) = start, end
    mid = y2 - 0.1 if into_merge else y1 + min(0.12, (y2 - y1) / 2)
    xs, ys = [x1, x1, x2], [y1, mid, mid]
    ax.plot(xs, ys, color="#777777", linewidth=0.8)
    ax.annotate("", xy=(x2, y2), xytext=(x2, mid), arrowprops={"arrowstyle": "-|>", "color": "#777777", "lw": 0.8})


def _title(item: Any, name: str) -> str:
    from ._tree import Leaf

    if isinstance(item, Leaf):
        what = item.primitive.name
        primary = item.primitive.primary
        if primary is not None and getattr(item.spec, primary, None) is not None:
            value = getattr(item.spec, primary)
            what += f" {value}" if not isinstance(value, tuple) else " " + "x".join(map(str, value))
    else:
        what = item.block or ("seq" if item.kind == "seq" else item.kind)
    return f"{name}: {what}" if name else what


def _names(items: list[Any]) -> list[str]:
    """Module names as the builder gives them: the node's name, else its position."""
    out: list[str] = []
    for item in items:
        name = item.name if item.name is not None else str(len(out))
        while item.name is None and name in out:
            name += "_"
        out.append(name)
    return out


def _layout(items: list[Any], depth: int) -> _Chain:
    from ._tree import Leaf

    chain = _Chain()
    for item, name in zip(items, _names(items), strict=True):
        shape = _fmt(item.out_shape)
        if isinstance(item, Leaf) or depth <= 1:
            chain.parts.append(_Box(_title(item, name), shape, COLORS["leaf" if isinstance(item, Leaf) else "group"]))
        elif item.kind == "concat":
            chain.parts.append(_Fork([_layout(b, depth - 1) for b in item.parts], _Box(f"{name}: concat", shape, COLORS["merge"])))
        elif item.kind == "residual":
            body, shortcut, post = item.parts
            merge = _Box(f"{name}: add" + (f" x{item.scale:g}" if item.scale != 1 else ""), _fmt(_shape_before_post(item)), COLORS["merge"])
            chain.parts.append(_Fork([_layout(body, depth - 1), _layout(shortcut, depth - 1)], merge))
            chain.parts.extend(_layout(post, depth - 1).parts)
        elif item.kind == "aux":
            chain.parts.append(_Box(f"{name}: aux head", _fmt(_last_shape(item.parts[0], item.out_shape)), COLORS["group"]))
        else:
            inner = _layout(item.parts[0], depth - 1)
            chain.parts.extend(inner.parts)
    return chain


def _last_shape(items: list[Any], default: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(items[-1].out_shape) if items else default


def _shape_before_post(item: Any) -> tuple[int, ...]:
    body = item.parts[0]
    return _last_shape(body, item.out_shape)


def draw(name: str, output: Path, *, depth: int = 1, params: dict[str, Any] | None = None) -> Path:
    """Draw a registered model to ``output`` (.svg or .png)."""
    if output.suffix.lower() not in (".svg", ".png"):
        raise SchemaError(f"zoo draw writes .svg or .png files, got {output.name!r}")
    if depth < 1:
        raise SchemaError(f"--depth must be 1 or more, got {depth}")
    import matplotlib

    matplotlib.use("Agg")  # files only; never a window
    import matplotlib.pyplot as plt

    from ._registry import REGISTRY

    spec = REGISTRY.get_spec(name)
    tree = REGISTRY.expand(spec, dict(params or {}), tuple(spec.input))
    chain = _Chain([_Box("input", _fmt(tuple(spec.input)), COLORS["input"]), *_layout(tree.items, depth).parts])
    width, height = chain.width, chain.height
    fig = plt.figure(figsize=(max(3.0, 2.4 * width), 0.62 * height + 0.6))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, width)
    ax.set_ylim(height + 0.1, -0.1)  # top to bottom
    ax.axis("off")
    chain.place(ax, 0, 0)
    with plt.rc_context({"svg.fonttype": "none"}):  # SVG text stays searchable text
        fig.savefig(output, dpi=110)
    plt.close(fig)
    return output
