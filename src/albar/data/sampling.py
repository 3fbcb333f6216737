"""Which frames make a clip: ``num_frames`` frames ``stride`` apart (paper: 32 x 2)."""

from __future__ import annotations

from typing import Literal

import numpy as np

ClipMode = Literal["random", "center", "first"]


def clip_indices(
    num_available: int,
    num_frames: int,
    stride: int,
    mode: ClipMode = "center",
    rng: np.random.Generator | None = None,
) -> list[int]:
    """Frame indices of one clip.

    ``random``: uniform start (training). ``center``: the clip in the middle of the video (the paper's
    test view). ``first``: start at frame 0 (the official code's test view). A video too short for the
    span gets its stride halved until it fits (down to 1); if even that is too long, the last frame is
    repeated.
    """
    if num_available < 1:
        raise ValueError("a video needs at least one frame")
    if num_frames < 1 or stride < 1:
        raise ValueError(f"num_frames and stride must be >= 1, got {num_frames} and {stride}")
    while stride > 1 and (num_frames - 1) * stride + 1 > num_available:
        stride //= 2
    span = (num_frames - 1) * stride + 1
    slack = max(num_available - span, 0)
    if mode == "random":
        start = int((rng or np.random.default_rng()).integers(0, slack + 1))
    elif mode == "center":
        start = slack // 2
    elif mode == "first":
        start = 0
    else:
        raise ValueError(f"clip mode must be 'random', 'center' or 'first', got {mode!r}")
    return [min(start + i * stride, num_available - 1) for i in range(num_frames)]
