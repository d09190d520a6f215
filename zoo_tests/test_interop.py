"""Every registered model works with the tools PyTorch users reach for, with equal outputs:
``torch.fx.symbolic_trace`` and torchvision's ``create_feature_extractor``, ``torch.export``,
``torch.compile(fullgraph=True)`` (no graph breaks) and ONNX export run by onnxruntime.

fx tracing runs on every model, on the meta device (shapes only; no weights allocated). Numeric
checks and the dynamo-based parts cost seconds per model on a 2-core CI, so they run on one
*representative* per construction signature: the set of module
classes and plan-step kinds a built model contains (a deeper ResNet adds blocks, not kinds of
modules, so what traces in resnet18 traces in resnet152). The representative is the model with the
fewest modules in its group; a new family with a new kind of module becomes a representative by
itself. ``ZOO_INTEROP_ALL=1`` runs every part on every model (the full table in the closing note).
"""

from __future__ import annotations

import functools
import os
import warnings
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import zoo
from zoo_tests.shapes import test_input_shape

ROOT = Path(__file__).resolve().parent.parent


def _step_kinds(step: Any, out: set[str]) -> None:
    if isinstance(step, str):
        return
    out.add(step[0])
    parts = step[1] if step[0] in ("seq", "cat") else [s for s in step[1:3] + step[4:] if s is not None]
    for sub in parts:
        _step_kinds(sub, out)


def _signature(model: nn.Module) -> frozenset[str]:
    kinds: set[str] = set()
    for module in model.modules():
        kinds.add(type(module).__name__)
        plan = getattr(module, "plan", None)
        if plan is not None:
            _step_kinds(plan, kinds)
    return frozenset(kinds)


@functools.cache
def representatives() -> list[str]:
    if os.environ.get("ZOO_INTEROP_ALL"):
        return zoo.list_models()
    groups: dict[frozenset[str], list[tuple[int, str]]] = defaultdict(list)
    for name in zoo.list_models():
        model = zoo.build(name, device="meta")
        groups[_signature(model)].append((sum(1 for _ in model.modules()), name))
    return sorted(min(group)[1] for group in groups.values())


def _model_and_input(name: str) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """The model at the smallest input it accepts (eval mode, seeded init), an input, its output."""
    torch.manual_seed(0)
    shape = test_input_shape(name)
    model = zoo.build(name, input_size=shape).eval()
    x = torch.randn(2, *shape)
    with torch.no_grad():
        ref = model(x)
    return model, x, ref


def _assert_close(got: torch.Tensor, ref: torch.Tensor) -> None:
    # randomly initialized deep nets have large logits: compare relative to the output's scale
    scale = float(ref.abs().max()) or 1.0
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-4 * scale)


@pytest.mark.parametrize("name", zoo.list_models())
def test_fx_traces_every_model(name: str) -> None:
    """symbolic_trace and create_feature_extractor on the meta device: no memory, shapes propagate."""
    from torchvision.models.feature_extraction import create_feature_extractor

    shape = test_input_shape(name)
    model = zoo.build(name, input_size=shape, device="meta").eval()
    x = torch.empty(2, *shape, device="meta")
    want = model(x).shape
    assert torch.fx.symbolic_trace(model)(x).shape == want
    # torchvision's extractor traces train and eval mode; ask for the feature points and the last
    # top-level module (the model's output in eval mode)
    wanted = list(zoo.get_spec(name).features or [])
    last = list(dict(model.named_children()))[-1]
    out = create_feature_extractor(model, return_nodes=[*wanted, last]).eval()(x)
    assert out[last].shape == want
    if wanted:  # the extractor's maps have the channels features_only reports
        info = zoo.build(name, input_size=shape, features_only=True, device="meta").feature_info
        assert [int(out[n].shape[1]) for n in wanted] == [d["num_chs"] for d in info if d["module"] in wanted]


@pytest.mark.parametrize("name", representatives())
def test_fx_trace_gives_equal_outputs(name: str) -> None:
    model, x, ref = _model_and_input(name)
    with torch.no_grad():
        _assert_close(torch.fx.symbolic_trace(model)(x), ref)


@pytest.mark.parametrize("name", representatives())
def test_torch_export_and_onnx(name: str) -> None:
    model, x, ref = _model_and_input(name)
    # strict export traces with dynamo: it fails on any graph break, so it also proves fullgraph
    program = torch.export.export(model, (x,), strict=True)
    with torch.no_grad():
        _assert_close(program.module()(x), ref)
    ort = pytest.importorskip("onnxruntime", reason="ONNX part: pip install 'zoo[onnx]'")
    pytest.importorskip("onnxscript", reason="ONNX part: pip install 'zoo[onnx]'")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        onnx_program = torch.onnx.export(program, (x,), dynamo=True, verbose=False)
    assert onnx_program is not None
    session = ort.InferenceSession(onnx_program.model_proto.SerializeToString(), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    _assert_close(torch.from_numpy(got), ref)


@pytest.mark.parametrize("name", representatives())
def test_compile_has_no_graph_breaks(name: str) -> None:
    import torch._dynamo

    model, x, ref = _model_and_input(name)
    torch._dynamo.reset()
    compiled = torch.compile(model, backend="eager", fullgraph=True)  # fullgraph: a break is an error
    with torch.no_grad():
        _assert_close(compiled(x), ref)


def test_signature_separates_constructions_and_groups_depths() -> None:
    """Depth variants share a representative; 'same' padding or fused activations make a new one."""
    sig = {n: _signature(zoo.build(n, device="meta")) for n in ("resnet18", "resnet152", "inception_v3", "inception_v3_keras")}
    assert sig["resnet18"] == sig["resnet152"]
    assert sig["inception_v3"] != sig["inception_v3_keras"]
    assert "BatchNormNoScale" in sig["inception_v3_keras"] and "res" in sig["resnet18"]


# ---------------------------------------------------------------- timm's conventions


def test_timm_spellings_in_chans_num_classes_0_and_reset_classifier() -> None:
    torch.manual_seed(0)
    model = zoo.build("resnet18", num_classes=0, in_chans=1).eval()
    x = torch.randn(2, 1, 64, 64)
    assert model(x).shape == (2, 512) and model.num_features == 512
    assert isinstance(model.get_classifier(), nn.Identity) and "fc.weight" not in model.state_dict()
    model.reset_classifier(7)
    assert model(x).shape == (2, 7) and model.get_classifier().weight.shape == (7, 512)
    model.reset_classifier(0)
    assert model(x).shape == (2, 512)
    with pytest.raises(zoo.SchemaError, match="disagree"):
        zoo.build("resnet18", in_chans=1, in_channels=3)
    with pytest.raises(zoo.SchemaError):
        model.reset_classifier(-1)
    # VGG's head is the last layer of its classifier block: features before it are 4096 wide
    assert zoo.build("vgg11", num_classes=0, device="meta")(torch.empty(1, 3, 32, 32, device="meta")).shape == (1, 4096)


def test_feature_info_has_timms_accessors_and_stays_a_list() -> None:
    import timm

    ours = zoo.build("resnet18", features_only=True, device="meta").feature_info
    theirs = timm.create_model("resnet18", features_only=True, pretrained=False).feature_info
    assert ours.channels() == theirs.channels() and ours.reduction() == theirs.reduction()
    assert ours.channels(2) == 128 and ours.reduction([0, 4]) == [2, 32] and ours.module_name(1) == "layer1"
    assert ours[1] == {"module": "layer1", "num_chs": 64, "reduction": 4}


# ---------------------------------------------------------------- zoo export


@pytest.mark.parametrize("fmt,suffix", [("onnx", ".onnx"), ("torchscript", ".pt"), ("exported", ".pt2")])
def test_zoo_export_round_trips_a_model(tmp_path: Path, capsys: pytest.CaptureFixture[str], fmt: str, suffix: str) -> None:
    from zoo._cli import main

    if fmt == "onnx":
        pytest.importorskip("onnxruntime", reason="ONNX part: pip install 'zoo[onnx]'")
    out = tmp_path / f"m{suffix}"
    assert main(["export", "mnist_cnn_v1", "--format", fmt, "--output", str(out)]) == 0
    assert out.is_file() and "outputs match" in capsys.readouterr().out


def test_zoo_export_of_a_run_directory_uses_its_best_weights(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from zoo._cli import main
    from zoo.train._checkpoint import save_checkpoint

    run = tmp_path / "run"
    run.mkdir()
    (run / "recipe.yaml").write_text((ROOT / "recipes" / "quickstart_digits.yaml").read_text())
    torch.manual_seed(1)
    trained = zoo.build("mnist_cnn_v1", num_classes=7).eval()
    save_checkpoint(run / "best.pt", {"model": trained.state_dict(), "epoch": 2})
    out = tmp_path / "run.pt2"
    assert main(["export", str(run), "--format", "exported", "--output", str(out)]) == 0
    x = torch.randn(3, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(torch.export.load(str(out)).module()(x), trained(x))
    assert main(["export", str(tmp_path), "--format", "exported", "--output", str(out)]) == 1
    assert "not a run directory" in capsys.readouterr().err
    assert main(["export", "mnist_cnn_v1", "--format", "exported", "--output", str(tmp_path / "x.onnx")]) == 1
    assert ".pt2" in capsys.readouterr().err


def test_version_flag(capsys: pytest.CaptureFixture[str]) -> None:
    from zoo._cli import main

    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0 and capsys.readouterr().out.startswith("zoo ")


def test_core_commands_share_the_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """1 for what the user wrote, 3 for a weights file that cannot be used, 2 for the command line."""
    from zoo._cli import main

    run = tmp_path / "run"
    run.mkdir()
    (run / "recipe.yaml").write_text((ROOT / "recipes" / "quickstart_digits.yaml").read_text())
    (run / "best.pt").write_bytes(b"PK\x03\x04 truncated")
    assert main(["export", str(run), "--format", "exported", "--output", str(tmp_path / "x.pt2")]) == 3
    assert main(["summary", "no_such_model"]) == 1
    with pytest.raises(SystemExit) as info:
        main(["summary", "mnist_cnn_v1", "--no-such-flag"])
    assert info.value.code == 2
    capsys.readouterr()
