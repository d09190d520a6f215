#!/usr/bin/env python
"""Zoo model vs its reference (torchvision/timm), alternating in one process.

    python benchmarks/bench_models.py [--models resnet50 vgg16 ...] [--batch 4] [--size 112] [--rounds 5]

(a) forward+backward time on CPU at a small batch, (b) build time (construction + initialization).
Prints per-model medians and the ratio zoo / reference (1.00 = no overhead; < 1 = the zoo is faster).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

import zoo

DEFAULT_MODELS = ["resnet18", "resnet50", "resnext50_32x4d", "vgg11_bn", "alexnet", "googlenet",
                  "inception_v3", "inception_v4", "inception_resnet_v2", "xception",
                  "mobilenet_v3_large", "efficientnet_b0", "regnet_y_400mf"]
DEFAULT_MODELS += ["convnext_tiny", "shufflenet_v2_x1_0", "densenet121"]  # channel plumbing, concat growth


def reference(name: str) -> Callable[[], nn.Module]:
    ref = zoo.get_spec(name).reference
    assert ref is not None, f"{name} has no reference"
    if ref.torchvision:
        import torchvision

        return lambda: torchvision.models.get_model(ref.torchvision, weights=None, **ref.kwargs)
    import timm

    return lambda: timm.create_model(ref.timm, pretrained=False, **ref.kwargs)


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def step(model: nn.Module, x: torch.Tensor) -> Callable[[], None]:
    def run() -> None:
        model.zero_grad(set_to_none=True)
        out = model(x)
        (out[0] if isinstance(out, tuple) else out).float().sum().backward()

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=[m for m in DEFAULT_MODELS if m in zoo.list_models()])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--size", type=int, default=0, help="input side (default: the model's own)")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch}, {args.rounds} rounds, alternating")
    print(f"{'model':<22} {'fwd+bwd zoo':>12} {'ref':>9} {'ratio':>6}   {'build zoo':>10} {'ref':>9} {'ratio':>6}")
    fb_ratios, build_ratios = [], []
    for name in args.models:
        make_ref = reference(name)
        spec = zoo.get_spec(name)
        side = args.size or spec.input[1]
        build_zoo: list[float] = []
        build_ref: list[float] = []
        for _ in range(args.rounds):  # alternate so drift in machine load hits both equally
            build_zoo.append(timed(lambda name=name: zoo.build(name)))
            build_ref.append(timed(make_ref))
        ours, theirs = zoo.build(name).train(), make_ref().train()
        theirs.load_state_dict(ours.state_dict())
        x = torch.randn(args.batch, 3, side, side)
        run_ours, run_theirs = step(ours, x), step(theirs, x)
        run_ours(), run_theirs()  # warm-up
        fb_zoo: list[float] = []
        fb_ref: list[float] = []
        for _ in range(args.rounds):
            fb_zoo.append(timed(run_ours))
            fb_ref.append(timed(run_theirs))
        fz, fr = statistics.median(fb_zoo), statistics.median(fb_ref)
        bz, br = statistics.median(build_zoo), statistics.median(build_ref)
        fb_ratios.append(fz / fr)
        build_ratios.append(bz / br)
        print(f"{name:<22} {fz * 1000:>10.0f}ms {fr * 1000:>7.0f}ms {fz / fr:>6.2f}   {bz * 1000:>8.0f}ms {br * 1000:>7.0f}ms {bz / br:>6.2f}")
    print(f"geometric mean ratio: fwd+bwd {statistics.geometric_mean(fb_ratios):.2f}, build {statistics.geometric_mean(build_ratios):.2f}")


if __name__ == "__main__":
    main()
