"""Training objectives: ALBAR (pure functions and one module) and plain cross-entropy, filed in a registry
that ``objective.name`` picks from. Importing this package registers the built-in ones."""

from albar.objectives import (
    ce,  # noqa: F401  (registers "ce")
    sdn,  # noqa: F401  (registers "sdn")
)
from albar.objectives.albar import (
    ALBARLoss,
    ALBARParams,
    ALBARTerms,
    adversarial_ce,
    albar_loss,
    gradient_penalty,
    negative_entropy,
    static_clip,
    static_frame_index,
)
from albar.objectives.base import LossTerms, Objective, StepInput, Terms
from albar.objectives.ce import CrossEntropy
from albar.objectives.registry import ObjectiveConfig, build_objective, objective_names, register_objective

__all__ = [
    "ALBARLoss", "ALBARParams", "ALBARTerms", "CrossEntropy", "LossTerms", "Objective", "ObjectiveConfig",
    "StepInput", "Terms", "adversarial_ce", "albar_loss", "build_objective", "gradient_penalty",
    "negative_entropy", "objective_names", "register_objective", "static_clip", "static_frame_index",
]
