"""The batch methods of the paper's Table 1, registered by name: none, mixup, videomix, be, stillmix.

Each registration ties a pure function of :mod:`albar.methods.batch` to its parameters (the config keys beside
``method.name``), its default probability and whether it mixes labels.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from albar.methods.bank import FrameBank, load_frame_bank
from albar.methods.batch import background_erasing, identity, mixup, stillmix, stillmix_frames, videomix
from albar.methods.registry import Transform, register_method
from albar.registry import NoParams


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid")


@register_method("none", params=NoParams)
def _none(params: NoParams) -> Transform:
    return lambda clip, labels, generator, prob: identity(clip, labels, generator)


class MixupParams(_Params):
    mixup_alpha: float = Field(default=0.2, gt=0)  # lambda ~ Beta(a, a); mmaction2's MixupBlending default


@register_method("mixup", params=MixupParams, default_prob=1.0, mixes_labels=True)
def _mixup(p: MixupParams) -> Transform:
    return lambda clip, labels, generator, prob: mixup(clip, labels, generator, alpha=p.mixup_alpha, prob=prob)


class VideoMixParams(_Params):
    videomix_alpha: float = Field(default=1.0, gt=0)  # lambda ~ Beta(a, a); Beta(1, 1) = U(0, 1): CutMix/VideoMix


@register_method("videomix", params=VideoMixParams, default_prob=1.0, mixes_labels=True)
def _videomix(p: VideoMixParams) -> Transform:
    return lambda clip, labels, generator, prob: videomix(clip, labels, generator, alpha=p.videomix_alpha,
                                                          prob=prob)


class BEParams(_Params):
    be_max_weight: float = Field(default=0.3, gt=0, le=1)  # BE: a ~ U(0, max), x' = (1 - a) x + a frame


@register_method("be", params=BEParams, default_prob=1.0)
def _be(p: BEParams) -> Transform:
    return lambda clip, labels, generator, prob: background_erasing(clip, labels, generator,
                                                                    max_weight=p.be_max_weight, prob=prob)


class StillMixParams(_Params):
    stillmix_alpha: tuple[float, float] = (200.0, 200.0)  # clip weight ~ Beta(a1, a2) (StillMix default)
    stillmix_source: Literal["random", "bank"] = "random"  # a frame of another clip, or of the frame bank
    bank_path: Path | None = None  # .pt file written by albar.methods.bank.save_frame_bank

    @model_validator(mode="after")
    def _consistent(self) -> StillMixParams:
        if any(a <= 0 for a in self.stillmix_alpha):
            raise ValueError(f"stillmix_alpha must be two positive numbers, got {self.stillmix_alpha}")
        if self.stillmix_source == "bank" and self.bank_path is None:
            raise ValueError("stillmix_source='bank' needs bank_path (a frame bank built by albar.methods.bank)")
        if self.bank_path is not None and self.stillmix_source != "bank":
            raise ValueError("bank_path is set but unused: it needs stillmix_source='bank' (got "
                             f"stillmix_source={self.stillmix_source!r})")
        return self


# StillMix: 0.5 of the batch, the official StillMix and ALBAR default (the StillMix HMDB51 frame-bank config uses
# 0.75). The other methods transform the whole batch, as the mmaction2 blendings the StillMix benchmark ran for
# Table 1 do.
@register_method("stillmix", params=StillMixParams, default_prob=0.5)
def _stillmix(p: StillMixParams, bank: FrameBank | None = None) -> Transform:
    if p.stillmix_source == "random":
        if bank is not None:
            raise ValueError("a frame bank was given but method 'stillmix' (source 'random') does not use one")
        return lambda clip, labels, generator, prob: stillmix(clip, labels, generator, alpha=p.stillmix_alpha,
                                                              prob=prob)
    frames = (bank if bank is not None else load_frame_bank(p.bank_path)).frames  # type: ignore[arg-type]
    return lambda clip, labels, generator, prob: stillmix_frames(clip, labels, frames, generator,
                                                                 alpha=p.stillmix_alpha, prob=prob)
