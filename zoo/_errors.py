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

import difflib
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = [
    "CheckpointError",
    "ExpressionError",
    "ExtendsError",
    "Location",
    "RecipeError",
    "RegistryError",
    "SchemaError",
    "ShapeError",
    "SizeLimitError",
    "UnknownNameError",
    "WeightsError",
    "ZooError",
    "did_you_mean",
]


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
            text += f" {self.hint}"
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


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """'did you mean 'x'?' for the closest choice, or '' when nothing is close."""
    matches = difflib.get_close_matches(str(name), sorted(set(choices)), n=1, cutoff=0.6)
    return f"did you mean {matches[0]!r}?" if matches else ""
