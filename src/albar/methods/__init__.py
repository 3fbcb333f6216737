"""Training-time debiasing methods of the paper's Table 1, as seeded batch transformations (issue 5).

Implemented: None (identity), Mixup, VideoMix (spatial CutMix, one box for all frames), BE (Background
Erasing), StillMix (random frame of another clip, or a frame bank built with a 2D reference network),
and their composition with the ALBAR objective (:func:`method_step`, which also gives ALBAR alone and
ALBAR + StillMix). See :mod:`albar.methods.batch` for the shared conventions and the sources.

Out of scope (issue 5): ActorCutMix and SDN need an external human detector / segmenter (ActorCutMix
pastes backgrounds around human masks; SDN adds a scene model and human masks). FAME is left out with
them, although it needs no external model (its foreground mask comes from frame differences and a
colour histogram of the clip); it could be added as one more transformation later.
"""

from albar.methods.bank import (
    FrameBank,
    FrameScores,
    TinyFrameNet,
    build_frame_bank,
    build_reference_model,
    load_frame_bank,
    save_frame_bank,
    score_frames,
    select_frames,
    train_reference_network,
)
from albar.methods.batch import (
    MixedBatch,
    background_erasing,
    identity,
    mixed_cross_entropy,
    mixup,
    stillmix,
    stillmix_frames,
    videomix,
    videomix_box,
)
from albar.methods.config import DEFAULT_PROB, MethodConfig
from albar.methods.step import BatchMethod, MethodStep, build_method, method_step

__all__ = [
    "DEFAULT_PROB", "BatchMethod", "FrameBank", "FrameScores", "MethodConfig", "MethodStep", "MixedBatch",
    "TinyFrameNet", "background_erasing", "build_frame_bank", "build_method", "build_reference_model", "identity",
    "load_frame_bank", "method_step", "mixed_cross_entropy", "mixup", "save_frame_bank", "score_frames",
    "select_frames", "stillmix", "stillmix_frames", "train_reference_network", "videomix", "videomix_box",
]
