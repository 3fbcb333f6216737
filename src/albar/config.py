"""Run configuration, validated in one place: unknown keys and wrong types fail before any work."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from albar.methods.config import MethodConfig
from albar.synthetic.benchmark import BenchmarkSpec


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ModelConfig(_Strict):
    name: str = "small3d"
    num_classes: int = Field(gt=1, default=8)
    weights: str | None = None  # torchvision weights name or local checkpoint path
    kwargs: dict[str, Any] = Field(default_factory=dict)


class ObjectiveConfig(_Strict):
    """ALBAR weights; all three 0 is plain cross-entropy (the "None" baseline)."""

    w_adv: float = 1.0
    w_ent: float = 4.0
    w_gp: float = 10.0
    frame: Union[Literal["middle", "random", "first", "last"], int] = "middle"
    # Static-clip weights ramp linearly from 0 over this many epochs. A model trained from scratch
    # otherwise collapses to a constant output (CE(x) - CE(s) = 0 when F ignores its input); the paper
    # fine-tunes a Kinetics-pretrained model and needs no ramp (0).
    ramp_epochs: float = Field(ge=0, default=0)


def _expand(path: Path | None) -> Path | None:
    return path.expanduser() if path is not None else None


class SetConfig(_Strict):
    """One clip list in mmaction2 format; relative entries resolve against ``root`` (default: its folder)."""

    list: Path
    root: Path | None = None
    key: Literal["path", "stem"] = "path"  # "stem" pairs a SCUBA zip with its SCUFO image by file name

    _expand_paths = field_validator("list", "root")(_expand)


class BiasSetsConfig(_Strict):
    scuba: dict[str, SetConfig] = Field(default_factory=dict)  # background source -> set
    scufo: dict[str, SetConfig] = Field(default_factory=dict)  # same sources, paired by key
    conflfg: SetConfig | None = None


class DataConfig(_Strict):
    """Where clips come from: ``lists`` (mmaction2 files), ``synthetic``, or a dataset as distributed."""

    source: Literal["lists", "synthetic", "hmdb51", "ucf101", "kinetics400"] = "lists"
    # lists: default root of relative entries; synthetic: where it is built; hmdb51/ucf101/kinetics400: videos
    root: Path | None = None
    # hmdb51: the folder of <class>_test_split<N>.txt; ucf101: ucfTrainTestlist/; kinetics400: the folder of
    # the annotation CSVs (train.csv, and validate.csv or val.csv, used as the test split)
    splits: Path | None = None
    split: int = Field(ge=1, le=3, default=1)
    # ALBAR's release folder (<DS>_SCUBA_<Source>, <DS>_SCUFO_<Source>, <DS>_ConflFG_Stripe): every set of
    # this dataset found there is evaluated, labelled through the dataset's own split (HMDB51, K400) or the
    # v_<Class>_gNN_cNN name (UCF101). Sets listed under ``bias`` are added to them.
    bias_root: Path | None = None
    synthetic: BenchmarkSpec = Field(default_factory=BenchmarkSpec)  # source: synthetic, built under root
    train: SetConfig | None = None
    val: SetConfig | None = None  # None: hold out ``val_fraction`` of train, stratified, seeded
    val_fraction: float = Field(gt=0, lt=1, default=0.2)
    test: SetConfig | None = None
    bias: BiasSetsConfig = Field(default_factory=BiasSetsConfig)
    num_frames: int = Field(gt=0, default=32)
    stride: int = Field(gt=0, default=2)
    # center: the paper's one centre clip; first: the official code's; "<clips>x<1|3>" (e.g. 4x3): clips
    # spread over the video x spatial crops, softmax averaged (mmaction2, StillMix)
    test_view: str = "center"
    crop_size: int = Field(gt=0, default=224)
    resize_short: int | None = 256
    train_crop: Literal["random_resized", "random", "center", "none"] = "random_resized"
    hflip: bool = True
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    num_workers: int = Field(ge=0, default=4)
    cache: bool = False  # keep decoded clips in memory (small sets of short videos; fixed clip per video)
    min_frames: int = Field(ge=1, default=1)  # a video with fewer frames is a failure ("too short")
    max_failure_fraction: float = Field(ge=0, lt=1, default=0.05)  # unreadable training files before stopping

    _expand_root = field_validator("root", "splits", "bias_root")(_expand)

    @field_validator("test_view")
    @classmethod
    def _view(cls, v: str) -> str:
        from albar.data.views import parse_view

        parse_view(v)
        return v


class EvalConfig(_Strict):
    batch_size: int | None = None  # default: twice the training batch
    bias_every_epochs: int = Field(ge=0, default=0)  # full bias suite every K epochs; 0: at the end only
    select_metric: Literal["val_top1"] = "val_top1"


class CheckpointConfig(_Strict):
    every_steps: int = Field(ge=0, default=0)  # also write ``last.pt`` every N optimiser steps (0: per epoch)


class LogConfig(_Strict):
    tensorboard: bool = True
    wandb: bool = False  # through accelerate's trackers; needs ``pip install wandb``
    project: str = "albar"


class OptimConfig(_Strict):
    """AdamW with linear warmup then cosine to 0, stepped per iteration (paper: 1e-4 per 64 clips)."""

    lr: float = Field(gt=0, default=1e-4)
    lr_reference_batch: int | None = 64  # linear scaling rule: lr * global_batch / this; None: lr as is
    weight_decay: float = Field(ge=0, default=0.01)
    betas: tuple[float, float] = (0.9, 0.999)
    epochs: int = Field(gt=0, default=50)
    warmup_epochs: float = Field(ge=0, default=5)
    batch_size: int = Field(gt=0, default=8)  # per process and per micro-batch
    grad_accum: int = Field(gt=0, default=1)  # micro-batches per optimiser step
    grad_clip: float | None = None


class TrainConfig(_Strict):
    out_dir: Path = Path("runs/albar")
    resume: Union[Literal["auto", "never"], Path] = "auto"  # auto: continue from out_dir/last.pt if present
    seed: int = 0
    threads: int | None = None  # torch CPU threads; None leaves torch's default
    mixed_precision: Literal["no", "bf16", "fp16"] = "no"
    model: ModelConfig = Field(default_factory=ModelConfig)
    objective: ObjectiveConfig = Field(default_factory=ObjectiveConfig)
    method: MethodConfig = Field(default_factory=MethodConfig)  # batch transformation: Mixup, BE, StillMix...
    data: DataConfig = Field(default_factory=DataConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    checkpoint: CheckpointConfig = Field(default_factory=CheckpointConfig)
    log: LogConfig = Field(default_factory=LogConfig)

    _expand_out = field_validator("out_dir")(_expand)

    @field_validator("mixed_precision", mode="before")
    @classmethod
    def _yaml_no(cls, v: object) -> object:
        return "no" if v is False else v  # YAML reads a bare `no` as false

    @field_validator("threads")
    @classmethod
    def _positive_threads(cls, v: int | None) -> int | None:
        if v is not None and v < 1:
            raise ValueError("threads must be >= 1")
        return v


class ConfigError(ValueError):
    """A configuration problem, with the offending key in the message."""


def _format(err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"])
        lines.append(f"{key}: {e['msg']}" + (f" (got {e['input']!r})" if e["type"] != "missing" else ""))
    return "invalid config:\n  " + "\n  ".join(lines)


def parse_config(data: dict[str, Any]) -> TrainConfig:
    try:
        return TrainConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_format(err)) from None


def apply_override(data: dict[str, Any], override: str) -> None:
    """Apply ``key.sub=value`` to a nested dict; the value is parsed as YAML (``1e-4``, ``[1, 2]``, ``null``)."""
    if "=" not in override:
        raise ConfigError(f"override {override!r} is not of the form key.sub=value")
    key, raw = override.split("=", 1)
    parts = key.strip().split(".")
    if not all(parts):
        raise ConfigError(f"override {override!r} has an empty key part")
    node = data
    for i, part in enumerate(parts[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {override!r}: {'.'.join(parts[: i + 1])} is not a section")
        node = child
    node[parts[-1]] = yaml.safe_load(raw) if raw.strip() else None


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> TrainConfig:
    """A YAML file (or the defaults) plus overrides, validated; errors name the file and the key."""
    data: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as err:
            raise ConfigError(f"{path}: not valid YAML ({err})") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: the top level must be a mapping, got {type(data).__name__}")
    for override in overrides:
        apply_override(data, override)
    try:
        return parse_config(data)
    except ConfigError as err:
        raise ConfigError(f"{path or 'config'}: {err}") from None


def dump_config(cfg: TrainConfig) -> str:
    """The resolved config as YAML, loadable by :func:`load_config`."""
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
