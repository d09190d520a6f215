"""The zoo's exceptions: every user mistake is one of these.

    ZooError                      base; carries file, line, column, path, hint
    ├── SchemaError               a file breaks the language (unknown key, wrong type, bad YAML)
    │   ├── UnknownNameError      unknown layer, block, parameter or model (with did-you-mean)
    │   └── ExpressionError       a ``${...}`` expression that cannot be evaluated
    ├── ExtendsError              ``extends:`` names a missing file or forms a cycle
    ├── ShapeError                shapes that do not fit (kernel larger than input, add/concat mismatch)
    ├── RegistryError             duplicate model names, missing folders
    ├── SizeLimitError            a model larger than the configured parameter limit
    ├── WeightsError              weights that are missing, unsafe or do not fit
    ├── RecipeError               a training recipe that cannot run
    └── CheckpointError           a checkpoint that is truncated, corrupted or locked

A message reads ``file:line:col: path: problem (expected ...) did you mean 'x'?`` so editors and
terminals can jump to the place.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

# The exception classes, sorted: each is also a public name of ``zoo`` (its __all__ starts with these)
ERRORS = (
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
)
__all__ = [*ERRORS, "ERRORS", "Location", "closest", "did_you_mean", "layer_hint", "typo_distance"]


@dataclass(frozen=True)
class Location:
    """Where something was written: file, 1-based line and column."""

    file: str
    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


class ZooError(Exception):
    """Base of every error the zoo raises for a user mistake."""

    def __init__(
        self,
        message: str,
        *,
        location: Location | None = None,
        path: str = "",
        hint: str = "",
    ) -> None:
        self.message = message
        self.location = location
        self.path = path
        self.hint = hint
        self.notes: list[str] = []
        self.others: list[ZooError] = []  # further problems found in the same pass (zoo validate)
        super().__init__(self._render())

    @property
    def all_errors(self) -> list[ZooError]:
        """This error followed by the others found in the same file."""
        return [self, *self.others]

    @property
    def file(self) -> str | None:
        return self.location.file if self.location else None

    @property
    def line(self) -> int | None:
        return self.location.line if self.location else None

    @property
    def column(self) -> int | None:
        return self.location.column if self.location else None

    def add_context(self, note: str) -> None:
        """Append a line such as 'instantiated from x.yaml:12:5' to the message."""
        self.notes.append(note)
        self.args = (self._render(),)

    def _render(self) -> str:
        head = f"{self.location}: " if self.location else ""
        where = f"{self.path}: " if self.path else ""
        text = f"{head}{where}{self.message}"
        if self.hint:
            sep = "" if self.message.endswith((";", ":", ".", "?")) else ";"
            hint = self.hint if self.hint.endswith((".", "?", "!", ")")) else self.hint + "."
            text += f"{sep} {hint}"
        for note in self.notes:
            text += f"\n  {note}"
        return text

    def __str__(self) -> str:
        return self._render()


class SchemaError(ZooError):
    """The file does not follow the architecture or recipe language."""


class UnknownNameError(SchemaError):
    """A layer, block, parameter, key or model name that does not exist."""


class ExpressionError(SchemaError):
    """A ``${...}`` expression that is malformed, unsafe or fails to evaluate."""


class ExtendsError(ZooError):
    """``extends:`` names an unknown architecture or forms a cycle."""


class ShapeError(ZooError):
    """A layer receives a shape it cannot take."""


class RegistryError(ZooError):
    """The registry cannot serve a request (duplicates, missing folders)."""


class SizeLimitError(ZooError):
    """A model would allocate more parameters than the configured limit."""


class WeightsError(ZooError):
    """Weights that cannot be found, loaded safely or fitted to the model."""


class RecipeError(ZooError):
    """A training recipe that is invalid or cannot run here."""


class CheckpointError(ZooError):
    """A checkpoint that is truncated, corrupted, unsafe or in use."""


def typo_distance(a: str, b: str) -> int:
    """Edits between two names (insert, delete, replace, swap two neighbours), case ignored."""
    a, b = a.lower(), b.lower()
    prev2: list[int] = []
    prev = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        row = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            row[j] = min(prev[j] + 1, row[j - 1] + 1, prev[j - 1] + (a[i - 1] != b[j - 1]))
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                row[j] = min(row[j], prev2[j - 2] + 1)
        prev2, prev = prev, row
    return prev[-1]


def _typo_limit(name: str) -> int:
    # a typo is one slip in a short word, two in a longer one; 'se' is not a typo of 'seq' nor
    # 'add' of 'pad' (short names are whole words, and a different word is a different thing)
    n = len(name)
    return 0 if n <= 3 else 1 if n <= 5 else 2 if n <= 9 else 3


def closest(name: str, choices: Iterable[str]) -> str | None:
    """The choice within a typo's distance of ``name`` (the nearest, then alphabetical), or None."""
    name = str(name)
    scored = sorted((typo_distance(name, c), c) for c in set(choices) if c != name)
    for distance, choice in scored[:1]:
        # a stray letter in a short name ('lrr' for 'lr') is still a slip; a different short word is not
        stray = distance == 1 and len(choice) == len(name) - 1 >= 2
        if distance <= _typo_limit(name) or stray:
            return choice
    return None


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """'did you mean 'x'?' for a choice within a typo's distance, or '' when nothing is that close."""
    match = closest(name, choices)
    return f"did you mean {match!r}?" if match else ""


def layer_hint(name: str, known: Iterable[str]) -> str:
    """The hint after "no layer or block 'x';": a did-you-mean for a typo, a warning when the name
    is itself a different function (torch's ``ReLU6`` is not ``relu``: following the suggestion
    would quietly change the network), else where the names are listed."""
    known = set(known)
    alias = _TORCH_NAMES.get(_plain(name))
    if alias in known:
        return f"that is torch's name; the zoo calls it {alias!r}."
    match = closest(name, known)
    if match is None:
        return "`zoo layers` lists the primitives and combinators."
    if _plain(match) != _plain(name) and _is_torch_layer(name):
        return f"{match!r} is the closest, but it is a different function."
    return f"did you mean {match!r}?"


# torch.nn class names (lowercase) of primitives the zoo names otherwise
_TORCH_NAMES = {
    "conv2d": "conv", "linear": "dense", "maxpool2d": "maxpool", "avgpool2d": "avgpool", "batchnorm2d": "batchnorm",
    "batchnorm1d": "batchnorm", "adaptiveavgpool2d": "adaptive_avgpool", "adaptivemaxpool2d": "adaptive_maxpool",
    "zeropad2d": "pad", "localresponsenorm": "lrn",
}


def _plain(name: str) -> str:
    return name.lower().replace("_", "")


def _is_torch_layer(name: str) -> bool:
    import torch.nn  # only on this error path; the builder has loaded it already

    return any(attr.lower() == _plain(name) for attr in dir(torch.nn) if attr[:1].isupper())
