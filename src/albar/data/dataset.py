"""A clip dataset over a list of (source, label): knows frames and transforms, nothing of losses."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from albar.data.io import at_least, read_clip
from albar.data.lists import ClipItem
from albar.data.sampling import ClipMode, clip_indices
from albar.data.transforms import apply_transform


class ClipDataset(Dataset):
    """Returns ``{"clip": (C, T, H, W) float, "label": int, "key": str, "index": int}``.

    Training clips start at a random frame, and get a random crop and flip, drawn from ``seed``, the epoch
    (``set_epoch``) and the index: a run is reproducible whatever the number of loader workers, and after
    a resume. ``cache`` keeps the decoded frames
    of every clip in memory (worth it for small sets of short videos, as the synthetic benchmark); it
    implies a fixed clip per video, so use it for evaluation or with ``mode='center'``. A source of fewer
    than ``min_frames`` frames raises ``ClipReadError`` ("too short"); see ``RobustClipDataset``.
    """

    def __init__(
        self,
        items: Sequence[ClipItem],
        num_frames: int,
        stride: int = 1,
        mode: ClipMode = "center",
        transform: Any = None,
        seed: int = 0,
        cache: bool = False,
        min_frames: int = 1,
    ) -> None:
        if not items:
            raise ValueError("a dataset needs at least one clip")
        self.items = list(items)
        self.num_frames, self.stride, self.mode = num_frames, stride, mode
        self.transform, self.seed, self.epoch = transform, seed, 0
        self.cache: dict[int, np.ndarray] | None = {} if cache else None
        self.min_frames = min_frames

    def __len__(self) -> int:
        return len(self.items)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def frames(self, index: int) -> np.ndarray:
        """Decoded uint8 frames (T, H, W, 3) of clip ``index``, before any transform."""
        if self.cache is not None and index in self.cache:
            return self.cache[index]
        rng = np.random.default_rng([self.seed, self.epoch, index])
        source = self.items[index].source
        frames = read_clip(source, at_least(
            self.min_frames, lambda n: clip_indices(n, self.num_frames, self.stride, self.mode, rng), source,
        ))
        if self.cache is not None:
            self.cache[index] = frames
        return frames

    def preload(self, num_workers: int = 0) -> None:
        """Fill the cache, decoding in ``num_workers`` processes."""
        if self.cache is None:
            raise RuntimeError("preload needs cache=True")
        todo = [i for i in range(len(self)) if i not in self.cache]
        if num_workers <= 0:
            for i in todo:
                self.frames(i)
            return
        loader = torch.utils.data.DataLoader(
            _FramesView(self), batch_size=None, sampler=todo, num_workers=num_workers,
        )
        for i, frames in zip(todo, loader):
            self.cache[i] = frames.numpy()

    def __getitem__(self, index: int) -> dict[str, Any]:
        frames = torch.from_numpy(np.ascontiguousarray(self.frames(index)))
        if self.transform is None:
            clip = frames.permute(3, 0, 1, 2).float() / 255.0
        else:  # random crops and flips drawn from (seed, epoch, index): the same in any worker, after resume
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(int(np.random.SeedSequence([self.seed, self.epoch, index]).generate_state(1)[0]))
                clip = apply_transform(self.transform, frames)
        item = self.items[index]
        return {"clip": clip, "label": item.label, "key": item.key, "index": index}


class _FramesView(Dataset):
    def __init__(self, dataset: ClipDataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> torch.Tensor:
        return torch.from_numpy(self.dataset.frames(index))
