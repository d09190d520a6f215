"""Every registered model works with the tools PyTorch users reach for, with equal outputs:
``torch.fx.symbolic_trace`` and torchvision's ``create_feature_extractor``, ``torch.export``,
``torch.compile(fullgraph=True)`` (no graph breaks) and ONNX export run by onnxruntime.

Each part is a test parametrized over ``zoo.list_models()``, so a new architecture file is checked by
adding it. Models run at the smallest input they accept, with their own initialization; the biggest
share one xdist group so that two of them never hold memory at once. The dynamo parts cost seconds per model on a 2-core
CI; ``.ci/run`` spreads the suite over both cores.
"""

from __future__ import annotations

import gc
import os
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
from torch import nn

import zoo
from zoo_tests.shapes import test_input_shape

ROOT = Path(__file__).resolve().parent.parent
HUGE = 250_000_000  # parameters (a gigabyte of float32): run one test at a time (xdist group), ONNX weights beside the file


def _params(name: str) -> int:
    published = zoo.get_spec(name).published
    return published.params if published is not None else 0


def _each_model() -> list[object]:
    return [pytest.param(n, marks=pytest.mark.xdist_group("huge")) if _params(n) > HUGE else n for n in zoo.list_models()]


EVERY_MODEL = _each_model()


@pytest.fixture
def released() -> Iterator[None]:
    """Models of up to 644M parameters pass through here one after another: free each promptly."""
    yield
    gc.collect()


def _model_and_input(name: str) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """The model at the smallest input it accepts (eval mode, seeded initialization), an input, its
    output. Always the model's own initialization: with the cheap fill of ``zoo_tests/shapes.py``
    deep nets such as EfficientNetV2 grow their activations to logits of 1e3-1e5, where any two
    correct implementations differ by the output's own size (chaos, not a bug), and building at
    these inputs takes at most a few seconds (regnet_y_128gf: 6 s)."""
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


@pytest.mark.usefixtures("released")
@pytest.mark.parametrize("name", EVERY_MODEL)
def test_fx_trace_gives_equal_outputs(name: str) -> None:
    model, x, ref = _model_and_input(name)
    with torch.no_grad():
        _assert_close(torch.fx.symbolic_trace(model)(x), ref)


@pytest.mark.usefixtures("released")
@pytest.mark.parametrize("name", EVERY_MODEL)
def test_torch_export_and_onnx(name: str, tmp_path: Path) -> None:
    model, x, ref = _model_and_input(name)
    program = torch.export.export(model, (x,))  # what users get: torch.export's default (non-strict) mode
    with torch.no_grad():
        _assert_close(program.module()(x), ref)
    ort = pytest.importorskip("onnxruntime", reason="ONNX part: pip install 'zoo[onnx]'")
    pytest.importorskip("onnxscript", reason="ONNX part: pip install 'zoo[onnx]'")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        onnx_program = torch.onnx.export(program, (x,), dynamo=True, verbose=False)  # the exporter zoo export uses
    assert onnx_program is not None
    path = tmp_path / f"{name}.onnx"
    onnx_program.save(str(path), external_data=_params(name) > HUGE)  # a protobuf holds at most 2 GB
    del program, onnx_program
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for written in tmp_path.iterdir():  # loaded: the 85 models' files would take about 20 GB of disk
        written.unlink()
    (got,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    _assert_close(torch.from_numpy(got), ref)


@pytest.mark.usefixtures("released")
@pytest.mark.parametrize("name", EVERY_MODEL)
def test_compile_has_no_graph_breaks(name: str) -> None:
    import torch._dynamo

    model, x, ref = _model_and_input(name)
    torch._dynamo.reset()  # every zoo model runs Network.forward: start each from an empty cache
    compiled = torch.compile(model, backend="eager", fullgraph=True)  # fullgraph: a break is an error
    with torch.no_grad():
        _assert_close(compiled(x), ref)


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


@pytest.mark.parametrize("name", ["googlenet", "inception_v3"])
def test_auxiliary_heads_follow_the_classifier(name: str) -> None:
    """num_classes=0 drops the aux heads too (features alone, also in training mode);
    reset_classifier(n) gives them n outputs, on the model's device and dtype."""
    x = torch.empty(2, 3, 299, 299, device="meta")
    headless = zoo.build(name, num_classes=0, aux_logits=True, device="meta").train()
    assert headless(x).shape == (2, headless.num_features) and not headless.aux_names
    assert not any("aux" in k.lower() for k in headless.state_dict())
    model = zoo.build(name, num_classes=7, aux_logits=True, device="meta").train()
    model.reset_classifier(3)
    outputs = model(x)
    assert isinstance(outputs, tuple) and len(outputs) == len(model.aux_names) + 1
    assert all(o.shape == (2, 3) for o in outputs) and all(p.is_meta for p in model.parameters())


def test_feature_info_has_timms_accessors_and_stays_a_list() -> None:
    import timm

    ours = zoo.build("resnet18", features_only=True, device="meta").feature_info
    theirs = timm.create_model("resnet18", features_only=True, pretrained=False).feature_info
    assert ours.channels() == theirs.channels() and ours.reduction() == theirs.reduction()
    assert ours.channels(2) == 128 and ours.reduction([0, 4]) == [2, 32] and ours.module_name(1) == "layer1"
    assert ours[1] == {"module": "layer1", "num_chs": 64, "reduction": 4}
    # reductions are the design's strides, whatever the input size (65 pixels: maps of 33, 17, 9, 5, 3)
    for side in (64, 65, 97):
        other = zoo.build("resnet18", features_only=True, input_size=(3, side, side), device="meta").feature_info
        assert other.reduction() == theirs.reduction(), side


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


def test_entry_points_end_with_the_command_code_and_skip_the_last_collection() -> None:
    """``python -m zoo``, the ``zoo`` script and ``scripts/*.py`` end through ``leave``: the
    command's exit code, with every object frozen so that exit does not walk torch's objects."""
    import subprocess
    import sys

    from zoo._cli import console
    from zoo._exit import leave

    assert 'zoo = "zoo._cli:console"' in (ROOT / "pyproject.toml").read_text() and callable(console)
    for script in ("train", "evaluate", "predict", "summarize"):
        assert "leave(" in (ROOT / "scripts" / f"{script}.py").read_text()
    try:
        with pytest.raises(SystemExit) as info:
            leave(3)
        assert info.value.code == 3 and gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
    done = subprocess.run(
        [sys.executable, "-m", "zoo", "summary", "no_such_model"], capture_output=True, text=True, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 1 and "no_such_model" in done.stderr


def test_reset_classifier_refuses_an_aux_head_without_a_dense_layer(arch_dir: Callable[[str, str], Path]) -> None:
    """A user's aux head that ends in a convolution cannot be resized: a SchemaError, and the
    model is left as it was."""
    arch_dir(
        "auxconv.yaml",
        """
        name: auxconv
        description: an aux head without a dense layer
        source: test
        input: [1, 16, 16]
        params: {num_classes: 3}
        published: {params: 0, source: test}
        layers:
          - conv: {filters: 4, kernel: 3}
          - aux: {name: side, layers: [{conv: {filters: 2, kernel: 1}}, global_avgpool, flatten]}
          - global_avgpool
          - flatten
          - dense: "${num_classes}"
        """,
    )
    model = zoo.build("auxconv", max_params=None)
    with pytest.raises(zoo.SchemaError, match="auxiliary head 'side'"):
        model.reset_classifier(5)
    assert model.get_classifier().out_features == 3
