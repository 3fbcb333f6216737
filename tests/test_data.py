import numpy as np
import pytest
import torch
from helpers import frame_number, numbered_frames, write_folder, write_video, write_zip
from PIL import Image

from albar.data import ClipDataset, ClipReadError, build_transform, clip_indices, read_clip, read_list


def test_clip_indices_paper_views():
    assert clip_indices(100, 32, 2, "center") == list(range(18, 18 + 64, 2))
    assert clip_indices(100, 32, 2, "first") == list(range(0, 64, 2))
    rng = np.random.default_rng(0)
    starts = {clip_indices(100, 4, 2, "random", rng)[0] for _ in range(200)}
    assert min(starts) == 0 and max(starts) == 93  # every start in [0, 100 - 7] is reachable


def test_clip_indices_short_video_halves_stride_then_repeats_last():
    assert clip_indices(40, 32, 2, "center") == list(range(4, 36))  # stride 2 -> 1 fits
    assert clip_indices(10, 16, 2, "center") == list(range(10)) + [9] * 6
    with pytest.raises(ValueError, match="'random', 'center' or 'first'"):
        clip_indices(10, 4, 1, "middle")


@pytest.mark.parametrize("codec,ext", [("libx264", "mp4"), ("mpeg4", "avi")])
def test_read_clip_returns_the_requested_frames_of_real_videos(tmp_path, codec, ext):
    frames = numbered_frames(20)
    path = write_video(tmp_path / f"v.{ext}", frames, codec)
    clip = read_clip(path, lambda n: clip_indices(n, 5, 3, "center"))
    assert clip.shape == (5, 32, 48, 3) and clip.dtype == np.uint8
    assert [frame_number(f) for f in clip] == clip_indices(20, 5, 3, "center") == [3, 6, 9, 12, 15]


def test_zip_folder_and_still_image_sources(tmp_path):
    frames = numbered_frames(9)
    z = write_zip(tmp_path / "v.zip", frames)
    d = write_folder(tmp_path / "v_frames", frames)
    img = tmp_path / "still.jpg"
    Image.fromarray(frames[6]).save(img)
    for source in (z, d):
        assert [frame_number(f) for f in read_clip(source, lambda n: [0, 4, 8])] == [0, 4, 8]
    still = read_clip(img, lambda n: clip_indices(n, 4, 2, "center"))
    assert still.shape[0] == 4 and {frame_number(f) for f in still} == {6}


def test_bad_sources_raise_errors_naming_the_file(tmp_path):
    frames = numbered_frames(24)
    good = write_video(tmp_path / "good.mp4", frames).read_bytes()
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "garbage.avi").write_bytes(b"not a video at all" * 100)
    (tmp_path / "bad.zip").write_bytes(b"PK\x03\x04 broken")
    for name in ("missing.mp4", "empty.mp4", "garbage.avi", "bad.zip"):
        with pytest.raises(ClipReadError, match=name):
            read_clip(tmp_path / name, lambda n: [0])
    # a truncated download: what decodes is used, never an index past the end
    (tmp_path / "truncated.mp4").write_bytes(good[: len(good) // 2])
    try:
        clip = read_clip(tmp_path / "truncated.mp4", lambda n: clip_indices(n, 4, 1, "center"))
        assert clip.shape[0] == 4
    except ClipReadError as err:
        assert "truncated.mp4" in str(err)


def test_read_list_mmaction2_formats(tmp_path):
    write_video(tmp_path / "a.mp4", numbered_frames(4))
    write_folder(tmp_path / "b", numbered_frames(4))
    (tmp_path / "list.txt").write_text("a.mp4 3\n\n# comment\nb 4 1\n")
    items = read_list(tmp_path / "list.txt")
    assert [(i.source.name, i.label, i.key) for i in items] == [("a.mp4", 3, "a"), ("b", 1, "b")]
    assert items[1].extra["num_frames"] == 4
    (tmp_path / "frames.txt").write_text("not_extracted_yet 120 5\n")  # a rawframes folder that is missing
    (gone,) = read_list(tmp_path / "frames.txt")
    assert (gone.label, gone.extra["num_frames"]) == (5, 120)
    (tmp_path / "bad.txt").write_text("a.mp4 x\n")
    with pytest.raises(ValueError, match="bad.txt:1"):
        read_list(tmp_path / "bad.txt")
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        read_list(tmp_path / "nope.txt")


def test_dataset_transforms_share_one_crop_and_flip_across_frames(tmp_path):
    frames = numbered_frames(12, 64, 80)
    frames[:, :, :40, 0] = 255  # left half marked: a flip moves it to the right for every frame
    write_video(tmp_path / "v.mp4", frames)
    (tmp_path / "l.txt").write_text("v.mp4 0\n")
    # 64x80 -> 32x40, then a random 32x32 crop: both halves stay in view, so the flip is visible
    tf = build_transform(True, crop_size=32, resize_short=32, train_crop="random", hflip=True, mean=(0, 0, 0),
                         std=(1, 1, 1))
    ds = ClipDataset(read_list(tmp_path / "l.txt"), num_frames=4, stride=2, mode="random", transform=tf)
    flipped = set()
    for epoch in range(10):
        ds.set_epoch(epoch)
        clip = ds[0]["clip"]
        assert clip.shape == (3, 4, 32, 32)
        red_left = clip[0, :, :, :8].mean(dim=(1, 2)) > clip[0, :, :, -8:].mean(dim=(1, 2))
        assert red_left.all() or (~red_left).all()  # the same flip for every frame of the clip
        flipped.add(bool(red_left[0]))
        assert torch.equal(ds[0]["clip"], clip)  # the same draw for the same (seed, epoch, index)
    assert flipped == {True, False}  # and a new draw per epoch


def test_dataset_clip_choice_is_seeded_and_cache_keeps_frames(tmp_path):
    write_video(tmp_path / "v.mp4", numbered_frames(24))
    (tmp_path / "l.txt").write_text("v.mp4 0\n")
    items = read_list(tmp_path / "l.txt")
    a = ClipDataset(items, 4, 2, mode="random", seed=1)
    b = ClipDataset(items, 4, 2, mode="random", seed=1)
    assert np.array_equal(a.frames(0), b.frames(0))
    firsts = set()
    for epoch in range(6):
        a.set_epoch(epoch)
        firsts.add(frame_number(a.frames(0)[0]))
    assert len(firsts) > 1  # a new clip each epoch
    c = ClipDataset(items, 4, 2, cache=True)
    c.preload(num_workers=1)
    assert 0 in c.cache and [frame_number(f) for f in c[0]["clip"].permute(1, 2, 3, 0).mul(255).numpy()] == [
        8, 10, 12, 14
    ]
