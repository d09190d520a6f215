#!/usr/bin/env python
"""Train: see `python scripts/train.py --help` (same as `zoo train`)."""

from __future__ import annotations

import sys
from pathlib import Path

try:
    import zoo  # noqa: F401  (installed)
except ImportError:  # running from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from zoo._exit import leave
from zoo.train import train_main

if __name__ == "__main__":
    leave(train_main(prog="scripts/train.py"))
