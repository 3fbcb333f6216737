"""Training-time batch methods of the paper's Table 1, as seeded batch transformations filed in a registry
(``method.name`` picks one), and the training step that composes a method with an objective.

Registered here: none (identity), mixup, videomix (spatial CutMix, one box for all frames), be (Background
Erasing), stillmix (random frame of another clip, or a frame bank built with a 2D reference network). With the
objective (``objective.name``: albar, ce, ...) :func:`method_step` gives the baselines, ALBAR and ALBAR + X. See
:mod:`albar.methods.batch` for the shared conventions and the sources, docs/extending.md to add one.

Importing this package registers the built-in methods.
"""

from albar.methods import (  # noqa: F401  (importing registers the built-in methods)
    actorcutmix,  # actorcutmix
    blendings,  # none, mixup, videomix, be, stillmix
    fame,  # fame
)
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
from albar.methods.registry import (
    BatchMethod,
    MethodConfig,
    build_method,
    method_entry,
    method_names,
    register_method,
)
from albar.methods.step import MethodStep, method_step

__all__ = [
    "BatchMethod", "FrameBank", "FrameScores", "MethodConfig", "MethodStep", "MixedBatch",
    "TinyFrameNet", "background_erasing", "build_frame_bank", "build_method", "build_reference_model", "identity",
    "load_frame_bank", "method_entry", "method_names", "method_step", "mixed_cross_entropy", "mixup",
    "register_method", "save_frame_bank", "score_frames", "select_frames", "stillmix", "stillmix_frames",
    "train_reference_network", "videomix", "videomix_box",
]
