"""python -m zoo: the zoo command."""

import sys

from ._cli import main

sys.exit(main())
