"""The registry of batch methods (transformations of a training batch: Mixup, BE, StillMix...): ``method.name``
in a config picks one, and its parameters sit beside the name (``method: {name: mixup, mixup_alpha: 0.4}``).

A registration carries what the training step needs to know: the parameter model, the probability used when
``method.prob`` is unset, and whether the targets become a mixture (then the motion loss is the mixed
cross-entropy). Register a new one in its own file (see docs/extending.md)::

    from pydantic import BaseModel
    from albar.methods.batch import MixedBatch
    from albar.methods.registry import register_method

    class FlipParams(BaseModel):
        axis: int = -1

    @register_method("flip", params=FlipParams, default_prob=0.5)
    def flip(p: FlipParams):
        def transform(clip, labels, generator, prob) -> MixedBatch:
            ...
        return transform
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol, TypeVar

import torch
from pydantic import BaseModel, Field
from torch import Tensor

from albar.methods.batch import MixedBatch
from albar.registry import Entry, NamedConfig, NoParams, Registry, declared

StaticFrom = Literal["original", "mixed"]


class Transform(Protocol):
    """A built batch method: a seeded function of (clip, labels) that returns a :class:`MixedBatch` and
    transforms each sample with probability ``prob`` (conventions: :mod:`albar.methods.batch`)."""

    def __call__(self, clip: Tensor, labels: Tensor, generator: torch.Generator, prob: float) -> MixedBatch: ...


@dataclass(frozen=True)
class MethodEntry(Entry):
    default_prob: float = 1.0
    mixes_labels: bool = False


METHODS: Registry[MethodEntry] = Registry("batch method")
F = TypeVar("F", bound=Callable[..., Any])


def register_method(name: str, params: type[BaseModel] = NoParams, default_prob: float = 1.0,
                    mixes_labels: bool = False, replace: bool = False) -> Callable[[F], F]:
    """Decorator: file ``factory`` under ``name``. ``factory(params, **resources)`` receives the validated
    ``params`` model (and what :func:`build_method` was given, e.g. a frame bank) and returns a
    :class:`Transform`. ``default_prob``: the share of the batch transformed when ``method.prob`` is unset.
    ``mixes_labels``: the targets become a mixture (``target_b``, ``lam``), trained with the mixed CE."""
    if not 0.0 <= default_prob <= 1.0:
        raise ValueError(f"batch method {name!r}: default_prob must be in [0, 1], got {default_prob}")

    def add(factory: F) -> F:
        METHODS.add(MethodEntry(name, factory, params, default_prob, mixes_labels), replace=replace)
        return factory

    return add


def method_names() -> list[str]:
    return METHODS.names()


def method_entry(name: str) -> MethodEntry:
    return METHODS.get(name)


class MethodConfig(NamedConfig):
    """``method:`` of a config: the batch method applied to every training batch before the objective.

    ``name`` is a registered method (``none``, ``mixup``, ``videomix``, ``be``, ``stillmix``, ...), its parameters
    sit beside it. ``prob``: share of the batch transformed (None: the method's default). ``static_from``
    matters to objectives that cut a static clip (ALBAR): from the ``original`` (un-transformed) clip, the
    default, or the ``mixed`` one; see :func:`albar.methods.step.method_step` for why.
    """

    registry = METHODS
    section = "method"
    name: str = "none"
    prob: float | None = Field(default=None, ge=0.0, le=1.0)
    static_from: StaticFrom = "original"

    @property
    def effective_prob(self) -> float:
        """``prob``, or the method's default when unset."""
        return METHODS.get(self.name).default_prob if self.prob is None else self.prob

    @property
    def mixes_labels(self) -> bool:
        """Whether the targets become a mixture (Mixup, VideoMix) rather than the clip's own label."""
        return METHODS.get(self.name).mixes_labels


class BatchMethod:
    """A :class:`MethodConfig` made callable: ``method(clip, labels, generator) -> MixedBatch``. Build it once
    per run with :func:`build_method` (a factory may load files, such as StillMix's frame bank)."""

    def __init__(self, cfg: MethodConfig, transform: Transform) -> None:
        self.cfg, self.transform = cfg, transform
        self.prob = cfg.effective_prob
        self.mixes_labels = cfg.mixes_labels
        self.static_from: StaticFrom = cfg.static_from
        self.takes_extras = bool(declared(transform, {"extras": None}))  # ActorCutMix: the batch's masks

    def __call__(self, clip: Tensor, labels: Tensor, generator: torch.Generator,
                 extras: dict[str, Any] | None = None) -> MixedBatch:
        if self.takes_extras:
            return self.transform(clip, labels, generator, self.prob, extras=extras)
        return self.transform(clip, labels, generator, self.prob)


def build_method(cfg: MethodConfig | dict[str, Any], context: dict[str, Any] | None = None,
                 **resources: Any) -> BatchMethod:
    """The batch method a config section names. ``resources`` (``bank=`` a loaded frame bank) go to the
    method's factory; one it does not take is refused ("... does not use one")."""
    cfg = cfg if isinstance(cfg, MethodConfig) else MethodConfig.model_validate(cfg)
    entry = METHODS.get(cfg.name)
    accepted = inspect.signature(entry.factory).parameters
    takes_any = any(p.kind is p.VAR_KEYWORD for p in accepted.values())
    given = {k: v for k, v in resources.items() if v is not None}
    unused = [k for k in given if k not in accepted and not takes_any]
    if unused:
        raise ValueError(f"{', '.join(unused)} given, but batch method {cfg.name!r} does not use one")
    # ``context`` (the run's ``config``) is offered, not imposed: a factory gets what it declares
    return BatchMethod(cfg, entry.factory(cfg.params, **declared(entry.factory, context), **given))
