#!/usr/bin/env python
"""Regenerate docs/models.md from the registry (every number comes from code)."""

from pathlib import Path

from zoo._cards import render_model_cards

if __name__ == "__main__":
    target = Path(__file__).resolve().parent.parent / "docs" / "models.md"
    target.write_text(render_model_cards())
    print(f"wrote {target}")
