"""Decode speed and robustness of albar's clip reader on real encoded files.

Writes H.264 MP4 and MPEG-4 Part 2 AVI videos (320x240, 150 frames, moving content), then times
``albar.data.read_clip`` (PyAV, decode from the start) for a 32 x 2 centre clip, resized to short side 256 as
in training, and PyAV seeking by timestamp for comparison; torchcodec and decord are timed too where
installed. Then it reads damaged copies (truncated, corrupt, empty) and reports what each reader does.

    python benchmarks/decode.py [--repeats 20] [--threads 1]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import av
import numpy as np
import torch
from torchvision.transforms.v2 import functional as TF

from albar.data import ClipReadError, clip_indices, read_clip


def make_video(path: Path, codec: str, n: int = 150, w: int = 320, h: int = 240) -> Path:
    """A real encoded video: a grey box moving over a noise background (also used by loader.py)."""
    rng = np.random.default_rng(n)
    bg = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    with av.open(str(path), "w") as c:
        s = c.add_stream(codec, rate=30)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        for i in range(n):
            f = bg.copy()
            x = (3 * i) % (w - 60)
            f[80:160, x:x + 60] = (i * 7) % 255
            c.mux(s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
        c.mux(s.encode())
    return path


def albar_reader(path: Path) -> np.ndarray:
    return read_clip(path, lambda n: clip_indices(n, 32, 2, "center"))


def pyav_seek(path: Path, mode: str = "center", rng: np.random.Generator | None = None) -> np.ndarray:
    """Seek to the clip's first frame by timestamp, then decode: fast, wrong on packed-B-frame AVIs."""
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        idx = clip_indices(s.frames, 32, 2, mode, rng)
        rate = float(s.average_rate)
        c.seek(int(idx[0] / rate / s.time_base), stream=s, backward=True, any_frame=False)
        want, out = set(idx), {}
        for f in c.decode(s):
            i = round(float(f.pts * s.time_base) * rate)
            if i in want:
                out[i] = f.to_ndarray(format="rgb24")
            if i >= idx[-1]:
                break
        return np.stack([out[i] for i in idx])


def other_readers() -> dict:
    readers = {}
    try:
        from torchcodec.decoders import VideoDecoder

        def tc(path: Path) -> np.ndarray:
            d = VideoDecoder(str(path))
            return d.get_frames_at(clip_indices(len(d), 32, 2, "center")).data.permute(0, 2, 3, 1).numpy()

        readers["torchcodec"] = tc
    except ImportError:
        pass
    try:
        import decord

        def dc(path: Path) -> np.ndarray:
            vr = decord.VideoReader(str(path))
            return vr.get_batch(clip_indices(len(vr), 32, 2, "center")).asnumpy()

        readers["decord"] = dc
    except ImportError:
        pass
    return readers


def resize(frames: np.ndarray) -> torch.Tensor:
    return TF.resize(torch.from_numpy(frames).permute(0, 3, 1, 2), 256, antialias=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    readers = {"albar (PyAV, decode from start)": albar_reader, "PyAV seek by timestamp": pyav_seek, **other_readers()}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        videos = {"H.264 MP4": make_video(tmp / "v.mp4", "libx264"), "MPEG-4 AVI": make_video(tmp / "v.avi", "mpeg4")}
        print(f"32 x 2 centre clip, resized to short side 256, {args.threads} torch thread(s), best of {args.repeats}")
        print(f"{'reader':34s} " + " ".join(f"{k:>12s}" for k in videos))
        reference = {k: albar_reader(v) for k, v in videos.items()}
        for name, fn in readers.items():
            cells = []
            for kind, path in videos.items():
                times = []
                for _ in range(args.repeats):
                    t = time.perf_counter()
                    frames = fn(path)
                    resize(frames)
                    times.append(time.perf_counter() - t)
                same = np.abs(frames.astype(int) - reference[kind].astype(int)).mean() < 1
                cells.append(f"{1000 * min(times):9.1f} ms" + ("" if same else "!"))
            print(f"{name:34s} " + " ".join(f"{c:>12s}" for c in cells))
        print("(! = frames differ from albar's reader)")

        good = videos["H.264 MP4"].read_bytes()
        damaged = {
            "truncated at 50%": good[: len(good) // 2],
            "corrupt middle": good[:2000] + bytes(5000) + good[7000:],
            "empty file": b"",
        }
        print("\nrobustness (H.264 MP4):")
        for name, data in damaged.items():
            path = tmp / f"bad_{name.split()[0]}.mp4"
            path.write_bytes(data)
            for rname, fn in readers.items():
                t = time.perf_counter()
                try:
                    frames = fn(path)
                    result = f"returned {len(frames)} frames"
                except ClipReadError as err:
                    result = f"ClipReadError: {err.reason}"
                except Exception as err:  # other readers raise their own types
                    result = f"{type(err).__name__}: {str(err)[:60]}"
                print(f"  {name:18s} {rname:34s} {result} ({1000 * (time.perf_counter() - t):.0f} ms)")


if __name__ == "__main__":
    main()
