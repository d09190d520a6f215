"""The zoo: CNN architectures as YAML files, built into plain PyTorch modules.

    import zoo
    model = zoo.build("mnist_cnn_v1")               # the article's CNN, 95,082 parameters
    zoo.list_models("resnet*")
    zoo.summary("mnist_cnn_v1")
"""

from ._api import architecture_schema, build, get_spec, list_models, register_dir
from ._errors import (
    CheckpointError,
    ExpressionError,
    ExtendsError,
    RecipeError,
    RegistryError,
    SchemaError,
    ShapeError,
    SizeLimitError,
    UnknownNameError,
    WeightsError,
    ZooError,
)
from ._summary import count_params, summary

__version__ = "0.1.0"

__all__ = [
    "CheckpointError",
    "ExpressionError",
    "ExtendsError",
    "RecipeError",
    "RegistryError",
    "SchemaError",
    "ShapeError",
    "SizeLimitError",
    "UnknownNameError",
    "WeightsError",
    "ZooError",
    "__version__",
    "architecture_schema",
    "build",
    "count_params",
    "get_spec",
    "list_models",
    "register_dir",
    "summary",
]
