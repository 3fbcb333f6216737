"""Damaged real files for the bad-file tests: truncated streams, corrupt and empty files."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np


def write_faststart_mp4(path: Path, frames: np.ndarray) -> Path:
    """H.264 MP4 with the index first (as streaming sites serve), so a cut file still opens."""
    with av.open(str(path), "w", options={"movflags": "faststart"}) as c:
        s = c.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        s.options = {"crf": "10"}
        for f in frames:
            c.mux(s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
        c.mux(s.encode())
    return path


def truncate(path: Path, out: Path, fraction: float = 0.9) -> Path:
    """The first ``fraction`` of ``path``'s bytes: an interrupted download."""
    data = path.read_bytes()
    out.write_bytes(data[: int(len(data) * fraction)])
    return out


def corrupt(out: Path, size: int = 4000, seed: int = 0) -> Path:
    """Random bytes under a video name: what a failed transcode or a disk error leaves."""
    out.write_bytes(np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8).tobytes())
    return out


def empty(out: Path) -> Path:
    out.write_bytes(b"")
    return out


HMDB_CLASSES = ["brush_hair", "cartwheel"]


def small_hmdb51(root: Path) -> Path:
    """HMDB51 as distributed (FORMATS.md), in miniature: ``videos/<class>/<video>.avi`` (MPEG-4 Part 2) and
    ``splits/<class>_test_split1.txt`` lines ``<video>.avi <1|2>`` with the release's trailing space; 2 classes x 5
    videos (4 train, 1 test), each class its own colour so that one epoch learns it."""
    from helpers import numbered_frames, write_video

    (root / "splits").mkdir(parents=True)
    for c, cls in enumerate(HMDB_CLASSES):
        (root / "videos" / cls).mkdir(parents=True)
        lines = []
        for i in range(5):
            name = f"{cls}_v{i}_f_nm_np1_fr_med_{i}.avi"
            frames = numbered_frames(8, 16, 16)
            frames[..., c] = 250
            write_video(root / "videos" / cls / name, frames, "mpeg4")
            lines.append(f"{name} {1 if i < 4 else 2} ")
        (root / "splits" / f"{cls}_test_split1.txt").write_text("\n".join(lines) + "\n")
    return root

