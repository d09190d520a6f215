"""Pydantic models of an architecture file (and of a block library file).

The ``layers`` lists stay untyped here (``list[Any]``): a node's meaning depends on the primitive
table and on block templates, and its values may be ``${...}`` expressions, so nodes are validated
by the builder after expansion, each against its primitive's own spec.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, WithJsonSchema

from ._strict import Strict

__all__ = [
    "ArchitectureFile",
    "architecture_schema",
    "ArchitectureSpec",
    "BlockLibrary",
    "BlockTemplate",
    "Published",
    "Reference",
    "REQUIRED",
]

REQUIRED = "required"  # a parameter default that must be given by the caller

NAME_PATTERN = r"^[A-Za-z][A-Za-z0-9_.\-]*$"


def _non_empty_list(value: Any) -> Any:
    if not isinstance(value, list) or not value:
        raise ValueError("expected a non-empty list of layers")
    return value  # the located YList itself, so later errors keep their line numbers


def _mapping(value: Any) -> Any:
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise ValueError("expected a mapping of names to values")
    return value


_NODE_SCHEMA = {
    "anyOf": [
        {"type": "string", "description": "a primitive, combinator or block without arguments"},
        {"type": "object", "minProperties": 1, "maxProperties": 1, "description": "{type: arguments}"},
    ]
}
LayerList = Annotated[
    Any, AfterValidator(_non_empty_list), WithJsonSchema({"type": "array", "minItems": 1, "items": _NODE_SCHEMA})
]
ParamMap = Annotated[Any, AfterValidator(_mapping), WithJsonSchema({"type": "object"})]


class Published(Strict):
    """The published parameter count this architecture is held to."""

    params: int = Field(ge=0, description="parameter count as published")
    source: str = Field(description="where the number comes from (paper table, Keras summary, ...)")
    convention: Literal["pytorch", "keras"] = Field(
        "pytorch",
        description="pytorch: trainable+frozen parameters; keras: also batch-norm moving statistics",
    )
    with_params: dict[str, Any] = Field(
        default_factory=dict, description="parameter overrides under which the number holds"
    )


class Reference(Strict):
    """The implementation this architecture must equal (keys, shapes, outputs)."""

    torchvision: str | None = Field(None, description="torchvision.models builder name")
    timm: str | None = Field(None, description="timm model name")
    kwargs: dict[str, Any] = Field(default_factory=dict, description="keyword arguments for the reference builder")

    def libraries(self) -> dict[str, str]:
        return {lib: name for lib, name in (("torchvision", self.torchvision), ("timm", self.timm)) if name}


class WeightsSource(Strict):
    """Parameters the published weights of one library need (e.g. transform_input: true)."""

    params: dict[str, Any] = Field(default_factory=dict)
    rename: dict[str, str] = Field(
        default_factory=dict,
        description="substring replacements in the published file's keys (torchvision's DenseNet files: '.norm.1.' -> '.norm1.')",
    )


class BlockTemplate(Strict):
    """A reusable block: parameters with defaults (or 'required') and layers over them."""

    description: str = ""
    params: ParamMap = Field(default_factory=dict, description="name: default, or 'required'")
    let: ParamMap = Field(default_factory=dict, description="derived values, evaluated in order")
    layers: LayerList


class ArchitectureFile(Strict):
    """An architecture file as written (before ``extends`` is resolved)."""

    name: str = Field(pattern=NAME_PATTERN, description="registry name")
    extends: str | None = Field(None, description="architecture (or template) this file derives from")
    abstract: bool = Field(False, description="a template for other files; not listed or built")
    description: str | None = None
    source: str | None = Field(None, description="paper, document or implementation")
    # a boolean in it is refused by Strict
    input: list[Annotated[int, Field(gt=0)]] | None = Field(
        None, min_length=1, max_length=3, description="[C, H, W] or [F]"
    )
    params: ParamMap = Field(default_factory=dict, description="parameters and their defaults")
    let: ParamMap = Field(default_factory=dict, description="derived values, evaluated in order")
    published: Published | None = None
    reference: Reference | None = None
    features: list[str] | None = Field(None, description="module names whose outputs features_only returns")
    init: dict[str, str] | None = Field(
        None, description="weight init per layer kind (conv, dense): pytorch, kaiming_normal_fan_out, normal_0.01, ..."
    )
    weights: dict[Literal["torchvision", "timm"], WeightsSource] | None = Field(
        None, description="per library: parameters its published weights need"
    )
    blocks: dict[str, BlockTemplate] = Field(default_factory=dict)
    layers: LayerList | None = None


class BlockLibrary(Strict):
    """A file of shared block templates (``kind: blocks``)."""

    kind: Literal["blocks"]
    description: str = ""
    blocks: dict[str, BlockTemplate]


@dataclass
class ArchitectureSpec:
    """A resolved architecture: ``extends`` applied, defaults merged, ready to build."""

    name: str
    file: str
    chain: list[str]
    description: str
    source: str
    input: list[int]
    params: dict[str, Any]
    let: dict[str, Any]
    published: Published | None
    reference: Reference | None
    features: list[str] | None
    init: dict[str, str] | None
    weights: dict[str, WeightsSource] | None
    blocks: dict[str, BlockTemplate]
    layers: list[Any]
    abstract: bool = False


def architecture_schema() -> dict[str, Any]:
    """JSON Schema of an architecture file for editors: every layer node typed from the primitive
    table, the combinators and the registered block templates (see ``zoo/_editor_schema.py``)."""
    from ._editor_schema import editor_schema

    return editor_schema()
