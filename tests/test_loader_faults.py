"""Data faults from an attack on the loader (issue 9): each bad input is built for real, and the tests assert
what a user relies on: the error names the file (and the frame inside it), a training run replaces and logs
the bad file, an evaluation counts it as a failure with its reason, never a traceback or a silent wrong item.
"""

from __future__ import annotations

import io
import struct
import tracemalloc
import warnings
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from accelerate import Accelerator
from data_fixtures import empty
from helpers import frame_number, numbered_frames, write_folder, write_video, write_zip
from PIL import Image
from torch import nn

from albar.data import ClipDataset, ClipReadError, build_transform, read_clip, read_list
from albar.data.lists import ClipItem, read_text_lines
from albar.data.robust import RobustClipDataset
from albar.data.views import ViewDataset
from albar.evaluation.predict import predict

# --- real bad inputs ------------------------------------------------------------------------------------------


def bomb_png(width: int, height: int) -> bytes:
    """A valid 1-bit greyscale PNG of ``width`` x ``height`` black pixels: a few KB that decode to gigabytes."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\x00" * (1 + (width + 7) // 8)  # filter byte + packed bits
    z = zlib.compressobj(9)
    idat = b"".join(z.compress(row * 500) for _ in range(height // 500)) + z.compress(row * (height % 500)) + z.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def bomb_jpeg(width: int = 20000, height: int = 20000) -> bytes:
    """A small JPEG whose frame header (SOF0) claims ``width`` x ``height``: what a JPEG bomb looks like."""
    buf = io.BytesIO()
    Image.fromarray(numbered_frames(1, 16, 16)[0]).save(buf, "JPEG")
    data = bytearray(buf.getvalue())
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def jpeg(frame: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, "JPEG", quality=95)
    return buf.getvalue()


@pytest.fixture(scope="module")
def faults(tmp_path_factory):
    """Good clips (MP4, zips) and one of each fault, as files on disk; keys name the fault."""
    d = tmp_path_factory.mktemp("faults")
    good = [ClipItem(write_zip(d / f"good{i}.zip", numbered_frames(8)), i % 2, f"good{i}") for i in range(8)]
    good.append(ClipItem(write_video(d / "good8.mp4", numbered_frames(8)), 0, "good8"))
    (d / "bomb.png").write_bytes(bomb_png(20000, 20000))  # 400 M pixels: over Pillow's error limit
    (d / "big.png").write_bytes(bomb_png(10000, 10000))  # 100 M pixels: over Pillow's warning limit
    with zipfile.ZipFile(d / "bomb.zip", "w") as zf:  # as released: frames in a subfolder, a bad one inside
        zf.writestr("bomb/", b"")
        for i, f in enumerate(numbered_frames(8)):
            zf.writestr(f"bomb/img_{i + 1:05d}.jpg", bomb_jpeg() if i in (2, 3) else jpeg(f))
    folder = write_folder(d / "bomb_frames", numbered_frames(8))
    for name in ("frame000003.jpg", "frame000004.jpg"):  # frames 2 and 3: every 4 x 2 clip meets one
        (folder / name).write_bytes(bomb_jpeg())
    wide = numbered_frames(1, 40, 64)[0]
    with zipfile.ZipFile(d / "mixed.zip", "w") as zf:
        for i, f in enumerate(numbered_frames(8)):
            zf.writestr(f"img_{i + 1:05d}.jpg", jpeg(wide if i >= 5 else f))
    folder = write_folder(d / "mixed_frames", numbered_frames(8))
    for i in (5, 6, 7):
        Image.fromarray(wide).save(folder / f"frame{i + 1:06d}.jpg")
    with zipfile.ZipFile(d / "empty_frame.zip", "w") as zf:
        for i, f in enumerate(numbered_frames(8)):
            zf.writestr(f"img_{i + 1:05d}.jpg", b"" if i in (3, 4) else jpeg(f))
    bad = {
        "bomb_png": d / "bomb.png", "big_png": d / "big.png", "bomb_zip": d / "bomb.zip",
        "bomb_frames": d / "bomb_frames", "mixed_zip": d / "mixed.zip", "mixed_frames": d / "mixed_frames",
        "empty_mp4": empty(d / "empty.mp4"), "empty_zip": empty(d / "empty.zip"), "empty_jpg": empty(d / "empty.jpg"),
        "empty_frame_zip": d / "empty_frame.zip",
    }
    return good, bad


# What each fault must say, whichever frames a clip samples: the file is the error's source; the reason names
# the frame inside it and the numbers (pixels, sizes as width x height).
EXPECTED = {
    "bomb_png": ["400,000,000 pixels", "decompression bomb"],
    "big_png": ["100,000,000 pixels", "decompression bomb"],
    "bomb_zip": ["bomb/img_0000", "400,000,000 pixels", "decompression bomb"],
    "bomb_frames": ["frame00000", "400,000,000 pixels", "decompression bomb"],
    "mixed_zip": ["different sizes", "48x32", "64x40", "img_0000"],
    "mixed_frames": ["different sizes", "48x32", "64x40", "frame00000"],
    "empty_mp4": ["empty file"], "empty_zip": ["empty file"], "empty_jpg": ["empty file"],
    "empty_frame_zip": ["img_0000", "empty file"],
}
# Reading every frame: the first bad frame in name order is the one named.
EXPECTED_ALL_FRAMES = {
    "bomb_zip": "bomb/img_00003.jpg: image of 400,000,000 pixels", "bomb_frames": "frame000003.jpg: image of",
    "mixed_zip": "48x32: img_00001.jpg, img_00002.jpg, img_00003.jpg and 2 more; 64x40: img_00006.jpg",
    "mixed_frames": "64x40: frame000006.jpg, frame000007.jpg, frame000008.jpg",
    "empty_frame_zip": "img_00004.jpg: empty file",
}


def every_frame(n: int) -> list[int]:
    return list(range(n))


# --- the reader -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fault", sorted(EXPECTED))
def test_each_fault_is_a_clip_read_error_naming_the_file_and_what_is_wrong(faults, fault):
    _, bad = faults
    filters, limit = list(warnings.filters), Image.MAX_IMAGE_PIXELS
    with pytest.raises(ClipReadError) as err:
        read_clip(bad[fault], every_frame)
    assert err.value.source == str(bad[fault])
    for words in EXPECTED[fault]:
        assert words in err.value.reason
    assert EXPECTED_ALL_FRAMES.get(fault, "") in err.value.reason
    if fault.startswith("empty_") and fault != "empty_frame_zip":
        assert err.value.reason == "empty file"  # not "[Errno 1094995529] Invalid data"
    # the bomb check is local: the process's warning filters and Pillow's limit are as they were
    assert warnings.filters == filters and Image.MAX_IMAGE_PIXELS == limit


def test_released_zip_layouts_read_frames_in_sorted_name_order(tmp_path):
    """ALBAR's zips (FORMATS.md): frames in sorted name order, sometimes in a subfolder, sometimes with
    directory entries; written out of order here, with the metadata a zip made on macOS carries."""
    frames = numbered_frames(6)
    with zipfile.ZipFile(tmp_path / "clip__1.zip", "w") as zf:
        zf.writestr("clip__1/", b"")
        for i in (4, 0, 5, 2, 1, 3):
            zf.writestr(f"clip__1/img_{i + 1:05d}.jpg", jpeg(frames[i]))
        zf.writestr("__MACOSX/clip__1/._img_00001.jpg", b"\x00\x05\x16\x07 AppleDouble")
    assert [frame_number(f) for f in read_clip(tmp_path / "clip__1.zip", every_frame)] == [0, 1, 2, 3, 4, 5]
    with zipfile.ZipFile(tmp_path / "flat.zip", "w") as zf:
        for i in (2, 0, 1):
            zf.writestr(f"img_{i + 1:05d}.jpg", jpeg(frames[i]))
    assert [frame_number(f) for f in read_clip(tmp_path / "flat.zip", every_frame)] == [0, 1, 2]


# --- training: replaced and logged; evaluation: counted with its reason ----------------------------------------


def training_items(faults) -> tuple[list[ClipItem], dict[str, Path]]:
    good, bad = faults
    # A training set holds clips (zips, videos, frame folders); the still faults belong to the SCUFO tests.
    picked = {k: v for k, v in bad.items() if k not in ("bomb_png", "big_png", "empty_jpg")}
    return good + [ClipItem(p, 1, k) for k, p in picked.items()], picked


@pytest.mark.parametrize("cache", [False, True])
def test_training_replaces_and_logs_every_bad_file_with_or_without_cache(faults, tmp_path, cache):
    items, picked = training_items(faults)
    inner = ClipDataset(items, 4, 2, mode="center" if cache else "random", cache=cache)
    if cache:  # `data.cache: true`: preloading must not stop at the first bad file
        failed = inner.preload(num_workers=0)
        assert sorted(items[i].key for i in failed) == sorted(picked)
        assert len(inner.cache) == len(items) - len(picked)
    log = tmp_path / "failures.jsonl"
    ds = RobustClipDataset(inner, max_failure_fraction=0.9, seed=1, log=log)
    for epoch in range(2):  # a remembered failure is replaced and logged again, as without the cache
        ds.set_epoch(epoch)
        samples = [ds[i] for i in range(len(ds))]
        assert all(s["clip"].shape == (3, 4, 32, 48) for s in samples)
        assert [s["replaced"] for s in samples] == [""] * (len(items) - len(picked)) + list(picked)
    records = ds.log.records()
    assert sorted({r["key"] for r in records if r["epoch"] == 1}) == sorted(picked)
    for r in records:
        assert r["source"] == str(picked[r["key"]])
        assert all(words in r["reason"] for words in EXPECTED[r["key"]])


def test_cache_preload_in_worker_processes_keeps_going_and_remembers_failures(faults, tmp_path):
    items, picked = training_items(faults)
    stills = [ClipItem(faults[1]["empty_jpg"], 0, "empty_jpg")]
    img = tmp_path / "still.png"
    Image.fromarray(numbered_frames(1)[0]).save(img)
    ds = ClipDataset(items + stills + [ClipItem(img, 0, "still")], 4, 2, cache=True)
    failed = ds.preload(num_workers=1)
    assert sorted(ds.items[i].key for i in failed) == sorted([*picked, "empty_jpg"])
    assert failed[len(items)] == "empty file"
    still = ds.frames(len(ds) - 1)
    assert still.shape == (4, 32, 48, 3) and {frame_number(f) for f in still} == {0}
    with pytest.raises(ClipReadError, match="mixed.zip: frames of different sizes"):
        ds[items.index(next(it for it in items if it.key == "mixed_zip"))]


class MeanColour(nn.Module):
    """A real (untrained) video classifier: linear in the mean colour of the clip."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.head = nn.Sequential(nn.AdaptiveAvgPool3d(1), nn.Flatten(), nn.Linear(3, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x)


@pytest.mark.parametrize("cache", [False, True])
def test_evaluation_counts_each_bad_file_as_a_failure_with_its_reason(faults, cache):
    good, bad = faults
    items = good + [ClipItem(p, 1, k) for k, p in bad.items()]
    ds = ClipDataset(items, 4, 2, transform=build_transform(False, 32, None), cache=cache)
    if cache:
        ds.preload(num_workers=0)
    preds = predict(MeanColour(), ds, Accelerator(cpu=True), batch_size=4)
    assert sorted(preds.errors) == sorted(bad)
    for key, reason in preds.errors.items():
        assert all(words in reason for words in EXPECTED[key])
    assert np.isnan(preds.scores[len(good):]).all() and not np.isnan(preds.scores[:len(good)]).any()


def test_multi_view_evaluation_counts_a_bomb_still_as_a_failure(faults):
    """A multi-view set follows the one bad-file policy: the dataset raises, evaluation counts the item wrong."""
    good, bad = faults
    items = good[:1] + [ClipItem(bad["bomb_png"], 0, "bomb"), ClipItem(bad["empty_jpg"], 0, "empty")]
    ds = ViewDataset(items, 4, 2, "2x3", crop_size=32, resize_short=None)
    with pytest.raises(ClipReadError, match="400,000,000 pixels"):
        ds[1]
    assert ds[0]["clip"].shape == (6, 3, 4, 32, 32)
    preds = predict(MeanColour(), ds, Accelerator(cpu=True), batch_size=12)
    assert "400,000,000 pixels" in preds.errors["bomb"] and preds.errors["empty"] == "empty file"
    assert np.isnan(preds.scores[1:]).all() and np.isfinite(preds.scores[0]).all()


# --- SCUFO stills: resized once, then repeated ------------------------------------------------------------------


@pytest.fixture(scope="module")
def still_and_copies(tmp_path_factory):
    """A still (lossless PNG, as a SCUFO frame) and a frame folder holding 8 copies of it: the folder is read
    frame by frame, so it gives what the clip of a still must equal."""
    d = tmp_path_factory.mktemp("still")
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (45, 70, 3), dtype=np.uint8)
    Image.fromarray(frame).save(d / "v__1.png")
    folder = d / "copies"
    folder.mkdir()
    for i in range(8):
        Image.fromarray(frame).save(folder / f"frame{i + 1:06d}.png")
    return d / "v__1.png", folder


@pytest.mark.parametrize("train", [True, False])
def test_a_still_gives_the_clip_of_its_repeated_frames(still_and_copies, train):
    still, copies = still_and_copies
    tf = build_transform(train, crop_size=24, resize_short=32, train_crop="random_resized", hflip=True)
    a = ClipDataset([ClipItem(still, 0, "s")] * 5, 8, 1, mode="random", transform=tf, seed=3)
    b = ClipDataset([ClipItem(copies, 0, "s")] * 5, 8, 1, mode="random", transform=tf, seed=3)
    for epoch in range(2):
        a.set_epoch(epoch), b.set_epoch(epoch)
        for i in range(5):  # same (seed, epoch, index): the same crop and flip
            x, y = a[i]["clip"], b[i]["clip"]
            assert x.shape == (3, 8, 24, 24) and x.is_contiguous()
            torch.testing.assert_close(x, y, rtol=0, atol=1e-6)
    plain = ClipDataset([ClipItem(still, 0, "s")], 8, 1)[0]["clip"]  # no transform
    torch.testing.assert_close(plain, ClipDataset([ClipItem(copies, 0, "s")], 8, 1)[0]["clip"])


@pytest.mark.parametrize("view", ["center", "2x3"])
def test_a_still_gives_the_test_views_of_its_repeated_frames(still_and_copies, view):
    still, copies = still_and_copies
    a = ViewDataset([ClipItem(still, 0, "s")], 8, 1, view, crop_size=24, resize_short=32)[0]
    b = ViewDataset([ClipItem(copies, 0, "s")], 8, 1, view, crop_size=24, resize_short=32)[0]
    assert a["clip"].shape == b["clip"].shape
    torch.testing.assert_close(a["clip"], b["clip"], rtol=0, atol=1e-6)


def test_a_large_still_is_not_copied_once_per_frame(tmp_path):
    """One 1000 x 1000 still as a 32-frame clip: the loader holds the frame, not 32 copies (96 MB)."""
    Image.fromarray(np.full((1000, 1000, 3), 90, np.uint8)).save(tmp_path / "big__1.jpg")
    item = ClipItem(tmp_path / "big__1.jpg", 0, "big")
    frame_bytes = 1000 * 1000 * 3
    train = ClipDataset([item], 32, 2, mode="random", transform=build_transform(True, 32, 40))
    views = ViewDataset([item], 32, 2, "2x3", crop_size=32, resize_short=40)
    for load in (lambda: train[0]["clip"], lambda: views[0]["clip"]):
        tracemalloc.start()
        try:
            load()
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 4 * frame_bytes, f"peak {peak / 1e6:.0f} MB for a {frame_bytes / 1e6:.0f} MB frame"
    # tracemalloc does not see torch's allocations: check that the transform is handed one frame, not 32
    seen: list[int] = []
    inner = train.transform

    def spy(video):
        seen.append(video.shape[0])
        return inner(video)

    train.transform = spy
    assert train[0]["clip"].shape[1] == 32 and seen == [1]


# --- clip lists as users save them --------------------------------------------------------------------------------


def test_clip_lists_in_the_encodings_and_line_endings_users_have(tmp_path):
    write_video(tmp_path / "a.mp4", numbered_frames(4))
    write_folder(tmp_path / "Café", numbered_frames(4))
    # UTF-8 with a BOM (Notepad's "UTF-8 with BOM") and CRLF: the first item must be the real file
    (tmp_path / "bom.txt").write_bytes("a.mp4 3\r\nCafé 4 1\r\n".encode("utf-8-sig"))
    items = read_list(tmp_path / "bom.txt")
    assert [(i.key, i.label) for i in items] == [("a", 3), ("Café", 1)]
    assert all(i.source.exists() for i in items)
    assert read_text_lines(tmp_path / "bom.txt") == ["a.mp4 3", "Café 4 1"]
    # Latin-1 (a list written on an old Windows setup): name the file, the line, the byte and the encoding
    (tmp_path / "latin1.txt").write_bytes("a.mp4 3\nCafé 4 1\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin1\.txt:2: not UTF-8") as err:
        read_list(tmp_path / "latin1.txt")
    assert r"b'\xe9'" in str(err.value) and "Latin-1" in str(err.value) and "Café" in str(err.value)


@pytest.mark.parametrize("text", ["", "\n\n", "# generated list\n# nothing yet\n", "\r\n# x\r\n"])
def test_an_empty_or_comments_only_list_names_the_file(tmp_path, text):
    (tmp_path / "trainlist01.txt").write_text(text)
    with pytest.raises(ValueError, match=r"trainlist01\.txt: no entries"):
        read_list(tmp_path / "trainlist01.txt")
