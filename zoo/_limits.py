"""Resource limits checked on the expanded tree before anything is allocated: nesting, work, repeats,
layers, parameters and activation size (each raised with an environment variable or a keyword)."""

from __future__ import annotations

import os

from ._errors import (
    SchemaError,
)

DEFAULT_MAX_PARAMS = 2_000_000_000  # 8 GB of float32; raise with ZOO_MAX_PARAMS or max_params=


# elements of one layer's input, output or working buffer for ONE sample (1 GiB of float32);
# ResNet-50 at 1024x1024 needs 17M. Raise with ZOO_MAX_ACTIVATION or max_activation=
DEFAULT_MAX_ACTIVATION = 2**28


MAX_LAYERS = 40_000  # leaves after expanding repeats and blocks; the largest real file has 699


MAX_REPEAT = 10_000


# nodes and layer lists visited while expanding, leaves or not: 10,000 x 10,000 nodes that
# ``when:`` removes, or empty groups, cost time without adding leaves. The largest real file
# (Inception-ResNet-v2) does about 3,000 units of work; a combinator costs 3 (it validates its
# arguments), a primitive or a list 1.
MAX_WORK = 100_000


MAX_NESTING = 100  # layer lists inside layer lists, blocks included; real files stay under 15


def _limit_from_env(var: str, default: int) -> int:
    raw = os.environ.get(var)
    if not raw:
        return default
    try:
        value = int(float(raw))
    except (ValueError, OverflowError):
        raise SchemaError(f"{var} must be a number, got {raw!r}") from None
    if value <= 0:
        raise SchemaError(f"{var} must be positive, got {raw!r}")
    return value


def max_params() -> int:
    return _limit_from_env("ZOO_MAX_PARAMS", DEFAULT_MAX_PARAMS)


def max_activation() -> int:
    return _limit_from_env("ZOO_MAX_ACTIVATION", DEFAULT_MAX_ACTIVATION)
