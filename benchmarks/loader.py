"""Training-loader throughput: clips/s of one DataLoader worker on real encoded files.

Writes 320x240 H.264 MP4 and MPEG-4 AVI videos (150-300 frames, moving content), then times a training
pass (random 32 x 2 clip, short side 256, random resized crop 224, flip, normalise) through
``albar.data.ClipDataset`` (PyAV, decode from the start), through decord's ``VideoReader(width, height)``
+ ``get_batch`` as the official ALBAR loader uses it, and through PyAV seeking by timestamp.

    python benchmarks/loader.py [--clips 24] [--workers 1] [--resize-only] [--decord-path /tmp/decord_pkg]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from albar.data import ClipDataset, ClipItem, build_transform, clip_indices
from albar.data.transforms import apply_transform

sys.path.insert(0, str(Path(__file__).parent))
from decode import make_video, pyav_seek  # noqa: E402  (the sibling benchmark script)


class DecordDataset(Dataset):
    """The official loader's path: decord resizes to short side 256 while decoding, then ``get_batch``."""

    def __init__(self, items: list[ClipItem], transform, seed: int = 0) -> None:
        self.items, self.transform, self.seed = items, transform, seed

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> torch.Tensor:
        import decord

        path = str(self.items[index].source)
        with av.open(path) as c:  # the official code reads the size with OpenCV first
            w, h = c.streams.video[0].width, c.streams.video[0].height
        size = (int(256 * w / h), 256) if h < w else (256, int(256 * h / w))
        vr = decord.VideoReader(path, width=size[0], height=size[1], ctx=decord.cpu())
        idx = clip_indices(len(vr), 32, 2, "random", np.random.default_rng([self.seed, index]))
        frames = torch.from_numpy(vr.get_batch(idx).asnumpy())
        return apply_transform(self.transform, frames)


class SeekDataset(Dataset):
    """PyAV seeking to the clip by timestamp (fast; wrong frames on packed-B-frame AVIs such as HMDB51's)."""

    def __init__(self, items: list[ClipItem], transform, seed: int = 0) -> None:
        self.items, self.transform, self.seed = items, transform, seed

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> torch.Tensor:
        rng = np.random.default_rng([self.seed, index])
        frames = torch.from_numpy(pyav_seek(self.items[index].source, "random", rng))
        return apply_transform(self.transform, frames)


class _Clips(Dataset):
    def __init__(self, ds: ClipDataset) -> None:
        self.ds = ds

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.ds[index]["clip"]


def _init_worker(_: int) -> None:
    torch.set_num_threads(1)


def throughput(ds: Dataset, clips: int, workers: int) -> float:
    """Clips/s over ``clips`` items, timed from the first clip delivered (worker start-up excluded)."""
    order = [i % len(ds) for i in range(clips + workers)]
    loader = DataLoader(ds, batch_size=None, sampler=order, num_workers=workers,
                        worker_init_fn=_init_worker if workers else None)
    it = iter(loader)
    for _ in range(max(workers, 1)):
        next(it)  # warm-up: one clip per worker
    t0 = time.perf_counter()
    n = sum(1 for _ in it)
    return n / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=24, help="clips timed per loader and format")
    parser.add_argument("--workers", type=int, default=1, help="DataLoader workers (0: in-process)")
    parser.add_argument("--videos", type=int, default=6, help="videos per format")
    parser.add_argument("--resize-only", action="store_true",
                        help="only resize to short side 256 (no crop, flip, normalisation)")
    parser.add_argument("--decord-path", type=Path, help="extra sys.path entry where decord is installed")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.decord_path:
        sys.path.append(str(args.decord_path))
    try:
        import decord  # noqa: F401

        have_decord = True
    except ImportError:
        have_decord = False
        print("decord not installed: comparing against PyAV seek only")
    transform = build_transform(True, 224, 256)
    if args.resize_only:
        from torchvision.transforms import v2

        transform = v2.Resize(256, antialias=True)
    with tempfile.TemporaryDirectory() as tmp:
        for codec, ext in (("libx264", "mp4"), ("mpeg4", "avi")):
            lengths = np.linspace(150, 300, args.videos).astype(int)
            items = [ClipItem(make_video(Path(tmp) / f"v{i}.{ext}", codec, int(n)), 0, f"v{i}")
                     for i, n in enumerate(lengths)]
            loaders = {"albar ClipDataset (PyAV decode-from-start)":
                       _Clips(ClipDataset(items, 32, 2, "random", transform))}
            if have_decord:
                loaders["decord get_batch (official ALBAR)"] = DecordDataset(items, transform)
            loaders["PyAV seek by timestamp"] = SeekDataset(items, transform)
            for name, ds in loaders.items():
                rate = throughput(ds, args.clips, args.workers)
                what = "resize 256" if args.resize_only else "resize 256 + crop 224 + flip + normalise"
                print(f"{ext:4s} {name:45s} {rate:6.2f} clips/s ({args.workers} worker(s), 32x2, {what})", flush=True)


if __name__ == "__main__":
    main()
