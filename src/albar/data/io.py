"""Reading frames from the four kinds of clip source: encoded video, frame folder, frame zip, still image.

Video goes through PyAV, decoding from the start and counting frames: seeking by timestamp returns the
wrong frames on AVIs with packed B-frames (HMDB51), and so do torchcodec's indices (ECOSYSTEM.md).
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path

import av
import numpy as np
from PIL import Image, UnidentifiedImageError

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}

IndexSampler = Callable[[int], Sequence[int]]

# A stream may end a few frames short of its header's count (common, harmless): the clip is then sampled
# among the frames decoded. Shorter by more than this share (and more than 2 frames), the file is truncated.
TRUNCATION_TOLERANCE = 0.05


class ClipReadError(RuntimeError):
    """A clip source could not be read; the message names the file and the reason."""

    def __init__(self, source: str | Path, reason: str) -> None:
        super().__init__(f"{source}: {reason}")
        self.source = str(source)
        self.reason = reason


def source_kind(source: Path) -> str:
    """'frames' (folder), 'zip', 'image' or 'video', from the path alone."""
    if source.is_dir():
        return "frames"
    suffix = source.suffix.lower()
    if suffix == ".zip":
        return "zip"
    if suffix in IMAGE_EXTENSIONS:
        return "image"
    return "video"


def _decode_image(data: bytes | Path, name: str | Path) -> np.ndarray:
    try:
        with Image.open(io.BytesIO(data) if isinstance(data, bytes) else data) as img:
            return np.asarray(img.convert("RGB"))
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise ClipReadError(name, f"cannot decode image ({err})") from err


def _pick(n: int, sampler: IndexSampler, source: Path) -> list[int]:
    if n < 1:
        raise ClipReadError(source, "no frames")
    idx = [int(i) for i in sampler(n)]
    bad = [i for i in idx if not 0 <= i < n]
    if bad:
        raise ClipReadError(source, f"frame index {bad[0]} out of range for {n} frames")
    return idx


def _read_video(source: Path, sampler: IndexSampler) -> np.ndarray:
    try:
        container = av.open(str(source))
    except (av.error.FFmpegError, OSError) as err:
        raise ClipReadError(source, f"cannot open video ({err})") from err
    with container:
        if not container.streams.video:
            raise ClipReadError(source, "no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "SLICE"
        declared = stream.frames
        idx = _pick(declared, sampler, source) if declared > 0 else None
        last = max(idx) if idx else None
        frames: list[av.VideoFrame] = []
        try:
            for frame in container.decode(stream):
                frames.append(frame)
                if last is not None and len(frames) > last:
                    break
        except (av.error.FFmpegError, OSError) as err:
            if not frames:
                raise ClipReadError(source, f"cannot decode video ({err})") from err
            # A damaged tail: keep the frames decoded so far and sample among them.
        if not frames:
            raise ClipReadError(source, "no decodable frames")
        if idx is None or len(frames) <= last:  # frame count unknown, or the stream ended early
            if declared - len(frames) > max(2, int(TRUNCATION_TOLERANCE * declared)):
                raise ClipReadError(source, f"truncated: stream ended after {len(frames)} of {declared} "
                                            "declared frames")
            idx = _pick(len(frames), sampler, source)
        rgb = {i: frames[i].to_ndarray(format="rgb24") for i in set(idx)}
    return np.stack([rgb[i] for i in idx])


def _read_zip(source: Path, sampler: IndexSampler) -> np.ndarray:
    try:
        with zipfile.ZipFile(source) as zf:
            names = sorted(n for n in zf.namelist() if Path(n).suffix.lower() in IMAGE_EXTENSIONS)
            idx = _pick(len(names), sampler, source)
            decoded = {i: _decode_image(zf.read(names[i]), f"{source}:{names[i]}") for i in set(idx)}
    except (zipfile.BadZipFile, OSError) as err:
        raise ClipReadError(source, f"cannot read zip ({err})") from err
    return np.stack([decoded[i] for i in idx])


def _read_folder(source: Path, sampler: IndexSampler) -> np.ndarray:
    names = sorted(p for p in source.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
    idx = _pick(len(names), sampler, source)
    decoded = {i: _decode_image(names[i], names[i]) for i in set(idx)}
    return np.stack([decoded[i] for i in idx])


def at_least(min_frames: int, sampler: IndexSampler, source: str | Path) -> IndexSampler:
    """``sampler``, refusing sources of fewer than ``min_frames`` frames ("too short") with a ClipReadError.

    Applied to the frames actually decoded: a stream that ends before its declared length is judged on
    what it delivered. A still image (a SCUFO frame) is one frame by design and is never too short.
    """
    if source_kind(Path(source)) == "image":
        return sampler

    def checked(n: int) -> Sequence[int]:
        if n < min_frames:
            raise ClipReadError(source, f"too short: {n} frames, need at least {min_frames}")
        return sampler(n)

    return checked


ZIP_TIME = (2025, 1, 1, 0, 0, 0)  # every zip entry's timestamp: a zip does not depend on when it was written


def encode_jpeg(frame: np.ndarray, quality: int = 95) -> bytes:
    """JPEG bytes of a uint8 (H, W, 3) frame, full-resolution chroma; the same frame gives the same bytes."""
    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, "JPEG", quality=quality, subsampling=0, optimize=False)
    return buf.getvalue()


def write_frame_zip(frames: np.ndarray, path: str | Path, quality: int = 95) -> None:
    """A zip of JPEG frames ``img_00001.jpg``... (ALBAR's release layout), byte-identical for the same frames."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        for t, f in enumerate(frames):
            info = zipfile.ZipInfo(f"img_{t + 1:05d}.jpg", date_time=ZIP_TIME)
            info.external_attr = 0o644 << 16
            zf.writestr(info, encode_jpeg(f, quality))


def read_clip(source: str | Path, sampler: IndexSampler) -> np.ndarray:
    """Frames of ``source`` at the indices ``sampler(num_frames)`` chooses, as uint8 (T, H, W, 3).

    A still image is a one-frame source: every index is 0, so the clip is that frame repeated (SCUFO).
    """
    source = Path(source)
    if not source.exists():
        raise ClipReadError(source, "no such file or folder")
    kind = source_kind(source)
    if kind == "video":
        frames = _read_video(source, sampler)
    elif kind == "zip":
        frames = _read_zip(source, sampler)
    elif kind == "frames":
        frames = _read_folder(source, sampler)
    else:
        frames = _decode_image(source, source)[None]
        frames = frames[[0] * len(sampler(1))]
    shapes = {f.shape for f in frames}
    if len(shapes) != 1:
        raise ClipReadError(source, f"frames of different sizes {sorted(shapes)}")
    return frames
