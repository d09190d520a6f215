"""Pretrained weights through the reference libraries' caches, with files the tests write."""

from __future__ import annotations

import functools
import os
import pickle
import tempfile
from pathlib import Path

import pytest
import torch
import torchvision
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import zoo


@pytest.fixture
def torch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty torch hub cache, and no network: a download attempt fails the way offline does."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    def offline(url: str, *args: object, **kwargs: object) -> None:
        raise OSError(f"network unreachable: {url}")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    return tmp_path / "torch" / "hub" / "checkpoints"


@pytest.fixture(scope="module")
def resnet18_reference() -> torch.nn.Module:
    torch.manual_seed(0)
    return torchvision.models.resnet18().eval()


def _published_file(name: str) -> str:
    return os.path.basename(torchvision.models.get_model_weights(name).DEFAULT.url)


def test_published_file_from_the_torch_hub_cache(torch_home: Path, resnet18_reference: torch.nn.Module) -> None:
    torch_home.mkdir(parents=True)
    assert _published_file("resnet18") == "resnet18-f37072fd.pth"
    torch.save(resnet18_reference.state_dict(), torch_home / "resnet18-f37072fd.pth")
    model = zoo.build("resnet18", pretrained=True).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(x), resnet18_reference(x))
    report = model.load_report
    assert len(report.loaded) == len(resnet18_reference.state_dict()) and not report.reinitialized
    assert str(report.source).endswith("resnet18-f37072fd.pth")
    assert zoo.build("resnet18", pretrained="torchvision").load_report.loaded == report.loaded


def test_missing_weights_say_which_file_goes_where(torch_home: Path) -> None:
    with pytest.raises(zoo.WeightsError) as info:
        zoo.build("resnet18", pretrained=True)
    assert str(torch_home / "resnet18-f37072fd.pth") in str(info.value)
    assert "https://download.pytorch.org/models/resnet18-f37072fd.pth" in str(info.value)


def test_new_head_and_one_channel_input(torch_home: Path, resnet18_reference: torch.nn.Module) -> None:
    torch_home.mkdir(parents=True)
    state = resnet18_reference.state_dict()
    torch.save(state, torch_home / "resnet18-f37072fd.pth")
    model = zoo.build("resnet18", pretrained=True, num_classes=10, in_channels=1)
    report = model.load_report
    assert sorted(report.reinitialized) == ["fc.bias", "fc.weight"]
    assert report.adapted == ["conv1.weight (3 -> 1 input channels)"]
    assert torch.allclose(model.conv1.weight, state["conv1.weight"].sum(1, keepdim=True))
    assert torch.equal(model.layer4[1].conv2.weight, state["layer4.1.conv2.weight"])
    assert model.fc.weight.shape == (10, 512) and not model.fc.weight.is_meta
    assert "re-initialized: fc.weight" in str(report) or "re-initialized: fc.bias" in str(report)
    assert model(torch.randn(2, 1, 64, 64)).shape == (2, 10)


def test_local_pth_and_safetensors(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    torch.manual_seed(1)
    source = zoo.build("mnist_cnn_v1")
    pth, st = tmp_path / "w.pth", tmp_path / "w.safetensors"
    torch.save({"model": source.state_dict(), "epoch": 3}, pth)  # a training checkpoint wraps the weights
    save_file(source.state_dict(), str(st))
    x = torch.randn(2, 1, 28, 28)
    for path in (pth, st):
        model = zoo.build("mnist_cnn_v1", pretrained=path)
        assert torch.equal(model(x), source(x))


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


def test_pickle_that_runs_code_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        pickle.dump({"conv.weight": _Evil(marker)}, f)
    with pytest.raises(zoo.WeightsError, match="refused"):
        zoo.build("mnist_cnn_v1", pretrained=path)
    assert not marker.exists()


def test_truncated_and_foreign_files(tmp_path: Path) -> None:
    path = tmp_path / "w.pth"
    torch.save(zoo.build("mnist_cnn_v1").state_dict(), path)
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(zoo.WeightsError, match="truncated or corrupted"):
        zoo.build("mnist_cnn_v1", pretrained=path)
    torch.save(zoo.build("mnist_ann").state_dict(), path)
    with pytest.raises(zoo.WeightsError, match="lack"):
        zoo.build("mnist_cnn_v1", pretrained=path)
    with pytest.raises(zoo.WeightsError, match="no reference library"):
        zoo.build("mnist_cnn_v1", pretrained=True)


def test_features_only_backbone_with_pretrained_weights(torch_home: Path, resnet18_reference: torch.nn.Module) -> None:
    torch_home.mkdir(parents=True)
    torch.save(resnet18_reference.state_dict(), torch_home / "resnet18-f37072fd.pth")
    backbone = zoo.build("resnet18", pretrained=True, features_only=True, out_indices=[2, 4]).eval()
    assert [(d["module"], d["num_chs"], d["reduction"]) for d in backbone.feature_info] == [("layer2", 128, 8), ("layer4", 512, 32)]
    x = torch.randn(1, 3, 64, 64)
    c3, c5 = backbone(x)
    ref = resnet18_reference
    with torch.no_grad():
        y = ref.layer2(ref.layer1(ref.maxpool(ref.relu(ref.bn1(ref.conv1(x))))))
        assert torch.equal(c3, y) and c5.shape == (1, 512, 2, 2)
    assert not any(k.startswith("fc.") for k in backbone.state_dict())


def test_timm_weights_from_the_hugging_face_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """timm's inception_v4 weights live on the Hugging Face hub: build the cache layout offline."""
    import timm
    from huggingface_hub import constants
    from safetensors.torch import save_file

    cache = tmp_path / "hf"
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    repo = timm.models.get_pretrained_cfg("inception_v4").hf_hub_id
    assert repo == "timm/inception_v4.tf_in1k"
    with pytest.raises(zoo.WeightsError, match="models--timm--inception_v4.tf_in1k"):
        zoo.build("inception_v4", pretrained=True, device="meta")
    torch.manual_seed(0)
    reference = timm.create_model("inception_v4", pretrained=False).eval()
    revision = "0123456789abcdef0123456789abcdef01234567"
    folder = cache / "models--timm--inception_v4.tf_in1k"
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text(revision)
    (folder / "snapshots" / revision).mkdir(parents=True)
    save_file(reference.state_dict(), str(folder / "snapshots" / revision / "model.safetensors"))
    model = zoo.build("inception_v4", pretrained="timm", input_size=[3, 75, 75]).eval()
    assert model.load_report.source == "hf://timm/inception_v4.tf_in1k/model.safetensors"
    x = torch.randn(1, 3, 75, 75)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x), atol=1e-5, rtol=0)


def test_googlenet_weights_switch_on_transform_input(torch_home: Path) -> None:
    """torchvision's GoogLeNet weights expect transform_input=True; the file declares it."""
    torch_home.mkdir(parents=True)
    torch.manual_seed(0)
    reference = torchvision.models.googlenet(aux_logits=False, init_weights=True).eval()
    torch.save(reference.state_dict(), torch_home / _published_file("googlenet"))
    reference.transform_input = True
    model = zoo.build("googlenet", pretrained=True).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x), atol=1e-5, rtol=0)


def test_densenet_weights_with_torchvisions_old_key_names(torch_home: Path) -> None:
    """torchvision's DenseNet files predate its module names (``denselayer1.norm.1.weight``) and
    batch norm's ``num_batches_tracked``; the file's ``rename`` maps them, the counters start at 0."""
    import re

    torch_home.mkdir(parents=True)
    torch.manual_seed(0)
    reference = torchvision.models.densenet121().eval()
    old_names = re.compile(r"^(.*denselayer\d+\.(?:norm|relu|conv))((?:[12])\.(?:weight|bias|running_mean|running_var))$")
    state = {old_names.sub(r"\1.\2", k): v for k, v in reference.state_dict().items() if not k.endswith("num_batches_tracked")}
    assert "features.denseblock1.denselayer1.norm.1.weight" in state
    torch.save(state, torch_home / _published_file("densenet121"))
    model = zoo.build("densenet121", pretrained=True).eval()
    assert not model.load_report.skipped and not model.load_report.reinitialized
    assert int(model.features.norm5.num_batches_tracked) == 0
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x), atol=1e-5, rtol=0)


# ---------------------------------------------------------------- first download, one reader, hostile files


def test_first_download_creates_the_cache_and_checks_the_hash(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An empty TORCH_HOME, a published file at a file:// URL: downloaded into hub/checkpoints as torchvision would."""
    import hashlib

    from zoo import _weights

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "fresh"))
    torch.manual_seed(0)
    reference = zoo.build("mnist_cnn_v1").eval()
    staging = tmp_path / "server" / "w.pth"
    staging.parent.mkdir()
    torch.save(reference.state_dict(), staging)
    prefix = hashlib.sha256(staging.read_bytes()).hexdigest()[:8]
    published = staging.with_name(f"mnist-{prefix}.pth")
    staging.rename(published)
    state = _weights._hub_file(published.as_uri())
    assert (tmp_path / "fresh" / "hub" / "checkpoints" / published.name).is_file()
    assert all(torch.equal(state[k], v) for k, v in reference.state_dict().items())
    # a file whose content does not match the hash in its name is refused, and not left in the cache
    wrong = published.with_name("other-00000000.pth")
    wrong.write_bytes(published.read_bytes())
    with pytest.raises(zoo.WeightsError, match="other-00000000.pth"):
        _weights._hub_file(wrong.as_uri())
    assert not (tmp_path / "fresh" / "hub" / "checkpoints" / wrong.name).exists()


def test_the_librarys_own_checkpoints_and_run_directories_load(tmp_path: Path) -> None:
    from zoo.train._checkpoint import save_checkpoint

    torch.manual_seed(0)
    trained = zoo.build("mnist_cnn_v1").eval()
    run = tmp_path / "run"
    run.mkdir()
    save_checkpoint(run / "best.pt", {"model": trained.state_dict(), "epoch": 3})
    x = torch.randn(2, 1, 28, 28)
    for source in (run / "best.pt", run):
        model = zoo.build("mnist_cnn_v1", pretrained=source).eval()
        with torch.no_grad():
            assert torch.equal(model(x), trained(x))
    payload = torch.load(run / "best.pt", weights_only=True)
    payload["state"]["model"]["0.weight"] += 1  # changed under the old digest
    torch.save(payload, run / "best.pt")
    with pytest.raises(zoo.WeightsError, match="sha256"):
        zoo.build("mnist_cnn_v1", pretrained=run)
    (run / "best.pt").unlink()
    with pytest.raises(zoo.WeightsError, match="run directory"):
        zoo.build("mnist_cnn_v1", pretrained=run)


def test_other_channel_counts_follow_timms_adapt_input_conv(torch_home: Path, resnet18_reference: torch.nn.Module) -> None:
    from timm.models import adapt_input_conv

    torch_home.mkdir(parents=True)
    state = resnet18_reference.state_dict()
    torch.save(state, torch_home / "resnet18-f37072fd.pth")
    model = zoo.build("resnet18", pretrained=True, in_channels=5)
    assert torch.equal(model.conv1.weight.detach(), adapt_input_conv(5, state["conv1.weight"].clone()))


def _mnist_state() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return zoo.build("mnist_cnn_v1").state_dict()


def test_half_precision_files_load_as_float32_and_run(tmp_path: Path) -> None:
    state = _mnist_state()
    torch.save({k: v.half() for k, v in state.items()}, tmp_path / "half.pth")
    model = zoo.build("mnist_cnn_v1", pretrained=tmp_path / "half.pth")
    assert model[0].weight.dtype == torch.float32
    assert torch.allclose(model[0].weight, state["0.weight"].half().float())
    assert model(torch.randn(1, 1, 28, 28)).shape == (1, 10)  # the forward pass works


@pytest.mark.parametrize("dtype", [torch.int64, torch.int8, torch.complex64, torch.bool])
def test_integer_complex_and_bool_tensors_are_refused(tmp_path: Path, dtype: torch.dtype) -> None:
    state = _mnist_state()
    state["0.weight"] = torch.ones_like(state["0.weight"]).to(dtype)
    path = tmp_path / "odd.pth"
    torch.save(state, path)
    with pytest.raises(zoo.WeightsError, match="0.weight") as info:
        zoo.build("mnist_cnn_v1", pretrained=path)
    assert "odd.pth" in str(info.value)


def test_corrupted_pickles_and_truncated_safetensors_name_the_file(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    from zoo._weights import read_weights

    state = _mnist_state()
    path = tmp_path / "w.safetensors"
    save_file(state, str(path))
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(zoo.WeightsError, match="w.safetensors"):
        read_weights(path)
    # legacy (non-zip) pickles whose opcodes point at missing memo entries or storages
    legacy = tmp_path / "legacy.pth"
    torch.save(state, legacy, _use_new_zipfile_serialization=False)
    data = legacy.read_bytes()
    for cut in (len(data) // 7, len(data) // 3, len(data) - 9):
        bad = tmp_path / f"bad{cut}.pth"
        bad.write_bytes(data[:cut] + bytes(reversed(data[cut : cut + 64])) + data[cut + 64 :])
        try:
            read_weights(bad)
        except zoo.WeightsError as exc:
            assert bad.name in str(exc)
    for junk in (pickle.dumps({"a": 1}), pickle.dumps([1, 2]), b"\x80\x02}q\x00(X\x01\x00\x00\x00ah\x05u.", b"\x80\x02K\x00."):
        (tmp_path / "j.pth").write_bytes(junk)
        with pytest.raises(zoo.WeightsError, match="j.pth"):
            read_weights(tmp_path / "j.pth")


@functools.cache
def _real_files() -> dict[str, bytes]:
    """mnist_cnn_v1's weights in every format the reader accepts."""
    import io

    from safetensors.torch import save

    from zoo.train._checkpoint import save_checkpoint

    state = _mnist_state()
    zipped, legacy = io.BytesIO(), io.BytesIO()
    torch.save(state, zipped)
    torch.save(state, legacy, _use_new_zipfile_serialization=False)
    with tempfile.TemporaryDirectory() as folder:
        save_checkpoint(Path(folder) / "best.pt", {"model": state, "epoch": 1})
        checkpoint = (Path(folder) / "best.pt").read_bytes()
    return {".pth": zipped.getvalue(), ".pt": legacy.getvalue(), ".safetensors": save(state), "best.pt": checkpoint}


@settings(max_examples=80, deadline=10_000, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_random_and_mutated_weight_files_load_or_raise_a_zoo_error(tmp_path: Path, data: st.DataObject) -> None:
    """Random bytes, or a real file with a slice overwritten, truncated or cut out: a model or a
    ZooError naming the file, within the deadline, never another exception."""
    kind = data.draw(st.sampled_from(sorted(_real_files())))
    blob = _real_files()[kind]
    how = data.draw(st.sampled_from(["random", "overwrite", "truncate", "cut"]))
    if how == "random":
        blob = data.draw(st.binary(max_size=4096))
    else:
        start = data.draw(st.integers(0, len(blob) - 1))
        size = data.draw(st.integers(1, 256))
        if how == "overwrite":
            blob = blob[:start] + data.draw(st.binary(min_size=size, max_size=size)) + blob[start + size :]
        elif how == "truncate":
            blob = blob[:start]
        else:
            blob = blob[:start] + blob[start + size :]
    path = tmp_path / f"mutated{kind if kind.startswith('.') else '_' + kind}"
    path.write_bytes(blob)
    try:
        model = zoo.build("mnist_cnn_v1", pretrained=path)
    except zoo.ZooError as exc:
        assert path.name in str(exc) or "weights from" in str(exc), str(exc)
        return
    assert model(torch.zeros(1, 1, 28, 28)).shape == (1, 10)
