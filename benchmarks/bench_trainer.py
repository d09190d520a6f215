"""Trainer benchmarks (not timed tests).

1. Throughput of the trainer against a plain hand-written PyTorch loop for the article's model
   (mnist_cnn_v1) and recipe (Adam 1e-3, batch 64): same model, same batch order, same images held
   in memory; the two alternate within one process and the ratio of the medians is printed
   (> 1.0: the trainer is faster).
2. Time to reach 98% and 99% test accuracy with the fast recipe (recipes/mnist_fast.yaml), and with
   the article's recipe for comparison: the test set is evaluated after every epoch
   (``validate_on: test``) and the cumulative time is read off the history.

Offline the data is scikit-learn's digits (28x28); ``--data-root`` with the MNIST files uses MNIST.

    python benchmarks/bench_trainer.py [--rounds 5] [--epochs 2] [--data-root data] [--threads N]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import zoo  # noqa: E402
from zoo.train import load_recipe, train  # noqa: E402
from zoo.train._datasets import load_data  # noqa: E402
from zoo.train._distributed import epoch_seed  # noqa: E402
from zoo.train._preprocess import Preprocess, batch_indices  # noqa: E402


def _data_overrides(args: argparse.Namespace) -> list[str]:
    if args.data_root:
        return ["data.dataset=mnist", f"data.root={args.data_root}"]
    return ["data.dataset=digits"]


def trainer_throughput(args: argparse.Namespace, run_dir: Path) -> float:
    """Images per second of the trainer on the article's recipe (training loop time only)."""
    recipe = load_recipe(
        ROOT / "recipes" / "mnist_cnn_v1.yaml",
        overrides=[
            *_data_overrides(args),
            "data.validate_on=none",
            f"epochs={args.epochs}",
            "reports.enabled=false",
            f"output_dir={run_dir}",
            "progress=false",
            "device=cpu",
            *(["channels_last=false"] if args.nchw else []),
        ],
    )
    result = train(recipe, overwrite=True, log=lambda _m: None)
    args.layouts.append(result.metrics["channels_last"])
    return float(result.metrics["images_per_second"])


def plain_throughput(args: argparse.Namespace) -> float:
    """The same training written by hand: index the in-memory tensor, forward, backward, step."""
    recipe = load_recipe(
        ROOT / "recipes" / "mnist_cnn_v1.yaml", overrides=[*_data_overrides(args), "data.validate_on=none"]
    )
    data = load_data(recipe.data)
    pre = Preprocess(recipe.data, data_channels=1, mean=data.mean, std=data.std, device=torch.device("cpu"))
    images = pre.prepare(data.train).images  # float32 (N, 1, 28, 28) in [0, 1], like the trainer's
    labels = data.train.labels
    torch.manual_seed(recipe.seed)
    model = zoo.build("mnist_cnn_v1")
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-7)
    model.train()
    seen, seconds = 0, 0.0
    for epoch in range(1, args.epochs + 1):
        order = batch_indices(len(labels), 64, generator=torch.Generator().manual_seed(epoch_seed(0, epoch, 0)))
        start = time.perf_counter()
        for idx in order:
            x, y = images[idx], labels[idx]
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            seen += len(idx)
        seconds += time.perf_counter() - start
    return seen / seconds


def time_to_accuracy(args: argparse.Namespace, recipe_name: str, epochs: int, run_dir: Path) -> dict[str, Any]:
    """Cumulative seconds (training + per-epoch test evaluation) until test accuracy >= 98% / 99%."""
    recipe = load_recipe(
        ROOT / "recipes" / f"{recipe_name}.yaml",
        overrides=[
            *_data_overrides(args),
            "data.validate_on=test",
            f"epochs={epochs}",
            "reports.enabled=false",
            f"output_dir={run_dir}",
            "progress=false",
            "device=cpu",
        ],
    )
    result = train(recipe, overwrite=True, log=lambda _m: None)
    out: dict[str, Any] = {"final": result.metrics["test_accuracy"], "epochs": epochs}
    elapsed = 0.0
    for row in result.metrics["history"]:
        elapsed += row["seconds"]
        for target in (0.98, 0.99):
            if row["val_accuracy"] >= target and target not in out:
                out[target] = (row["epoch"], elapsed)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=2, help="epochs per throughput round")
    parser.add_argument("--data-root", help="folder with MNIST/raw (default: offline digits)")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads")
    parser.add_argument("--fast-epochs", type=int, default=30, help="epoch budget for the time-to-accuracy runs")
    parser.add_argument("--skip-accuracy", action="store_true")
    parser.add_argument("--nchw", action="store_true", help="pin the trainer to NCHW (no automatic channels_last)")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bench")
    args = parser.parse_args()
    args.layouts = []
    if args.threads:
        torch.set_num_threads(args.threads)
    dataset = "MNIST" if args.data_root else "digits (sklearn, 28x28)"
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, data: {dataset}")

    plain_throughput(args)  # warm-up: first-call allocations and kernel selection
    trainer_runs, plain_runs = [], []
    for r in range(args.rounds):
        trainer_runs.append(trainer_throughput(args, args.out / "throughput"))
        plain_runs.append(plain_throughput(args))
        print(f"round {r + 1}: trainer {trainer_runs[-1]:8.1f} img/s   plain loop {plain_runs[-1]:8.1f} img/s")
    t, p = statistics.median(trainer_runs), statistics.median(plain_runs)
    layout = "channels_last" if all(args.layouts) else "NCHW" if not any(args.layouts) else "mixed"
    print(
        f"mnist_cnn_v1, batch 64, Adam: trainer {t:.1f} img/s ({layout}), plain loop {p:.1f} img/s, ratio {t / p:.3f}"
    )

    if args.skip_accuracy:
        return
    for name, epochs in (("mnist_fast", args.fast_epochs), ("mnist_cnn_v1", args.fast_epochs)):
        res = time_to_accuracy(args, name, epochs, args.out / name)
        parts = []
        for target in (0.98, 0.99):
            if target in res:
                epoch, seconds = res[target]
                parts.append(f"{target:.0%} after epoch {epoch} ({seconds:.1f}s)")
            else:
                parts.append(f"{target:.0%} not reached in {epochs} epochs")
        print(f"{name} ({epochs} epochs on {dataset}): " + "; ".join(parts) + f"; final {res['final']:.2%}")


if __name__ == "__main__":
    main()
