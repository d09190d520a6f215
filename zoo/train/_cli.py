"""Command-line entry points: ``train``, ``evaluate``, ``visualize`` and ``predict``.

Each returns an exit status, one per kind of failure: 0 success; 1 a user error (a recipe, an
architecture file, an option's value, the data); 2 a usage error (the command line itself);
3 a checkpoint or weights file that cannot be used (corrupt, missing, for another model);
130 interrupted. The last line printed says where the results are. ``zoo train|evaluate|
visualize|predict`` and ``scripts/*.py`` call these.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from .._errors import ZooError
from .._exit import EXIT_FILES, EXIT_INTERRUPTED, EXIT_USAGE, EXIT_USER, fail

__all__ = ["EXIT_FILES", "EXIT_INTERRUPTED", "EXIT_USAGE", "EXIT_USER", "evaluate_main", "predict_main", "train_main", "visualize_main"]

PICTURE_CHOICES = ("curves", "confusion", "misclassified", "feature_maps", "kernels")


def _out(text: str) -> None:
    print(text, flush=True)


def _is_main_process() -> bool:
    return os.environ.get("RANK", "0") == "0"


# --------------------------------------------------------------------------- train


def _train_parser(prog: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog,
        description="Train a model from a YAML recipe; the last line printed is the run directory.",
        epilog="example: %(prog)s recipes/mnist_cnn_v1.yaml --set data.root=/data --set epochs=5 "
        "--set output_dir=runs/try1",
    )
    p.add_argument("recipe", help="recipe YAML file, or a run directory to resume (its recipe.yaml)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a recipe key (dotted path, YAML value); repeatable",
    )
    p.add_argument("--resume", action="store_true", help="continue the run from its last checkpoint")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run in output_dir")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    flags = p.add_argument_group("recipe settings (the same as --set KEY=VALUE)")
    for flag, key, kind in _TRAIN_FLAGS:
        flags.add_argument(flag, type=kind, metavar=key.rpartition(".")[2].upper(), help=f"--set {key}=...")
    return p


# flag -> recipe key it sets; applied after --set, so a flag wins
_TRAIN_FLAGS: tuple[tuple[str, str, type], ...] = (
    ("--epochs", "epochs", int),
    ("--batch-size", "batch_size", int),
    ("--lr", "optimizer.lr", float),
    ("--device", "device", str),
    ("--precision", "precision", str),
    ("--seed", "seed", int),
    ("--output", "output_dir", str),
)


def _flag_overrides(args: argparse.Namespace) -> list[str]:
    out = []
    for flag, key, _kind in _TRAIN_FLAGS:
        value = getattr(args, flag[2:].replace("-", "_"))
        if value is not None:
            out.append(f"{key}={json.dumps(value)}")  # JSON is YAML: strings stay strings
    return out


def train_main(argv: Sequence[str] | None = None, *, prog: str = "zoo train") -> int:
    """``zoo train RECIPE [--set k=v ...] [--resume] [--overwrite]``."""
    args = _train_parser(prog).parse_args(argv)
    overrides = [*args.overrides, *_flag_overrides(args)]
    resume = args.resume
    source = Path(args.recipe)
    if source.is_dir():  # a run directory: its resolved recipe, its own folder, and resuming
        overrides.append(f"output_dir={json.dumps(str(source))}")
        resume = True
    try:
        from ._overrides import load_recipe  # inside the guard: Ctrl-C while torch imports is an interrupt too
        from ._trainer import train

        recipe = load_recipe(source, overrides=overrides)
        result = train(recipe, resume=resume, overwrite=args.overwrite, progress=False if args.no_progress else None)
    except ZooError as exc:
        return fail(exc)
    except KeyboardInterrupt as exc:
        return _interrupted(exc)
    if not _is_main_process():
        return 0
    m = result.metrics
    _out(
        f"test accuracy {m['test_accuracy']:.2%}  test loss {m['test_loss']:.4f}  ({m['test_images']} images, "
        f"{m['epochs_completed']} epochs, {m['train_seconds']:.1f}s training)"
    )
    if result.pictures:
        pngs = [Path(v).name for k, v in result.pictures.items() if v.endswith(".png")]
        if pngs:
            _out(f"reports and pictures ({', '.join(pngs)}) are in {result.run_dir}")
        else:
            _out(f"reports are in {result.run_dir}; draw the pictures with: zoo visualize {result.run_dir}")
    _out(f"run directory: {result.run_dir}")
    return 0


def _interrupted(exc: KeyboardInterrupt) -> int:
    """Only point at --resume when there is a checkpoint to resume from."""
    run_dir, resumable = getattr(exc, "run_dir", None), getattr(exc, "resumable", False)
    if resumable:
        print(f"interrupted; continue with: zoo train {run_dir} --resume", file=sys.stderr)
    else:
        print("interrupted before the first checkpoint; there is nothing to resume: start the run again", file=sys.stderr)
    return EXIT_INTERRUPTED


# --------------------------------------------------------------------------- evaluate / visualize


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", help="a run directory, or a recipe YAML file together with --weights")
    p.add_argument("--weights", type=Path, help="weights file (.pt checkpoint, .pth state dict, .safetensors)")
    p.add_argument(
        "--checkpoint",
        choices=("final", "best", "last"),
        default="final",
        help="which weights of the run directory (default: final weights.pth)",
    )
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--device", help="device to evaluate on (default: the recipe's)")
    p.add_argument("--out", type=Path, help="folder for the reports (default: RUN_DIR/eval)")


def _context(args: argparse.Namespace) -> tuple[object, Path]:
    from ._evaluate import load_for_evaluation
    from ._overrides import load_recipe
    from ._rundir import find_weights

    source = Path(args.source)
    recipe = load_recipe(source, overrides=args.overrides)
    if args.weights is not None:
        weights = args.weights
    elif source.is_dir():
        weights = find_weights(source, args.checkpoint)
    else:
        from .._errors import RecipeError

        raise RecipeError(f"{source} is a recipe file: give the weights to evaluate with --weights PATH")
    out = args.out or ((source / "eval") if source.is_dir() else Path("runs") / f"eval-{recipe.name}")
    return load_for_evaluation(recipe, weights=weights, device=args.device), out


def evaluate_main(argv: Sequence[str] | None = None, *, prog: str = "zoo evaluate") -> int:
    """``zoo evaluate RUN_DIR``: test loss and accuracy, classification report, confusion matrix."""
    p = argparse.ArgumentParser(prog=prog, description="Evaluate trained weights on the test set.")
    _common(p)
    p.add_argument("--no-pictures", action="store_true", help="text reports only")
    args = p.parse_args(argv)
    try:
        ctx, out = _context(args)
        result = _evaluate(ctx, out, pictures=() if args.no_pictures else ("confusion", "misclassified"))
    except ZooError as exc:
        return fail(exc)
    _out(
        f"test loss {result['test_loss']:.4f}  test accuracy {result['test_accuracy']:.2%}  "
        f"({result['test_images']} images, weights {result['weights']})"
    )
    _out("")
    _out((out / "classification_report.txt").read_text().rstrip())
    _out("")
    _out((out / "confusion_matrix.txt").read_text().rstrip())
    wrong = result["misclassified"]
    assert isinstance(wrong, list)
    shown = ", ".join(str(i) for i in wrong[:30]) + (" ..." if len(wrong) > 30 else "")
    _out(f"\nmisclassified: {len(wrong)} of {result['test_images']}: [{shown}]")
    _out(f"reports in {out}")
    return 0


def visualize_main(argv: Sequence[str] | None = None, *, prog: str = "zoo visualize") -> int:
    """``zoo visualize RUN_DIR``: curves, confusion heat map, misclassified grid, feature maps, kernels."""
    p = argparse.ArgumentParser(prog=prog, description="Draw a run's pictures as PNG files.")
    _common(p)
    p.add_argument(
        "--what", default=",".join(PICTURE_CHOICES), help=f"comma-separated subset of: {', '.join(PICTURE_CHOICES)}"
    )
    p.add_argument("--image", type=int, default=None, help="test image index for the feature maps")
    p.add_argument("--max-layers", type=int, default=None, help="convolutions drawn in the feature maps")
    args = p.parse_args(argv)
    what = [w.strip() for w in args.what.split(",") if w.strip()]
    unknown = [w for w in what if w not in PICTURE_CHOICES]
    if unknown:
        from .._errors import RecipeError, did_you_mean

        fail(
            RecipeError(
                f"--what: unknown picture {unknown[0]!r}",
                hint=did_you_mean(unknown[0], PICTURE_CHOICES) or f"choose from {PICTURE_CHOICES}",
            )
        )
        return EXIT_USAGE
    try:
        ctx, out = _context(args)
        result = _evaluate(
            ctx,
            out,
            pictures=tuple(what),
            image=args.image,
            max_layers=args.max_layers,
            history_dir=Path(args.source) if Path(args.source).is_dir() else None,
        )
    except ZooError as exc:
        return fail(exc)
    files = result["files"]
    assert isinstance(files, dict)
    for name, path in sorted(files.items()):
        if path.endswith(".png"):
            _out(f"{name}: {path}")
    _out(f"pictures in {out}")
    return 0


def predict_main(argv: Sequence[str] | None = None, *, prog: str = "zoo predict") -> int:
    """``zoo predict RUN_DIR_OR_WEIGHTS IMAGE... [--top-k K]``: classes with probabilities per image."""
    p = argparse.ArgumentParser(
        prog=prog,
        description="Classify image files with a trained run (its class names and preprocessing).",
        epilog="example: %(prog)s runs/flowers photo1.jpg photo2.png --top-k 3",
    )
    p.add_argument("source", help="a run directory, or its weights.safetensors")
    p.add_argument("images", nargs="+", help="image files")
    p.add_argument("--top-k", type=int, default=5, help="classes shown per image (default 5)")
    p.add_argument("--device", default="auto", help="device (default: auto)")
    p.add_argument("--json", action="store_true", help="print one JSON list instead of lines")
    args = p.parse_args(argv)
    if args.top_k < 1:
        print("error: --top-k must be at least 1", file=sys.stderr)
        return EXIT_USAGE
    from ._predict import load_predictor

    try:
        predictor = load_predictor(Path(args.source), device=args.device)
        results = predictor(args.images, top_k=args.top_k)
    except ZooError as exc:
        return fail(exc)
    if args.json:
        rows = [{"image": i, "top": [{"class": c, "probability": v} for c, v in r]} for i, r in zip(args.images, results, strict=True)]
        _out(json.dumps(rows, indent=2))
        return 0
    for image, top in zip(args.images, results, strict=True):
        _out(f"{image}: " + ", ".join(f"{name} {prob:.2%}" for name, prob in top))
    return 0


def _evaluate(
    ctx: object,
    out: Path,
    *,
    pictures: Sequence[str],
    image: int | None = None,
    max_layers: int | None = None,
    history_dir: Path | None = None,
) -> dict[str, object]:
    from ._checkpoint import atomic_write_text, check_writable
    from ._evaluate import EvalContext, test_and_report

    assert isinstance(ctx, EvalContext)
    check_writable(out, option="--out")
    if image is not None and not 0 <= image < len(ctx.data.test):
        from .._errors import RecipeError

        raise RecipeError(f"--image {image} is not a test image index: the test set has images 0..{len(ctx.data.test) - 1}")
    recipe = ctx.recipe
    history = _read_history(history_dir) if history_dir is not None and "curves" in pictures else []
    section = recipe.reports.model_copy(
        update={k: v for k, v in (("image_index", image), ("max_feature_layers", max_layers)) if v is not None}
    )
    test = test_and_report(
        ctx.model,
        ctx.data,
        ctx.pre,
        batch_size=recipe.effective_eval_batch_size,
        reports_to=out,
        history=history,
        section=section,
        what=pictures,
    )
    files, preds = test.files, test.predictions
    wrong = (test.split.labels.cpu() != preds).nonzero().squeeze(1).tolist()
    result: dict[str, object] = {
        "test_loss": test.loss,
        "test_accuracy": test.accuracy,
        "test_images": len(test.split),
        "weights": str(ctx.weights),
        "misclassified": wrong,
        "files": files,
    }
    atomic_write_text(out / "eval.json", json.dumps(result, indent=2) + "\n")
    return result


def _read_history(run_dir: Path) -> list[dict[str, object]]:
    """history.json as the trainer writes it: a list of rows with an integer epoch and numbers."""
    from .._errors import CheckpointError

    path = run_dir / "history.json"
    if not path.is_file():
        return []
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError) as exc:
        raise CheckpointError(f"{path} cannot be read as JSON: {exc}", hint="the curves need the run's history") from None
    if not isinstance(data, list) or not all(_history_row(row) for row in data):
        raise CheckpointError(
            f"{path} is not a training history (a list of rows with 'epoch', 'train_loss' and numbers)",
            hint="it was edited or written by another program; the curves need the run's own history",
        )
    return data


def _history_row(row: object) -> bool:
    if not isinstance(row, dict) or not isinstance(row.get("epoch"), int) or isinstance(row.get("epoch"), bool):
        return False
    values = [row.get(k) for k in ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr")]
    return isinstance(row.get("train_loss"), (int, float)) and all(
        v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)) for v in values
    )
