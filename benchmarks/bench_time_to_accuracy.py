#!/usr/bin/env python
"""Images seen and training seconds until 98% and 99% test accuracy (not a timed test).

    python benchmarks/bench_time_to_accuracy.py [--data-root DIR] [--train-limit 8000] [--test-limit 2000]
                                                [--budget 60000] [--recipe recipes/mnist_fast.yaml ...]
                                                [--seeds 0,1,2] [--subset-seeds 0,1,2]

For each recipe (default: ``recipes/mnist_fast.yaml``), and for a plain PyTorch loop with the
article's settings (``mnist_cnn_v1``, Adam 1e-3, batch 64, inputs in [0, 1], no schedule), train
until ``--budget`` images have been seen and evaluate the test set after every epoch (the
recipe, ``validate_on: test``) or every ``--plain-every`` images (the loop). Printed per run:
images seen and cumulative training seconds (evaluation excluded) when the test accuracy first
reached 98% and 99%, the best accuracy and when it was first reached, and the final accuracy.

A recipe runs ``ceil(budget / training images)`` epochs, so its schedule spans the budget (on the
full 60,000 MNIST images: one epoch). Data: scikit-learn's digits at 28x28 by default (offline);
``--data-root`` with ``MNIST/raw`` IDX files uses MNIST. ``--train-limit``/``--test-limit`` take
a random N images with each class's share (the recipes' ``data.train_limit``), drawn by each of
``--subset-seeds`` (``data.split_seed``); each recipe runs once per training seed in ``--seeds``
and per subset, and a summary gives the final accuracies' mean and range. A 2,000-image test set
moves 0.05 points per image, and MNIST's first test images are harder than its last (the first
4,000 score about 0.3 points lower), so judge small subsets on several draws or the whole test
set. Time depends on the machine's load; images seen and accuracies do not (same thread count).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import zoo  # noqa: E402
from zoo.train import load_recipe, train  # noqa: E402
from zoo.train._datasets import load_data  # noqa: E402
from zoo.train._preprocess import Preprocess, batch_indices  # noqa: E402
from zoo.train._recipe import DataSection  # noqa: E402

TARGETS = (0.98, 0.99)


@dataclass
class Curve:
    """(images seen, training seconds, test accuracy) after each evaluation."""

    name: str
    points: list[tuple[int, float, float]] = field(default_factory=list)

    def first(self, target: float) -> tuple[int, float] | None:
        return next(((n, s) for n, s, acc in self.points if acc >= target), None)

    def best(self) -> tuple[float, int]:
        top = max(acc for _, _, acc in self.points)
        return top, next(n for n, _, acc in self.points if acc == top)


def _data_overrides(args: argparse.Namespace, subset: int = 0) -> list[str]:
    out = ["data.dataset=mnist", f"data.root={args.data_root}", "data.download=false"] if args.data_root else []
    if not args.data_root:
        out = ["data.dataset=digits"]
    out.append(f"data.split_seed={subset}")
    if args.train_limit:
        out.append(f"data.train_limit={args.train_limit}")
    if args.test_limit:
        out.append(f"data.test_limit={args.test_limit}")
    return out


def recipe_curve(args: argparse.Namespace, path: Path, n_train: int, out_dir: Path, seed: int, subset: int) -> Curve:
    epochs = max(1, math.ceil(args.budget / n_train))
    recipe = load_recipe(
        path,
        overrides=[
            *_data_overrides(args, subset),
            f"seed={seed}",
            "data.validate_on=test",
            f"epochs={epochs}",
            "reports.enabled=false",
            f"output_dir={out_dir}",
            "progress=false",
            "device=cpu",
        ],
    )
    result = train(recipe, overwrite=True, log=lambda _m: None)
    runs = f", seed {seed}" if len(args.seeds) > 1 else ""
    runs += f", subset {subset}" if len(args.subset_seeds) > 1 else ""
    curve = Curve(f"{recipe.name} ({recipe.model.name}{runs})")
    seen, seconds = 0, 0.0
    for row in result.metrics["history"]:
        seen += n_train
        seconds += row["seconds"]
        curve.points.append((seen, seconds, row["val_accuracy"]))
    return curve


def plain_curve(args: argparse.Namespace) -> Curve:
    """The article's training written by hand: mnist_cnn_v1, Adam(1e-3, eps 1e-7), batch 64, [0, 1] inputs."""
    section = DataSection.model_validate(
        {
            "dataset": "mnist" if args.data_root else "digits",
            "root": args.data_root or "data",
            "download": False,
            "validate_on": "none",
            "train_limit": args.train_limit,
            "test_limit": args.test_limit,
            "split_seed": args.subset_seeds[0],
        }
    )
    data = load_data(section)
    pre = Preprocess(section, data_channels=1, mean=data.mean, std=data.std, device=torch.device("cpu"))
    images, labels = pre.prepare(data.train).images, data.train.labels
    test = pre.prepare(data.test)
    torch.manual_seed(0)
    model = zoo.build("mnist_cnn_v1")
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-7)
    curve = Curve("plain loop, article's settings (mnist_cnn_v1, Adam, batch 64)")
    seen, seconds, next_eval, epoch = 0, 0.0, args.plain_every, 0
    while seen < args.budget:
        epoch += 1
        for idx in batch_indices(len(labels), 64, generator=torch.Generator().manual_seed(epoch)):
            start = time.perf_counter()
            loss = F.cross_entropy(model(images[idx]), labels[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            seconds += time.perf_counter() - start
            seen += len(idx)
            if seen >= next_eval or seen >= args.budget:
                curve.points.append((seen, seconds, _accuracy(model, test.images, test.labels)))
                next_eval += args.plain_every
            if seen >= args.budget:
                break
    return curve


@torch.no_grad()
def _accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    correct = sum(int((model(xb).argmax(1) == yb).sum()) for xb, yb in zip(x.split(1000), y.split(1000), strict=True))
    model.train()
    return correct / len(y)


def _summary(curves: list[Curve], n_recipes: int, runs: int) -> None:
    """Each recipe's final accuracies over its seeds and subsets."""
    print()
    for i in range(n_recipes):
        finals = [c.points[-1][2] for c in curves[i * runs:(i + 1) * runs]]
        hit = sum(c.first(0.99) is not None for c in curves[i * runs:(i + 1) * runs])
        name = curves[i * runs].name.split(",")[0].rstrip(")") + ")"
        print(
            f"{name}: {runs} runs, final accuracy mean {sum(finals) / runs:.2%}, "
            f"min {min(finals):.2%}, max {max(finals):.2%}; 99% reached in {hit} of {runs}"
        )


def _ints(text: str) -> list[int]:
    return [int(part) for part in text.split(",")]


def _cell(hit: tuple[int, float] | None) -> str:
    return f"{hit[0]:>9,} {hit[1]:6.1f}s" if hit else f"{'not reached':>17}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", help="folder with MNIST/raw (default: offline digits)")
    parser.add_argument("--train-limit", type=int, help="a random N training images (each class's share)")
    parser.add_argument("--test-limit", type=int, help="a random N test images (each class's share)")
    parser.add_argument("--seeds", type=_ints, default=[0], help="training seeds, e.g. 0,1,2 (default 0)")
    parser.add_argument("--subset-seeds", type=_ints, default=[0], help="subset draws with the limits (default 0)")
    parser.add_argument("--budget", type=int, default=60_000, help="images seen per run")
    parser.add_argument("--recipe", type=Path, action="append", help="recipe files (default: mnist_fast)")
    parser.add_argument("--plain-every", type=int, help="images between the plain loop's evaluations")
    parser.add_argument("--no-plain", action="store_true", help="skip the plain loop")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads")
    parser.add_argument("--curve", action="store_true", help="also print every evaluation (images, seconds, accuracy)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    recipes = args.recipe or [ROOT / "recipes" / "mnist_fast.yaml"]
    probe = load_data(load_recipe(recipes[0], overrides=[*_data_overrides(args), "data.validate_on=none"]).data)
    n_train, n_test = len(probe.train), len(probe.test)
    args.plain_every = args.plain_every or n_train
    load = os.getloadavg()
    name = f"MNIST from {args.data_root}" if args.data_root else "digits (scikit-learn, 28x28)"
    print(f"data: {name}, {n_train:,} training / {n_test:,} test images; budget {args.budget:,} images seen")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load average {load[0]:.2f} {load[1]:.2f}")
    curves = []
    with tempfile.TemporaryDirectory(prefix="zoo-tta-") as tmp:
        for i, path in enumerate(recipes):
            for seed in args.seeds:
                for subset in args.subset_seeds:
                    out = Path(tmp) / f"run{i}-{seed}-{subset}"
                    curves.append(recipe_curve(args, path, n_train, out, seed, subset))
    if not args.no_plain:
        curves.append(plain_curve(args))
    print(f"\n{'run':<64} {'98%: images, time':>17}  {'99%: images, time':>17}  {'best (first at images)':>24}  final")
    for curve in curves:
        top, at = curve.best()
        hits = "  ".join(_cell(curve.first(t)) for t in TARGETS)
        print(f"{curve.name:<64} {hits}  {top:>8.2%} ({at:>9,} imgs)  {curve.points[-1][2]:.2%}")
    if len(args.seeds) * len(args.subset_seeds) > 1:
        _summary(curves, len(recipes), len(args.seeds) * len(args.subset_seeds))
    if args.curve:
        for curve in curves:
            print(f"\n{curve.name}: " + ", ".join(f"{n:,} imgs {s:.1f}s {acc:.2%}" for n, s, acc in curve.points))


if __name__ == "__main__":
    main()
