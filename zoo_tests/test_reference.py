"""Architectures with a ``reference:`` are the same network as torchvision's or timm's:
same parameter count, same state_dict keys and shapes (strict load), same outputs."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from unittest import mock

import pytest
import torch
from torch import nn

import zoo

from .shapes import fill_cheaply, is_large, test_input_shape

# Extra configurations checked beside the defaults: the keyword has the same name on both sides.
VARIANTS: dict[str, list[dict[str, Any]]] = {
    "googlenet": [{"aux_logits": True}],
    "inception_v3": [{"aux_logits": True}],
}
REFERENCED = [n for n in zoo.list_models() if zoo.get_spec(n).reference is not None]
CASES = [(n, {}) for n in REFERENCED] + [(n, kw) for n, kws in VARIANTS.items() if n in REFERENCED for kw in kws]


def reference_model(name: str, **kwargs: Any) -> nn.Module:
    ref = zoo.get_spec(name).reference
    assert ref is not None
    if ref.torchvision:
        import torchvision

        return torchvision.models.get_model(ref.torchvision, weights=None, **{**ref.kwargs, **kwargs})
    import timm

    assert ref.timm
    return timm.create_model(ref.timm, pretrained=False, **{**ref.kwargs, **kwargs})


_INIT_FUNCTIONS = ("normal_", "uniform_", "kaiming_normal_", "kaiming_uniform_", "trunc_normal_", "xavier_uniform_",
                   "zeros_", "ones_", "constant_")


@contextmanager
def _init_skipped() -> Iterator[None]:
    """torch.nn.init does nothing inside (the values are filled afterwards): a 600M-parameter
    reference then builds in a fraction of a second instead of a minute on one thread."""
    with mock.patch.multiple(torch.nn.init, **{f: lambda t, *a, **k: t for f in _INIT_FUNCTIONS}):
        yield


def _build_pair(name: str, shape: list[int], kwargs: dict[str, Any]) -> tuple[nn.Module, nn.Module]:
    """(ours, reference) holding the same weights. Small models: both built as users build them,
    the reference refilled with well-scaled values, then a strict load. Large ones: the reference without its random init (cheap well-scaled
    values instead), ours on the meta device and strictly loaded with ``assign=True``: parameters
    shared, buffers copied (each model's train step updates its own statistics)."""
    if not is_large(name):
        # the reference's own init can make outputs vanish (EfficientNet: ~1e-15 at 32x32 in eval
        # mode), which would let any difference pass: both compare on well-scaled values instead
        reference = fill_cheaply(reference_model(name, **kwargs))
        _vary_constants(reference)
        model = zoo.build(name, input_size=shape, **kwargs)
        assert zoo.count_params(model) == sum(p.numel() for p in reference.parameters())
        model.load_state_dict(reference.state_dict(), strict=True)
        return model, reference
    with _init_skipped():
        reference = fill_cheaply(reference_model(name, **kwargs))
    _vary_constants(reference)
    model = zoo.build(name, input_size=shape, device="meta", **kwargs)
    assert zoo.count_params(model) == sum(p.numel() for p in reference.parameters())
    buffers = {k for k, _ in reference.named_buffers()}
    state = {k: v.clone() if k in buffers else v for k, v in reference.state_dict().items()}
    model.load_state_dict(state, strict=True, assign=True)
    assert not any(t.is_meta for t in [*model.parameters(), *model.buffers()])
    return model, reference


@torch.no_grad()
def _vary_constants(model: nn.Module) -> None:
    """Draw the tensors that default initialization leaves constant (norm weights 1 and biases 0,
    conv/linear biases 0, running statistics 0 and 1, ConvNeXt's layer scale 1e-6): with them
    constant, a swapped, misplaced or ignored parameter would not change the outputs (a 1e-6 layer
    scale hides the whole residual branch under the tolerance)."""
    for value in model.state_dict().values():  # shares storage with the model
        if not value.is_floating_point() or value.numel() < 2:
            continue
        low, high = torch.aminmax(value)
        if low != high:
            continue
        if low == 0:
            value.uniform_(-0.1, 0.1)
        else:
            value.uniform_(0.5, 1.5).mul_(torch.sign(low))


def _outputs(out: Any) -> list[torch.Tensor]:
    """Logits first, then aux outputs in a fixed order (torchvision names them aux_logits1/2)."""
    if isinstance(out, torch.Tensor):
        return [out]
    if hasattr(out, "_fields"):
        return [out.logits] + [getattr(out, f) for f in sorted(out._fields) if f != "logits"]
    return list(out)


def _buffers(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v for k, v in model.state_dict().items() if "running" in k or "num_batches" in k}


@pytest.mark.parametrize(("name", "kwargs"), CASES, ids=[f"{n}{'-' + '-'.join(kw) if kw else ''}" for n, kw in CASES])
def test_same_network_as_reference(name: str, kwargs: dict[str, Any]) -> None:
    torch.manual_seed(0)
    shape = test_input_shape(name, **kwargs)
    # 1. parameter count; 2. same keys and shapes, buffers included (strict load)
    model, reference = _build_pair(name, shape, kwargs)
    x = torch.randn(2, *shape)
    # 3a. eval mode
    model.eval()
    reference.eval()
    with torch.no_grad():
        expected = reference(x)
        assert expected.abs().mean() > 1e-3, "outputs too small for the comparison to mean anything"
        torch.testing.assert_close(model(x), expected, atol=1e-5, rtol=0)
    # 3b. train mode: one step of batch-norm statistics (dropout draws in the same order)
    model.train()
    reference.train()
    with torch.no_grad():
        torch.manual_seed(1)
        ours = _outputs(model(x))
        torch.manual_seed(1)
        theirs = _outputs(reference(x))
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
    mine, refs = _buffers(model), _buffers(reference)
    for key, value in refs.items():
        torch.testing.assert_close(mine[key], value, atol=1e-5, rtol=1e-5, msg=lambda m, k=key: f"{k}: {m}")
