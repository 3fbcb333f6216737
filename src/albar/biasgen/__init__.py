"""Build the bias protocols (SCUBA, SCUFO, ConflFG) from your own videos, actor masks and backgrounds."""

from albar.biasgen.build import (
    BiasSetSpec,
    BuildResult,
    ImageBackgrounds,
    StripeBackgrounds,
    build_bias_set,
    composite,
    measure_leakage,
    rng_for,
    summarize_leakage,
    video_leakage,
)
from albar.biasgen.masks import BoxTable, MaskFolder, MaskMismatch, video_masks

__all__ = [
    "BiasSetSpec", "BoxTable", "BuildResult", "ImageBackgrounds", "MaskFolder", "MaskMismatch", "StripeBackgrounds",
    "build_bias_set", "composite", "measure_leakage", "rng_for", "summarize_leakage", "video_leakage", "video_masks",
]
