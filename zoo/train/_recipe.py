"""Training recipes: the Pydantic schema (loading and ``--set`` overrides are in ``_overrides``).

A recipe is a YAML file that says what to train (a registry model), on what (a dataset and its
transforms), and how (optimizer, schedule, loss, epochs, precision, fine-tuning). It is loaded
with :func:`zoo._yaml.load_yaml`, so every value remembers where it was written, and validated
with :func:`zoo._pydantic_errors.validate`, so a misspelled key reads
``recipes/x.yaml:7:3: optimizer.lr_rate: unknown key 'lr_rate' did you mean 'lr'?``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import pydantic
from pydantic import ConfigDict, Field

from .._strict import Strict

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
]

DATASETS = ("digits", "mnist", "fashion_mnist", "cifar10", "imagefolder")

PosInt = Annotated[int, Field(gt=0)]
NonNegInt = Annotated[int, Field(ge=0)]
PosFloat = Annotated[float, Field(gt=0)]
NonNegFloat = Annotated[float, Field(ge=0)]
Fraction = Annotated[float, Field(ge=0, lt=1)]
Monitor = Literal["val_loss", "val_accuracy"]
Seed = Annotated[int, Field(ge=0, lt=2**63)]  # torch generators take signed 64-bit seeds
MAX_BATCH_BYTES = 4 * 1024**3  # one resized float32 batch; above this a recipe is refused before loading data
OPTIMIZERS_WITH_MOMENTUM = ("sgd", "rmsprop")


class _Section(Strict):
    """Every section refuses unknown keys, so a typo is an error rather than a silent default, and
    reads values as architecture files do (``Strict``): ``epochs: true`` is not 1 epoch and a flag
    is only true/false."""

    # inf/nan never make sense in a recipe: lr .inf trains to NaN and used to exit 0
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class ModelSection(_Section):
    """Which registry model to build and with what overrides of its declared parameters."""

    name: str
    params: dict[str, Any] = Field(default_factory=dict)
    num_classes: PosInt | None = None  # default: the dataset's number of classes
    in_channels: PosInt | None = None  # default: the data's channels (first conv adapted)


class AugmentSection(_Section):
    """Random transforms of training images: for in-memory datasets one affine per image applied to
    whole batches on the device; for imagefolder the same settings as torchvision ``transforms.v2``
    in the loader's workers."""

    rotation: Annotated[float, Field(ge=0, le=180)] = 0.0  # degrees, uniform in [-r, r]
    translate: Annotated[float, Field(ge=0, lt=1)] = 0.0  # fraction of width/height
    scale: Annotated[float, Field(ge=0, lt=1)] = 0.0  # zoom uniform in [1 - s, 1 + s]
    crop_padding: NonNegInt = 0  # pad-and-crop as integer pixel shifts in [-p, p]
    hflip: bool = False  # mirror half of the images (never for digits)

    @property
    def enabled(self) -> bool:
        return bool(self.rotation or self.translate or self.scale or self.crop_padding or self.hflip)


class TTASection(_Section):
    """Test-time augmentation: validation, test and prediction scores average the class
    probabilities of each image and its copies moved ``shift`` pixels (of the model's input) up,
    down, left and right, and of their mirror images with ``hflip``."""

    shift: Annotated[int, Field(ge=0, le=8)] = 0  # 0: the image alone
    hflip: bool = False  # mirrored copies too (never for digits)

    @property
    def enabled(self) -> bool:
        return bool(self.shift or self.hflip)


class DataSection(_Section):
    """Dataset, splits and the per-batch transforms."""

    dataset: Literal["digits", "mnist", "fashion_mnist", "cifar10", "imagefolder"]
    # MNIST/, FashionMNIST/ or cifar-10-batches-py/ are looked for here; for imagefolder the folder
    # itself: one sub-folder per class, or train/ (val/, test/) each holding one sub-folder per class
    root: str = "data"
    download: bool = True  # try to download when the files are absent
    val_split: Fraction = 0.1  # fraction of the training set held out for validation
    validate_on: Literal["split", "test", "none"] = "split"  # "test": the lecture's choice
    split_seed: Seed = 0  # the held-out split does not move when the training seed does
    test_split: Fraction = 0.2  # imagefolder without a test/ folder: fraction of each class held out for testing
    workers: NonNegInt = 2  # imagefolder: DataLoader worker processes decoding and augmenting images
    # use only N training / test images (quick runs, small-data studies): a random sample with each
    # class's share of the whole, fixed by split_seed
    train_limit: PosInt | None = None
    test_limit: PosInt | None = None
    channels: Literal[1, 3] | None = None  # convert gray<->RGB; default: keep the data's
    resize: PosInt | None = None  # square side to resize batches to (inception needs >= 75)
    # unit: [0, 1]; standard: the training set's mean/std; imagenet: torchvision's ImageNet statistics;
    # inception: [-1, 1] (mean = std = 0.5, as timm's Inception and Xception weights expect)
    normalize: Literal["unit", "standard", "imagenet", "inception"] = "unit"
    augment: AugmentSection = Field(default_factory=AugmentSection)
    tta: TTASection = Field(default_factory=TTASection)
    drop_last: bool = False


class OptimizerSection(_Section):
    name: Literal["sgd", "adam", "adamw", "rmsprop", "adadelta"] = "adam"
    lr: PosFloat = 1e-3
    momentum: NonNegFloat = 0.0
    nesterov: bool = False
    weight_decay: NonNegFloat = 0.0
    betas: tuple[Fraction, Fraction] = (0.9, 0.999)
    eps: PosFloat | None = None  # default: the torch optimizer's own

    # field validators (not one model validator) so an error points at the key's own line;
    # fields validate in order, so name and momentum are in ``info.data`` here
    @pydantic.field_validator("momentum")
    @classmethod
    def _has_momentum(cls, value: float, info: pydantic.ValidationInfo) -> float:
        name = info.data.get("name")
        if value and name not in OPTIMIZERS_WITH_MOMENTUM:
            hint = " (its momentum is betas[0])" if name in ("adam", "adamw") else ""
            raise ValueError(f"optimizer {name!r} has no momentum{hint}; momentum applies to sgd and rmsprop")
        return value

    @pydantic.field_validator("nesterov")
    @classmethod
    def _nesterov_needs_momentum(cls, value: bool, info: pydantic.ValidationInfo) -> bool:
        if value and (info.data.get("name") != "sgd" or not info.data.get("momentum")):
            raise ValueError("nesterov needs optimizer 'sgd' with momentum > 0")
        return value


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


PictureName = Literal["curves", "confusion", "misclassified", "feature_maps", "kernels"]
PICTURE_NAMES: tuple[PictureName, ...] = ("curves", "confusion", "misclassified", "feature_maps", "kernels")


class ReportsSection(_Section):
    enabled: bool = True  # write the report and the pictures after training
    # pictures drawn at the end of training; the others on request: zoo visualize RUN_DIR
    pictures: list[PictureName] = Field(default_factory=lambda: list(PICTURE_NAMES))
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
    seed: Seed = 0
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
    tensorboard: bool | None = None  # event files beside history.csv; default: when tensorboard is installed

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
        if self.schedule.name in ("cosine", "plateau") and self.schedule.min_lr >= self.optimizer.lr:
            raise ValueError(
                f"schedule.min_lr {self.schedule.min_lr:g} is not below optimizer.lr {self.optimizer.lr:g}: "
                "the schedule could never lower the rate"
            )
        if self.data.resize is not None:
            batch_bytes = max(self.batch_size, self.effective_eval_batch_size) * 3 * self.data.resize**2 * 4
            if batch_bytes > MAX_BATCH_BYTES:
                raise ValueError(
                    f"data.resize {self.data.resize} makes one batch of {self.effective_eval_batch_size} images "
                    f"{batch_bytes / 1024**3:.1f} GiB (limit {MAX_BATCH_BYTES // 1024**3} GiB): lower resize or the batch sizes"
                )
        return self

    @property
    def effective_eval_batch_size(self) -> int:
        return self.eval_batch_size or max(self.batch_size, 256)

    def to_data(self) -> dict[str, Any]:
        """Plain data (what ``recipe.yaml`` in a run directory holds)."""
        return self.model_dump(mode="json")
