#!/usr/bin/env python
"""Print the torchinfo summary of a registered model with its published parameter count.

    python scripts/summarize.py resnet50 --input 3 224 224 --depth 2 [--convention keras]

Exit status 1 when the actual count differs from the published one.
"""


from zoo._cli import summary_main
from zoo._exit import leave

if __name__ == "__main__":
    leave(summary_main())
