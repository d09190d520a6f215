"""Shared fixtures: a scratch architecture folder registered for one test; single-threaded torch."""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch

from zoo._registry import REGISTRY


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """Tiny batches gain nothing from more threads, and on a busy machine OpenMP threads fighting
    for cores make a step many times slower: training tests run single-threaded (so do their children)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


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
    REGISTRY.forget()  # forget the scratch folder's index


@pytest.fixture(autouse=True, scope="session")
def _private_list_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """``zoo list`` caches counts on disk; tests (and the CLI processes they start) use a scratch
    folder instead of the user's ~/.cache/zoo."""
    import os

    before = os.environ.get("ZOO_CACHE_DIR")
    os.environ["ZOO_CACHE_DIR"] = str(tmp_path_factory.mktemp("zoo_cache"))
    yield
    if before is None:
        os.environ.pop("ZOO_CACHE_DIR", None)
    else:
        os.environ["ZOO_CACHE_DIR"] = before


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist every worker is a process of its own: share the cores between them, so
    that two workers' OpenMP threads do not fight over the same two cores (each test that wants one
    thread still asks for it through ``one_thread``)."""
    import os

    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))
