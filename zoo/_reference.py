"""The language reference: every primitive and combinator with its arguments, read from the tables.

``zoo layers``, :func:`zoo.list_layers` and ``docs/language.md`` all come from here, and the JSON
Schema uses the same argument descriptions, so a primitive added to the table appears everywhere
with no extra work.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ._words import describe

__all__ = ["ARG_DOCS", "Argument", "LayerInfo", "format_layers", "language_markdown", "list_layers"]

# one line per argument name, shared by every primitive that takes it; a spec field's own
# ``Field(description=...)`` wins over this
ARG_DOCS = {
    "filters": "output channels",
    "kernel": "window size: k or [kh, kw]",
    "stride": "step of the window: s or [sh, sw]",
    "padding": "'valid' (none), 'same' (output size = ceil(input / stride), as in Keras), or pixels per side",
    "dilation": "spacing between kernel taps",
    "groups": "channel groups (input channels and filters must both divide by it)",
    "bias": "learn an additive bias",
    "act": "activation applied after the layer (any activation primitive without arguments)",
    "units": "output features",
    "multiplier": "output channels per input channel",
    "inplace": "overwrite the input to save memory (turned off automatically where the input is shared)",
    "slope": "slope for negative inputs",
    "min": "lower clip value",
    "max": "upper clip value",
    "dim": "dimension the softmax runs over (1: channels/features)",
    "approximate": "'tanh' for the tanh approximation of GELU",
    "p": "probability of zeroing an element",
    "eps": "added to the variance for stability",
    "momentum": "running-statistics momentum (null: cumulative average)",
    "scale": "learn a per-channel scale (gamma)",
    "center": "learn a per-channel shift (beta)",
    "size": "number of neighbouring channels",
    "alpha": "multiplicative factor",
    "beta": "exponent",
    "k": "additive constant",
    "output": "output size: s or [h, w]",
    "ceil_mode": "round the output size up instead of down",
    "count_include_pad": "average pooling counts padded zeros",
    "shift": "per-channel value added after scaling",
    "name": "module name (letters, digits, '_'); becomes the state_dict key; unnamed nodes are numbered 0, 1, ... by position",
    "when": "build this node only when the value (or ${...} expression) is true",
    "layers": "list of layers",
    "inline": "put the children directly in the enclosing module (no nested module, so no extra key prefix)",
    "body": "the main path: a list of layers",
    "shortcut": "the skip path: a list of layers (identity when absent)",
    "post": "layers applied after the merge",
    "merge": "how body and shortcut are combined",
    "branches": "parallel paths (each a list of layers) on the same input",
    "n": "how many times",
    "as": "name of the index parameter (0, 1, ...) inside the repeated layers",
}
# arguments every node accepts besides its own
META_ARGS = {"name": "a name of letters, digits, '_'", "when": "a boolean or ${...} expression"}


@dataclass(frozen=True)
class Argument:
    """One argument of a layer: its type in words, its default (None: required) and what it does."""

    name: str
    type: str
    default: str | None
    doc: str


@dataclass(frozen=True)
class LayerInfo:
    """A primitive or combinator of the language."""

    name: str
    kind: str  # "primitive" | "combinator"
    doc: str
    arguments: tuple[Argument, ...]
    shorthand: str | None  # the argument a scalar sets: ``maxpool: 2`` is ``maxpool: {kernel: 2}``

    def signature(self) -> str:
        args = ", ".join(a.name if a.default is None else f"{a.name}={a.default}" for a in self.arguments)
        return f"{self.name}({args})"


def _show(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return repr(value) if isinstance(value, str) else str(value)


def arguments(model: Any) -> tuple[Argument, ...]:
    """The arguments of a pydantic spec, in declaration order."""
    schema = model.model_json_schema(by_alias=True)
    out = []
    for name, prop in schema.get("properties", {}).items():
        if name in META_ARGS:
            continue  # every node takes them; listed once
        required = name in schema.get("required", ())
        doc = prop.get("description") or ARG_DOCS.get(name, "")
        out.append(Argument(name, describe(prop, schema), None if required else _show(prop.get("default")), doc))
    return tuple(out)


def list_layers() -> list[LayerInfo]:
    """Every primitive and combinator of the architecture language, with its arguments."""
    from ._layers import PRIMITIVES
    from ._tree import COMBINATOR_ARGS

    out = [
        LayerInfo(p.name, "primitive", p.doc or p.spec.__doc__ or "", arguments(p.spec), p.primary)
        for p in PRIMITIVES.values()
    ]
    for name, model in COMBINATOR_ARGS.items():
        doc = " ".join((model.__doc__ or "").split())
        out.append(LayerInfo(name, "combinator", doc, arguments(model), None))
    return out


def format_layers(layers: list[LayerInfo] | None = None) -> str:
    """``zoo layers``: one paragraph per layer, arguments indented below it."""
    lines: list[str] = []
    for info in layers if layers is not None else list_layers():
        short = f"  (shorthand: {info.name}: <{info.shorthand}>)" if info.shorthand else ""
        lines.append(f"{info.name} [{info.kind}]: {info.doc}{short}")
        for a in info.arguments:
            default = "required" if a.default is None else f"default {a.default}"
            doc = f": {a.doc}" if a.doc else ""
            lines.append(f"    {a.name}: {a.type}; {default}{doc}")
    lines.append("every node also takes " + "; ".join(f"{k}: {v}" for k, v in META_ARGS.items()))
    return "\n".join(lines)


def _md(text: str) -> str:
    return text.replace("|", "\\|")


def language_markdown() -> str:
    """``docs/language.md``: the syntax, then one table per primitive and combinator."""
    from ._schema import NAME_PATTERN
    from ._words import pattern_words

    layers = list_layers()
    from ._expr import FUNCTIONS

    functions = ", ".join(f"`{f}`" for f in sorted(FUNCTIONS))
    parts = [_INTRO.format(model_name=pattern_words(NAME_PATTERN), functions=functions)]
    for kind, title in (("primitive", "Primitives"), ("combinator", "Combinators")):
        parts.append(f"## {title}\n")
        for info in (i for i in layers if i.kind == kind):
            parts.append(f"### `{info.name}`\n\n{info.doc}" + (
                f" Shorthand: `- {info.name}: VALUE` sets `{info.shorthand}`." if info.shorthand else ""
            ) + "\n")
            if not info.arguments:
                parts.append(f"No arguments: `- {info.name}`.\n")
                continue
            parts.append("| argument | type | default | meaning |\n|---|---|---|---|")
            for a in info.arguments:
                default = "**required**" if a.default is None else f"`{a.default}`"
                parts.append(f"| `{a.name}` | {_md(a.type)} | {default} | {_md(a.doc)} |")
            parts.append("")
    return "\n".join(parts).rstrip() + "\n"


_INTRO = """# The architecture language

<!-- generated by scripts/make_language_doc.py from the primitive table; do not edit by hand -->

An architecture file is YAML: top-level keys (`name`, `description`, `source`, `input`, `params`,
`let`, `published`, `layers`, ...; `zoo schema` prints them all as a JSON Schema) and a `layers`
list. Each entry of a layer list is a *node*:

- a name alone: `- flatten`, `- relu`, or a block without parameters;
- a mapping with one key, the layer type, and its arguments: `- conv: {{filters: 32, kernel: 3, act: relu}}`;
- a shorthand, where a layer has one main argument: `- maxpool: 2` is `- maxpool: {{kernel: 2}}`.

Any value may be a `${{...}}` expression over the file's `params` and `let` values: numbers,
`+ - * / // % **`, comparisons, `and`/`or`/`not`, `a if c else b`, lists and indexing, and the
functions {functions}. Example: `filters: "${{planes * 4}}"`. A string with text around `${{...}}`
(`"layer${{i + 1}}"`) is a string. Nothing in a file executes code.

Every node also takes `name:` (letters, digits and `_`; it becomes the module's name and so its
`state_dict` key) and `when:` (the node is built only when it is true). Unnamed nodes are numbered
by position among their siblings (`0`, `1`, ...), as `nn.Sequential` does. A model's own `name:` is
{model_name}.

Blocks are YAML templates: `blocks: {{name: {{params: {{...}}, let: {{...}}, layers: [...]}}}}` in an
architecture file or in a `kind: blocks` library file; a block is then used like a layer, its
parameters as arguments. A parameter whose default is `required` must be given.

`zoo layers` prints this reference in the terminal; `zoo.list_layers()` returns it as data.
"""
