"""Run configuration, validated in one place: unknown keys and wrong types fail before any work.

The sections of the layers below are theirs: ``data`` (:mod:`albar.data.spec`), ``objective``
(:mod:`albar.objectives.registry`), ``method`` (:mod:`albar.methods.registry`); this module assembles them.
"""

from __future__ import annotations

import copy
import reprlib
from pathlib import Path
from typing import Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from albar.data.spec import BiasSetsConfig, DataConfig, SetConfig, expand_user  # noqa: F401  (re-exported)
from albar.methods.registry import MethodConfig
from albar.objectives.registry import ObjectiveConfig


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


class CompileConfig(_Strict):
    """torch.compile of the training step's first-order passes: the motion clip, the static clips outside the
    exact gradient penalty, every finite-difference pass. The exact penalty's pass stays eager (compiled graphs
    have no double backward); validation and evaluation stay eager. ``backend``, ``mode``, ``dynamic`` and
    ``fullgraph`` are torch.compile's (``dynamic: false``: the step's batch sizes are fixed, one graph each)."""

    enabled: bool = False
    backend: str = "inductor"
    mode: Literal["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"] | None = None
    dynamic: bool | None = False
    fullgraph: bool = False


# sections that a bool switches on or off: `compile: true` is `compile: {enabled: true}`
SWITCH_SECTIONS = ("compile",)


class TrainConfig(_Strict):
    out_dir: Path = Path("runs/albar")
    resume: Union[Literal["auto", "never"], Path] = "auto"  # auto: continue from out_dir/last.pt if present
    seed: int = Field(ge=0, default=0)  # numpy's generators take non-negative seeds
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
    compile: CompileConfig = Field(default_factory=CompileConfig)  # `compile: true` is short for enabled: true

    _expand_out = field_validator("out_dir")(expand_user)

    @field_validator("mixed_precision", mode="before")
    @classmethod
    def _yaml_no(cls, v: object) -> object:
        return "no" if v is False else v  # YAML reads a bare `no` as false

    @field_validator("compile", mode="before")
    @classmethod
    def _compile_switch(cls, v: object) -> object:
        if isinstance(v, bool):
            return {"enabled": v}
        if not isinstance(v, (dict, CompileConfig)):
            raise ValueError(f"true, false or a section with keys {', '.join(CompileConfig.model_fields)}")
        return v

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
        msg = str(e["msg"]).removeprefix("Value error, ")
        if msg.startswith((f"{key}.", f"{key}:")):  # names its key itself (objective.w_adv, method.bank_path)
            lines.append(msg)
            continue
        lines.append(f"{key}: {msg}" + (f" (got {_REPR.repr(e['input'])})" if e["type"] != "missing" else ""))
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
        if isinstance(child, bool) and i == 0 and part in SWITCH_SECTIONS:  # `compile: true` + compile.mode=...
            child = node[part] = {"enabled": child}
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


def _merge(base: dict[str, Any], fragment: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in fragment.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def apply_fragment(base: TrainConfig, fragment: dict[str, Any], source: str = "fragment") -> TrainConfig:
    """``base`` with ``fragment`` (a partial config, e.g. ``{"objective": {"name": "ce"}, "method": {"name":
    "stillmix"}}``) merged in, validated. A fragment that changes ``objective.name`` or ``method.name`` replaces
    that section's parameters (another objective's weights would be refused); the section's common fields
    (``method.prob``, ``method.static_from``) are kept."""
    data = base.model_dump(mode="json")
    for section, model in (("objective", ObjectiveConfig), ("method", MethodConfig)):
        new = fragment.get(section)
        if isinstance(new, dict) and "name" in new and new["name"] != data[section].get("name"):
            data[section] = {k: v for k, v in data[section].items() if k in model.model_fields and k != "name"}
    return config_from_data(_merge(data, fragment), source=source)


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> TrainConfig:
    """A YAML file (or the defaults) plus overrides, validated; errors name the file and the key."""
    data = read_config_file(path) if path is not None else {}
    return config_from_data(data, overrides, str(path) if path is not None else "config")


def dump_config(cfg: TrainConfig) -> str:
    """The resolved config as YAML, loadable by :func:`load_config`."""
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
