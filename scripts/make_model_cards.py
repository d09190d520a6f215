#!/usr/bin/env python
"""Regenerate docs/models.md from the registry (every number comes from code)."""

import argparse
from pathlib import Path

from zoo._cards import render_model_cards

if __name__ == "__main__":
    default = Path(__file__).resolve().parent.parent / "docs" / "models.md"
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--output", type=Path, default=default, help=f"file to write (default: {default})")
    target = parser.parse_args().output
    target.write_text(render_model_cards())
    print(f"wrote {target}")
