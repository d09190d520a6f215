"""The JSON Schema editors use: generated from the primitive table, the combinators and the blocks.

An editor (VS Code's YAML extension, i.e. ``yaml-language-server``) completes and checks what the
schema spells out, so every layer node is typed: one property per primitive, combinator and
registered block template, each with its arguments (type, default, description). Unknown layers,
unknown arguments and wrong types are flagged inside blocks and combinators too, and wherever a
value goes a ``${...}`` expression is accepted. Nothing here names a layer: a primitive added to
the table appears in the schema with no extra work.

Written as JSON Schema draft-07 (``definitions``, ``items`` arrays for tuples), the dialect
``yaml-language-server`` implements.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any

from ._reference import ARG_DOCS
from ._words import describe

__all__ = ["editor_schema"]

DRAFT = "http://json-schema.org/draft-07/schema#"
EXPRESSION = {"type": "string", "pattern": r"\$\{", "description": "a ${...} expression over params and let values"}
_NESTED_LISTS = {"branches"}  # combinator fields holding a list of layer lists (or of single nodes)
_SINGLE_OK = {"post"}  # layer fields that may also be one node; the others must be lists
_META_DOCS = {"name": ARG_DOCS["name"], "when": ARG_DOCS["when"]}


def _draft07(schema: Any) -> Any:
    """pydantic writes 2020-12 (``$defs``, ``prefixItems``); draft-07 readers need the older words."""
    if isinstance(schema, list):
        return [_draft07(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {}
    for key, value in schema.items():
        if key == "prefixItems":
            out["items"] = _draft07(value)
        elif key == "$ref" and isinstance(value, str):
            out[key] = value.replace("#/$defs/", "#/definitions/")
        elif key == "$defs":
            out["definitions"] = _draft07(value)
        elif key != "title":
            out[key] = _draft07(value)
    return out


def _loose(schema: dict[str, Any], *, doc: str = "") -> dict[str, Any]:
    """A value schema that also accepts a ``${...}`` expression, with an error that says both."""
    schema = _loose_items({k: v for k, v in schema.items() if k not in ("default", "description")})
    words = describe(schema, schema)
    if "anyOf" in schema:
        alternatives = [*schema.pop("anyOf"), dict(EXPRESSION)]
    elif schema:
        alternatives = [schema, dict(EXPRESSION)]
    else:
        alternatives = []
    out: dict[str, Any] = {"anyOf": alternatives} if alternatives else {}
    for alt in alternatives:
        alt.setdefault("errorMessage", f"expected {words} or a ${{...}} expression")
    if doc:
        out["description"] = doc
    return out


def _loose_items(schema: dict[str, Any]) -> dict[str, Any]:
    """Elements of lists may be expressions too: ``scale: ["${0.229 / 0.5}", ...]``."""
    for alt in schema.get("anyOf", [schema]):
        items = alt.get("items")
        if isinstance(items, list):
            alt["items"] = [_loose(i) for i in items]
        elif isinstance(items, dict) and items:
            alt["items"] = _loose(items)
    return schema


def _arguments(model: Any, root_defs: dict[str, Any], layer_lists: Iterable[str] = ()) -> dict[str, Any]:
    """Object schema of a spec's arguments (plus name and when), every value expression-friendly."""
    raw = model.model_json_schema(by_alias=True)
    root_defs.update(_draft07(raw.get("$defs", {})))
    raw = _draft07(raw)
    props: dict[str, Any] = {}
    lists = set(layer_lists)
    for name, field in raw.get("properties", {}).items():
        doc = field.get("description") or ARG_DOCS.get(name, "")
        if "default" in field:
            doc += f" (default: {field['default']!r})".replace("None", "null").replace("True", "true").replace("False", "false")
        if name in _NESTED_LISTS:
            props[name] = {"type": "array", "minItems": 1, "items": {"$ref": "#/definitions/layer_list_or_node"},
                           "description": doc}
        elif name in lists:
            target = "layer_list_or_node" if name in _SINGLE_OK else "layers"
            props[name] = {"$ref": f"#/definitions/{target}", "description": doc}
        else:
            props[name] = _loose(field, doc=doc)
    for name, doc in _META_DOCS.items():
        props.setdefault(name, _loose({"type": "string"} if name == "name" else {"type": "boolean"}, doc=doc))
    return {"type": "object", "properties": props, "additionalProperties": False, "required": raw.get("required", [])}


def _with_shorthand(args: dict[str, Any], primary: str | None, doc: str) -> dict[str, Any]:
    """``maxpool: 2`` (the primary argument alone), ``flatten:`` (nothing) or a mapping."""
    alternatives = [args, {"type": "null"}]
    if primary is not None:
        alternatives.insert(1, {k: v for k, v in args["properties"][primary].items() if k != "description"})
    return {"anyOf": alternatives, "description": doc}


def _block_param(default: Any) -> dict[str, Any]:
    """A block parameter: any value. Its default does not give its type (a ``padding: 0`` parameter
    is passed ``[0, 3]``; the primitive it feeds checks the value when the file is built)."""
    from ._schema import REQUIRED

    return {"description": "required" if default == REQUIRED else f"default: {default!r}"}


def _block(template: Any) -> dict[str, Any]:
    from ._schema import REQUIRED

    props = {name: _block_param(default) for name, default in template.params.items()}
    for name, doc in _META_DOCS.items():
        props.setdefault(name, {"description": doc})
    required = [n for n, d in template.params.items() if isinstance(d, str) and d == REQUIRED]
    args: dict[str, Any] = {"type": "object", "properties": props, "additionalProperties": False}
    if required:
        args["required"] = required
    alternatives: list[dict[str, Any]] = [args] if required else [args, {"type": "null"}]
    return {"anyOf": alternatives, "description": f"block: {template.description}".rstrip(": ")}


def _registered_blocks() -> dict[str, Any]:
    """Block templates of every registered folder: libraries and those defined inside models."""
    from ._registry import REGISTRY

    found: dict[str, Any] = {}
    for name in REGISTRY.list_models():
        found.update(REGISTRY.get_spec(name).blocks)
    found.update(REGISTRY.blocks())
    return found


def _layer_defs(blocks: Mapping[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """One property per layer type: the argument schema of each primitive, combinator and block."""
    from ._layers import PRIMITIVES
    from ._tree import _LAYER_FIELDS, COMBINATOR_ARGS

    layers: dict[str, Any] = {}
    for p in PRIMITIVES.values():
        layers[p.name] = _with_shorthand(_arguments(p.spec, defs), p.primary, p.doc or p.name)
    for name, model in COMBINATOR_ARGS.items():
        doc = " ".join((model.__doc__ or name).split())
        layers[name] = {**_arguments(model, defs, _LAYER_FIELDS), "description": doc}
    for name, template in blocks.items():
        layers.setdefault(name, _block(template))
    return layers


def _node(layers: dict[str, Any]) -> dict[str, Any]:
    bare = sorted(n for n, s in layers.items() if "anyOf" in s and {"type": "null"} in s["anyOf"])
    unknown = "not a layer without arguments here: `zoo layers` lists the primitives and combinators"
    # if/then/else rather than anyOf: an editor reports the errors of the branch the value's type
    # selects ("Property cnov is not allowed"), not of whichever alternative fails least
    return {
        "description": "a layer: a name alone, or {type: arguments}",
        "type": ["string", "object"],
        "if": {"type": "string"},
        "then": {"anyOf": [
            {"enum": bare, "errorMessage": unknown},
            {"pattern": r"^\s*\$\{", "description": "a layer type chosen by an expression", "errorMessage": unknown},
        ]},
        "else": {
            "properties": layers,
            "patternProperties": {r"^\s*\$\{": {}},
            "additionalProperties": False,
            "minProperties": 1,
            "maxProperties": 1,
        },
    }


def _top_level(arch: dict[str, Any]) -> dict[str, Any]:
    """The file: an architecture, or a block library (``kind: blocks``), with the keys the registry
    requires: name and published always, description/source/input/layers unless inherited."""
    props = arch["properties"]
    props["layers"] = {"$ref": "#/definitions/layers", "description": "the network, first layer first"}
    props["kind"] = {"enum": ["blocks"], "description": "'blocks': this file is a library of block templates"}
    props["blocks"] = {"type": "object", "additionalProperties": {"$ref": "#/definitions/block_template"},
                       "description": "block templates: name -> {params, let, layers}"}
    concrete = {
        "if": {"properties": {"abstract": {"const": True}}, "required": ["abstract"]},
        "else": {
            "required": ["published"],
            "if": {"required": ["extends"]},
            "else": {"required": ["description", "source", "input", "layers"]},
        },
    }
    return {
        "type": "object",
        "properties": props,
        "additionalProperties": False,
        "if": {"required": ["kind"]},
        "then": {"required": ["blocks"]},
        "else": {"required": ["name"], "allOf": [concrete]},
    }


def editor_schema(*, blocks: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The complete schema; ``blocks`` defaults to every registered block template."""
    from ._schema import ArchitectureFile, BlockTemplate

    arch = _draft07(ArchitectureFile.model_json_schema())
    defs: dict[str, Any] = dict(arch.pop("definitions", {}))
    layers = _layer_defs(_registered_blocks() if blocks is None else blocks, defs)
    template = _draft07(BlockTemplate.model_json_schema())
    template["properties"]["layers"] = {"$ref": "#/definitions/layers"}
    defs.update({
        "node": _node(layers),
        "layers": {"type": "array", "minItems": 1, "items": {"$ref": "#/definitions/node"}},
        "layer_list_or_node": {"anyOf": [{"$ref": "#/definitions/layers"}, {"$ref": "#/definitions/node"}]},
        "block_template": template,
    })
    schema = {"$schema": DRAFT, "title": "zoo architecture file", **_top_level(arch), "definitions": defs}
    return copy.deepcopy(schema)  # no shared sub-dicts: callers may edit their copy
