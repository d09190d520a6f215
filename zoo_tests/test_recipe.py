"""Recipes: shipped files validate, mistakes point at the line, ``--set`` overrides behave."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

import zoo
from zoo._errors import RecipeError, ZooError
from zoo._yaml import parse_yaml
from zoo.train._overrides import dump_recipe, load_recipe, parse_override, recipe_from_data
from zoo.train._recipe import FinetuneSection, Recipe

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
SHIPPED = sorted(RECIPES.glob("*.yaml"))

GOOD = """\
name: tiny
model:
  name: mnist_cnn_v1
data:
  dataset: digits
  val_split: 0.1
optimizer:
  name: sgd
  lr: 0.01
  momentum: 0.9
epochs: 3
batch_size: 64
"""


def _write(tmp_path: Path, text: str, name: str = "r.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_shipped_recipes_exist() -> None:
    names = {p.stem for p in SHIPPED}
    for wanted in (
        "quickstart_digits",
        "mnist_cnn_v1",
        "mnist_ann",
        "mnist_cnn",
        "mnist_deep_cnn",
        "cifar10_cnn",
        "mnist_fast",
        "cifar10_resnet18_finetune",
        "mnist_transfer_resnet18",
        "cifar10_resnet50_finetune",
        "cifar10_xception_finetune",
        "cifar10_inception_v3_finetune",
        "fashion_from_digits",
    ):
        assert wanted in names


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_shipped_recipe_validates_and_names_a_registered_model(path: Path) -> None:
    recipe = load_recipe(path)
    assert recipe.name == path.stem
    assert recipe.model.name in zoo.list_models(), f"{path.name}: model {recipe.model.name} is not registered"


def test_seed_hyper_parameters() -> None:
    article = load_recipe(RECIPES / "mnist_cnn_v1.yaml")
    assert (article.optimizer.name, article.batch_size, article.epochs, article.data.val_split) == ("adam", 64, 3, 0.1)
    for name in ("mnist_ann", "mnist_cnn"):
        nb = load_recipe(RECIPES / f"{name}.yaml")
        assert (nb.optimizer.name, nb.optimizer.lr, nb.optimizer.momentum, nb.batch_size, nb.epochs) == (
            "sgd",
            0.01,
            0.9,
            64,
            15,
        )
    deep = load_recipe(RECIPES / "mnist_deep_cnn.yaml")
    assert (deep.batch_size, deep.epochs, deep.schedule.name, deep.data.augment.enabled) == (512, 50, "plateau", True)


def test_typo_gets_line_and_did_you_mean(tmp_path: Path) -> None:
    path = _write(tmp_path, GOOD.replace("  momentum: 0.9", "  momentun: 0.9"))
    with pytest.raises(RecipeError) as info:
        load_recipe(path)
    err = info.value
    assert err.line == 10 and err.column == 3 and err.file == str(path)
    assert "momentun" in str(err) and "did you mean 'momentum'" in str(err)
    assert err.path == "optimizer.momentun"
    assert str(err).startswith(f"{path}:10:3: ")


def test_wrong_type_and_bad_value_point_at_the_line(tmp_path: Path) -> None:
    with pytest.raises(RecipeError) as info:
        load_recipe(_write(tmp_path, GOOD.replace("epochs: 3", "epochs: three")))
    assert info.value.line == 11 and info.value.path == "epochs"
    with pytest.raises(RecipeError) as info:
        load_recipe(_write(tmp_path, GOOD.replace("dataset: digits", "dataset: mnsit")))
    assert info.value.line == 5 and "mnist" in str(info.value)
    with pytest.raises(RecipeError) as info:
        load_recipe(_write(tmp_path, GOOD.replace("val_split: 0.1", "val_split: 1.5")))
    assert info.value.line == 6


def test_a_boolean_is_never_a_number_in_a_recipe(tmp_path: Path) -> None:
    """Recipes read values as architecture files do: ``epochs: true`` is not 1 epoch."""
    with pytest.raises(RecipeError) as info:
        load_recipe(_write(tmp_path, GOOD.replace("epochs: 3", "epochs: true")))
    assert info.value.line == 11 and info.value.path == "epochs" and "not a boolean" in str(info.value)
    for override in ("data.tta.shift=true", "optimizer.betas=[0.9, true]", "data.channels=true"):
        with pytest.raises(RecipeError, match="not a boolean"):
            load_recipe(_write(tmp_path, GOOD), overrides=[override])
    assert load_recipe(_write(tmp_path, GOOD), overrides=["tensorboard=false"]).tensorboard is False


def test_a_flag_that_takes_a_word_is_true_false_or_the_word(tmp_path: Path) -> None:
    """``channels_last: true | false | auto``: 1 or the text "yes" is not read as true."""
    for value in ("1", "0.5", '"yes"', "'on'", "[true]"):
        with pytest.raises(RecipeError, match="expected true, false or 'auto'") as info:
            load_recipe(_write(tmp_path, GOOD + f"channels_last: {value}\n"))
        assert info.value.path == "channels_last" and info.value.line == GOOD.count("\n") + 1
    for value, expected in (("true", True), ("false", False), ("auto", "auto")):
        assert load_recipe(_write(tmp_path, GOOD + f"channels_last: {value}\n")).channels_last == expected
    assert load_recipe(_write(tmp_path, GOOD), overrides=["finetune.pretrained=timm"]).finetune.pretrained == "timm"
    with pytest.raises(RecipeError, match="expected true, false or a name"):
        load_recipe(_write(tmp_path, GOOD), overrides=["finetune.pretrained=1"])


def test_unknown_top_level_key_and_yaml_errors_are_recipe_errors(tmp_path: Path) -> None:
    with pytest.raises(RecipeError) as info:
        load_recipe(_write(tmp_path, GOOD + "epoch: 4\n"))
    assert "did you mean 'epochs'" in str(info.value)
    with pytest.raises(RecipeError) as info:
        load_recipe(_write(tmp_path, GOOD + "epochs: 4\n"))
    assert "duplicate key" in str(info.value)
    with pytest.raises(RecipeError):
        load_recipe(_write(tmp_path, "model: !!python/object/apply:os.system ['echo hi']\n"))
    with pytest.raises(RecipeError, match="not found"):
        load_recipe(tmp_path / "missing.yaml")


def test_consistency_rules(tmp_path: Path) -> None:
    text = GOOD.replace("val_split: 0.1", "validate_on: none") + "schedule: {name: plateau}\n"
    with pytest.raises(RecipeError, match="plateau"):
        load_recipe(_write(tmp_path, text))
    with pytest.raises(RecipeError, match="after the last epoch"):
        load_recipe(_write(tmp_path, GOOD + "finetune: {unfreeze: [{epoch: 9, params: [x]}]}\n"))
    with pytest.raises(RecipeError, match="either lr or lr_scale"):
        load_recipe(_write(tmp_path, GOOD + "finetune: {groups: [{params: [x], lr: 0.1, lr_scale: 2}]}\n"))
    with pytest.raises(RecipeError, match="device"):
        load_recipe(_write(tmp_path, GOOD + "device: tpu\n"))


def test_overrides_parse_values_as_yaml(tmp_path: Path) -> None:
    path = _write(tmp_path, GOOD)
    recipe = load_recipe(
        path,
        overrides=[
            "epochs=5",
            "data.root=/data",
            "optimizer.betas=[0.8, 0.9]",
            "output_dir=runs/try1",
            "model.params.width=2",
            "finetune.freeze=[a, b]",
        ],
    )
    assert recipe.epochs == 5 and recipe.data.root == "/data" and recipe.optimizer.betas == (0.8, 0.9)
    assert recipe.output_dir == "runs/try1" and recipe.model.params == {"width": 2}
    assert recipe.finetune.freeze == ["a", "b"]
    assert parse_override("schedule.name=cosine") == (["schedule", "name"], "cosine")


def test_override_mistakes_name_the_option(tmp_path: Path) -> None:
    path = _write(tmp_path, GOOD)
    with pytest.raises(RecipeError, match="did you mean 'epochs'") as info:
        load_recipe(path, overrides=["epoch=5"])
    assert "--set epoch=5" in str(info.value)
    with pytest.raises(RecipeError, match="did you mean 'lr'"):
        load_recipe(path, overrides=["optimizer.lrr=0.1"])
    with pytest.raises(RecipeError, match="--set epochs=-1") as info:
        load_recipe(path, overrides=["epochs=-1"])
    assert info.value.location is None  # not blamed on the recipe file
    with pytest.raises(RecipeError, match="KEY=VALUE"):
        load_recipe(path, overrides=["epochs"])
    with pytest.raises(RecipeError, match="is a value, not a section"):
        load_recipe(path, overrides=["epochs.x=1"])


def test_defaults_and_name_from_file(tmp_path: Path) -> None:
    path = _write(tmp_path, GOOD.replace("name: tiny\n", ""), name="my_run.yaml")
    recipe = load_recipe(path)
    assert recipe.name == "my_run"
    assert recipe.precision == "fp32" and recipe.schedule.name == "none" and recipe.output_dir is None
    assert recipe.effective_eval_batch_size == 256


def test_resolved_recipe_round_trips(tmp_path: Path) -> None:
    recipe = load_recipe(RECIPES / "cifar10_resnet18_finetune.yaml")
    again = recipe_from_data(parse_yaml(dump_recipe(recipe), "resolved.yaml"))
    assert again == recipe
    assert isinstance(again, Recipe)


def test_every_recipe_error_is_a_zoo_error(tmp_path: Path) -> None:
    for text in ("", "[1, 2]\n", "name: x\n", GOOD.replace("model:\n  name: mnist_cnn_v1\n", "model: 3\n")):
        with pytest.raises(ZooError):
            load_recipe(_write(tmp_path, text))


FINETUNE = [p for p in SHIPPED if load_recipe(p).finetune != FinetuneSection()]


@pytest.mark.parametrize("path", FINETUNE, ids=[p.stem for p in FINETUNE])
def test_fine_tuning_patterns_match_the_shipped_models(path: Path) -> None:
    """Every freeze/group/unfreeze pattern of a shipped recipe names real modules (weights not needed)."""
    from zoo.train._finetune import finetune_plan

    recipe = load_recipe(path)
    model = zoo.build(recipe.model.name, num_classes=10, device="meta", **recipe.model.params)
    plan = finetune_plan(model, recipe.finetune, lr=recipe.optimizer.lr)
    names = {n for n, _ in model.named_parameters()}
    assert plan.head and set(plan.head) <= names
    assert plan.frozen_at(1) or recipe.finetune.pretrained  # something is frozen or transferred
    assert not set(plan.head) & plan.frozen_at(1)  # the new head always trains
