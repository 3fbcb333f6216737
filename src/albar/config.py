"""Run configuration, validated in one place: unknown keys and wrong types fail before any work."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator


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


class DataConfig(_Strict):
    root: Path | None = None  # relative list entries resolve against it (default: the list's folder)
    train_list: Path | None = None
    val_list: Path | None = None
    num_frames: int = Field(gt=0, default=32)
    stride: int = Field(gt=0, default=2)
    crop_size: int = Field(gt=0, default=224)
    resize_short: int | None = 256
    train_crop: Literal["random_resized", "random", "center", "none"] = "random_resized"
    hflip: bool = True
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    num_workers: int = Field(ge=0, default=4)
    cache: bool = False  # keep decoded clips in memory (small datasets of short videos)


class OptimConfig(_Strict):
    """AdamW with linear warmup then cosine to 0, stepped per iteration (paper: 1e-4 per 64 clips)."""

    lr: float = Field(gt=0, default=1e-4)
    lr_reference_batch: int | None = 64  # linear scaling rule: lr * global_batch / this; None: lr as is
    weight_decay: float = Field(ge=0, default=0.01)
    betas: tuple[float, float] = (0.9, 0.999)
    epochs: int = Field(gt=0, default=50)
    warmup_epochs: float = Field(ge=0, default=5)
    batch_size: int = Field(gt=0, default=8)  # per process
    grad_clip: float | None = None


class TrainConfig(_Strict):
    seed: int = 0
    threads: int | None = None  # torch CPU threads; None leaves torch's default
    mixed_precision: Literal["no", "bf16", "fp16"] = "no"
    model: ModelConfig = Field(default_factory=ModelConfig)
    objective: ObjectiveConfig = Field(default_factory=ObjectiveConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)

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
