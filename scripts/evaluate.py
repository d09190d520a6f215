#!/usr/bin/env python
"""Evaluate: see `python scripts/evaluate.py --help` (same as `zoo evaluate`)."""

from __future__ import annotations

import sys
from pathlib import Path

try:
    import zoo  # noqa: F401  (installed)
except ImportError:  # running from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from zoo._exit import leave
from zoo.train import evaluate_main

if __name__ == "__main__":
    leave(evaluate_main(prog="scripts/evaluate.py"))
