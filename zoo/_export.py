"""``zoo export``: a registered model or a run's best weights into ONNX, TorchScript or a
``torch.export`` program, checked by loading the written file and comparing its outputs."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ._errors import SchemaError, WeightsError

__all__ = ["FORMATS", "ExportResult", "export_model"]

FORMATS = ("onnx", "torchscript", "exported")


@dataclass(frozen=True)
class ExportResult:
    output: Path
    format: str
    input_shape: list[int]
    max_abs_diff: float  # between the written file's outputs and the model's, on a random input


def _from_run(run_dir: Path) -> tuple[nn.Module, list[int]]:
    """The run's recipe model, sized from its weights (classes, channels), with its best weights."""
    import zoo

    from ._weights import read_weights
    from .train._overrides import load_recipe

    recipe = load_recipe(run_dir / "recipe.yaml")
    state = read_weights(run_dir)
    params = {k: v for k, v in recipe.model.params.items() if k != "num_classes"}
    probe = zoo.build(recipe.model.name, device="meta", **params)
    first = next(k for k, v in probe.state_dict().items() if v.dim() == 4)
    head = getattr(probe, "classifier_name", None)
    kwargs: dict[str, Any] = {"in_channels": int(state[first].shape[1])} if first in state else {}
    if head is not None and f"{head}.weight" in state:
        kwargs["num_classes"] = int(state[f"{head}.weight"].shape[0])
    model = zoo.build(recipe.model.name, pretrained=run_dir, **kwargs, **params)
    from ._weights import LoadReport

    report = model.load_report
    assert isinstance(report, LoadReport)
    if report.reinitialized or report.adapted:
        raise WeightsError(f"the weights in {run_dir} do not fit {recipe.model.name!r}: {report}")
    shape = list(zoo.get_spec(recipe.model.name).input)
    if "in_channels" in kwargs:
        shape[0] = kwargs["in_channels"]
    return model, shape


def _load_model(source: str) -> tuple[nn.Module, list[int]]:
    import zoo

    path = Path(source)
    if path.is_dir():
        if not (path / "recipe.yaml").is_file():
            raise SchemaError(f"{path} is a folder without recipe.yaml: not a run directory")
        return _from_run(path)
    return zoo.build(source), list(zoo.get_spec(source).input)


def export_model(source: str, *, format: str, output: str | Path, input_size: list[int] | None = None) -> ExportResult:
    """Export ``source`` (a model name or a run directory) and verify the written file."""
    if format not in FORMATS:
        raise SchemaError(f"unknown export format {format!r}; choose one of {', '.join(FORMATS)}")
    model, shape = _load_model(source)
    model.eval()
    shape = list(input_size) if input_size is not None else shape
    torch.manual_seed(0)
    x = torch.randn(2, *shape)  # batch 2: the batch dimension stays dynamic (1 would be specialized)
    out = Path(output)
    if format == "exported" and out.suffix != ".pt2":
        raise SchemaError(f"a torch.export program is saved as a .pt2 archive; name the output {out.with_suffix('.pt2').name}")
    if not out.parent.is_dir():
        raise SchemaError(f"cannot write {out}: folder {out.parent} does not exist")
    with torch.no_grad():
        want = model(x)
        got = _WRITERS[format](model, x, out)
    diff = float((got - want).abs().max())
    scale = float(want.abs().max()) or 1.0
    if diff > 1e-4 * max(scale, 1.0):
        raise SchemaError(f"the exported {format} file {out} gives different outputs (max difference {diff:.3g})")
    return ExportResult(out, format, shape, diff)


def _batch() -> tuple[dict[int, Any]]:
    """Any batch size for the exported graph; channels and image size stay as exported."""
    return ({0: torch.export.Dim("batch", min=1, max=65536)},)


def _onnx(model: nn.Module, x: torch.Tensor, out: Path) -> torch.Tensor:
    try:
        import onnxruntime
    except ImportError:
        raise SchemaError("ONNX export needs onnx, onnxscript and onnxruntime: pip install 'zoo[onnx]'") from None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(model, (x,), dynamo=True, verbose=False, dynamic_shapes=_batch())
    assert program is not None
    program.save(str(out))
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    (result,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    return torch.from_numpy(result)


def _torchscript(model: nn.Module, x: torch.Tensor, out: Path) -> torch.Tensor:
    # tracing, not scripting: scripting is deprecated upstream and the graph has no data-dependent flow
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # jit's deprecation notice: the file is what was asked for
        traced = torch.jit.trace(model, (x,))  # type: ignore[no-untyped-call]
        traced.save(str(out))
        loaded = torch.jit.load(str(out))  # type: ignore[no-untyped-call]
    result: torch.Tensor = loaded(x)
    return result


def _exported(model: nn.Module, x: torch.Tensor, out: Path) -> torch.Tensor:
    program = torch.export.export(model, (x,), dynamic_shapes=_batch())
    torch.export.save(program, str(out))
    result: torch.Tensor = torch.export.load(str(out)).module()(x)
    return result


_WRITERS = {"onnx": _onnx, "torchscript": _torchscript, "exported": _exported}
