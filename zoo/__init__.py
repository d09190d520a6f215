"""The zoo: CNN architectures as YAML files, built into plain PyTorch modules.

    import zoo
    model = zoo.build("mnist_cnn_v1")               # the article's CNN, 95,082 parameters
    zoo.list_models("resnet*")
    print(zoo.summary("mnist_cnn_v1"))

``import zoo`` is cheap: the exceptions load at once, everything else on first use (torch with
``build``, pydantic and PyYAML with ``list_models``), so a command that only lists models never
imports torch, and nothing here imports torchvision, timm or the training stack.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

# the exceptions load at once; "X as X" marks each as re-exported (its name is in __all__ through ERRORS)
from ._errors import ERRORS as _ERRORS
from ._errors import CheckpointError as CheckpointError
from ._errors import ExpressionError as ExpressionError
from ._errors import ExtendsError as ExtendsError
from ._errors import RecipeError as RecipeError
from ._errors import RegistryError as RegistryError
from ._errors import SchemaError as SchemaError
from ._errors import ShapeError as ShapeError
from ._errors import SizeLimitError as SizeLimitError
from ._errors import UnknownNameError as UnknownNameError
from ._errors import WeightsError as WeightsError
from ._errors import ZooError as ZooError
from ._lazy import lazy_exports as _lazy_exports

if TYPE_CHECKING:
    from ._api import build
    from ._reference import list_layers
    from ._registry import get_spec, list_models, register_dir
    from ._schema import architecture_schema
    from ._summary import count_params, summary

__version__ = "0.1.0"

__all__ = [
    *_ERRORS,
    "__version__",
    "architecture_schema",
    "build",
    "count_params",
    "get_spec",
    "list_layers",
    "list_models",
    "register_dir",
    "summary",
]

# public name -> private module that defines it, imported on first access
_LAZY = {
    "build": "._api",
    "get_spec": "._registry",
    "list_layers": "._reference",
    "list_models": "._registry",
    "register_dir": "._registry",
    "architecture_schema": "._schema",
    "count_params": "._summary",
    "summary": "._summary",
}


__getattr__, __dir__ = _lazy_exports(__name__, _LAZY, globals(), __all__)
