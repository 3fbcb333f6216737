"""Run configuration, validated in one place: unknown keys and wrong types fail before any work."""

from __future__ import annotations

import copy
import reprlib
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
    # BatchNorm layers keep eval mode while training: their running statistics (pretrained) normalise, and are not
    # updated. What ALBAR needs with a BatchNorm model (r3d_18, ...): motion and static clips must not share
    # batch statistics. Their affine weights still train.
    freeze_bn: bool = False


class ObjectiveConfig(_Strict):
    """ALBAR weights; all three 0 is plain cross-entropy (the "None" baseline)."""

    w_adv: float = 1.0
    w_ent: float = 4.0
    w_gp: float = 10.0
    frame: Union[Literal["middle", "random", "first", "last"], int] = "middle"
    # Gradient-penalty norm. official (default): the released code's, one norm per (sample, width column) over
    # C, T, H, then the mean: what the paper's w_gp = 10 was tuned with. sample: the per-sample norm of the
    # paper's Eq. 4, ~sqrt(W) times larger (15x at 224 px): pair it with a w_gp ~sqrt(W) times smaller.
    gp_norm: Literal["sample", "official"] = "official"
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
    # ALBAR's release folder (<DS>_SCUBA_<Source>, <DS>_SCUFO_<Source>, <DS>_ConflFG_Stripe), possibly shared
    # by several datasets: every set of this dataset found there is evaluated (other datasets' sets are
    # skipped), labelled through the dataset's own splits, then ``bias_labels``, then (UCF101) the
    # v_<Class>_gNN_cNN name. Sets listed under ``bias`` are added to them.
    bias_root: Path | None = None
    # the prefix of the sets to read under bias_root; default: HMDB51/UCF101/K400 from ``source`` (with
    # ``lists``: the only dataset there); your own name for sets built with `make-bias-set --dataset NAME`
    bias_dataset: str | None = None
    bias_labels: Path | None = None  # filename,label CSV labelling the release's files (videos not in the splits)
    # class names, one per line or classInd style (``lists``; default: <root>/classes.txt when present)
    classes: Path | None = None
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

    _expand_root = field_validator("root", "splits", "bias_root", "bias_labels", "classes")(_expand)

    @field_validator("test_view")
    @classmethod
    def _view(cls, v: str) -> str:
        from albar.data.views import parse_view

        parse_view(v)
        return v


class EvalConfig(_Strict):
    batch_size: int | None = Field(default=None, gt=0)  # default: twice the training batch
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

    lr: float = Field(gt=0, allow_inf_nan=False, default=1e-4)
    # linear scaling rule: lr * global_batch / this; None: lr as is
    lr_reference_batch: int | None = Field(default=64, gt=0)
    weight_decay: float = Field(ge=0, allow_inf_nan=False, default=0.01)
    betas: tuple[float, float] = (0.9, 0.999)
    epochs: int = Field(gt=0, default=50)
    warmup_epochs: float = Field(ge=0, allow_inf_nan=False, default=5)
    batch_size: int = Field(gt=0, default=8)  # per process and per micro-batch
    grad_accum: int = Field(gt=0, default=1)  # micro-batches per optimiser step
    # max gradient norm; a clip <= 0 would scale every gradient to 0 or flip it (the loss then climbs)
    grad_clip: float | None = Field(default=None, gt=0, allow_inf_nan=False)

    @field_validator("betas")
    @classmethod
    def _betas(cls, v: tuple[float, float]) -> tuple[float, float]:
        # Adam's moment decay rates: 1 never forgets (the bias correction divides by 0), < 0 is meaningless
        if not all(0 <= b < 1 for b in v):
            raise ValueError("each beta must be in [0, 1)")
        return v


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
    """A configuration problem, with the offending file and key in the message."""


MAX_MESSAGE = 2000  # characters of an error message; longer ones are cut (a hostile file must not flood a terminal)


def shorten(text: str, limit: int = MAX_MESSAGE) -> str:
    """``text`` cut to ``limit`` characters, saying how much was left out."""
    return text if len(text) <= limit else f"{text[:limit]}... [{len(text) - limit} more characters]"


_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = 80
_REPR.maxlist = _REPR.maxtuple = _REPR.maxdict = _REPR.maxset = 6
_REPR.maxlevel = 3


def _format(err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"])
        # reprlib: bounded work and length even for a huge (or shared, alias-expanded) input
        lines.append(f"{key}: {e['msg']}" + (f" (got {_REPR.repr(e['input'])})" if e["type"] != "missing" else ""))
    return "invalid config:\n  " + "\n  ".join(lines)


class _Loader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses duplicate keys (naming the key and its lines) and alias bombs.

    A "billion laughs" document (~400 bytes: nine levels of nine aliases to the level below) composes to a
    small graph that expands to 9^9 scalars once validated or printed. Limits: at most ``MAX_ALIASES`` alias
    uses, and at most ``MAX_NODES`` nodes with every alias expanded (a real config has a few hundred).
    """

    MAX_ALIASES = 100
    MAX_NODES = 100_000

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._aliases = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > self.MAX_ALIASES:
                line = self.peek_event().start_mark.line + 1
                raise ConfigError(f"line {line}: more than {self.MAX_ALIASES} YAML aliases (*name); refused")
        return super().compose_node(parent, index)

    def construct_document(self, node: yaml.Node) -> Any:
        _expanded_size(node, self.MAX_NODES)
        return super().construct_document(node)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        first: dict[Any, int] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *base` merges are meant to be overridden by explicit keys
            key = self.construct_object(key_node)
            line = key_node.start_mark.line + 1
            if key in first:
                raise ConfigError(f"duplicate key {key!r} at line {line} (first at line {first[key]})")
            first[key] = line
        return super().construct_mapping(node, deep=deep)


def _expanded_size(root: yaml.Node, limit: int) -> int:
    """Nodes in ``root`` with aliases expanded (memoised, so a bomb costs its small graph); ConfigError past
    ``limit`` or on a recursive alias."""
    sizes: dict[int, int] = {}
    active: set[int] = set()

    def size(node: yaml.Node) -> int:
        if id(node) in sizes:
            return sizes[id(node)]
        if id(node) in active:
            raise ConfigError(f"line {node.start_mark.line + 1}: a YAML alias refers to itself; refused")
        total = 1
        if isinstance(node, (yaml.SequenceNode, yaml.MappingNode)):
            active.add(id(node))
            children = node.value if isinstance(node, yaml.SequenceNode) else [n for kv in node.value for n in kv]
            total += sum(size(child) for child in children)
            active.discard(id(node))
        if total > limit:
            raise ConfigError(f"line {node.start_mark.line + 1}: the YAML expands to more than {limit} values "
                              "(aliases); refused")
        sizes[id(node)] = total
        return total

    return size(root)


def _yaml(text: str) -> Any:
    """Parse YAML with :class:`_Loader`; ConfigError (without a file name) on anything wrong."""
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader
    except yaml.YAMLError as err:
        raise ConfigError(f"not valid YAML ({shorten(str(err), 500)})") from None
    except RecursionError:
        raise ConfigError("the YAML is nested too deeply") from None


def parse_config(data: dict[str, Any]) -> TrainConfig:
    try:
        return TrainConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(shorten(_format(err))) from None


def apply_override(data: dict[str, Any], override: str) -> None:
    """Apply ``key.sub=value`` to a nested dict; the value is parsed as YAML (``1e-4``, ``[1, 2]``, ``null``)."""
    if "=" not in override:
        raise ConfigError(f"override {shorten(repr(override), 200)} is not of the form key.sub=value")
    key, raw = override.split("=", 1)
    parts = key.strip().split(".")
    if not all(parts):
        raise ConfigError(f"override {shorten(repr(override), 200)} has an empty key part")
    node = data
    for i, part in enumerate(parts[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {override!r}: {'.'.join(parts[: i + 1])} is not a section")
        node = child
    try:
        node[parts[-1]] = _yaml(raw) if raw.strip() else None
    except ConfigError as err:
        raise ConfigError(f"override {key.strip()}: {err}") from None


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The mapping in a YAML config file; ConfigError naming the file when it is missing, unreadable, binary,
    not YAML, duplicates a key or is an alias bomb."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise ConfigError(f"{path}: cannot read ({err.strerror or err})") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        bad = raw[err.start:err.start + 4]
        raise ConfigError(f"{path}: not a UTF-8 text file (byte {err.start}: {bad!r}); a config is YAML text") \
            from None
    try:
        data = _yaml(text)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping, got {type(data).__name__}")
    return data


def config_from_data(data: dict[str, Any], overrides: list[str] | tuple[str, ...] = (),
                     source: str = "config") -> TrainConfig:
    """``data`` (a parsed config: a file's, or one recorded in a checkpoint) plus overrides, validated; errors
    start with ``source``."""
    data = copy.deepcopy(data)
    for override in overrides:
        apply_override(data, override)
    try:
        return parse_config(data)
    except ConfigError as err:
        raise ConfigError(f"{source}: {err}") from None


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> TrainConfig:
    """A YAML file (or the defaults) plus overrides, validated; errors name the file and the key."""
    data = read_config_file(path) if path is not None else {}
    return config_from_data(data, overrides, str(path) if path is not None else "config")


def dump_config(cfg: TrainConfig) -> str:
    """The resolved config as YAML, loadable by :func:`load_config`."""
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
