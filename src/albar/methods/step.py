"""One training step of a Table 1 method: the batch transformation, then the ALBAR objective.

With all ALBAR weights 0 the objective is plain cross-entropy, so the same step covers None, Mixup,
VideoMix, BE and StillMix (the baselines), ALBAR (``name='none'`` with ALBAR weights) and
ALBAR + StillMix.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import torch
from torch import Tensor

from albar.methods.bank import FrameBank, load_frame_bank
from albar.methods.batch import (
    MixedBatch,
    background_erasing,
    identity,
    mixed_cross_entropy,
    mixup,
    stillmix,
    stillmix_frames,
    videomix,
)
from albar.methods.config import MethodConfig
from albar.objectives import ALBARLoss, ALBARTerms


class BatchMethod:
    """A :class:`MethodConfig` made callable: ``method(clip, labels, generator) -> MixedBatch``.

    Build it once per run (it loads the frame bank, if any, from ``cfg.bank_path`` unless ``bank`` is
    given).
    """

    def __init__(self, cfg: MethodConfig, bank: FrameBank | None = None) -> None:
        self.cfg = cfg
        self.bank: FrameBank | None = None
        if cfg.name == "stillmix" and cfg.stillmix_source == "bank":
            self.bank = bank if bank is not None else load_frame_bank(cfg.bank_path)  # type: ignore[arg-type]
        elif bank is not None:
            raise ValueError(f"a frame bank was given but method {cfg.name!r} (source {cfg.stillmix_source!r}) "
                             f"does not use one")

    @property
    def static_from(self) -> str:
        return self.cfg.static_from

    @property
    def mixes_labels(self) -> bool:
        return self.cfg.mixes_labels

    def __call__(self, clip: Tensor, labels: Tensor, generator: torch.Generator) -> MixedBatch:
        c, p = self.cfg, self.cfg.effective_prob
        if c.name == "none":
            return identity(clip, labels, generator)
        if c.name == "mixup":
            return mixup(clip, labels, generator, alpha=c.mixup_alpha, prob=p)
        if c.name == "videomix":
            return videomix(clip, labels, generator, alpha=c.videomix_alpha, prob=p)
        if c.name == "be":
            return background_erasing(clip, labels, generator, max_weight=c.be_max_weight, prob=p)
        if c.name == "stillmix" and c.stillmix_source == "random":
            return stillmix(clip, labels, generator, alpha=c.stillmix_alpha, prob=p)
        if c.name == "stillmix":
            assert self.bank is not None
            return stillmix_frames(clip, labels, self.bank.frames, generator, alpha=c.stillmix_alpha, prob=p)
        raise ValueError(f"unknown method name {c.name!r}")  # unreachable: MethodConfig validates the name


def build_method(cfg: MethodConfig | dict, bank: FrameBank | None = None) -> BatchMethod:
    """A :class:`BatchMethod` from a config (or a dict validated into one)."""
    return BatchMethod(cfg if isinstance(cfg, MethodConfig) else MethodConfig.model_validate(cfg), bank)


@dataclass
class MethodStep:
    """The objective's terms and the transformed batch they were computed on."""

    terms: ALBARTerms
    batch: MixedBatch


def method_step(
    model: Callable[[Tensor], Tensor],
    clip: Tensor,
    labels: Tensor,
    method: BatchMethod | MethodConfig,
    criterion: ALBARLoss,
    generator: torch.Generator,
    weight_scale: float = 1.0,
) -> MethodStep:
    """Transform the batch with ``method``, then apply ``criterion`` (ALBAR; all weights 0: plain CE).

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
    batch = method(clip, labels, generator)
    motion_loss = partial(mixed_cross_entropy, batch=batch) if method.mixes_labels else None
    static_from = clip if method.static_from == "original" else None
    terms = criterion(model, batch.clip, batch.target_a, generator=generator, static_from=static_from,
                      motion_loss=motion_loss, weight_scale=weight_scale)
    return MethodStep(terms=terms, batch=batch)
