"""The ALBAR objective: pure functions and one small module."""

from albar.objectives.albar import (
    ALBARLoss,
    ALBARTerms,
    adversarial_ce,
    albar_loss,
    gradient_penalty,
    negative_entropy,
    static_clip,
    static_frame_index,
)

__all__ = [
    "ALBARLoss", "ALBARTerms", "adversarial_ce", "albar_loss", "gradient_penalty", "negative_entropy",
    "static_clip", "static_frame_index",
]
