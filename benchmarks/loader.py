"""Training-loader throughput: clips/s of DataLoader workers on real encoded files, and the cost per clip.

Writes 320x240 H.264 MP4 (x264's default GOP of 250 frames, and a keyframe every second) and MPEG-4 AVI videos
(150-300 frames, moving content), then times a training pass (random 32 x 2 clip, short side 256, random resized
crop 224, flip, normalise) through ``albar.data.ClipDataset`` on each decode path (``auto``: seek on MP4, decode
from the start elsewhere; ``scan``: always from the start), through decord's ``VideoReader(width, height)`` +
``get_batch`` as the official ALBAR loader uses it (where installed), and through a naive PyAV seek by timestamp.

``--breakdown`` (issue 13) prints the CPU milliseconds one clip costs a worker, stage by stage (decode, resize to
short side 256, crop + flip + float + normalise), then batches of 8 through a DataLoader with ``--workers``
workers (the collate in the worker and the hand-over of 19 MB float clips to the main process included), and the
clips/s that bounds a machine of ``--cores`` cores (cores / worker CPU-seconds per clip).

    python benchmarks/loader.py [--clips 24] [--workers 1] [--resize-only] [--decord-path /tmp/decord_pkg]
    python benchmarks/loader.py --breakdown [--clips 24] [--workers 2] [--cores 16]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from albar.data import ClipDataset, ClipItem, build_transform, clip_indices
from albar.data import io as albar_io
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


class _Path(Dataset):
    """A ClipDataset read with one decode path ("auto" or "scan"), set in the process that reads."""

    def __init__(self, ds: ClipDataset, path: str) -> None:
        self.ds, self.path = ds, path

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, index: int) -> dict:
        albar_io.AUTO_PATH = "seek" if self.path == "auto" else "scan"
        return self.ds[index]


def _videos(tmp: Path, count: int) -> dict[str, list[ClipItem]]:
    lengths = np.linspace(150, 300, count).astype(int)
    out = {}
    for label, codec, ext, gop in (("H.264 MP4, GOP 250", "libx264", "mp4", None),
                                   ("H.264 MP4, GOP 30", "libx264", "mp4", 30),
                                   ("MPEG-4 AVI, GOP 12", "mpeg4", "avi", None)):
        out[label] = [ClipItem(make_video(tmp / f"{ext}{gop}_{i}.{ext}", codec, int(n), gop=gop), 0, f"v{i}")
                      for i, n in enumerate(lengths)]
    return out


def breakdown(tmp: Path, clips: int, workers: int, cores: int, videos: int) -> None:
    """CPU ms per clip by stage, in this process (one thread), then DataLoader batches of 8."""
    full = build_transform(True, 224, 256)
    from torchvision.transforms import v2

    resize = v2.Resize(256, antialias=True)
    print(f"cost per clip, 32 x 2 frames of 320x240 videos of 150-300 frames, CPU ms (median of {clips}); "
          f"machine: {os.cpu_count()} cores")
    print(f"{'videos':20s} {'path':5s} {'decode':>7s} {'resize':>7s} {'crop..norm':>10s} {'total':>7s} "
          f"{'loader clips/s':>15s} {'worker CPU ms':>13s} {'main ms':>8s} {f'bound at {cores} cores':>18s}")
    for label, items in _videos(tmp, videos).items():
        for path in ("auto", "scan"):
            albar_io.AUTO_PATH = "seek" if path == "auto" else "scan"
            ds = ClipDataset(items, 32, 2, "random", full)
            dec, rs, rest = [], [], []
            for k in range(clips):
                ds.set_epoch(k)
                c0 = time.process_time()
                frames = torch.from_numpy(ds.frames(k % len(items)))
                c1 = time.process_time()
                apply_transform(resize, frames)
                c2 = time.process_time()
                apply_transform(full, frames)
                c3 = time.process_time()
                dec.append(c1 - c0)
                rs.append(c2 - c1)
                rest.append((c3 - c2) - (c2 - c1))
            d, r, o = (1000 * float(np.median(x)) for x in (dec, rs, rest))
            rate, cpu_ms, main_ms = loader_rate(_Path(ds, path), clips, workers)
            bound = cores / (cpu_ms / 1000) if cpu_ms else float("nan")
            print(f"{label:20s} {path:5s} {d:7.1f} {r:7.1f} {o:10.1f} {d + r + o:7.1f} "
                  f"{rate:9.2f} ({workers}w) {cpu_ms:13.1f} {main_ms:8.1f} {bound:18.1f}", flush=True)


def loader_rate(ds: Dataset, clips: int, workers: int, batch: int = 8) -> tuple[float, float, float]:
    """Clips/s through a DataLoader (batches of ``batch``), the workers' CPU ms per clip (from /proc) and the main
    process's (receiving the batches)."""
    n_batches = max(clips // batch, 2)
    order = [i % len(ds) for i in range((n_batches + workers) * batch)]
    loader = DataLoader(ds, batch_size=batch, sampler=order, num_workers=workers,
                        worker_init_fn=_init_worker if workers else None, persistent_workers=workers > 0)
    it = iter(loader)
    for _ in range(max(workers, 1)):
        next(it)  # warm-up: one batch per worker
    pids = [w.pid for w in getattr(it, "_workers", [])]
    c0, m0, t0 = _cpu_seconds(pids), time.process_time(), time.perf_counter()
    n = 0
    for _ in range(n_batches):  # not to the end: the workers (and their /proc entries) stay until measured
        n += len(next(it)["label"])
    wall, cpu, main = time.perf_counter() - t0, _cpu_seconds(pids) - c0, time.process_time() - m0
    del it, loader
    return n / wall, 1000 * cpu / n if pids else float("nan"), 1000 * main / n


def _cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds of these processes (Linux /proc; all their threads)."""
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError, ValueError):
            pass
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=24, help="clips timed per loader and format")
    parser.add_argument("--workers", type=int, default=1, help="DataLoader workers (0: in-process)")
    parser.add_argument("--videos", type=int, default=6, help="videos per format")
    parser.add_argument("--resize-only", action="store_true",
                        help="only resize to short side 256 (no crop, flip, normalisation)")
    parser.add_argument("--decord-path", type=Path, help="extra sys.path entry where decord is installed")
    parser.add_argument("--breakdown", action="store_true", help="CPU ms per clip by stage, and loader batches")
    parser.add_argument("--cores", type=int, default=16, help="cores of the machine to bound (--breakdown)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.breakdown:
        with tempfile.TemporaryDirectory() as tmp:
            breakdown(Path(tmp), args.clips, args.workers, args.cores, args.videos)
        return
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
        for ext, items in _videos(Path(tmp), args.videos).items():
            loaders = {"albar ClipDataset (auto: seek on MP4)":
                       _Clips(_Path(ClipDataset(items, 32, 2, "random", transform), "auto")),
                       "albar ClipDataset (decode from start)":
                       _Clips(_Path(ClipDataset(items, 32, 2, "random", transform), "scan"))}
            if have_decord:
                loaders["decord get_batch (official ALBAR)"] = DecordDataset(items, transform)
            loaders["PyAV seek by timestamp"] = SeekDataset(items, transform)
            for name, ds in loaders.items():
                rate = throughput(ds, args.clips, args.workers)
                what = "resize 256" if args.resize_only else "resize 256 + crop 224 + flip + normalise"
                print(f"{ext:20s} {name:45s} {rate:6.2f} clips/s ({args.workers} worker(s), 32x2, {what})", flush=True)


if __name__ == "__main__":
    main()
