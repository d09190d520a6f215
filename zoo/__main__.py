"""python -m zoo: the zoo command."""

from ._cli import main
from ._exit import leave

leave(main())
