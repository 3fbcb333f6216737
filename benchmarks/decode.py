"""Decode speed and robustness of albar's clip reader on real encoded files.

1. readers: H.264 MP4 and MPEG-4 Part 2 AVI videos (320x240, 150 frames, moving content); times
   ``albar.data.read_clip`` for a 32 x 2 centre clip, resized to short side 256 as in training, against a naive
   PyAV seek by timestamp x frame rate; torchcodec and decord too where installed.
2. paths (issue 13): ``albar.data.io.read_video``'s decode paths ("scan": from the start; "seek": to the keyframe
   before the clip, MP4 only) under FFmpeg's thread settings (thread_type SLICE/FRAME/AUTO, thread_count; 0 = one
   per core), on 320x240 videos of 150 and 300 frames: H.264 MP4 as x264 writes it by default (a keyframe every
   250 frames), H.264 MP4 with a keyframe every second (30 frames), MPEG-4 AVI (FFmpeg's default GOP of 12).
   Wall and CPU (all threads of the process) milliseconds per random 32 x 2 clip, decoding and RGB conversion only,
   configurations interleaved round by round so that a busy machine slows them alike; "!" marks a configuration
   whose frames differ from the scan's (there should be none).
3. robustness: damaged copies (truncated, corrupt, empty) and what each reader does.

    python benchmarks/decode.py [--repeats 20] [--threads 1] [--sections readers,paths,robustness]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import av
import numpy as np
import torch
from torchvision.transforms.v2 import functional as TF

from albar.data import ClipReadError, clip_indices, read_clip
from albar.data.io import DecodeThreads, read_video


def make_video(path: Path, codec: str, n: int = 150, w: int = 320, h: int = 240, gop: int | None = None) -> Path:
    """A real encoded video: a grey box moving over a noise background (also used by loader.py).

    ``gop``: frames between keyframes (None: the encoder's default; x264's is 250)."""
    rng = np.random.default_rng(n)
    bg = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    with av.open(str(path), "w") as c:
        s = c.add_stream(codec, rate=30)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        if gop is not None and codec == "libx264":
            s.options = {"x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0"}
        elif gop is not None:
            s.codec_context.gop_size = gop
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


THREADS = {
    "SLICE 0 (before)": DecodeThreads("SLICE", 0), "SLICE 1": DecodeThreads("SLICE", 1),
    "FRAME 1": DecodeThreads("FRAME", 1), "FRAME 2": DecodeThreads("FRAME", 2), "FRAME 4": DecodeThreads("FRAME", 4),
    "AUTO 0": DecodeThreads("AUTO", 0), "AUTO 2": DecodeThreads("AUTO", 2),
}


def keyframes(path: Path) -> list[int]:
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        pts = sorted(p.pts for p in c.demux(s) if p.size)
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        keys = {p.pts for p in c.demux(s) if p.size and p.is_keyframe}
    return [i for i, t in enumerate(pts) if t in keys]


def paths_section(tmp: Path, repeats: int, clips: int) -> None:
    """Decode paths x thread settings: wall and CPU ms per random 32 x 2 clip (decode + RGB conversion)."""
    videos = {}
    for n in (150, 300):
        videos[f"H.264 MP4 {n}f, GOP 250"] = make_video(tmp / f"g250_{n}.mp4", "libx264", n)
        videos[f"H.264 MP4 {n}f, GOP 30"] = make_video(tmp / f"g30_{n}.mp4", "libx264", n, gop=30)
        videos[f"MPEG-4 AVI {n}f, GOP 12"] = make_video(tmp / f"m4_{n}.avi", "mpeg4", n)
    configs = [(p, t) for p in ("scan", "seek") for t in THREADS]
    print(f"\ndecode paths: ms per random 32 x 2 clip, wall / CPU (all threads), median over {repeats} rounds of "
          f"{clips} clips; os.cpu_count() = {os.cpu_count()}")
    for name, path in videos.items():
        with av.open(str(path)) as c:
            n = c.streams.video[0].frames
        rng = np.random.default_rng(0)
        samplers = [clip_indices(n, 32, 2, "random", rng) for _ in range(clips)]
        reference = [read_video(path, lambda _, ix=ix: ix, "scan", DecodeThreads("SLICE", 1)) for ix in samplers]
        wall: dict = {c: [] for c in configs}
        cpu: dict = {c: [] for c in configs}
        exact = dict.fromkeys(configs, True)
        for _ in range(repeats):
            for cfg in configs:
                p, t = cfg
                for ix, ref in zip(samplers, reference):
                    w0, c0 = time.perf_counter(), time.process_time()
                    frames = read_video(path, lambda _, ix=ix: ix, p, THREADS[t])
                    wall[cfg].append(time.perf_counter() - w0)
                    cpu[cfg].append(time.process_time() - c0)
                    exact[cfg] &= bool(np.array_equal(frames, ref))
        print(f"{name} (keyframes at {keyframes(path)[:6]}{'...' if len(keyframes(path)) > 6 else ''})")
        print(f"  {'threads':18s} " + " ".join(f"{p:>18s}" for p in ("scan", "seek")))
        for t in THREADS:
            cells = [f"{1000 * np.median(wall[(p, t)]):6.1f} / {1000 * np.median(cpu[(p, t)]):5.1f}"
                     + ("" if exact[(p, t)] else "!") for p in ("scan", "seek")]
            print(f"  {t:18s} " + " ".join(f"{c:>18s}" for c in cells), flush=True)


def readers_section(tmp: Path, repeats: int, threads: int) -> dict[str, Path]:
    readers = {"albar read_clip (auto path)": albar_reader, "PyAV seek by timestamp": pyav_seek, **other_readers()}
    videos = {"H.264 MP4": make_video(tmp / "v.mp4", "libx264"), "MPEG-4 AVI": make_video(tmp / "v.avi", "mpeg4")}
    print(f"32 x 2 centre clip, resized to short side 256, {threads} torch thread(s), best of {repeats}")
    print(f"{'reader':34s} " + " ".join(f"{k:>12s}" for k in videos))
    reference = {k: albar_reader(v) for k, v in videos.items()}
    for name, fn in readers.items():
        cells = []
        for kind, path in videos.items():
            times = []
            for _ in range(repeats):
                t = time.perf_counter()
                frames = fn(path)
                resize(frames)
                times.append(time.perf_counter() - t)
            same = np.abs(frames.astype(int) - reference[kind].astype(int)).mean() < 1
            cells.append(f"{1000 * min(times):9.1f} ms" + ("" if same else "!"))
        print(f"{name:34s} " + " ".join(f"{c:>12s}" for c in cells))
    print("(! = frames differ from albar's reader)")
    return videos


def robustness_section(tmp: Path, good: bytes) -> None:
    readers = {"albar read_clip (auto path)": albar_reader, "PyAV seek by timestamp": pyav_seek, **other_readers()}
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (resizing)")
    ap.add_argument("--clips", type=int, default=4, help="random clips per video and round (paths section)")
    ap.add_argument("--sections", default="readers,paths,robustness")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    sections = set(args.sections.split(","))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if "readers" in sections or "robustness" in sections:
            videos = readers_section(tmp, args.repeats, args.threads) if "readers" in sections else {
                "H.264 MP4": make_video(tmp / "v.mp4", "libx264")}
        if "paths" in sections:
            paths_section(tmp, args.repeats, args.clips)
        if "robustness" in sections:
            robustness_section(tmp, videos["H.264 MP4"].read_bytes())


if __name__ == "__main__":
    main()
