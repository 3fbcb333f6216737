"""Plain cross-entropy (``objective.name: ce``): the "None" baseline, and the base that batch methods such as
Mixup or StillMix train with."""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor

from albar.objectives.base import LossTerms, Objective, StepInput
from albar.objectives.registry import register_objective
from albar.registry import NoParams


@register_objective("ce", params=NoParams)
class CrossEntropy(Objective):
    """The motion clip's loss alone: cross-entropy, or the batch method's mixed cross-entropy. Its logged terms
    (loss, ce) and its numbers are those of ALBAR with all three weights 0."""

    def __init__(self, params: NoParams | None = None) -> None:
        super().__init__()

    def step_loss(self, model: Callable[[Tensor], Tensor], batch: StepInput) -> LossTerms:
        logits = model(batch.clip)
        ce = batch.motion_loss(logits)
        return LossTerms(total=ce, logits=logits, parts={"ce": ce})
