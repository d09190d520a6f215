"""The ``zoo`` command: list, summary, schema, validate, export, train, evaluate, visualize."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from ._errors import ZooError

__all__ = ["main", "summary_main"]


def _list(args: argparse.Namespace) -> int:
    from ._api import build
    from ._registry import get_spec, list_models
    from ._summary import count_params

    names = list_models(args.pattern)
    width = max((len(n) for n in names), default=10)
    print(f"{'model':<{width}}  {'params':>13}  {'published':>13}  source")
    failed = 0
    for name in names:
        spec = get_spec(name)
        convention = spec.published.convention if spec.published else "pytorch"
        count = count_params(build(name, device="meta"), convention=convention)
        published = spec.published.params if spec.published else None
        mark = "" if published in (None, count) else "  <- differs"
        failed += bool(mark)
        shown = f"{published:,}" if published is not None else "-"
        print(f"{name:<{width}}  {count:>13,}  {shown:>13}  {spec.source}{mark}")
    return 1 if failed else 0


def _summary(args: argparse.Namespace) -> int:
    from ._summary import summary

    result = summary(args.name, input_size=args.input, depth=args.depth, convention=args.convention)
    print(result)
    return 0 if result.matches else 1


def _schema(args: argparse.Namespace) -> int:
    from ._schema import architecture_schema

    text = json.dumps(architecture_schema(), indent=2)
    if args.output:
        Path(args.output).write_text(text + "\n")
    else:
        print(text)
    return 0


def _validate(args: argparse.Namespace) -> int:
    from ._check_file import validate_file

    bad = 0
    for path in args.paths:
        errors = validate_file(Path(path))
        for err in errors:
            print(str(err))
        if errors:
            bad += 1
        elif not args.quiet:
            print(f"{path}: ok")
    return 1 if bad else 0


def _export(args: argparse.Namespace) -> int:
    from ._export import export_model

    result = export_model(args.source, format=args.format, output=args.output, input_size=args.input)
    print(f"wrote {result.output} ({result.format}, input Nx{'x'.join(map(str, result.input_shape))}); "
          f"reloaded: outputs match (max difference {result.max_abs_diff:.2g})")
    return 0


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("zoo")
    except PackageNotFoundError:  # run from a source checkout that was never installed
        return "unknown (not installed)"


def _delegate(attr: str) -> Callable[[list[str]], int]:
    def run(argv: list[str]) -> int:
        from . import _train_cli

        func: Callable[[list[str]], int] = getattr(_train_cli, attr)
        return func(argv)

    return run


_DELEGATED = {"train": _delegate("train_main"), "evaluate": _delegate("evaluate_main"), "visualize": _delegate("visualize_main")}


def _add_summary_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", help="registered model name")
    p.add_argument("--input", nargs="+", type=int, metavar="N", help="input shape, e.g. --input 3 224 224")
    p.add_argument("--depth", type=int, default=3, help="torchinfo depth (default 3)")
    p.add_argument("--convention", choices=["pytorch", "keras"], default=None, help="parameter counting convention")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="zoo", description="CNN architectures as YAML files.")
    parser.add_argument("--version", action="version", version=f"zoo {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("list", help="every model with its parameter count and source")
    p.add_argument("pattern", nargs="?", default=None, help="glob, e.g. 'resnet*'")
    p.set_defaults(func=_list)
    p = sub.add_parser("summary", help="torchinfo summary with the published count beside the actual one")
    _add_summary_args(p)
    p.set_defaults(func=_summary)
    p = sub.add_parser("schema", help="JSON Schema of architecture files (for editors)")
    p.add_argument("-o", "--output", help="write to this file instead of stdout")
    p.set_defaults(func=_schema)
    p = sub.add_parser("validate", help="check architecture or recipe files; print every error as file:line:col")
    p.add_argument("paths", nargs="+")
    p.add_argument("-q", "--quiet", action="store_true", help="print errors only")
    p.set_defaults(func=_validate)
    p = sub.add_parser("export", help="a model or a run's best weights to onnx/torchscript/exported, checked by reloading")
    p.add_argument("source", metavar="NAME_OR_RUN", help="registered model name or run directory")
    p.add_argument("--format", required=True, choices=["onnx", "torchscript", "exported"])
    p.add_argument("--output", "-o", required=True, help="file to write")
    p.add_argument("--input", nargs="+", type=int, metavar="N", help="input shape C H W (default: the model's)")
    p.set_defaults(func=_export)
    for name in _DELEGATED:
        sub.add_parser(name, help=f"{name} (see 'zoo {name} --help')", add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv and argv[0] in _DELEGATED:
            return _DELEGATED[argv[0]](argv[1:])
        args = _parser().parse_args(argv)
        return int(args.func(args))
    except ZooError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def summary_main(argv: Sequence[str] | None = None) -> int:
    """``scripts/summarize.py``: the same as ``zoo summary``."""
    return main(["summary", *(sys.argv[1:] if argv is None else argv)])
