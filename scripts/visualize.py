#!/usr/bin/env python
"""Visualize: see `python scripts/visualize.py --help` (same as `zoo visualize`)."""

from __future__ import annotations

import sys
from pathlib import Path

try:
    import zoo  # noqa: F401  (installed)
except ImportError:  # running from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from zoo.train import visualize_main

if __name__ == "__main__":
    sys.exit(visualize_main(prog="scripts/visualize.py"))
