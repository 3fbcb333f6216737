"""One training step: the batch method, then the objective ("ALBAR + X" is objective albar with method X).

Plain CE (objective ``ce``, or ALBAR with all weights 0) with method none, Mixup, VideoMix, BE or StillMix gives
the baselines; objective ``albar`` with method ``none`` is ALBAR, with ``stillmix`` ALBAR + StillMix.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from albar.methods.batch import MixedBatch, mixed_cross_entropy
from albar.methods.registry import BatchMethod, MethodConfig, build_method
from albar.objectives.base import Objective, StepInput, Terms


@dataclass
class MethodStep:
    """The objective's terms and the transformed batch they were computed on."""

    terms: Terms
    batch: MixedBatch


def method_step(
    model: Callable[[Tensor], Tensor],
    clip: Tensor,
    labels: Tensor,
    method: BatchMethod | MethodConfig,
    objective: Objective,
    generator: torch.Generator,
    step: int | None = None,
    steps_per_epoch: int | None = None,
    extras: dict[str, Any] | None = None,
) -> MethodStep:
    """Transform the batch with ``method``, then apply ``objective`` (after ``step`` optimiser steps of
    ``steps_per_epoch`` per epoch, for its schedules; None: full weights).

    The motion clip is the transformed clip. Its loss is the mixed cross-entropy for label-mixing
    methods (Mixup, VideoMix) and plain cross-entropy on the clip's own label otherwise. The static
    clip's adversarial CE always uses the clip's own label ``labels``.

    ``static_from='original'`` (the default) cuts ALBAR's static clip from the UN-transformed clip. Why:
    the static branch asks "can the model name the action from this clip's still appearance?", and
    penalises a confident, correct answer. A static clip cut from a StillMix clip is
    lam * frame_i + (1 - lam) * frame_of_another_video with lam ~ 0.5: half of it is another video's
    scene, so the adversarial CE against y_i and the entropy term would partly act on a foreign scene
    that is not the bias of y_i, diluting the signal; with Mixup/VideoMix the still frame even carries a
    second label. The official ALBAR code behaves the same way: its static clips are loaded separately
    and never pass through StillMix (``train.py`` feeds only the temporal clips to the blender). The
    ``mixed`` option is there to measure the difference.
    """
    if isinstance(method, MethodConfig):
        method = build_method(method)
    batch = method(clip, labels, generator, extras=extras)  # extras: the loader batch's other entries
    if method.mixes_labels:
        motion_loss = partial(mixed_cross_entropy, batch=batch)
    else:
        motion_loss = partial(F.cross_entropy, target=batch.target_a)
    static_source = clip if method.static_from == "original" else batch.clip
    inputs = StepInput(batch.clip, batch.target_a, motion_loss, static_source, generator, step, steps_per_epoch,
                       dict(extras or {}))
    return MethodStep(terms=objective.step_loss(model, inputs), batch=batch)
