"""Reading frames from the four kinds of clip source: encoded video, frame folder, frame zip, still image.

Video goes through PyAV, decoding from the start and counting frames: seeking by timestamp returns the
wrong frames on AVIs with packed B-frames (HMDB51), and so do torchcodec's indices (ECOSYSTEM.md).
"""

from __future__ import annotations

import io
import re
import warnings
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path, PurePosixPath

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


# A zip member larger than this (as its header declares; zipfile never inflates past it) is refused unread:
# a JPEG frame is a few MB at most, a zip bomb is gigabytes.
MAX_MEMBER_BYTES = 512 << 20


def _bomb_reason(err: Exception) -> str:
    """Pillow's decompression-bomb refusal in words a user can act on (pixel count and limit)."""
    found = re.search(r"\((\d+) pixels\) exceeds limit of (\d+)", str(err))
    if found is None:
        return f"refused as a possible decompression bomb ({err})"
    pixels, limit = (int(x) for x in found.groups())
    return (f"image of {pixels:,} pixels exceeds the limit of {limit:,} pixels: refused as a possible "
            "decompression bomb (raise PIL.Image.MAX_IMAGE_PIXELS if the image is genuine)")


def _decode_image(data: bytes | Path, source: str | Path, member: str | None = None) -> np.ndarray:
    """RGB pixels of one image file or zip member; every failure is a ClipReadError on ``source``.

    ``member`` (a zip member or a frame file's name) starts the reason, so the failure log and the
    evaluation's error list, which keep only the reason, still say which frame was bad. Pillow's
    decompression-bomb warning is an error here, inside this call only: a frame over Pillow's limit (by
    default 89.5 M pixels, 2.7 times an 8K frame) is an attack or a mistake, and would cost gigabytes per
    clip; the process-wide warning filters and ``PIL.Image.MAX_IMAGE_PIXELS`` stay as they are.
    """
    where = f"{member}: " if member else ""
    size = len(data) if isinstance(data, bytes) else data.stat().st_size
    if size == 0:
        raise ClipReadError(source, f"{where}empty file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data) if isinstance(data, bytes) else data) as img:
                return np.asarray(img.convert("RGB"))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise ClipReadError(source, where + _bomb_reason(err)) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise ClipReadError(source, f"{where}cannot decode image ({err})") from err


def _stack(decoded: dict[int, np.ndarray], idx: list[int], source: Path, name: Callable[[int], str]) -> np.ndarray:
    """The frames at ``idx`` as one array; frames of different sizes are a ClipReadError naming them."""
    sizes: dict[tuple[int, ...], list[str]] = {}
    for i in sorted(decoded):
        sizes.setdefault(decoded[i].shape, []).append(name(i))
    if len(sizes) > 1:
        found = "; ".join(
            f"{shape[1]}x{shape[0]}: {', '.join(names[:3])}" + (f" and {len(names) - 3} more" if len(names) > 3 else "")
            for shape, names in sizes.items()
        )
        raise ClipReadError(source, f"frames of different sizes (width x height) {found}")
    return np.stack([decoded[i] for i in idx])


def _is_frame_name(name: str) -> bool:
    """An image file that is a frame: not a directory entry, not macOS's ``__MACOSX/`` or ``._*`` metadata."""
    path = PurePosixPath(name.replace("\\", "/"))
    return (not name.endswith("/") and path.suffix.lower() in IMAGE_EXTENSIONS
            and not path.name.startswith(".") and "__MACOSX" not in path.parts)


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
    return _stack(rgb, idx, source, lambda i: f"frame {i}")


def _read_zip(source: Path, sampler: IndexSampler) -> np.ndarray:
    """Frames in sorted member-name order, wherever they sit in the zip (a subfolder is common)."""
    try:
        with zipfile.ZipFile(source) as zf:
            members = sorted((m for m in zf.infolist() if _is_frame_name(m.filename)), key=lambda m: m.filename)
            idx = _pick(len(members), sampler, source)
            decoded = {}
            for i in sorted(set(idx)):
                if members[i].file_size > MAX_MEMBER_BYTES:
                    raise ClipReadError(source, f"{members[i].filename}: {members[i].file_size:,} bytes "
                                                f"uncompressed (limit {MAX_MEMBER_BYTES:,}): a possible zip bomb")
                decoded[i] = _decode_image(zf.read(members[i]), source, members[i].filename)
    except ClipReadError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, NotImplementedError, RuntimeError) as err:
        # RuntimeError: an encrypted member; NotImplementedError: a compression method zipfile lacks
        raise ClipReadError(source, f"cannot read zip ({err})") from err
    return _stack(decoded, idx, source, lambda i: members[i].filename)


def _read_folder(source: Path, sampler: IndexSampler) -> np.ndarray:
    names = sorted(p for p in source.iterdir() if _is_frame_name(p.name) and not p.is_dir())
    idx = _pick(len(names), sampler, source)
    decoded = {i: _decode_image(names[i], source, names[i].name) for i in sorted(set(idx))}
    return _stack(decoded, idx, source, lambda i: names[i].name)


def still_frame(frames: np.ndarray) -> np.ndarray | None:
    """The single frame of a clip that :func:`read_clip` made by repeating one still image, else None.

    Such a clip is a read-only view with stride 0 along time: transform its one frame, then repeat the
    result, instead of resizing the same (possibly 8000 x 8000) image T times.
    """
    if frames.ndim == 4 and len(frames) > 0 and frames.strides[0] == 0:
        return frames[0]
    return None


def repeat_still(frame: np.ndarray, num_frames: int) -> np.ndarray:
    """``frame`` as a clip of ``num_frames`` frames, without copying it (see :func:`still_frame`)."""
    return np.broadcast_to(frame[None], (num_frames, *frame.shape))


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

    A still image is a one-frame source: every index is 0, so the clip is that frame repeated (SCUFO), as a
    read-only view that holds the frame once (:func:`still_frame`). A zero-byte file is an "empty file".
    """
    source = Path(source)
    if not source.exists():
        raise ClipReadError(source, "no such file or folder")
    if source.is_file() and source.stat().st_size == 0:
        raise ClipReadError(source, "empty file")
    kind = source_kind(source)
    if kind == "video":
        frames = _read_video(source, sampler)
    elif kind == "zip":
        frames = _read_zip(source, sampler)
    elif kind == "frames":
        frames = _read_folder(source, sampler)
    else:
        frames = repeat_still(_decode_image(source, source), len(sampler(1)))
    return frames
