"""Test views: which clips and crops of a video a model sees at test time.

``center`` (the paper's: one clip from the middle, centre crop), ``first`` (the official code's: the clip
starting at frame 0) and ``NxS`` (mmaction2/StillMix style: N clips spread uniformly over the video, each
with S = 1 centre crop or S = 3 crops along the long side; the softmax scores of the N * S views are
averaged per video by the inference loop, ``albar.evaluation.predict``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from albar.data.io import at_least, read_clip, still_frame
from albar.data.lists import ClipItem
from albar.data.sampling import clip_indices
from albar.data.transforms import IMAGENET_MEAN, IMAGENET_STD, normalization, resizing


@dataclass(frozen=True)
class TestView:
    """``name`` is what results record: ``center``, ``first`` or ``<clips>x<crops>`` (e.g. ``4x3``)."""

    name: str
    clips: int = 1
    crops: int = 1
    mode: str = "center"  # center | first | uniform

    @property
    def num_views(self) -> int:
        return self.clips * self.crops


def parse_view(name: str) -> TestView:
    """``center``, ``first`` or ``NxS`` with S in {1, 3}."""
    if name in ("center", "first"):
        return TestView(name, 1, 1, name)
    m = re.fullmatch(r"(\d+)x([13])", name)
    if not m or int(m[1]) < 1:
        raise ValueError(f"test view must be 'center', 'first' or '<clips>x<1|3>' (e.g. '4x3'), got {name!r}")
    return TestView(name, int(m[1]), int(m[2]), "uniform")


def view_clip_indices(num_available: int, num_frames: int, stride: int, view: TestView) -> list[list[int]]:
    """Frame indices of each temporal clip of ``view``.

    ``uniform``: the video minus one clip span is cut into N equal intervals and each clip starts in the
    middle of its interval (mmaction2's test-mode SampleFrames). A video too short for one span gets the
    ``clip_indices`` treatment (stride halved until it fits, or the last frame repeated).
    """
    if view.mode in ("center", "first"):
        return [clip_indices(num_available, num_frames, stride, view.mode)]
    first = clip_indices(num_available, num_frames, stride, "first")  # the stride clip_indices settles on
    used = first[1] - first[0] if num_frames > 1 else 1
    if first[-1] != (num_frames - 1) * used:  # even stride 1 is too long: the whole video, last frame repeated
        return [first] * view.clips
    span = first[-1] + 1
    interval = (num_available - span + 1) / view.clips
    starts = [int(i * interval + interval / 2) for i in range(view.clips)]
    return [[s + j * used for j in range(num_frames)] for s in starts]


def spatial_crops(video: torch.Tensor, crop_size: int, crops: int) -> list[torch.Tensor]:
    """Square crops of (T, C, H, W) frames: 1 = centre; 3 = start, centre, end of the long side
    (mmaction2's ThreeCrop), centred on the short side."""
    h, w = video.shape[-2:]
    if min(h, w) < crop_size:
        raise ValueError(f"frames {h}x{w} are smaller than the crop {crop_size}")
    if crops == 1:
        return [TF.center_crop(video, [crop_size, crop_size])]
    top, left = (h - crop_size) // 2, (w - crop_size) // 2
    if w >= h:
        positions = [(top, x) for x in (0, left, w - crop_size)]
    else:
        positions = [(y, left) for y in (0, top, h - crop_size)]
    return [video[..., y:y + crop_size, x:x + crop_size] for y, x in positions]


class ViewDataset(Dataset):
    """Yields ``{"clip": (V, C, T, H, W), "label", "key", "index", "view"}`` for each item.

    V = clips x crops of ``view``, resized and normalised by the same transforms as training clips
    (:mod:`albar.data.transforms`). A source that cannot be read (or has fewer than ``min_frames`` frames) raises
    ``ClipReadError``, as :class:`~albar.data.dataset.ClipDataset` does; evaluation keeps the item as a NaN row
    counted wrong (:mod:`albar.evaluation.predict`). Every clip of an item comes from one decoding pass.
    """

    def __init__(
        self,
        items: Sequence[ClipItem],
        num_frames: int,
        stride: int = 1,
        view: str | TestView = "center",
        crop_size: int = 224,
        resize_short: int | None = 256,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        min_frames: int = 1,
    ) -> None:
        if not items:
            raise ValueError("a dataset needs at least one clip")
        self.items = list(items)
        self.num_frames, self.stride = num_frames, stride
        self.view = parse_view(view) if isinstance(view, str) else view
        self.crop_size, self.min_frames = crop_size, min_frames
        self.resize = v2.Compose(resizing(resize_short) or [v2.Identity()])
        self.normalize = v2.Compose(normalization(mean, std))

    @property
    def num_views(self) -> int:
        return self.view.num_views

    def __len__(self) -> int:
        return len(self.items)

    def clip_frames(self, index: int) -> list[np.ndarray]:
        """Decoded uint8 frames (T, H, W, 3) of each temporal clip of item ``index``."""
        source = self.items[index].source
        per_clip: list[list[int]] = []

        def sampler(n: int) -> list[int]:
            per_clip[:] = view_clip_indices(n, self.num_frames, self.stride, self.view)
            return [i for clip in per_clip for i in clip]

        frames = read_clip(source, at_least(self.min_frames, sampler, source))
        t = self.num_frames
        return [frames[k * t:(k + 1) * t] for k in range(len(per_clip))]

    def views(self, index: int) -> torch.Tensor:
        """(V, C, T, H, W) float views of item ``index``, normalised; clip-major, crops inner.

        A still (SCUFO) is resized and cropped once, then repeated over time and over the temporal clips
        (which all show it): the same views as for T copies, at the cost of one frame.
        """
        per_clip = self.clip_frames(index)
        still = still_frame(per_clip[0]) if per_clip else None
        if still is not None:
            per_clip = [still[None].copy()]  # one frame; a writable copy, as torch.from_numpy wants
        out = []
        for frames in per_clip:
            video = self.resize(torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2))  # T, C, H, W
            out += [self.normalize(c).permute(1, 0, 2, 3) for c in spatial_crops(video, self.crop_size,
                                                                                 self.view.crops)]
        clips = torch.stack(out)
        if still is not None:  # (crops, C, 1, H, W) -> (clips * crops, C, T, H, W)
            clips = clips.repeat(self.view.clips, 1, self.num_frames, 1, 1)
        return clips

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = self.items[index]
        return {"clip": self.views(index), "label": item.label, "key": item.key, "index": index,
                "view": self.view.name}
