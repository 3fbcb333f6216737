"""What every training objective receives and returns: the seam between the step and the loss.

A training step (:func:`albar.methods.step.method_step`) transforms the batch with the configured batch method,
then hands the objective one :class:`StepInput`. The objective returns :class:`Terms`: the total to
backpropagate, the motion logits (for training accuracy) and the scalars to log.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import Tensor, nn


@dataclass
class StepInput:
    """One training batch, as the objective sees it.

    ``clip`` is what the model trains on (after the batch method); ``labels`` each clip's own label;
    ``motion_loss`` the loss of the logits of ``clip``: cross-entropy against ``labels``, or the method's mixed
    cross-entropy when it mixes labels (Mixup, VideoMix). ``static_source`` is the clip an objective should cut
    appearance-only views from: the clip before the batch method (``method.static_from: original``, the
    default) or ``clip`` itself (``mixed``). ``step`` (optimiser steps done) and ``steps_per_epoch`` drive
    schedules such as ALBAR's ramp; ``step=None`` means "after every schedule" (full weights). ``extras``: the
    loader batch's other entries (``key``, ``index``, ``actor_mask``...), tensors on the clip's device.
    """

    clip: Tensor
    labels: Tensor
    motion_loss: Callable[[Tensor], Tensor]
    static_source: Tensor
    generator: torch.Generator | None = None
    step: int | None = None
    steps_per_epoch: int | None = None
    extras: dict[str, Any] = field(default_factory=dict)


class Terms(Protocol):
    """What an objective returns: ``total`` to backpropagate, the motion ``logits``, and named scalars."""

    total: Tensor
    logits: Tensor

    def scalars(self) -> dict[str, float]: ...


@dataclass
class LossTerms:
    """A generic :class:`Terms`: the total, the motion logits and any named parts (logged as given)."""

    total: Tensor
    logits: Tensor
    parts: dict[str, Tensor] = field(default_factory=dict)

    def scalars(self) -> dict[str, float]:
        return {"loss": float(self.total.detach()), **{k: float(v.detach()) for k, v in self.parts.items()}}


class Objective(nn.Module):
    """Base of a registered objective: implement :meth:`step_loss`.

    ``per_sample_inputs``: whether the objective passes extra inputs of the same samples through the model
    (ALBAR's static clips) or penalises per sample, so that BatchNorm in train mode would couple what it treats
    as independent (the trainer warns then).
    """

    per_sample_inputs: bool = False

    def step_loss(self, model: Callable[[Tensor], Tensor], batch: StepInput) -> Terms:
        raise NotImplementedError(f"{type(self).__name__} must implement step_loss(model, batch)")
