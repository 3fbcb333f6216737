"""Learning-rate rule of the paper: linear warmup then cosine to 0, as a factor per iteration."""

from __future__ import annotations

import math


def warmup_cosine(step: int, total_steps: int, warmup_steps: int) -> float:
    """Multiplier of the base LR at optimiser step ``step`` (0-based): ramps from 1/warmup to 1 over
    ``warmup_steps`` steps, then follows a cosine that reaches 0 at ``total_steps``."""
    if total_steps <= 0:
        raise ValueError("total_steps must be positive")
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(total_steps - warmup_steps, 1)
    return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


def scaled_lr(lr: float, global_batch: int, reference_batch: int | None) -> float:
    """Linear scaling rule: ``lr`` is given per ``reference_batch`` clips (paper: 1e-4 per 64)."""
    return lr if reference_batch is None else lr * global_batch / reference_batch
