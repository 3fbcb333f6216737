"""Reading frames from the four kinds of clip source: encoded video, frame folder, frame zip, still image.

Video goes through PyAV. Frame i is the i-th frame that decoding from the start delivers. That is how AVIs are
read: seeking by timestamp returns the wrong frames on AVIs with packed B-frames (HMDB51), and so do torchcodec's
indices (ECOSYSTEM.md). MP4s seek to the keyframe before the clip, numbering frames by their timestamps in display
order and checking each decoded frame against that numbering (:func:`read_video`; tests/test_decode_paths.py).
"""

from __future__ import annotations

import bisect
import io
import re
import warnings
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Literal

import av
import numpy as np
from av.container import InputContainer
from av.video.stream import VideoStream
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
    except UnidentifiedImageError as err:  # its message names an in-memory buffer, not the file
        raise ClipReadError(source, f"{where}cannot decode image (not an image format PIL knows: corrupt, "
                                    "truncated at the start, or not an image)") from err
    except (OSError, SyntaxError, ValueError) as err:
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


VideoPath = Literal["auto", "scan", "seek"]

# Seeking is used only where the container carries a presentation timestamp per frame (MP4/MOV) and for codecs
# whose seeking tests/test_decode_paths.py covers; everything else (AVI above all: HMDB51's packed B-frames come
# out with garbled timestamps) decodes from the start. The seek path numbers frames from the packets' timestamps
# and checks every decoded frame against that numbering; on any doubt it decodes from the start instead, so both
# paths return the same frames.
SEEK_FORMATS = frozenset({"mov", "mp4"})
SEEK_CODECS = frozenset({"h264", "mpeg4"})
# "auto": seek where exact (benchmarks/decode.py: half the decoding CPU on an MP4 with a keyframe every second,
# the same as the scan where the only keyframe is the first frame)
AUTO_PATH: VideoPath = "seek"


class SeekUnusable(Exception):
    """The seek path cannot prove it returns the frames decoding from the start would (the reason says why)."""


@dataclass(frozen=True)
class DecodeThreads:
    """FFmpeg's threading for one decoder: ``thread_type`` "SLICE", "FRAME" or "AUTO" (both); ``count`` 0 = one
    per core, 1 = no threads."""

    thread_type: str = "SLICE"
    count: int = 1


# One thread per decoder: the loader's worker processes give the parallelism. Decoder threads cost 10-45% more
# CPU per clip (FRAME/AUTO, benchmarks/decode.py), and SLICE threads idle on single-slice streams (x264's, Xvid's)
# while one pool per worker and per core would oversubscribe a machine whose workers already fill its cores.
DECODE_THREADS = DecodeThreads("SLICE", 1)


def _open_video(source: Path, threads: DecodeThreads) -> tuple[InputContainer, VideoStream]:
    try:
        container = av.open(str(source))
    except (av.error.FFmpegError, OSError) as err:
        raise ClipReadError(source, f"cannot open video ({err})") from err
    if not container.streams.video:
        container.close()
        raise ClipReadError(source, "no video stream")
    stream = container.streams.video[0]
    stream.thread_type = threads.thread_type
    stream.codec_context.thread_count = threads.count
    return container, stream


def video_decode_path(container: InputContainer, stream: VideoStream) -> str:
    """"seek" where the container and codec allow exact seeking (MP4/MOV with H.264 or MPEG-4 Part 2), else
    "scan" (decode from the start)."""
    formats = set(container.format.name.split(","))
    return "seek" if formats & SEEK_FORMATS and stream.codec_context.name in SEEK_CODECS else "scan"


def _presentation_order(container: InputContainer, stream: VideoStream) -> tuple[list[int], list[int]]:
    """Every frame's presentation timestamp in display order, and the keyframes', from the packets alone (nothing
    decoded; ~1 ms for 300 frames). Refused (SeekUnusable) where they cannot number the frames as decoding from
    the start does: a packet without a timestamp, one the demuxer marks to discard (edit lists) or as corrupt, two
    frames at one time, a count other than the header's, a first frame that is not a keyframe."""
    pts: list[int] = []
    keys: list[int] = []
    try:
        for packet in container.demux(stream):
            if packet.size == 0:
                continue  # the demuxer's end-of-stream marker
            if packet.pts is None or packet.is_discard or packet.is_corrupt:
                raise SeekUnusable(f"packet {len(pts)} has no usable timestamp")
            pts.append(packet.pts)
            if packet.is_keyframe:
                keys.append(packet.pts)
    except (av.error.FFmpegError, OSError) as err:
        raise SeekUnusable(f"demuxing failed ({err})") from err
    order = sorted(pts)
    if len(set(order)) != len(order):
        raise SeekUnusable("two frames share a timestamp")
    if not order or len(order) != stream.frames:
        raise SeekUnusable(f"{len(order)} packets, header declares {stream.frames} frames")
    if not keys or min(keys) != order[0]:
        raise SeekUnusable("the first frame is not a keyframe")
    return order, sorted(keys)


def _seek_frames(container: InputContainer, stream: VideoStream, order: list[int], keys: list[int],
                 idx: list[int]) -> dict[int, np.ndarray]:
    """The frames at ``idx`` (ranks in ``order``), decoded from the last keyframe at or before the first of them.

    The first frame after the seek must be one of ``order`` at or before the clip; every later one must carry the
    next timestamp in display order. Then the k-th frame decoded has rank (first one's rank + k), as decoding from
    the start numbers it. A decoder that delivers frames out of order (packed B-frames stream-copied into MP4),
    skips one or lands after the clip is refused (SeekUnusable).
    """
    wanted = set(idx)
    first, last = order[min(wanted)], max(wanted)
    key = keys[bisect.bisect_right(keys, first) - 1]
    out: dict[int, np.ndarray] = {}
    rank = -1
    try:
        # MP4's seek compares presentation times (its index holds decoding times, shifted by the edit list)
        container.seek(key, stream=stream, backward=True, any_frame=False)
        for frame in container.decode(stream):
            if rank < 0:
                rank = bisect.bisect_left(order, frame.pts) if frame.pts is not None else len(order)
                if rank == len(order) or order[rank] != frame.pts or frame.pts > first:
                    raise SeekUnusable(f"the seek to {key} landed on timestamp {frame.pts}")
            elif rank >= len(order) or frame.pts != order[rank]:
                raise SeekUnusable(f"after seeking, frame of timestamp {frame.pts} where rank {rank} "
                                   f"({order[rank] if rank < len(order) else 'past the end'}) was due")
            if rank in wanted:
                out[rank] = frame.to_ndarray(format="rgb24")
            if rank == last:
                return out
            rank += 1
    except (av.error.FFmpegError, OSError) as err:
        raise SeekUnusable(f"decoding after the seek failed ({err})") from err
    raise SeekUnusable(f"the stream ended at rank {rank}, before frame {last}")


def _scan_frames(source: Path, container: InputContainer, stream: VideoStream,
                 sampler: IndexSampler, idx: list[int] | None) -> tuple[dict[int, np.ndarray], list[int]]:
    """Decode from the start, counting frames (exact on every container); ``idx`` None: sample from the header's
    frame count (or, where the header has none or the stream ends early, from the frames decoded)."""
    declared = stream.frames
    if idx is None and declared > 0:
        idx = _pick(declared, sampler, source)
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
    return {i: frames[i].to_ndarray(format="rgb24") for i in set(idx)}, idx


def read_video(source: str | Path, sampler: IndexSampler, path: VideoPath = "auto",
               threads: DecodeThreads | None = None, fallback: bool = True) -> np.ndarray:
    """Frames of an encoded video at ``sampler(num_frames)``, uint8 (T, H, W, 3); frame i is the i-th frame that
    decoding from the start delivers, whichever path reads it.

    ``path``: "scan" decodes from the start (exact on every container, the reference); "seek" seeks to the keyframe
    before the clip where :func:`video_decode_path` allows it, and scans elsewhere; "auto" is the choice made from
    benchmarks/decode.py (:data:`AUTO_PATH`). A seek that cannot prove its frames (:func:`_seek_frames`) decodes
    from the start instead, which also gives every damaged file its error message; ``fallback=False`` raises
    :class:`SeekUnusable` then (tests and benchmarks use it to know which path ran). ``threads``: FFmpeg's decoder
    threading (default :data:`DECODE_THREADS`).
    """
    source = Path(source)
    if path not in ("auto", "scan", "seek"):
        raise ValueError(f"decode path must be 'auto', 'scan' or 'seek', got {path!r}")
    path = AUTO_PATH if path == "auto" else path
    threads = threads or DECODE_THREADS
    container, stream = _open_video(source, threads)
    try:
        idx = None
        if path == "seek":
            if video_decode_path(container, stream) != "seek":
                if not fallback:
                    raise SeekUnusable(f"{container.format.name} / {stream.codec_context.name}: not seeked")
            else:
                try:
                    order, keys = _presentation_order(container, stream)
                    idx = _pick(len(order), sampler, source)  # len(order) is the header's count: the scan's too
                    return _stack(_seek_frames(container, stream, order, keys, idx), idx, source,
                                  lambda i: f"frame {i}")
                except SeekUnusable:
                    if not fallback:
                        raise
                # the demuxer has moved on: decode from the start on a fresh one
                container.close()
                container, stream = _open_video(source, threads)
        rgb, idx = _scan_frames(source, container, stream, sampler, idx)
    finally:
        container.close()
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
        frames = read_video(source, sampler)
    elif kind == "zip":
        frames = _read_zip(source, sampler)
    elif kind == "frames":
        frames = _read_folder(source, sampler)
    else:
        frames = repeat_still(_decode_image(source, source), len(sampler(1)))
    return frames
