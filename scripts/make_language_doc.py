#!/usr/bin/env python
"""Regenerate docs/language.md from the primitive table and the combinators (``zoo layers`` in Markdown)."""

from pathlib import Path

from zoo._reference import language_markdown

if __name__ == "__main__":
    target = Path(__file__).resolve().parent.parent / "docs" / "language.md"
    target.write_text(language_markdown())
    print(f"wrote {target}")
