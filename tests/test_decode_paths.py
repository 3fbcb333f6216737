"""Every video decode path returns exactly the frames that decoding from the start returns (issue 13).

Fixtures are real encodes of numbered frames (frame i has grey level 10 * i + 8, tests/helpers.py), in the
containers and codings the datasets use: H.264 MP4 with and without B-frames and with a variable frame rate
(Kinetics), MPEG-4 Part 2 AVI with and without B-frames, and the DivX/Xvid "packed B-frames" AVI of HMDB51
(ECOSYSTEM.md: its timestamps come out garbled, so seeking by timestamp returns wrong frames there). Packed
B-frames are built here from FFmpeg's own MPEG-4 packets the way DivX 5 stores them: the B-frame that follows a
P-frame in decoding order goes into the P-frame's AVI chunk, an empty N-VOP holds its slot, and a
"DivX503b1393p" user-data string (its final "p": packed) tells the decoder. Short GOPs put keyframes inside the
clips, so that seeking actually skips frames.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from helpers import frame_number, numbered_frames

from albar.data import ClipReadError, clip_indices, read_clip
from albar.data.io import DecodeThreads, SeekUnusable, read_video

N = 24  # numbered_frames stays exact up to 25 frames
VOP = b"\x00\x00\x01\xb6"


def _encode_mpeg4(frames: np.ndarray, b_frames: int, gop: int = 6) -> list[tuple[bytes, bool]]:
    """FFmpeg's MPEG-4 Part 2 packets (decoding order) with their keyframe flags."""
    cc = av.CodecContext.create("mpeg4", "w")
    cc.width, cc.height, cc.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
    cc.time_base, cc.framerate = Fraction(1, 25), Fraction(25)
    cc.max_b_frames, cc.gop_size = b_frames, gop
    # else flat frames all become I-frames; (helpers' "qscale" is no codec option: rate control ignores it)
    cc.options = {"qmin": "1", "qmax": "2", "sc_threshold": "1000000000"}
    packets = []
    for i, f in enumerate(frames):
        vf = av.VideoFrame.from_ndarray(f, format="rgb24")
        vf.pts = i
        packets += [(bytes(p), p.is_keyframe) for p in cc.encode(vf)]
    return packets + [(bytes(p), p.is_keyframe) for p in cc.encode(None)]


def _vop_type(data: bytes) -> str:
    return "IPBS"[data[data.index(VOP) + 4] >> 6]


def _n_vop(slot: int) -> bytes:
    """A not-coded P-VOP (DivX's placeholder): type P, time base 0, marker, 5-bit time increment (1/25 s time
    base), marker, vop_coded 0, then the stuffing bits up to the byte boundary."""
    bits = "01" + "0" + "1" + format(slot % 32, "05b") + "1" + "0" + "0"
    bits += "1" * (-len(bits) % 8)
    return VOP + int(bits, 2).to_bytes(len(bits) // 8, "big")


def _packed_chunks(packets: list[tuple[bytes, bool]]) -> list[tuple[bytes, bool]]:
    """DivX's packed order: P-frame + first following B-frame in one chunk, further B-frames one chunk each,
    one N-VOP after them; one chunk per frame, as AVI wants."""
    chunks, i = [], 0
    while i < len(packets):
        data, key = packets[i]
        if i == 0:
            at = data.index(VOP)
            data = data[:at] + b"\x00\x00\x01\xb2DivX503b1393p" + data[at:]
        bs = []
        while i + 1 + len(bs) < len(packets) and _vop_type(packets[i + 1 + len(bs)][0]) == "B":
            bs.append(packets[i + 1 + len(bs)][0])
        chunks.append((data + (bs[0] if bs else b""), key))
        chunks += [(b, False) for b in bs[1:]]
        if bs:
            chunks.append((_n_vop(len(chunks)), False))
        i += 1 + len(bs)
    return chunks


def _mux(path: Path, frames: np.ndarray, chunks: list[tuple[bytes, bool]], fmt: str) -> Path:
    with av.open(str(path), "w", format=fmt) as c:
        s = c.add_stream("mpeg4", rate=25)
        s.width, s.height, s.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        for k, (data, key) in enumerate(chunks):
            p = av.Packet(data)
            p.stream, p.pts, p.dts, p.time_base, p.is_keyframe = s, k, k, Fraction(1, 25), key
            c.mux(p)
    return path


def _write_h264(path: Path, frames: np.ndarray, b_frames: int, gop: int = 6, pts: list[int] | None = None) -> Path:
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        s.options = {"crf": "10", "x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0:bframes={b_frames}"}
        for i, f in enumerate(frames):
            vf = av.VideoFrame.from_ndarray(f, format="rgb24")
            vf.pts, vf.time_base = (pts[i] if pts else i), Fraction(1, 25)
            c.mux(s.encode(vf))
        c.mux(s.encode())
    return path


def _write_mpeg4(path: Path, frames: np.ndarray, b_frames: int, fmt: str, gop: int = 6) -> Path:
    return _mux(path, frames, [(d, k) for d, k in _encode_mpeg4(frames, b_frames, gop)], fmt) if b_frames == 0 \
        else _write_mpeg4_reordered(path, frames, b_frames, fmt, gop)


def _write_mpeg4_reordered(path: Path, frames: np.ndarray, b_frames: int, fmt: str, gop: int) -> Path:
    """MPEG-4 with B-frames muxed by FFmpeg itself (timestamps from the encoder: unpacked, standard)."""
    with av.open(str(path), "w", format=fmt) as c:
        s = c.add_stream("mpeg4", rate=25)
        s.width, s.height, s.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        s.codec_context.max_b_frames, s.codec_context.gop_size = b_frames, gop
        s.options = {"qmin": "1", "qmax": "2", "sc_threshold": "1000000000"}
        for f in frames:
            c.mux(s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
        c.mux(s.encode())
    return path


def _stream_copy(src: Path, dst: Path) -> Path:
    """``ffmpeg -i src -c copy dst``: how AVIs get turned into MP4s (packed B-frames and all)."""
    with av.open(str(src)) as i, av.open(str(dst), "w") as o:
        si = i.streams.video[0]
        so = o.add_stream_from_template(si)
        for p in i.demux(si):
            if p.dts is not None:
                p.stream = so
                o.mux(p)
    return dst


# name -> (builder, does the "seek" path actually seek there)
VFR = [0, 1, 2, 4, 5, 6, 9, 10, 11, 12, 14, 15, 16, 17, 18, 21, 22, 23, 24, 25, 26, 27, 30, 31]
FIXTURES = {
    "h264_ip.mp4": (lambda p, f: _write_h264(p, f, b_frames=0), True),
    "h264_b.mp4": (lambda p, f: _write_h264(p, f, b_frames=2), True),
    "h264_vfr_b.mp4": (lambda p, f: _write_h264(p, f, b_frames=2, pts=VFR), True),
    "h264_gop250.mp4": (lambda p, f: _write_h264(p, f, b_frames=3, gop=250), True),
    "mpeg4_b.mp4": (lambda p, f: _write_mpeg4(p, f, 2, "mp4"), True),
    "mpeg4_ip.avi": (lambda p, f: _write_mpeg4(p, f, 0, "avi"), False),
    "mpeg4_b.avi": (lambda p, f: _write_mpeg4(p, f, 2, "avi"), False),
    "h264_b.avi": (lambda p, f: _write_h264(p, f, b_frames=2), False),
    "packed_b1.avi": (lambda p, f: _mux(p, f, _packed_chunks(_encode_mpeg4(f, 1)), "avi"), False),
    "packed_b2.avi": (lambda p, f: _mux(p, f, _packed_chunks(_encode_mpeg4(f, 2)), "avi"), False),
    # an HMDB51 AVI stream-copied into MP4: timestamps look sane in the container, the decoder garbles them
    "packed_b1.mp4": (lambda p, f: _stream_copy(_mux(p.with_suffix(".avi"), f, _packed_chunks(_encode_mpeg4(f, 1)),
                                                     "avi"), p), False),
}
THREADS = [DecodeThreads("SLICE", 0), DecodeThreads("FRAME", 2), DecodeThreads("AUTO", 0), DecodeThreads("FRAME", 1)]
SAMPLERS = {
    "all": lambda n: list(range(n)),
    "centre 6x2": lambda n: clip_indices(n, 6, 2, "center"),
    "late 4x2": lambda n: [n - 7, n - 5, n - 3, n - 1],
    "repeats": lambda n: [17, 17, 3, 12, 12, 23],
}


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("decode_paths")
    frames = numbered_frames(N)
    return {name: build(root / name, frames) for name, (build, _) in FIXTURES.items()}


def test_fixtures_are_what_they_claim(videos):
    """The packed AVIs really carry HMDB51's defect (decoded timestamps out of order, though the pictures come out in
    order), the standard files do not, and the short-GOP files have keyframes inside the clip."""
    def decoded_pts(path: Path) -> list[int]:
        with av.open(str(path)) as c:
            return [f.pts for f in c.decode(c.streams.video[0])]

    for name in ("packed_b1.avi", "packed_b2.avi", "packed_b1.mp4"):
        pts = decoded_pts(videos[name])
        assert len(pts) == N and pts != sorted(pts), name
    for name in ("h264_b.mp4", "h264_vfr_b.mp4", "mpeg4_b.mp4"):
        pts = decoded_pts(videos[name])
        assert len(pts) == N and pts == sorted(pts), name
    with av.open(str(videos["h264_b.mp4"])) as c:
        keys = [p.pts for p in c.demux(c.streams.video[0]) if p.size and p.is_keyframe]
    assert len(keys) >= 3
    with av.open(str(videos["h264_vfr_b.mp4"])) as c:
        s = c.streams.video[0]
        pts = sorted(p.pts for p in c.demux(s) if p.size)
    steps = {round((b - a) * s.time_base * 25) for a, b in zip(pts, pts[1:])}
    assert steps == {1, 2, 3}  # a real variable frame rate: timestamp x rate is not the frame number


@pytest.mark.parametrize("name", list(FIXTURES))
def test_decoding_from_the_start_returns_the_numbered_frames(videos, name):
    """The reference path against the ground truth written into the pixels, on every container and coding."""
    for threads in THREADS:
        for sampler in SAMPLERS.values():
            clip = read_video(videos[name], sampler, "scan", threads)
            assert [frame_number(f) for f in clip] == list(sampler(N)), (name, threads)


@pytest.mark.parametrize("name", list(FIXTURES))
def test_every_path_returns_exactly_the_frames_of_decoding_from_the_start(videos, name):
    reference = {k: read_video(videos[name], s, "scan", DecodeThreads("SLICE", 1)) for k, s in SAMPLERS.items()}
    for path in ("seek", "auto"):
        for threads in THREADS:
            for key, sampler in SAMPLERS.items():
                clip = read_video(videos[name], sampler, path, threads)
                assert clip.shape == reference[key].shape
                assert np.array_equal(clip, reference[key]), (name, path, threads, key)
    for key, sampler in SAMPLERS.items():
        assert np.array_equal(read_clip(videos[name], sampler), reference[key]), (name, key)


@pytest.mark.parametrize("name", list(FIXTURES))
def test_the_seek_path_seeks_only_where_it_is_exact(videos, name):
    """Without the fall-back, "seek" either really seeks (MP4 with sane timestamps, including B-frames and a
    variable frame rate) and returns the true frames, or refuses: on every AVI, and on the packed-B MP4 whose
    decoder delivers frames under the wrong timestamps (a plain timestamp seek would return wrong frames there)."""
    seeks = FIXTURES[name][1]
    for threads in THREADS:
        for sampler in SAMPLERS.values():
            if seeks:
                clip = read_video(videos[name], sampler, "seek", threads, fallback=False)
                assert [frame_number(f) for f in clip] == list(sampler(N)), (name, threads)
            else:
                with pytest.raises(SeekUnusable):
                    read_video(videos[name], sampler, "seek", threads, fallback=False)


@pytest.mark.parametrize("name", ["h264_b.mp4", "mpeg4_b.mp4", "packed_b1.mp4", "packed_b2.avi"])
def test_the_sampler_is_asked_once_with_the_scans_frame_count(videos, name):
    """A random training clip must not depend on the path: the sampler sees the same frame count once, also when
    the seek path gives up and decoding starts again from the beginning."""
    for path in ("scan", "seek", "auto"):
        calls: list[int] = []

        def sampler(n: int, calls: list[int] = calls) -> list[int]:
            calls.append(n)
            return [n - 1, 2]

        clip = read_video(videos[name], sampler, path)
        assert calls == [N] and [frame_number(f) for f in clip] == [N - 1, 2], (name, path)


def test_damaged_mp4_gets_the_scans_error_on_every_path(tmp_path, videos):
    """A truncated fast-start MP4 (its index first, so it opens) and a zero-length stream: the seek path refuses
    and the error is the one decoding from the start gives, naming the file."""
    src = videos["h264_b.mp4"]
    fast = tmp_path / "fast.mp4"
    with av.open(str(src)) as i, av.open(str(fast), "w", options={"movflags": "faststart"}) as o:
        so = o.add_stream_from_template(i.streams.video[0])
        for p in i.demux(i.streams.video[0]):
            if p.dts is not None:
                p.stream = so
                o.mux(p)
    data = fast.read_bytes()
    mdat = data.index(b"mdat")
    assert data.index(b"moov") < mdat  # fast start
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: mdat + (len(data) - mdat) * 2 // 3])
    errors = {}
    for path in ("scan", "seek", "auto"):
        with pytest.raises(ClipReadError) as err:
            read_video(cut, lambda n: clip_indices(n, 4, 1, "center"), path)
        errors[path] = str(err.value)
    assert len(set(errors.values())) == 1 and "cut.mp4" in errors["scan"] and "truncated" in errors["scan"]
    with pytest.raises(SeekUnusable):
        read_video(cut, lambda n: [0], "seek", fallback=False)


def test_bad_decode_path_is_refused(videos):
    with pytest.raises(ValueError, match="'auto', 'scan' or 'seek'"):
        read_video(videos["h264_b.mp4"], lambda n: [0], "fast")
