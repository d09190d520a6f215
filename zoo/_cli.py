"""The ``zoo`` command: list, summary, schema, layers, draw, validate, export, train, evaluate, visualize, predict."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

from ._errors import RegistryError, ZooError
from ._exit import fail, leave

__all__ = ["main", "summary_main"]


def _list(args: argparse.Namespace) -> int:
    """Counts from the expansion (cached), never by building; broken files are reported, not fatal."""
    from ._catalog import catalog

    result = catalog(args.pattern)
    rows = [r for r in result.rows if r.pretrained] if args.pretrained else result.rows
    if args.json:
        print(json.dumps([r.as_json() for r in rows], indent=2))
    else:
        width = max((len(r.name) for r in rows), default=10)
        print(f"{'model':<{width}}  {'params':>13}  {'published':>13}  source")
        for r in rows:
            shown = f"{r.published:,}" if r.published is not None else "-"
            mark = "" if r.matches else "  <- differs"
            print(f"{r.name:<{width}}  {r.params:>13,}  {shown:>13}  {r.source}{mark}")
    for problem in result.problems:
        print(f"error: {problem}", file=sys.stderr)
    return 1 if result.problems or not all(r.matches for r in rows) else 0


def _summary(args: argparse.Namespace) -> int:
    from ._summary import summary

    result = summary(args.name, input_size=args.input, depth=args.depth, convention=args.convention)
    print(result)
    return 0 if result.matches else 1


def _schema(args: argparse.Namespace) -> int:
    from ._schema import architecture_schema

    text = json.dumps(architecture_schema(), indent=2)
    if args.output:
        _write(Path(args.output), text + "\n")
    else:
        print(text)
    return 0


def _write(path: Path, text: str) -> None:
    if not path.parent.is_dir():
        raise RegistryError(f"cannot write {str(path)!r}: folder {str(path.parent)!r} does not exist")
    path.write_text(text)


def _layers(args: argparse.Namespace) -> int:
    from ._reference import format_layers, list_layers

    layers = [info for info in list_layers() if args.name is None or info.name == args.name]
    if not layers:
        from ._errors import UnknownNameError, layer_hint

        known = [info.name for info in list_layers()]
        raise UnknownNameError(f"no layer {args.name!r}", hint=layer_hint(args.name, known))
    print(format_layers(layers))
    return 0


def _draw(args: argparse.Namespace) -> int:
    from ._draw import draw

    out = Path(args.output)
    if not out.parent.is_dir():
        raise RegistryError(f"cannot write {str(out)!r}: folder {str(out.parent)!r} does not exist")
    draw(args.name, out, depth=args.depth)
    print(f"wrote {out}")
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


class _VersionAction(argparse.Action):
    """``--version``, looked up only when asked for: ``importlib.metadata`` scans the installed
    distributions (about 20 ms, which every other command, ``zoo list`` first, would pay)."""

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS, **kwargs: object) -> None:
        super().__init__(option_strings, dest=dest, default=argparse.SUPPRESS, nargs=0,
                         help="show program's version number and exit")

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: object,
                 option_string: str | None = None) -> None:
        print(f"zoo {_version()}")
        parser.exit()


def _delegate(attr: str) -> Callable[[list[str]], int]:
    def run(argv: list[str]) -> int:
        from .train import _cli as _train_cli

        func: Callable[[list[str]], int] = getattr(_train_cli, attr)
        return func(argv)

    return run


_DELEGATED = {
    "train": _delegate("train_main"),
    "evaluate": _delegate("evaluate_main"),
    "visualize": _delegate("visualize_main"),
    "predict": _delegate("predict_main"),
}


def _add_summary_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", help="registered model name")
    # --input-size as in Python's zoo.build(input_size=...); --input is the older spelling
    p.add_argument("--input-size", "--input", dest="input", nargs="+", type=int, metavar="N",
                   help="input shape C H W, e.g. --input-size 3 224 224")
    p.add_argument("--depth", type=int, default=3, help="torchinfo depth (default 3)")
    p.add_argument("--convention", choices=["pytorch", "keras"], default=None, help="parameter counting convention")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="zoo", description="CNN architectures as YAML files.")
    parser.add_argument("--version", action=_VersionAction)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("list", help="every model with its parameter count and source")
    p.add_argument("pattern", nargs="?", default=None, help="glob, e.g. 'resnet*'")
    p.add_argument("--json", action="store_true", help="one JSON object per model (name, params, published, ...)")
    p.add_argument("--pretrained", action="store_true", help="only models with published weights")
    p.set_defaults(func=_list)
    p = sub.add_parser("summary", help="torchinfo summary with the published count beside the actual one")
    _add_summary_args(p)
    p.set_defaults(func=_summary)
    p = sub.add_parser("schema", help="JSON Schema of architecture files (for editors)")
    p.add_argument("-o", "--output", help="write to this file instead of stdout")
    p.set_defaults(func=_schema)
    p = sub.add_parser("layers", help="the language reference: every primitive and combinator with its arguments")
    p.add_argument("name", nargs="?", default=None, help="one layer only")
    p.set_defaults(func=_layers)
    p = sub.add_parser("draw", help="the network as a diagram (SVG or PNG) with each node's output shape")
    p.add_argument("name", help="registered model name")
    p.add_argument("-o", "--output", required=True, help="FILE.svg or FILE.png")
    p.add_argument("--depth", type=int, default=1, help="levels of blocks to open (default 1: the top-level layers)")
    p.set_defaults(func=_draw)
    p = sub.add_parser("validate", help="check architecture or recipe files; print every error as file:line:col")
    p.add_argument("paths", nargs="+")
    p.add_argument("-q", "--quiet", action="store_true", help="print errors only")
    p.set_defaults(func=_validate)
    p = sub.add_parser("export", help="a model or a run's best weights to onnx/torchscript/exported, checked by reloading")
    p.add_argument("source", metavar="NAME_OR_RUN", help="registered model name or run directory")
    p.add_argument("--format", required=True, choices=["onnx", "torchscript", "exported"])
    p.add_argument("--output", "-o", required=True, help="file to write")
    p.add_argument("--input-size", "--input", dest="input", nargs="+", type=int, metavar="N",
                   help="input shape C H W (default: the model's)")
    p.set_defaults(func=_export)
    for name in _DELEGATED:
        sub.add_parser(name, help=f"{name} (see 'zoo {name} --help')", add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv and argv[0] in _DELEGATED:
            code = _DELEGATED[argv[0]](argv[1:])
        else:
            args = _parser().parse_args(argv)
            code = int(args.func(args))
        sys.stdout.flush()  # a closed pipe shows here, inside the handler, not at interpreter exit
        return code
    except ZooError as exc:
        return fail(exc)
    except BrokenPipeError:
        # the reader went away (``zoo schema | head``): stop quietly, as cat does; point stdout at
        # devnull so the interpreter's final flush does not raise again
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, what a shell reports for a tool stopped by a closed pipe


def console() -> NoReturn:
    """The ``zoo`` script's entry point: :func:`main`, then the process ends."""
    leave(main())


def summary_main(argv: Sequence[str] | None = None) -> int:
    """``scripts/summarize.py``: the same as ``zoo summary``."""
    return main(["summary", *(sys.argv[1:] if argv is None else argv)])
