"""Image-folder throughput (not a timed test): decoded, resized and augmented images per second.

Writes a folder of JPEG/PNG photos-like images (3 classes), then reads the training split through
the trainer's own path (``FolderSplit.batches``: DataLoader, transforms.v2, per-image seeds,
normalization) with 0 and with N worker processes, alternating, and prints the medians and the ratio.

    python benchmarks/bench_imagefolder.py [--images 384] [--side 160] [--resize 128] [--workers 2] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from zoo.train._datasets import load_data  # noqa: E402
from zoo.train._preprocess import Preprocess, batch_indices  # noqa: E402
from zoo.train._recipe import DataSection  # noqa: E402
from zoo.train._split import Feed  # noqa: E402


def write_images(root: Path, *, count: int, side: int) -> None:
    from PIL import Image

    gen = torch.Generator().manual_seed(0)
    for i in range(count):
        folder = root / f"class{i % 3}"
        folder.mkdir(parents=True, exist_ok=True)
        pixels = torch.randint(0, 256, (side, side, 3), generator=gen, dtype=torch.uint8)
        pixels[:, : side // 3 * (1 + i % 3)] //= 2  # something per class
        Image.fromarray(pixels.numpy()).save(folder / f"{i}{'.jpg' if i % 2 else '.png'}")


def images_per_second(section: DataSection, *, batch: int) -> float:
    data = load_data(section)
    pre = Preprocess(section, data_channels=3, mean=data.mean, std=data.std, device=torch.device("cpu"))
    index = batch_indices(len(data.train), batch, generator=torch.Generator().manual_seed(1))
    start = time.perf_counter()
    seen = sum(int(y.shape[0]) for _x, y in data.train.batches(index, pre, Feed(sample_seed=123)))
    return seen / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=384)
    parser.add_argument("--side", type=int, default=160, help="side of the written images")
    parser.add_argument("--resize", type=int, default=128, help="data.resize")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        write_images(Path(tmp), count=args.images, side=args.side)
        base = {
            "dataset": "imagefolder",
            "root": tmp,
            "resize": args.resize,
            "test_split": 0.1,
            "validate_on": "none",
            "augment": {"hflip": True, "rotation": 10, "scale": 0.1},
        }
        rates: dict[int, list[float]] = {0: [], args.workers: []}
        for r in range(args.rounds):
            for workers in rates:
                section = DataSection.model_validate({**base, "workers": workers})
                rates[workers].append(images_per_second(section, batch=args.batch))
            print(f"round {r + 1}: " + "  ".join(f"{w} workers {v[-1]:7.1f} img/s" for w, v in rates.items()))
    zero, many = (statistics.median(v) for v in rates.values())
    print(
        f"{args.images} images {args.side}px -> {args.resize}px, augmented, batch {args.batch}, "
        f"torch threads {torch.get_num_threads()}: 0 workers {zero:.1f} img/s, {args.workers} workers "
        f"{many:.1f} img/s, ratio {many / zero:.2f}"
    )


if __name__ == "__main__":
    main()
