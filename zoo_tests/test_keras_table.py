"""The seed lecture's Keras table, reproduced under Keras' counting convention."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import zoo

# model -> Keras Applications total params, as printed in the seed lecture's table
SEED_TABLE = {
    "vgg16": 138_357_544,
    "inception_v3_keras": 23_851_784,
    "resnet50_keras": 25_636_712,
    "xception_keras": 22_910_480,
    "inception_resnet_v2_keras": 55_873_736,
    "resnext50_32x4d": 25_097_128,
}


@pytest.mark.parametrize("name", sorted(SEED_TABLE))
def test_keras_convention_reproduces_the_seed_table(name: str) -> None:
    model = zoo.build(name, device="meta")
    assert zoo.count_params(model, convention="keras") == SEED_TABLE[name]


def test_keras_counts_moving_statistics_as_parameters() -> None:
    model = zoo.build("resnet50", device="meta")
    bn_channels = sum(m.num_features for m in model.modules() if m.__class__.__name__ == "BatchNorm2d")
    assert zoo.count_params(model, convention="keras") - zoo.count_params(model) == 2 * bn_channels == 2 * 26_560


def test_summarize_script_keras_convention() -> None:
    script = Path(__file__).resolve().parent.parent / "scripts" / "summarize.py"
    out = subprocess.run([sys.executable, str(script), "resnet50_keras", "--convention", "keras", "--depth", "1"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "total params:     25,636,712" in out.stdout and "matches" in out.stdout
