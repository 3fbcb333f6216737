"""The registry of training objectives: ``objective.name`` in a config picks one.

Register a new one in its own file (see docs/extending.md)::

    from pydantic import BaseModel
    from albar.objectives.base import LossTerms, Objective, StepInput
    from albar.objectives.registry import register_objective

    class FocalParams(BaseModel):
        gamma: float = 2.0

    @register_objective("focal", params=FocalParams)
    class Focal(Objective):
        def __init__(self, params: FocalParams) -> None:
            super().__init__()
            self.gamma = params.gamma

        def step_loss(self, model, batch: StepInput) -> LossTerms:
            ...
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import BaseModel

from albar.objectives.base import Objective
from albar.registry import Entry, NamedConfig, NoParams, Registry, declared

OBJECTIVES: Registry[Entry] = Registry("objective")
F = TypeVar("F", bound=Callable[..., Any])


def register_objective(name: str, params: type[BaseModel] = NoParams, replace: bool = False) -> Callable[[F], F]:
    """Decorator: file ``factory`` (a class or function taking the validated ``params`` model and returning an
    :class:`~albar.objectives.base.Objective`) under ``name``."""

    def add(factory: F) -> F:
        OBJECTIVES.add(Entry(name, factory, params), replace=replace)
        return factory

    return add


def objective_names() -> list[str]:
    return OBJECTIVES.names()


class ObjectiveConfig(NamedConfig):
    """``objective:`` of a config: ``name`` (``albar``, the default; ``ce``: plain cross-entropy; or any
    registered name) and that objective's parameters beside it (ALBAR: w_adv, w_ent, w_gp, frame, gp_norm,
    ramp_epochs). ALBAR with all three weights 0 is plain cross-entropy through the same code."""

    registry = OBJECTIVES
    section = "objective"
    name: str = "albar"


def build_objective(cfg: ObjectiveConfig | dict[str, Any], context: dict[str, Any] | None = None) -> Objective:
    """The objective a config section names, built from its validated parameters. ``context`` (the run's
    ``config``, ``model``, ``train_items``) is offered: the factory gets the entries it declares."""
    cfg = cfg if isinstance(cfg, ObjectiveConfig) else ObjectiveConfig.model_validate(cfg)
    factory = OBJECTIVES.get(cfg.name).factory
    objective = factory(cfg.params, **declared(factory, context))
    if not isinstance(objective, Objective):
        raise TypeError(f"objective {cfg.name!r}: its factory returned {type(objective).__name__}, not an "
                        f"albar.objectives.base.Objective")
    return objective
