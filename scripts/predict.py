#!/usr/bin/env python
"""Predict: see `python scripts/predict.py --help` (same as `zoo predict`)."""

from __future__ import annotations

import sys
from pathlib import Path

try:
    import zoo  # noqa: F401  (installed)
except ImportError:  # running from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from zoo._exit import leave
from zoo.train import predict_main

if __name__ == "__main__":
    leave(predict_main(prog="scripts/predict.py"))
