"""Configuration of the training-time batch method (issue 5): which transformation, with which parameters.

Flat, prefixed parameters (``mixup_alpha``, ``videomix_alpha``, ...) so that ``extra="forbid"`` catches a
misspelt key, and a cross-field check rejects settings that the chosen method would silently ignore.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

MethodName = Literal["none", "mixup", "videomix", "be", "stillmix"]
StaticFrom = Literal["original", "mixed"]

# Fraction of the batch transformed when ``prob`` is left unset. StillMix: 0.5, the official StillMix
# and ALBAR default (the StillMix HMDB51 frame-bank config uses 0.75). The other methods transform the
# whole batch, as the mmaction2 blendings the StillMix benchmark ran for Table 1 do.
DEFAULT_PROB: dict[str, float] = {"none": 1.0, "mixup": 1.0, "videomix": 1.0, "be": 1.0, "stillmix": 0.5}


class MethodConfig(BaseModel):
    """One batch transformation, applied to every training batch before the ALBAR objective.

    ``static_from`` matters only when ALBAR's static terms are on (some ALBAR weight is non-zero): the
    static clip is cut from the ``original`` (un-transformed) clip, the default, or from the ``mixed``
    one. See :func:`albar.methods.step.method_step` for why ``original`` is the default.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    name: MethodName = "none"
    prob: float | None = Field(default=None, ge=0.0, le=1.0)  # None: DEFAULT_PROB[name]
    mixup_alpha: float = Field(default=0.2, gt=0)  # lambda ~ Beta(a, a); mmaction2's MixupBlending default
    videomix_alpha: float = Field(default=1.0, gt=0)  # lambda ~ Beta(a, a); Beta(1, 1) = U(0, 1): CutMix/VideoMix
    be_max_weight: float = Field(default=0.3, gt=0, le=1)  # BE: a ~ U(0, max), x' = (1 - a) x + a frame
    stillmix_alpha: tuple[float, float] = (200.0, 200.0)  # clip weight ~ Beta(a1, a2) (StillMix default)
    stillmix_source: Literal["random", "bank"] = "random"  # a frame of another clip, or of the frame bank
    bank_path: Path | None = None  # .pt file written by albar.methods.bank.save_frame_bank
    static_from: StaticFrom = "original"

    @property
    def effective_prob(self) -> float:
        """``prob``, or the method's default when unset."""
        return DEFAULT_PROB[self.name] if self.prob is None else self.prob

    @property
    def mixes_labels(self) -> bool:
        """Whether the targets become a mixture (Mixup, VideoMix) rather than the clip's own label."""
        return self.name in ("mixup", "videomix")

    @model_validator(mode="after")
    def _consistent(self) -> MethodConfig:
        if any(a <= 0 for a in self.stillmix_alpha):
            raise ValueError(f"stillmix_alpha must be two positive numbers, got {self.stillmix_alpha}")
        uses_bank = self.name == "stillmix" and self.stillmix_source == "bank"
        if uses_bank and self.bank_path is None:
            raise ValueError("stillmix_source='bank' needs bank_path (a frame bank built by albar.methods.bank)")
        if self.bank_path is not None and not uses_bank:
            raise ValueError(
                f"bank_path is set but unused: it needs name='stillmix' and stillmix_source='bank' "
                f"(got name={self.name!r}, stillmix_source={self.stillmix_source!r})"
            )
        return self
