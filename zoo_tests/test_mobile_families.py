"""MobileNet, MNASNet, EfficientNet and RegNet beyond test_reference: feature points as timm reports
them, the stochastic-depth schedule, and the variant files staying data over one template."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import zoo

# zoo name -> timm's twin (same widths); timm's regnetx_004 uses its own widths (384, not 400)
TIMM_TWINS = {
    "mobilenet_v2": "mobilenetv2_100", "mobilenet_v3_large": "mobilenetv3_large_100",
    "mobilenet_v3_small": "mobilenetv3_small_100", "mnasnet1_0": "mnasnet_100", "efficientnet_b0": "efficientnet_b0",
    "efficientnet_b3": "efficientnet_b3", "efficientnet_v2_s": "efficientnetv2_s", "efficientnet_v2_l": "efficientnetv2_l",
    "regnet_y_400mf": "regnety_004", "regnet_x_8gf": "regnetx_080", "regnet_y_128gf": "regnety_1280",
}
FAMILIES = ("mobilenet", "mnasnet", "efficientnet", "regnet")
FAMILY_MODELS = [n for n in zoo.list_models() if n.startswith(FAMILIES)]
ARCHITECTURES = Path(zoo.__file__).resolve().parent.parent / "architectures"


@pytest.mark.parametrize(("name", "twin"), TIMM_TWINS.items())
def test_feature_info_is_timms(name: str, twin: str) -> None:
    import timm

    ours = zoo.build(name, features_only=True, device="meta").feature_info
    with torch.device("meta"):
        theirs = timm.create_model(twin, features_only=True, pretrained=False).feature_info
    assert [(d["num_chs"], d["reduction"]) for d in ours] == list(zip(theirs.channels(), theirs.reduction(), strict=True))


@pytest.mark.parametrize("name", FAMILY_MODELS)
def test_every_family_model_has_five_feature_points_at_strides_2_to_32(name: str) -> None:
    info = zoo.build(name, features_only=True, device="meta").feature_info
    assert [d["reduction"] for d in info] == [2, 4, 8, 16, 32]


def test_feature_maps_have_the_reported_shapes() -> None:
    backbone = zoo.build("mobilenet_v3_small", features_only=True).eval()
    with torch.no_grad():
        maps = backbone(torch.randn(1, 3, 224, 224))
    assert [tuple(m.shape[1:]) for m in maps] == [(d["num_chs"], 224 // d["reduction"], 224 // d["reduction"]) for d in backbone.feature_info]


@pytest.mark.parametrize("name", ["efficientnet_b0", "efficientnet_b4", "efficientnet_v2_s"])
def test_stochastic_depth_rates_grow_like_torchvisions(name: str) -> None:
    import torchvision
    from torchvision.ops import StochasticDepth

    ours = {n: m.p for n, m in zoo.build(name, device="meta").named_modules() if isinstance(m, StochasticDepth)}
    with torch.device("meta"):
        reference = torchvision.models.get_model(name)
    theirs = {n: m.p for n, m in reference.named_modules() if isinstance(m, StochasticDepth)}
    # torchvision also keeps (never calls) one in blocks without a shortcut; the zoo builds none there
    assert ours and all(theirs[n] == p for n, p in ours.items())
    assert len(ours) == sum(1 for n in theirs if n.rsplit(".", 1)[0] + ".block.0.0.weight" in reference.state_dict()
                            and _has_shortcut(reference.get_submodule(n.rsplit(".", 1)[0])))


def _has_shortcut(block: torch.nn.Module) -> bool:
    return bool(getattr(block, "use_res_connect", False))


@pytest.mark.parametrize("family", FAMILIES)
def test_variants_are_a_few_lines_of_data(family: str) -> None:
    """Each variant file only sets parameters of its family's template (no layers of its own);
    mobilenet_v2 is torchvision's only MobileNetV2 and carries its width multiplier as a parameter."""
    import yaml

    files = {p: yaml.safe_load(p.read_text()) for p in (ARCHITECTURES / family).glob("*.yaml")}
    variants = [p for p, data in files.items() if not data.get("abstract") and p.name != "mobilenet_v2.yaml"]
    assert variants
    for path in variants:
        data = files[path]
        assert "extends" in data and "layers" not in data and "blocks" not in data, path.name
        assert len(path.read_text().splitlines()) <= 30, path.name
