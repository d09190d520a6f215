"""Training recipes: a Pydantic schema, loading with file:line:col errors, ``--set`` overrides.

A recipe is a YAML file that says what to train (a registry model), on what (a dataset and its
transforms), and how (optimizer, schedule, loss, epochs, precision, fine-tuning). It is loaded
with :func:`zoo._yaml.load_yaml`, so every value remembers where it was written, and validated
with :func:`zoo._pydantic_errors.validate`, so a misspelled key reads
``recipes/x.yaml:7:3: optimizer.lr_rate: unknown key 'lr_rate' did you mean 'lr'?``.

Command-line overrides (``--set optimizer.lr=0.01``) are applied to the parsed data before
validation; their values are parsed as YAML scalars/flow collections (``5`` is an int,
``[1, 2]`` a list), and an unknown key is refused with a did-you-mean before anything runs.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import pydantic
from pydantic import BaseModel, ConfigDict, Field

from ._errors import RecipeError, ZooError, did_you_mean
from ._pydantic_errors import validate
from ._yaml import YMap, load_yaml, parse_yaml

__all__ = [
    "AugmentSection",
    "CheckpointSection",
    "DataSection",
    "EarlyStoppingSection",
    "FinetuneSection",
    "LossSection",
    "ModelSection",
    "OptimizerSection",
    "ParamGroup",
    "Recipe",
    "ReportsSection",
    "ScheduleSection",
    "UnfreezeStep",
    "apply_overrides",
    "load_recipe",
    "parse_override",
    "dump_recipe",
    "recipe_from_data",
]

DATASETS = ("digits", "mnist", "fashion_mnist", "cifar10")

PosInt = Annotated[int, Field(gt=0)]
NonNegInt = Annotated[int, Field(ge=0)]
PosFloat = Annotated[float, Field(gt=0)]
NonNegFloat = Annotated[float, Field(ge=0)]
Fraction = Annotated[float, Field(ge=0, lt=1)]
Monitor = Literal["val_loss", "val_accuracy"]


class _Section(BaseModel):
    """Every section refuses unknown keys, so a typo is an error rather than a silent default."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelSection(_Section):
    """Which registry model to build and with what overrides of its declared parameters."""

    name: str
    params: dict[str, Any] = Field(default_factory=dict)
    num_classes: PosInt | None = None  # default: the dataset's number of classes
    in_channels: PosInt | None = None  # default: the data's channels (first conv adapted)


class AugmentSection(_Section):
    """Random transforms applied to whole training batches on the device (one affine per image)."""

    rotation: Annotated[float, Field(ge=0, le=180)] = 0.0  # degrees, uniform in [-r, r]
    translate: Annotated[float, Field(ge=0, lt=1)] = 0.0  # fraction of width/height
    scale: Annotated[float, Field(ge=0, lt=1)] = 0.0  # zoom uniform in [1 - s, 1 + s]
    crop_padding: NonNegInt = 0  # pad-and-crop as integer pixel shifts in [-p, p]
    hflip: bool = False  # mirror half of the images (never for digits)

    @property
    def enabled(self) -> bool:
        return bool(self.rotation or self.translate or self.scale or self.crop_padding or self.hflip)


class DataSection(_Section):
    """Dataset, splits and the per-batch transforms."""

    dataset: Literal["digits", "mnist", "fashion_mnist", "cifar10"]
    root: str = "data"  # folder holding MNIST/, FashionMNIST/ or cifar-10-batches-py/
    download: bool = True  # try to download when the files are absent
    val_split: Fraction = 0.1  # fraction of the training set held out for validation
    validate_on: Literal["split", "test", "none"] = "split"  # "test": the lecture's choice
    split_seed: NonNegInt = 0  # the held-out split does not move when the training seed does
    train_limit: PosInt | None = None  # use only the first N training images (quick runs)
    test_limit: PosInt | None = None
    channels: Literal[1, 3] | None = None  # convert gray<->RGB; default: keep the data's
    resize: PosInt | None = None  # square side to resize batches to (inception needs >= 75)
    # unit: [0, 1]; standard: the training set's mean/std; imagenet: torchvision's ImageNet statistics;
    # inception: [-1, 1] (mean = std = 0.5, as timm's Inception and Xception weights expect)
    normalize: Literal["unit", "standard", "imagenet", "inception"] = "unit"
    augment: AugmentSection = Field(default_factory=AugmentSection)
    drop_last: bool = False


class OptimizerSection(_Section):
    name: Literal["sgd", "adam", "adamw", "rmsprop", "adadelta"] = "adam"
    lr: PosFloat = 1e-3
    momentum: NonNegFloat = 0.0
    nesterov: bool = False
    weight_decay: NonNegFloat = 0.0
    betas: tuple[Fraction, Fraction] = (0.9, 0.999)
    eps: PosFloat | None = None  # default: the torch optimizer's own


class ScheduleSection(_Section):
    """Learning-rate schedule. ``step``/``multistep``/``plateau`` act per epoch, the rest per step."""

    name: Literal["none", "step", "multistep", "cosine", "onecycle", "plateau"] = "none"
    step_size: PosInt = 10  # step: epochs between decays
    milestones: list[PosInt] = Field(default_factory=list)  # multistep: epochs
    gamma: PosFloat = 0.1  # step/multistep decay factor
    warmup_epochs: NonNegFloat = 0.0  # cosine: linear warm-up
    min_lr: NonNegFloat = 0.0  # cosine floor; plateau floor
    pct_start: Annotated[float, Field(gt=0, lt=1)] = 0.25  # onecycle: share of the rise
    div_factor: PosFloat = 25.0  # onecycle: start lr = lr / div_factor
    final_div_factor: PosFloat = 1e4
    factor: Annotated[float, Field(gt=0, lt=1)] = 0.5  # plateau: lr *= factor
    patience: NonNegInt = 2  # plateau: epochs without improvement
    monitor: Monitor = "val_loss"


class LossSection(_Section):
    name: Literal["cross_entropy"] = "cross_entropy"
    label_smoothing: Fraction = 0.0


class EarlyStoppingSection(_Section):
    patience: PosInt = 5
    monitor: Monitor = "val_loss"
    min_delta: NonNegFloat = 0.0


class CheckpointSection(_Section):
    every_steps: PosInt | None = None  # also checkpoint inside an epoch (long epochs, preemption)
    monitor: Monitor = "val_accuracy"  # what "best" means
    test_with: Literal["last", "best"] = "last"  # weights used for the final test evaluation


class ReportsSection(_Section):
    enabled: bool = True  # write the report and the pictures after training
    image_index: NonNegInt = 0  # test image whose feature maps are drawn
    max_misclassified: PosInt = 36  # images in the misclassified grid
    max_feature_layers: PosInt = 8  # convolutions whose outputs are drawn
    max_channels: PosInt = 32  # feature maps per convolution


class ParamGroup(_Section):
    """Parameters matching ``params`` (module/parameter name patterns) get their own learning rate."""

    params: list[str] = Field(min_length=1)
    lr: PosFloat | None = None
    lr_scale: PosFloat | None = None  # multiplies the optimizer's lr
    weight_decay: NonNegFloat | None = None

    @pydantic.model_validator(mode="after")
    def _one_rate(self) -> ParamGroup:
        if self.lr is not None and self.lr_scale is not None:
            raise ValueError("give either lr or lr_scale, not both")
        return self


class UnfreezeStep(_Section):
    epoch: PosInt  # 1-based epoch at whose start the parameters start training
    params: list[str] = Field(min_length=1)


class FinetuneSection(_Section):
    """Start from pretrained weights; freeze, regroup and gradually unfreeze by name pattern."""

    pretrained: str | bool | None = None  # True/"torchvision"/"timm" or a .pth/.safetensors path
    freeze: list[str] = Field(default_factory=list)  # patterns, e.g. ["conv1", "layer1", "layer2.*"]
    freeze_backbone: bool = False  # freeze everything except the head
    head: list[str] | None = None  # head patterns; default: the last module with parameters
    reset_head: bool = False  # re-initialize the head even when the class count is unchanged
    head_lr_scale: PosFloat | None = None  # shorthand for a head param group
    groups: list[ParamGroup] = Field(default_factory=list)  # first matching group wins
    unfreeze: list[UnfreezeStep] = Field(default_factory=list)  # gradual unfreezing
    frozen_bn_eval: bool = True  # BatchNorm layers that are frozen keep their running statistics


class Recipe(_Section):
    """A complete training recipe."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.\-]+$")
    description: str = ""
    model: ModelSection
    data: DataSection
    optimizer: OptimizerSection = Field(default_factory=OptimizerSection)
    schedule: ScheduleSection = Field(default_factory=ScheduleSection)
    loss: LossSection = Field(default_factory=LossSection)
    epochs: PosInt = 1
    batch_size: PosInt = 64
    eval_batch_size: PosInt | None = None  # default: max(batch_size, 256)
    seed: NonNegInt = 0
    device: str = "auto"  # auto, cpu, cuda, cuda:N, mps
    precision: Literal["fp32", "amp", "bf16"] = "fp32"  # amp: float16 autocast on CUDA
    deterministic: bool = False  # torch.use_deterministic_algorithms (slower on GPU)
    channels_last: bool | Literal["auto"] = "auto"  # auto: CPU times both layouts; CUDA uses it with amp/bf16
    compile: bool = False  # torch.compile the model
    grad_clip: PosFloat | None = None
    early_stopping: EarlyStoppingSection | None = None
    finetune: FinetuneSection = Field(default_factory=FinetuneSection)
    checkpoint: CheckpointSection = Field(default_factory=CheckpointSection)
    reports: ReportsSection = Field(default_factory=ReportsSection)
    output_dir: str | None = None  # the run directory; default runs/<name>[-N]
    progress: bool = True  # progress bar per epoch

    @pydantic.field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        base, _, index = value.partition(":")
        if base not in ("auto", "cpu", "cuda", "mps") or (index and not index.isdigit()):
            raise ValueError("device must be auto, cpu, cuda, cuda:N or mps")
        return value

    @pydantic.model_validator(mode="after")
    def _consistent(self) -> Recipe:
        if self.schedule.name == "plateau" and self.data.validate_on == "none":
            if self.schedule.monitor.startswith("val_"):
                raise ValueError("schedule 'plateau' monitors validation metrics; data.validate_on is 'none'")
        if self.early_stopping is not None and self.data.validate_on == "none":
            raise ValueError("early_stopping needs validation; data.validate_on is 'none'")
        if self.data.validate_on == "split" and self.data.val_split == 0:
            raise ValueError("data.validate_on is 'split' but data.val_split is 0 (use validate_on: none)")
        for step in self.finetune.unfreeze:
            if step.epoch > self.epochs:
                raise ValueError(f"finetune.unfreeze at epoch {step.epoch} is after the last epoch {self.epochs}")
        if self.schedule.name == "multistep" and not self.schedule.milestones:
            raise ValueError("schedule 'multistep' needs milestones")
        return self

    @property
    def effective_eval_batch_size(self) -> int:
        return self.eval_batch_size or max(self.batch_size, 256)

    def to_data(self) -> dict[str, Any]:
        """Plain data (what ``recipe.yaml`` in a run directory holds)."""
        return self.model_dump(mode="json")


# --------------------------------------------------------------------------- overrides


def parse_override(text: str) -> tuple[list[str], Any]:
    """'optimizer.lr=0.01' -> (['optimizer', 'lr'], 0.01); the value is YAML (so 5 is an int)."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise RecipeError(f"--set {text!r}: expected KEY=VALUE, e.g. --set epochs=5")
    parts = key.split(".")
    if any(not p for p in parts):
        raise RecipeError(f"--set {text!r}: empty part in the dotted key {key!r}")
    if raw.strip() == "":
        return parts, ""
    try:
        value = parse_yaml(raw, f"--set {key}")
    except ZooError as exc:
        raise RecipeError(f"--set {text!r}: cannot parse the value: {exc.message}") from None
    return parts, value


def _section_model(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model inside ``X | None`` or ``X`` (None for plain values and dicts)."""
    candidates = getattr(annotation, "__args__", None) or (annotation,)
    for candidate in candidates:
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def _check_key_path(parts: Sequence[str], text: str) -> None:
    """Refuse a key the schema does not have, naming the closest one (before anything runs)."""
    model: type[BaseModel] | None = Recipe
    for depth, part in enumerate(parts):
        if model is None:
            return  # below a free-form mapping (model.params): any key is accepted here
        fields = model.model_fields
        if part not in fields:
            where = ".".join(parts[:depth]) or "recipe"
            hint = did_you_mean(part, fields) or f"expected one of: {', '.join(fields)}"
            raise RecipeError(f"--set {text}: {where} has no key {part!r}", hint=hint)
        annotation = fields[part].annotation
        model = _section_model(annotation)
        is_mapping = getattr(annotation, "__origin__", None) is dict or annotation is dict
        if model is None and not is_mapping and depth < len(parts) - 1:
            raise RecipeError(f"--set {text}: {'.'.join(parts[: depth + 1])} is a value, not a section")


def apply_overrides(data: Any, overrides: Sequence[str]) -> tuple[Any, list[str]]:
    """Apply ``--set`` overrides to parsed recipe data; returns (new data, overridden paths)."""
    if not isinstance(data, dict):
        return data, []  # validation reports "expected a mapping" with the file's location
    data = copy.copy(data)
    touched: list[str] = []
    for text in overrides:
        parts, value = parse_override(text)
        _check_key_path(parts, text)
        node: dict[str, Any] = data
        for part in parts[:-1]:
            child = node.get(part)
            child = copy.copy(child) if isinstance(child, dict) else {}
            node[part] = child
            node = child
        node[parts[-1]] = value
        touched.append(".".join(parts))
    return data, touched


# --------------------------------------------------------------------------- loading


def recipe_from_data(data: Any, *, overrides: Sequence[str] = ()) -> Recipe:
    """Validate parsed data (after ``--set`` overrides) into a Recipe; errors are RecipeErrors."""
    data, touched = apply_overrides(data, overrides)
    try:
        return validate(Recipe, data, error_cls=RecipeError)
    except ZooError as exc:
        raise _blame_override(exc, touched, overrides) from None


def _blame_override(exc: ZooError, touched: list[str], overrides: Sequence[str]) -> ZooError:
    """An error in an overridden value points at the --set option, not at the recipe file."""
    for path, text in zip(touched, overrides, strict=False):
        if exc.path == path or exc.path.startswith(path + ".") or exc.path.startswith(path + "["):
            return RecipeError(f"--set {text}: {exc.message}", path=exc.path, hint=exc.hint)
    return exc if isinstance(exc, RecipeError) else _as_recipe_error(exc)


def _as_recipe_error(exc: ZooError) -> RecipeError:
    """Schema problems in a recipe (unknown keys, bad YAML) are recipe errors to the caller."""
    err = RecipeError(exc.message, location=exc.location, path=exc.path, hint=exc.hint)
    err.others = exc.others
    err.__cause__ = exc
    return err


def load_recipe(path: str | Path, *, overrides: Sequence[str] = ()) -> Recipe:
    """Load and validate a recipe file, applying ``--set KEY=VALUE`` overrides."""
    p = Path(path)
    if p.is_dir():
        p = p / "recipe.yaml"  # a run directory: its resolved recipe
    if not p.is_file():
        raise RecipeError(f"recipe file not found: {p}")
    try:
        data = load_yaml(p)
    except ZooError as exc:
        raise _as_recipe_error(exc) from None
    if isinstance(data, YMap) and "name" not in data:
        data["name"] = p.stem  # a recipe is named after its file unless it says otherwise
    return recipe_from_data(data, overrides=overrides)


def dump_recipe(recipe: Recipe) -> str:
    """The fully resolved recipe as YAML (defaults written out), as saved in a run directory."""
    import yaml

    header = f"# resolved recipe {recipe.name!r}: every default written out; load it with --resume\n"
    return header + yaml.safe_dump(recipe.to_data(), sort_keys=False, default_flow_style=None)
