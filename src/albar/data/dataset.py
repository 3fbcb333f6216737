"""A clip dataset over a list of (source, label): knows frames and transforms, nothing of losses."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from albar.data.io import ClipReadError, at_least, read_clip, repeat_still, still_frame
from albar.data.lists import ClipItem
from albar.data.sampling import ClipMode, clip_indices
from albar.data.transforms import apply_transform


class ClipDataset(Dataset):
    """Returns ``{"clip": (C, T, H, W) float, "label": int, "key": str, "index": int}``.

    Training clips start at a random frame, and get a random crop and flip, drawn from ``seed``, the epoch
    (``set_epoch``) and the index: a run is reproducible whatever the number of loader workers, and after
    a resume. ``cache`` keeps the decoded frames
    of every clip in memory (worth it for small sets of short videos, as the synthetic benchmark); it
    implies a fixed clip per video, so use it for evaluation or with ``mode='center'``. With the cache, a
    source that failed once is remembered and raises the same ``ClipReadError`` again without re-reading, as
    the uncached path would: training replaces and logs it (``RobustClipDataset``), evaluation counts it. A
    source of fewer than ``min_frames`` frames raises ``ClipReadError`` ("too short").
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
        self.failed: dict[int, tuple[str, str]] = {}  # with the cache: index -> (source, reason)
        self.min_frames = min_frames

    def __len__(self) -> int:
        return len(self.items)

    @property
    def num_views(self) -> int:
        """One clip per item (:class:`~albar.data.views.ViewDataset` has several)."""
        return 1

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def frames(self, index: int) -> np.ndarray:
        """Decoded uint8 frames (T, H, W, 3) of clip ``index``, before any transform."""
        if self.cache is not None:
            if index in self.cache:
                return self.cache[index]
            if index in self.failed:
                raise ClipReadError(*self.failed[index])
        rng = np.random.default_rng([self.seed, self.epoch, index])
        source = self.items[index].source
        try:
            frames = read_clip(source, at_least(
                self.min_frames, lambda n: clip_indices(n, self.num_frames, self.stride, self.mode, rng), source,
            ))
        except ClipReadError as err:
            if self.cache is not None:
                self.failed[index] = (err.source, err.reason)
            raise
        if self.cache is not None:
            self.cache[index] = frames
        return frames

    def preload(self, num_workers: int = 0) -> dict[int, str]:
        """Fill the cache, decoding in ``num_workers`` processes; returns the failed items (index -> reason).

        A source that cannot be read stays out of the cache and is remembered as failed: reading it later
        raises its ``ClipReadError``, so a training run replaces and logs it and an evaluation counts it, as
        without the cache. One bad file never stops the preload.
        """
        if self.cache is None:
            raise RuntimeError("preload needs cache=True")
        todo = [i for i in range(len(self)) if i not in self.cache and i not in self.failed]
        if num_workers <= 0:
            for i in todo:
                try:
                    self.frames(i)
                except ClipReadError:
                    pass  # remembered in self.failed by frames()
        else:
            loader = torch.utils.data.DataLoader(
                _FramesView(self), batch_size=None, sampler=todo, num_workers=num_workers,
            )
            for i, (frames, repeat, failure) in zip(todo, loader):
                if failure:
                    self.failed[i] = (failure[0], failure[1])
                else:
                    self.cache[i] = repeat_still(frames.numpy()[0], repeat) if repeat else frames.numpy()
        return {i: reason for i, (_, reason) in self.failed.items()}

    def __getitem__(self, index: int) -> dict[str, Any]:
        frames = self.frames(index)
        # A still (SCUFO) is transformed once and then repeated: the same crop and flip for every frame as
        # before, at the cost of one frame instead of T copies of a possibly huge image.
        still = still_frame(frames)
        num_frames = len(frames)
        if still is not None:
            frames = still[None].copy()  # one frame; a writable copy, as torch.from_numpy wants
        video = torch.from_numpy(np.ascontiguousarray(frames))
        if self.transform is None:
            clip = video.permute(3, 0, 1, 2).float() / 255.0
        else:  # random crops and flips drawn from (seed, epoch, index): the same in any worker, after resume
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(int(np.random.SeedSequence([self.seed, self.epoch, index]).generate_state(1)[0]))
                clip = apply_transform(self.transform, video)
        if still is not None:
            clip = clip.expand(-1, num_frames, -1, -1).contiguous()
        item = self.items[index]
        return {"clip": clip, "label": item.label, "key": item.key, "index": index}


class _FramesView(Dataset):
    """Decoded frames for ``preload``'s worker processes: ``(frames, repeat, failure)``.

    A still travels as its one frame with ``repeat`` = T (0 otherwise); a failure as ``(source, reason)``
    instead of an exception, which would end the whole loader.
    """

    def __init__(self, dataset: ClipDataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[torch.Tensor | None, int, tuple[str, str] | None]:
        try:
            frames = self.dataset.frames(index)
        except ClipReadError as err:
            return None, 0, (err.source, err.reason)
        still = still_frame(frames)
        if still is not None:
            return torch.from_numpy(still[None].copy()), len(frames), None
        return torch.from_numpy(frames), 0, None
