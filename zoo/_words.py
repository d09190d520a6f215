"""JSON Schema fragments in words: ``{"type": "integer", "exclusiveMinimum": 0}`` -> "an integer > 0".

One vocabulary for the three places that tell a user what a value may be: error messages
("expected an integer > 0, got 'many'"), the language reference (``zoo layers``,
``docs/language.md``) and the descriptions the JSON Schema gives an editor.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["describe", "pattern_words", "resolve"]

_BOUNDS = (("exclusiveMinimum", ">"), ("minimum", ">="), ("exclusiveMaximum", "<"), ("maximum", "<="))
_TYPES = {"integer": "an integer", "number": "a number", "boolean": "true or false", "string": "a string",
          "object": "a mapping", "null": "nothing (null)"}
_PLURAL = {"integer": "integers", "number": "numbers", "boolean": "booleans", "string": "strings", "object": "mappings"}

# the character classes the language uses, as a user would say them
_CLASS_WORDS = (("A-Za-z", "letters"), ("a-zA-Z", "letters"), ("a-z", "lowercase letters"), ("A-Z", "capitals"),
                ("0-9", "digits"), ("\\-", "'-'"), ("-", "'-'"), ("_", "'_'"), (".", "'.'"))


def resolve(schema: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    """Follow a local ``$ref`` (``#/$defs/X``) inside ``root``."""
    while "$ref" in schema:
        target: Any = root
        for part in schema["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        schema = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
    return schema


def _class_words(body: str) -> str:
    words = []
    for token, word in _CLASS_WORDS:
        if token in body:
            words.append(word)
            body = body.replace(token, "")
    return ", ".join(words) if not body else "characters in [" + body + "]"


def pattern_words(pattern: str) -> str:
    """A regular expression of the simple kinds the schema uses, in words."""
    alternatives = re.fullmatch(r"\^\(?([\w|]+)\)?\$", pattern)
    if alternatives:
        words = [repr(a) for a in alternatives.group(1).split("|")]
        return words[0] if len(words) == 1 else "one of " + ", ".join(words)
    name = re.fullmatch(r"\^(?:\[([^\]]+)\])?\[([^\]]+)\][*+]\$", pattern)
    if name:
        first, rest = name.groups()
        text = _class_words(rest)
        return f"a name of {text}" + (f", starting with {_class_words(first)}" if first else "")
    return f"text of the form {pattern}"


def _bounds(schema: dict[str, Any]) -> str:
    if "minimum" in schema and "maximum" in schema:
        return f"from {schema['minimum']:g} to {schema['maximum']:g}"
    return " and ".join(f"{op} {schema[key]:g}" for key, op in _BOUNDS if key in schema)


def _items(schema: dict[str, Any], root: dict[str, Any]) -> str:
    prefix = schema.get("prefixItems") or (schema["items"] if isinstance(schema.get("items"), list) else None)
    if prefix:
        kinds = {_plural(resolve(p, root), root) for p in prefix}
        if len(kinds) == 1:
            return f"a list of {len(prefix)} {kinds.pop()}"
        return "a list [" + ", ".join(describe(p, root) for p in prefix) + "]"
    items = schema.get("items")
    size = ""
    if "minItems" in schema and schema.get("minItems") == schema.get("maxItems"):
        size = f" of {schema['minItems']}"
    elif "maxItems" in schema:
        size = f" of {schema.get('minItems', 0)} to {schema['maxItems']}"
    elif schema.get("minItems"):
        size = " (at least one)" if schema["minItems"] == 1 else f" of at least {schema['minItems']}"
    if not items:
        return f"a list{size}"
    joiner = " " if size.startswith(" of") else " of "
    return f"a list{size}{joiner}{_plural(resolve(items, root), root)}"


def _plural(schema: dict[str, Any], root: dict[str, Any]) -> str:
    kind = schema.get("type")
    if isinstance(kind, str) and kind in _PLURAL and "enum" not in schema and "anyOf" not in schema:
        bounds = _bounds(schema)
        return _PLURAL[kind] + (f" {bounds}" if bounds else "")
    return f"({describe(schema, root)})"


def describe(schema: dict[str, Any], root: dict[str, Any] | None = None) -> str:
    """The values a schema accepts, in a few words."""
    root = root if root is not None else schema
    schema = resolve(schema, root)
    if "const" in schema:
        return repr(schema["const"])
    if "enum" in schema:
        values = [repr(v) for v in schema["enum"]]
        return values[0] if len(values) == 1 else "one of " + ", ".join(values)
    for key in ("anyOf", "oneOf"):
        if key in schema:
            parts = [describe(s, root) for s in schema[key] if resolve(s, root).get("type") != "null"]
            nullable = len(parts) < len(schema[key])
            text = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " or " + parts[-1]
            return text + (" (or null)" if nullable and parts else "")
    kind = schema.get("type")
    if kind == "array":
        return _items(schema, root)
    if kind == "string" and "pattern" in schema:
        return pattern_words(schema["pattern"])
    if kind == "object" and schema.get("properties"):
        return "a mapping of " + ", ".join(schema["properties"])
    if isinstance(kind, str) and kind in _TYPES:
        bounds = _bounds(schema)
        return _TYPES[kind] + (f" {bounds}" if bounds else "")
    return "any value"
