"""Command-line entry points: ``train``, ``evaluate`` and ``visualize``.

Each returns an exit status (0 success, 2 a user error, 130 interrupted) and prints, as its last
line, where its results are. ``zoo train|evaluate|visualize`` and ``scripts/*.py`` call these.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from .._errors import ZooError

__all__ = ["evaluate_main", "train_main", "visualize_main"]

PICTURE_CHOICES = ("curves", "confusion", "misclassified", "feature_maps", "kernels")


def _out(text: str) -> None:
    print(text, flush=True)


def _fail(exc: ZooError) -> int:
    for err in exc.all_errors:
        print(f"error: {err}", file=sys.stderr)
    return 2


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
    return p


def train_main(argv: Sequence[str] | None = None, *, prog: str = "zoo train") -> int:
    """``zoo train RECIPE [--set k=v ...] [--resume] [--overwrite]``."""
    args = _train_parser(prog).parse_args(argv)
    from ._overrides import load_recipe
    from ._trainer import train

    overrides = list(args.overrides)
    resume = args.resume
    source = Path(args.recipe)
    if source.is_dir():  # a run directory: its resolved recipe, its own folder, and resuming
        overrides.append(f"output_dir={json.dumps(str(source))}")
        resume = True
    try:
        recipe = load_recipe(source, overrides=overrides)
        result = train(recipe, resume=resume, overwrite=args.overwrite, progress=False if args.no_progress else None)
    except ZooError as exc:
        return _fail(exc)
    except KeyboardInterrupt:
        print("interrupted; continue with --resume", file=sys.stderr)
        return 130
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
        return _fail(exc)
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

        return _fail(
            RecipeError(
                f"--what: unknown picture {unknown[0]!r}",
                hint=did_you_mean(unknown[0], PICTURE_CHOICES) or f"choose from {PICTURE_CHOICES}",
            )
        )
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
        return _fail(exc)
    files = result["files"]
    assert isinstance(files, dict)
    for name, path in sorted(files.items()):
        if path.endswith(".png"):
            _out(f"{name}: {path}")
    _out(f"pictures in {out}")
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
    from ._evaluate import EvalContext, evaluate_split
    from ._reports import write_reports

    assert isinstance(ctx, EvalContext)
    check_writable(out)
    recipe = ctx.recipe
    test = ctx.pre.prepare(ctx.data.test) if ctx.pre.fits_in_memory(ctx.data.test) else ctx.data.test
    prepared = test is not ctx.data.test
    loss, acc, preds = evaluate_split(
        ctx.model, test, ctx.pre, prepared=prepared, batch_size=recipe.effective_eval_batch_size, keep_predictions=True
    )
    assert preds is not None
    history = _read_history(history_dir) if history_dir is not None and "curves" in pictures else []
    section = recipe.reports.model_copy(
        update={k: v for k, v in (("image_index", image), ("max_feature_layers", max_layers)) if v is not None}
    )
    files = write_reports(
        out,
        model=ctx.model,
        data=ctx.data,
        test=test,
        test_prepared=prepared,
        pre=ctx.pre,
        predictions=preds,
        history=history,
        section=section,
        what=pictures,
    )
    wrong = (test.labels.cpu() != preds).nonzero().squeeze(1).tolist()
    result: dict[str, object] = {
        "test_loss": loss,
        "test_accuracy": acc,
        "test_images": len(test),
        "weights": str(ctx.weights),
        "misclassified": wrong,
        "files": files,
    }
    atomic_write_text(out / "eval.json", json.dumps(result, indent=2) + "\n")
    return result


def _read_history(run_dir: Path) -> list[dict[str, object]]:
    path = run_dir / "history.json"
    if not path.is_file():
        return []
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    return data if isinstance(data, list) else []
