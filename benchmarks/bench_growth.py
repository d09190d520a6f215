#!/usr/bin/env python
"""How cost grows: files of 10 to 10,000 layers, and 10 to 1,000 registered files.

    python benchmarks/bench_growth.py [--layers 10 100 1000 10000] [--files 10 100 1000]

1. One architecture file of L dense layers (written out, no ``repeat``): time and peak Python
   memory (tracemalloc, a separate run) of parse (YAML + schema, from the bytes the registry
   read), expand (shapes), count (the
   primitive table's rules, what ``zoo list`` does) and build (torch modules on the CPU).
2. N registered files (small CNNs, on top of the shipped ones): ``list_models`` first call in a
   fresh registry and warm; ``zoo list`` counting every model (no disk cache) and reading the disk
   cache in a fresh registry; and ``python -m zoo list`` as a new process with a warm disk cache,
   beside ``python -c pass``.
Each row prints the ratio to the row before it: with 10x more work, about 10 means linear.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from zoo import _catalog  # noqa: E402
from zoo._builder import build_network  # noqa: E402
from zoo._expansion import expand  # noqa: E402
from zoo._registry import Registry  # noqa: E402

DENSE = """name: {name}
description: growth benchmark
source: benchmarks/bench_growth.py
input: [8]
published: {{params: {params}, source: computed}}
layers:
"""
SMALL_CNN = """name: {name}
description: growth benchmark model {i}
source: benchmarks/bench_growth.py
input: [1, 28, 28]
params: {{num_classes: 10, width: {width}}}
published: {{params: {params}, source: computed}}
layers:
  - conv: {{filters: "${{width}}", kernel: 3, act: relu}}
  - maxpool: 2
  - conv: {{filters: "${{width * 2}}", kernel: 3, act: relu}}
  - global_avgpool
  - dense: "${{num_classes}}"
"""


def _measure(fn: Callable[[], Any], *, memory: bool) -> tuple[float, float]:
    """(seconds, peak MiB of Python allocations); the peak from a second, traced run. Each run
    starts after a full collection, so that one set off by the previous phase's garbage (about
    70 ms with the shipped files parsed) is not billed to this one."""
    gc.collect()
    start = time.perf_counter()
    fn()
    seconds = time.perf_counter() - start
    peak = 0.0
    if memory:
        gc.collect()
        tracemalloc.start()
        fn()
        peak = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
    return seconds, peak


def _fresh(folder: Path) -> Registry:
    registry = Registry()
    registry.register_dir(folder)
    return registry


def _ratio(now: float, before: float | None) -> str:
    return f"{now / before:5.1f}x" if before else "     "


def _one_file(n: int, memory: bool, previous: dict[str, float]) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "model.yaml").write_text(DENSE.format(name=f"dense_{n}", params=72 * n) + "  - dense: 8\n" * n)
        registry = _fresh(folder)
        name = f"dense_{n}"
        state: dict[str, Any] = {"blocks": registry.blocks()}  # the shipped libraries, once

        def parse() -> None:
            registry.files.cache.clear()
            registry._specs.clear()
            state["spec"] = registry.get_spec(name)

        def do_expand() -> None:
            state["tree"] = expand(state["spec"], state["blocks"], {}, (8,))

        def count() -> None:
            assert _catalog.count_expanded(state["tree"]) == 72 * n

        def build() -> None:
            build_network(state["tree"], device="cpu")

        cells = []
        for label, fn in (("parse", parse), ("expand", do_expand), ("count", count), ("build", build)):
            seconds, peak = _measure(fn, memory=memory)
            cells.append(f"{seconds:7.3f} {_ratio(seconds, previous.get(label))} {peak:4.0f}")
            previous[label] = seconds
        return f"{n:>7} | " + " | ".join(cells)


def bench_layers(sizes: list[int], memory: bool) -> None:
    print("one file of L dense layers: seconds (ratio to previous row), peak Python MiB")
    print(f"{'L':>7} | {'parse':>17} | {'expand':>17} | {'count':>17} | {'build':>17}")
    previous: dict[str, float] = {}
    for n in sizes:
        print(_one_file(n, memory, previous))


def _write_files(folder: Path, n: int) -> None:
    for i in range(n):
        w = 4 + i % 13
        params = (9 * w + w) + (9 * w * 2 * w + 2 * w) + (2 * w * 10 + 10)
        (folder / f"m{i:05d}.yaml").write_text(SMALL_CNN.format(name=f"growth_{i:05d}", i=i, width=w, params=params))


def _zoo_list_process(folder: Path, cache: Path, rounds: int = 3) -> tuple[float, float]:
    env = {**os.environ, "ZOO_PATH": str(folder), "ZOO_CACHE_DIR": str(cache), "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "zoo", "list"]
    subprocess.run(cmd, env=env, check=True, capture_output=True)  # fills the disk cache
    bare, listing = [], []
    for _ in range(rounds):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        bare.append(time.perf_counter() - start)
        start = time.perf_counter()
        subprocess.run(cmd, env=env, check=True, capture_output=True)
        listing.append(time.perf_counter() - start)
    return statistics.median(listing), statistics.median(bare)


def _many_files(n: int, memory: bool, previous: dict[str, float]) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        folder, cache = Path(tmp) / "archs", Path(tmp) / "cache"
        folder.mkdir()
        _write_files(folder, n)
        warm_registry = _fresh(folder)
        warm_registry.list_models()

        def first() -> None:
            assert len(_fresh(folder).list_models()) >= n

        def uncached() -> None:
            _catalog._CACHE = _catalog._Cache()
            os.environ["ZOO_CACHE_DIR"] = str(Path(tmp) / f"cold{time.perf_counter_ns()}")
            result = _catalog.catalog(registry=_fresh(folder))
            assert len(result.rows) >= n and not result.problems, result.problems[:3]

        def from_disk() -> None:
            _catalog._CACHE = _catalog._Cache()  # as a new process would: only the disk cache
            assert len(_catalog.catalog(registry=_fresh(folder)).rows) >= n

        cells = []
        for label, fn, width in (("first", first, 20), ("warm", warm_registry.list_models, 8), ("uncached", uncached, 20)):
            seconds, peak = _measure(fn, memory=memory and label != "warm")
            text = f"{seconds:7.3f} {_ratio(seconds, previous.get(label))}" + (f" {peak:4.0f}" if label != "warm" else "")
            cells.append(f"{text:>{width}}")
            previous[label] = seconds
        os.environ["ZOO_CACHE_DIR"] = str(cache)
        _catalog._CACHE = _catalog._Cache()
        _catalog.catalog(registry=_fresh(folder))  # fill the disk cache
        seconds, peak = _measure(from_disk, memory=memory)
        cells.append(f"{seconds:7.3f} {_ratio(seconds, previous.get('disk'))} {peak:4.0f}")
        previous["disk"] = seconds
        process, bare = _zoo_list_process(folder, cache)
        cells.append(f"{process:7.3f} {_ratio(process, previous.get('process'))}")
        previous["process"] = process
        return f"{n:>6} | " + " | ".join(cells) + f" | {bare:.3f}"


def bench_files(sizes: list[int], memory: bool) -> None:
    print("\nN registered files (plus the shipped ones): seconds (ratio to previous row), peak Python MiB")
    print(f"{'N':>6} | {'list_models first':>20} | {'warm':>8} | {'zoo list, no cache':>20} | "
          f"{'zoo list, disk cache':>20} | {'python -m zoo list':>18} | python -c pass")
    previous: dict[str, float] = {}
    for n in sizes:
        print(_many_files(n, memory, previous))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", type=int, nargs="*", default=[10, 100, 1000, 10000])
    parser.add_argument("--files", type=int, nargs="*", default=[10, 100, 1000])
    parser.add_argument("--no-memory", action="store_true", help="skip the traced runs (peak memory)")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    bench_layers([10], memory=False)  # warm-up: first imports and pydantic's first validations
    print()
    bench_layers(args.layers, not args.no_memory)
    bench_files(args.files, not args.no_memory)


if __name__ == "__main__":
    main()
