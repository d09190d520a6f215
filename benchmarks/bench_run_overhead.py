#!/usr/bin/env python
"""Where a training command's time goes besides training (not a timed test).

    python benchmarks/bench_run_overhead.py [--recipe recipes/mnist_fast.yaml] [--data-root DIR]
                                            [--set KEY=VALUE ...] [--rounds 3]

1. Start-up imports, each in a fresh interpreter (median of ``--rounds``): the bare interpreter,
   ``import torch``, what ``zoo train`` loads before it reads the data (torch, pydantic, YAML, the
   trainer's modules), ``torch._dynamo`` (imported by the first optimizer step) and the dataset's
   reader (torchvision for the IDX files; the digits need none).
2. One real ``python -m zoo train`` run in a subprocess. The trainer writes how long each phase
   took into ``metrics.json`` (``timings``) and the wall-clock time of its first step; with the
   moment the command was launched that gives the full breakdown: imports and recipe, dataset
   loading, model build, memory-layout probe, training, validation, checkpoints, the final test
   evaluation, the text reports, each picture, the final weights and the process exit.

Offline the data is scikit-learn's digits (in memory once loaded); ``--data-root`` with MNIST IDX
files uses them. Machine load changes every number here: the load average is printed with them.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def _interpreter(code: str) -> float:
    """Seconds from launching a fresh interpreter to the end of ``code`` (its exit is not counted:
    tearing torch down is the run's "exit" below)."""
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport time; print(time.perf_counter())"],
        check=True, env=_env(), capture_output=True, text=True,
    )
    # perf_counter is CLOCK_MONOTONIC on Linux: the same clock in both processes
    return float(done.stdout.split()[-1]) - start


def bench_imports(rounds: int, dataset: str) -> dict[str, float]:
    zoo_train = "import torch, pydantic, yaml, zoo.train._trainer, zoo.train._overrides, zoo.train._cli"
    cases = {
        "python": "pass",
        "import torch": "import torch",
        "zoo train's modules": zoo_train,
        # torch.optim's Optimizer.step() (and __init__) import torch._dynamo on first use, whatever
        # the optimizer: a fixed cost before the first step of any PyTorch training
        "+ torch._dynamo (the first optimizer step)": zoo_train + "; import torch._dynamo",
    }
    if dataset != "digits":  # the digits are read without importing scikit-learn
        cases["+ the dataset reader (torchvision.datasets)"] = zoo_train + "; import torchvision.datasets"
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(rounds):  # alternate so machine noise hits every case alike
        for name, code in cases.items():
            times[name].append(_interpreter(code))
    return {name: statistics.median(values) for name, values in times.items()}


def run_once(args: argparse.Namespace, out_dir: Path) -> tuple[dict[str, Any], float, float]:
    """(metrics, launch time, wall seconds) of one ``python -m zoo train`` run."""
    data = ["--set", "data.dataset=mnist", "--set", f"data.root={args.data_root}"] if args.data_root else []
    if not args.data_root:
        data = ["--set", "data.dataset=digits"]
    command = [
        sys.executable, "-m", "zoo", "train", str(args.recipe), "--no-progress", "--overwrite",
        "--set", f"output_dir={out_dir}", "--set", "device=cpu", *data,
        *(part for item in args.overrides for part in ("--set", item)),
    ]  # fmt: skip
    launched = time.time()
    start = time.perf_counter()
    done = subprocess.run(command, env=_env(), capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"the training command failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    metrics = json.loads((out_dir / "metrics.json").read_text())
    return metrics, launched, wall


def breakdown(metrics: dict[str, Any], launched: float, wall: float) -> list[tuple[str, float]]:
    """Rows (phase, seconds) that add up to the command's wall time."""
    t = dict(metrics.get("timings", {}))
    first = float(t.pop("first_step_at", launched)) - launched
    setup = [("dataset loading", t.pop("data", 0.0)), ("model build", t.pop("model", 0.0))]
    setup.append(("memory-layout probe", t.pop("layout_probe", 0.0)))
    rows = [("start-up: imports, recipe, run directory", first - sum(s for _, s in setup)), *setup]
    rows.append(("training steps", float(metrics["train_seconds"])))
    for key, label in (("validation", "validation (per epoch)"), ("checkpoints", "checkpoints and history")):
        rows.append((label, t.pop(key, 0.0)))
    rows.append(("final test evaluation", t.pop("test", 0.0)))
    rows.append(("text reports", t.pop("reports_text", 0.0)))
    for key in sorted(k for k in t if k.startswith("picture_")):
        rows.append((f"picture: {key.removeprefix('picture_')}", t.pop(key)))
    rows.append(("final weights", t.pop("weights", 0.0)))
    for key, value in sorted(t.items()):
        rows.append((key, float(value)))
    rows.append(("rest: epoch bookkeeping, metrics.json, exit", wall - sum(s for _, s in rows)))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", type=Path, default=ROOT / "recipes" / "mnist_fast.yaml")
    parser.add_argument("--data-root", help="folder with MNIST/raw (default: offline digits)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--rounds", type=int, default=3, help="fresh interpreters per import case")
    parser.add_argument("--skip-imports", action="store_true")
    args = parser.parse_args()
    dataset = "mnist" if args.data_root else "digits"
    load = os.getloadavg()
    print(f"{os.cpu_count()} CPUs, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; data: {dataset}")
    if not args.skip_imports:
        print(f"\nstart-up imports (fresh interpreters, median of {args.rounds}):")
        for name, seconds in bench_imports(args.rounds, dataset).items():
            print(f"  {name:<45} {seconds:6.2f} s")
    with tempfile.TemporaryDirectory(prefix="zoo-overhead-") as tmp:
        metrics, launched, wall = run_once(args, Path(tmp) / "run")
    rows = breakdown(metrics, launched, wall)
    first = float(metrics["timings"].get("first_step_at", launched)) - launched
    print(f"\npython -m zoo train {args.recipe.name} ({metrics['model']}, epochs: {metrics['epochs_completed']}):")
    for name, seconds in rows:
        print(f"  {name:<45} {seconds:6.2f} s  {seconds / wall:6.1%}")
    print(f"  {'total (wall time of the command)':<45} {wall:6.2f} s")
    overhead = wall - float(metrics["train_seconds"])
    print(f"first training step {first:.2f} s after the command started (target < 3 s on an in-memory dataset)")
    print(f"overhead beyond the training steps: {overhead:.2f} s ({overhead / wall:.0%} of the wall time)")
    load = os.getloadavg()
    print(f"load average after: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


if __name__ == "__main__":
    main()
