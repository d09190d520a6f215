"""Pretrained weights: find them through the reference library's own cache, load them safely,
fit them to the model (new head, adapted first conv) and report what happened.

Sources
    "torchvision"   the torchvision ``Weights`` enum's URL, via the torch hub cache
                    (``$TORCH_HOME/hub/checkpoints/<published file name>``)
    "timm"          timm's pretrained config: a Hugging Face repo (HF cache) or a URL (torch hub cache)
    True            the reference library named in the file's ``reference:``
    path            a local ``.pth``/``.pt``/``.bin`` (loaded with ``weights_only=True``) or ``.safetensors``

Nothing here unpickles arbitrary objects: ``torch.load(weights_only=True)`` refuses any pickle
that would construct code, and the refusal becomes a :class:`WeightsError`.
"""

from __future__ import annotations

import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ._builder import allocate
from ._errors import WeightsError
from ._schema import ArchitectureSpec

__all__ = ["LoadReport", "fit_state_dict", "load_pretrained", "read_weights", "resolve_source"]


@dataclass
class LoadReport:
    """What a weights load did, key by key."""

    source: str
    loaded: list[str] = field(default_factory=list)
    adapted: list[str] = field(default_factory=list)  # e.g. RGB first conv summed to one channel
    reinitialized: list[str] = field(default_factory=list)  # shape differs (a new head)
    skipped: list[str] = field(default_factory=list)  # in the file, not in the model

    def __str__(self) -> str:
        lines = [f"weights from {self.source}: {len(self.loaded)} loaded, {len(self.adapted)} adapted, "
                 f"{len(self.reinitialized)} re-initialized, {len(self.skipped)} skipped"]
        for label, keys in (("adapted", self.adapted), ("re-initialized", self.reinitialized), ("skipped", self.skipped)):
            if keys:
                lines.append(f"  {label}: {', '.join(keys[:12])}{' ...' if len(keys) > 12 else ''}")
        return "\n".join(lines)


# ---------------------------------------------------------------- reading files

RUN_WEIGHTS = ("best.pt", "weights.safetensors", "weights.pth", "last.pt")  # a run directory's, best first


def read_weights(path: str | os.PathLike[str]) -> dict[str, Tensor]:
    """A state dict from a local file, never executing code from it: the one reader of weight files.

    Accepts a plain ``.pth``/``.pt``/``.bin`` state dict (``torch.load(weights_only=True)``), a
    ``.safetensors`` file, a training checkpoint that wraps its weights (``{"state_dict": ...}``,
    ``{"model": ...}``), the library's own checkpoints (``best.pt``/``last.pt``, digest verified)
    and a run directory (its best weights). Anything else is a :class:`WeightsError` naming the file.
    """
    p = Path(path)
    if p.is_dir():
        found = next((p / n for n in RUN_WEIGHTS if (p / n).is_file()), None)
        if found is None:
            raise WeightsError(f"{p} is a folder without weights: a run directory holds one of {', '.join(RUN_WEIGHTS)}")
        p = found
    if not p.is_file():
        raise WeightsError(f"weights file not found: {p}")
    obj = _read_safetensors(p) if p.suffix == ".safetensors" else _read_pickle(p)
    return _check_tensors(_unwrap(obj, p), p)


def _read_safetensors(p: Path) -> Any:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(p), device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError, TypeError) as exc:
        raise WeightsError(f"cannot read safetensors file {p} (truncated or corrupted?): {_first_line(exc)}") from None


def _read_pickle(p: Path) -> Any:
    try:
        return torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise WeightsError(
            f"refused to load {p}: it is not a plain tensor file ({_first_line(exc)}). "
            "Only weights-only pickles and safetensors are accepted; a pickle that constructs "
            "arbitrary Python objects could run code."
        ) from None
    except Exception as exc:  # a damaged zip or pickle raises anything from EOFError to IndexError and KeyError
        raise WeightsError(f"cannot read weights file {p} (truncated or corrupted?): {_first_line(exc)}") from None


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"[:300]


def _unwrap(obj: Any, path: Path) -> dict[str, Tensor]:
    from .train._checkpoint import CHECKPOINT_FORMAT, digest

    if isinstance(obj, dict) and obj.get("format") == CHECKPOINT_FORMAT:  # the trainer's best.pt / last.pt
        state = obj.get("state")
        if not isinstance(state, dict) or digest(state) != obj.get("sha256"):
            raise WeightsError(f"checkpoint {path} is corrupted: its content does not match its sha256 digest")
        obj = state
    # training checkpoints wrap the weights: {"model": ...} or {"state_dict": ...}
    for key in ("state_dict", "model", "model_state"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, Tensor) for v in obj.values()):
        raise WeightsError(f"{path} does not hold a state dict (a mapping of names to tensors)")
    return {str(k).removeprefix("module."): v for k, v in obj.items()}  # DDP checkpoints prefix 'module.'


def _check_tensors(state: dict[str, Tensor], path: Path | str) -> dict[str, Tensor]:
    """Only real floating tensors and integer counters; a complex or bool tensor is no weight."""
    for key, value in state.items():
        if value.is_complex() or value.dtype == torch.bool or value.is_quantized or value.layout != torch.strided:
            raise WeightsError(f"{path}: tensor {key!r} has type {value.dtype} ({value.layout}); weights are real-valued dense tensors")
    return state


# ---------------------------------------------------------------- finding published weights

def _hub_file(url: str) -> dict[str, Tensor]:
    """A URL through torch hub's cache, as torchvision fetches it: the cache folder is created, and
    the hash prefix in a file name such as ``resnet18-f37072fd.pth`` is checked on download.
    Offline works when the file is already there."""
    from urllib.parse import urlparse

    name = os.path.basename(urlparse(url).path)
    cached = Path(torch.hub.get_dir()) / "checkpoints" / name
    if not cached.is_file():
        try:  # downloads (with the hash check) and loads with weights_only=True; meta keeps memory free
            torch.hub.load_state_dict_from_url(url, map_location="meta", check_hash=True, weights_only=True)
        except Exception as exc:  # urllib, the hash check and torch.load raise many types: all mean "not available"
            raise WeightsError(
                f"pretrained weights {name} are not in the torch hub cache and could not be downloaded "
                f"({_first_line(exc)}). Place the file at {cached} (from {url}) and try again."
            ) from None
    return read_weights(cached)


def _torchvision_weights(model_name: str) -> tuple[str, dict[str, Tensor]]:
    import torchvision

    try:
        enum = torchvision.models.get_model_weights(model_name)
    except (ValueError, KeyError):
        raise WeightsError(f"torchvision publishes no weights for {model_name!r}") from None
    url = enum.DEFAULT.url
    return url, _hub_file(url)


def _timm_weights(model_name: str) -> tuple[str, dict[str, Tensor]]:
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(model_name)
    if cfg is None:
        raise WeightsError(f"timm publishes no weights for {model_name!r}")
    if cfg.hf_hub_id:
        return _hf_file(cfg.hf_hub_id, cfg.hf_hub_filename or "model.safetensors")
    if isinstance(cfg.url, str) and cfg.url:
        return cfg.url, _hub_file(cfg.url)
    raise WeightsError(f"timm's config for {model_name!r} names no file")


def _hf_file(repo: str, filename: str) -> tuple[str, dict[str, Tensor]]:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.constants import HF_HUB_CACHE

    try:
        path = hf_hub_download(repo, filename)
    except Exception as exc:  # hub errors have many types; all mean "not available here"
        folder = Path(HF_HUB_CACHE) / ("models--" + repo.replace("/", "--"))
        raise WeightsError(
            f"pretrained weights {repo}/{filename} are not in the Hugging Face cache and could not be "
            f"downloaded ({type(exc).__name__}). Place the file at {folder}/snapshots/<revision>/{filename} "
            f"with the revision named in {folder}/refs/main, or pass pretrained='path/to/{filename}'."
        ) from None
    return f"hf://{repo}/{filename}", read_weights(path)


def resolve_source(spec: ArchitectureSpec, source: bool | str | os.PathLike[str]) -> tuple[str, str | None]:
    """(library or 'file', reference model name or path)."""
    reference = spec.reference.libraries() if spec.reference else {}
    if source is True:
        for library in ("torchvision", "timm"):
            if library in reference:
                return library, reference[library]
        raise WeightsError(
            f"{spec.name!r} has no reference library to take pretrained weights from; pass a file path",
            hint="files with reference: {torchvision: ...} or {timm: ...} have published weights",
        )
    if isinstance(source, str) and source in ("torchvision", "timm"):
        if source not in reference:
            raise WeightsError(f"{spec.name!r} has no {source} reference (it has: {', '.join(reference) or 'none'})")
        return source, reference[source]
    if isinstance(source, (str, os.PathLike)):
        return "file", os.fspath(source)
    raise WeightsError(f"pretrained must be True, 'torchvision', 'timm' or a path, got {source!r}")


# ---------------------------------------------------------------- fitting to the model

def _adapt_first_conv(weight: Tensor, in_channels: int) -> Tensor | None:
    """RGB filters for another channel count through timm's ``adapt_input_conv`` (summed for one
    channel; otherwise cycled and rescaled so a grey image gives the same response); None where
    timm has no rule (a first conv that is not RGB, to more than one channel)."""
    from timm.models import adapt_input_conv

    try:
        adapted: Tensor = adapt_input_conv(in_channels, weight.clone())
    except NotImplementedError:
        return None
    return adapted


def _fit_dtype(key: str, value: Tensor, want: Tensor, source: str) -> Tensor:
    """Half/bfloat16 files load into the model's dtype; integers where floats belong are refused."""
    if want.is_floating_point() != value.is_floating_point():
        raise WeightsError(
            f"weights from {source}: {key!r} is {value.dtype} where the model has {want.dtype}; "
            "the file does not hold this model's weights (integer or quantized tensors cannot be loaded)"
        )
    return value.to(want.dtype)


def fit_state_dict(model: nn.Module, state: dict[str, Tensor], report: LoadReport) -> dict[str, Tensor]:
    """Keep what fits, adapt input convs, leave mismatched keys (heads) to be re-initialized."""
    own = model.state_dict(keep_vars=True)
    fitted: dict[str, Tensor] = {}
    for key, value in state.items():
        if key not in own:
            report.skipped.append(key)
            continue
        value = _fit_dtype(key, value, own[key], report.source)
        want = own[key].shape
        adapted = None
        if value.dim() == 4 and len(want) == 4 and value.shape[0] == want[0] and value.shape[2:] == want[2:] and value.shape[1] != want[1]:
            adapted = _adapt_first_conv(value, want[1])
        if value.shape == want:
            fitted[key] = value
            report.loaded.append(key)
        elif adapted is not None:
            fitted[key] = adapted
            report.adapted.append(f"{key} ({value.shape[1]} -> {want[1]} input channels)")
        else:
            report.reinitialized.append(key)
    for key in own:
        # files saved before PyTorch 0.4 lack batch norm's counter; load_state_dict would start it at 0
        if key.endswith("num_batches_tracked") and key not in state:
            fitted[key] = torch.zeros((), dtype=torch.long)
    missing = [k for k in own if k not in state and k not in fitted]
    if missing:
        raise WeightsError(
            f"weights from {report.source} lack {len(missing)} of the model's keys, e.g. {', '.join(missing[:5])}; "
            "they were saved from a different architecture"
        )
    if not report.loaded:
        raise WeightsError(f"nothing in {report.source} fits the model: no key has the model's name and shape")
    # a re-initialized weight takes its module's bias (and BN statistics) with it
    heads = {k.rsplit(".", 1)[0] for k in report.reinitialized}
    for key in list(fitted):
        if key.rsplit(".", 1)[0] in heads:
            del fitted[key]
            report.loaded.remove(key)
            report.reinitialized.append(key)
    return fitted


def _materialize_rest(model: nn.Module, device: str | torch.device) -> None:
    """Modules still on the meta device (not in the file) get memory and a fresh initialization."""
    for module in model.modules():
        own = [*module.parameters(recurse=False), *module.buffers(recurse=False)]
        if any(t.is_meta for t in own):
            allocate(module, device, recurse=False)
            reset = getattr(module, "reset_parameters", None)
            if callable(reset):
                reset()


def _renamed(key: str, renames: dict[str, str]) -> str:
    for old, new in renames.items():
        key = key.replace(old, new)
    return key


def load_pretrained(
    model: nn.Module,
    spec: ArchitectureSpec,
    source: bool | str | os.PathLike[str],
    *,
    device: str | torch.device | None = None,
) -> nn.Module:
    """Fill a meta-device model with published or local weights; ``model.load_report`` says how."""
    library, target = resolve_source(spec, source)
    assert target is not None
    if library == "torchvision":
        origin, state = _torchvision_weights(target)
    elif library == "timm":
        origin, state = _timm_weights(target)
    else:
        origin, state = target, read_weights(target)
    renames = spec.weights[library].rename if spec.weights and library in spec.weights else {}
    if renames:
        state = {_renamed(k, renames): v for k, v in state.items()}
    report = LoadReport(source=origin)
    fitted = fit_state_dict(model, state, report)
    dev = torch.device(device or "cpu")
    model.load_state_dict({k: v.to(dev) for k, v in fitted.items()}, strict=False, assign=True)
    _materialize_rest(model, dev)
    model.load_report = report  # type: ignore[assignment]
    return model
