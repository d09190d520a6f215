"""docs/models.md is generated; it must match the registry."""

from __future__ import annotations

from pathlib import Path

import zoo
from zoo._cards import depth, render_model_cards
from zoo._expansion import expand
from zoo._registry import REGISTRY

DOC = Path(__file__).resolve().parent.parent / "docs" / "models.md"


def test_model_cards_are_up_to_date() -> None:
    assert DOC.read_text() == render_model_cards(), "docs/models.md is stale: run python scripts/make_model_cards.py"


def test_depth_follows_the_papers_convention() -> None:
    expected = {"vgg16": 16, "vgg19": 19, "resnet18": 18, "resnet50": 50, "resnet152": 152, "alexnet": 8, "lenet5": 5}
    for name, want in expected.items():
        spec = zoo.get_spec(name)
        assert depth(expand(spec, REGISTRY.blocks(), {}, tuple(spec.input))) == want, name
