#!/usr/bin/env python
"""Start-up costs: import time, cached listing, and deferred (meta-device) building.

    python benchmarks/bench_startup.py [--rounds 7]

1. ``import torch`` vs ``import torch, zoo`` in fresh interpreters, alternating; prints the difference.
2. ``zoo.list_models()`` over all shipped files: first call and the median of later (cached) calls.
   ``zoo list`` as a new process (counts from the expansion): with an empty count cache, and the
   median with a warm one, over the shipped files and with 100 more registered files.
3. Building a model that immediately receives weights: ``zoo.build(name)`` + ``load_state_dict`` vs
   ``zoo.build(name, device="meta")`` + ``load_state_dict(assign=True)``; prints the speed-up.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _interpreter(code: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True)
    return time.perf_counter() - start


def bench_import(rounds: int) -> None:
    base, with_zoo, first_build = [], [], []
    for _ in range(rounds):  # alternate so machine noise hits both
        base.append(_interpreter("import torch"))
        with_zoo.append(_interpreter("import torch, zoo"))
        first_build.append(_interpreter("import torch, zoo; zoo.build('mnist_cnn_v1')"))
    b, z, f = statistics.median(base), statistics.median(with_zoo), statistics.median(first_build)
    code = "import time, torch; t = time.perf_counter(); import zoo; print(time.perf_counter() - t)"
    inside = statistics.median(
        float(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout)
        for _ in range(rounds)
    )
    print(f"import zoo after torch, timed inside the interpreter: {inside * 1000:.1f} ms")
    print(f"import torch            {b * 1000:7.0f} ms")
    print(f"import torch, zoo       {z * 1000:7.0f} ms   (+{(z - b) * 1000:.0f} ms for zoo; target < 100 ms)")
    print(f"... and a first build   {f * 1000:7.0f} ms   (+{(f - b) * 1000:.0f} ms: pydantic, YAML, registry scan)")


def bench_listing() -> None:
    import zoo

    start = time.perf_counter()
    names = zoo.list_models()
    first = time.perf_counter() - start
    later = []
    for _ in range(20):
        start = time.perf_counter()
        zoo.list_models()
        later.append(time.perf_counter() - start)
    print(f"list_models ({len(names)} models): first {first * 1000:.1f} ms, cached median {statistics.median(later) * 1000:.2f} ms (target < 50 ms)")


def _user_files(folder: Path, n: int) -> None:
    for i in range(n):
        w = 4 + i % 13
        params = (9 * w + w) + (9 * w * 2 * w + 2 * w) + (2 * w * 10 + 10)
        (folder / f"user{i:03d}.yaml").write_text(
            f"name: user_{i:03d}\ndescription: startup benchmark\nsource: benchmarks\ninput: [1, 28, 28]\n"
            f"published: {{params: {params}, source: computed}}\nlayers:\n"
            f"  - conv: {{filters: {w}, kernel: 3, act: relu}}\n  - maxpool: 2\n"
            f"  - conv: {{filters: {2 * w}, kernel: 3, act: relu}}\n  - global_avgpool\n  - dense: 10\n"
        )


def _child_run(cmd: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """(wall seconds, CPU seconds of the child, stdout): CPU time is what a busy machine distorts least."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), out


def bench_zoo_list(rounds: int) -> None:
    """``python -m zoo list`` in a new process: cold (no count cache) once, warm as a median."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "archs"
        folder.mkdir()
        _user_files(folder, 100)
        for label, extra in (("shipped files", {}), ("+ 100 files", {"ZOO_PATH": str(folder)})):
            env = {**os.environ, **extra, "ZOO_CACHE_DIR": str(Path(tmp) / f"cache{len(extra)}")}
            cmd = [sys.executable, "-m", "zoo", "list"]
            cold, cold_cpu, out = _child_run(cmd, env)
            runs = [_child_run(cmd, env)[:2] for _ in range(rounds)]
            bare = [_child_run([sys.executable, "-c", "pass"], env)[:2] for _ in range(rounds)]
            w, c = statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)
            bw, bc = statistics.median(r[0] for r in bare), statistics.median(r[1] for r in bare)
            print(f"zoo list, {label} ({len(out.splitlines()) - 1} models): first ever {cold * 1000:6.0f} ms "
                  f"(CPU {cold_cpu * 1000:.0f} ms), with the count cache {w * 1000:4.0f} ms (CPU {c * 1000:.0f} ms); "
                  f"python -c pass {bw * 1000:.0f} ms (CPU {bc * 1000:.0f} ms); target < 500 ms")


def bench_meta_build(rounds: int) -> None:
    import zoo

    for name in ("resnet50", "vgg16", "inception_v3"):
        if name not in zoo.list_models():
            continue
        state = zoo.build(name).state_dict()
        eager, deferred = [], []
        for _ in range(rounds):
            start = time.perf_counter()
            zoo.build(name).load_state_dict(state)
            eager.append(time.perf_counter() - start)
            start = time.perf_counter()
            zoo.build(name, device="meta").load_state_dict(state, assign=True)
            deferred.append(time.perf_counter() - start)
        e, d = statistics.median(eager), statistics.median(deferred)
        print(f"{name:<14} build+load {e * 1000:6.0f} ms, meta build+assign {d * 1000:6.0f} ms: {e / d:.1f}x faster")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    bench_import(args.rounds)
    bench_listing()
    bench_zoo_list(args.rounds)
    bench_meta_build(args.rounds)


if __name__ == "__main__":
    main()
