"""Shared fixtures: a scratch architecture folder registered for one test."""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from zoo._registry import REGISTRY


@pytest.fixture
def arch_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str, str], Path]]:
    """Write YAML files into a folder on ZOO_PATH; returns a writer ``write(filename, text)``."""
    folder = tmp_path / "user_archs"
    folder.mkdir()
    monkeypatch.setenv("ZOO_PATH", str(folder))

    def write(filename: str, text: str) -> Path:
        path = folder / filename
        path.write_text(textwrap.dedent(text).lstrip("\n"))
        return path

    yield write
    REGISTRY._index_key = None  # forget the scratch folder's index
