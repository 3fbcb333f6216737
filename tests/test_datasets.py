import random

import numpy as np
import pytest
import torch
from helpers import frame_number, numbered_frames, write_video

from albar.data import ClipDataset
from albar.data.layouts import (
    LabelError,
    hmdb51_csv,
    hmdb51_split,
    kinetics400_csv,
    kinetics_clip_name,
    list_split,
    read_classes,
    ucf101_split,
)
from albar.data.lists import ClipItem
from albar.data.splits import holdout_split
from albar.data.views import ViewDataset, parse_view, spatial_crops, view_clip_indices


@pytest.fixture
def hmdb_tree(tmp_path):
    """Official HMDB51 layout: class folders of AVIs (MPEG-4, as the release) and split files."""
    videos, splits = tmp_path / "videos", tmp_path / "testTrainMulti_7030_splits"
    splits.mkdir()
    names = {"fencing": ["Fencing_A_f_1", "Fencing_B_f_2", "Fencing_C_f_3"],
             "brush_hair": ["Brush_A_h_1", "Brush_B_h_2", "Brush_C_h_3"]}
    for cls, vids in names.items():
        (videos / cls).mkdir(parents=True)
        for v in vids[:2]:  # the third video of each class is listed but not on disk
            write_video(videos / cls / f"{v}.avi", numbered_frames(6), "mpeg4")
        (splits / f"{cls}_test_split1.txt").write_text(f"{vids[0]}.avi 1 \n{vids[1]}.avi 2 \n{vids[2]}.avi 0 \n")
        (splits / f"{cls}_test_split2.txt").write_text(f"{vids[0]}.avi 2 \n{vids[1]}.avi 1 \n{vids[2]}.avi 1 \n")
    return videos, splits


def test_hmdb51_official_splits(hmdb_tree):
    videos, splits = hmdb_tree
    train = hmdb51_split(splits, videos, split=1, subset="train")
    assert train.classes == ["brush_hair", "fencing"]  # sorted, as mmaction2 numbers them
    assert [(it.key, train.class_name(it.label)) for it in train.items] == [
        ("Brush_A_h_1", "brush_hair"), ("Fencing_A_f_1", "fencing")]
    assert train.items[1].source == videos / "fencing" / "Fencing_A_f_1.avi" and not train.missing
    test = hmdb51_split(splits, videos, split=1, subset="test")
    assert [it.key for it in test.items] == ["Brush_B_h_2", "Fencing_B_f_2"]
    train2 = hmdb51_split(splits, videos, split=2, subset="train")
    assert sorted(train2.missing) == ["Brush_C_h_3", "Fencing_C_f_3"]  # listed, absent: reported, kept
    assert len(train2.items) == 4 and train2.class_counts() == {"brush_hair": 2, "fencing": 2}
    (splits / "fencing_test_split3.txt").write_text("Fencing_A_f_1.avi 1\nFencing_B_f_2.avi train\n")
    with pytest.raises(LabelError, match=r"fencing_test_split3.txt:2.*'Fencing_B_f_2.avi train'"):
        hmdb51_split(splits, videos, split=3)
    with pytest.raises(FileNotFoundError, match="_test_split1.txt"):
        hmdb51_split(videos, videos)


def test_hmdb51_albar_csv(hmdb_tree, tmp_path):
    videos, _ = hmdb_tree
    csv = tmp_path / "hmdb51_train_labels.csv"
    csv.write_text("class,filename,label\nbrush_hair,Brush_A_h_1.avi,0\nfencing,Fencing_A_f_1.avi,1\n"
                   "fencing,Fencing_B_f_2.avi,1\n")
    split = hmdb51_csv(csv, videos)
    assert split.classes == ["brush_hair", "fencing"]
    assert [(it.key, it.label) for it in split.items] == [
        ("Brush_A_h_1", 0), ("Fencing_A_f_1", 1), ("Fencing_B_f_2", 1)]
    assert split.items[2].source == videos / "fencing" / "Fencing_B_f_2.avi" and not split.missing
    named = tmp_path / "named.csv"  # labels given as class names, no class column
    named.write_text("filename,label\nfencing/Fencing_A_f_1.avi,fencing\nbrush_hair/Brush_A_h_1.avi,brush_hair\n")
    s2 = hmdb51_csv(named, videos, classes=["brush_hair", "fencing", "golf"])
    assert [(it.key, it.label) for it in s2.items] == [("Fencing_A_f_1", 1), ("Brush_A_h_1", 0)]
    bad = tmp_path / "bad.csv"
    bad.write_text("filename,label\nx.avi,golf\ny.avi,7\n")
    with pytest.raises(LabelError) as err:
        hmdb51_csv(bad, videos, classes=["brush_hair", "fencing"])
    assert set(err.value.problems.values()) == {"unknown class 'golf'", "label 7 out of range for 2 classes"}


@pytest.fixture
def ucf_tree(tmp_path):
    videos, lists = tmp_path / "UCF-101", tmp_path / "ucfTrainTestlist"
    lists.mkdir()
    (lists / "classInd.txt").write_text("1 ApplyEyeMakeup\n2 Archery\n3 Fencing\n")
    for cls, g in [("Archery", 8), ("Fencing", 1), ("Archery", 1)]:
        (videos / cls).mkdir(parents=True, exist_ok=True)
        write_video(videos / cls / f"v_{cls}_g{g:02d}_c01.avi", numbered_frames(8), "mpeg4")
    (lists / "trainlist01.txt").write_text("Archery/v_Archery_g08_c01.avi 2\r\n")  # CRLF, as distributed
    (lists / "testlist01.txt").write_text("Fencing/v_Fencing_g01_c01.avi\nArchery/v_Archery_g01_c01.avi\n")
    return videos, lists


def test_ucf101_official_lists(ucf_tree):
    videos, lists = ucf_tree
    train = ucf101_split(lists, videos, 1, "train")
    assert train.classes == ["ApplyEyeMakeup", "Archery", "Fencing"]
    assert [(it.key, it.label) for it in train.items] == [("v_Archery_g08_c01", 1)]
    test = ucf101_split(lists, videos, 1, "test")
    assert [(it.key, test.class_name(it.label)) for it in test.items] == [
        ("v_Fencing_g01_c01", "Fencing"), ("v_Archery_g01_c01", "Archery")]
    assert test.class_counts() == {"ApplyEyeMakeup": 0, "Archery": 1, "Fencing": 1}
    # the items decode end to end
    clip = ClipDataset(test.items, 4, 2, "center")[0]["clip"]
    assert clip.shape == (3, 4, 32, 48)
    (lists / "trainlist02.txt").write_text("Archery/v_Archery_g08_c01.avi 3\nJuggling/v_Juggling_g01_c01.avi 1\n")
    with pytest.raises(LabelError) as err:
        ucf101_split(lists, videos, 2, "train")
    assert sorted(err.value.problems.values()) == [
        "label 3 is 'Fencing' but the folder is 'Archery'", "unknown class folder 'Juggling'"]


def test_read_classes_both_formats(tmp_path):
    (tmp_path / "a.txt").write_text("2 b\n1 a\n3 c\n")
    (tmp_path / "b.txt").write_text("abseiling\nair drumming\n")
    assert read_classes(tmp_path / "a.txt") == ["a", "b", "c"]
    assert read_classes(tmp_path / "b.txt") == ["abseiling", "air drumming"]


def test_kinetics400_flat_and_label_folders_and_missing(tmp_path):
    csv = tmp_path / "validate.csv"
    csv.write_text("label,youtube_id,time_start,time_end,split\n"
                   "air drumming,--abc,10,20,val\nabseiling,xyz_9,0,10,val\n\"air drumming\",gone,5,15,val\n")
    assert kinetics_clip_name("--abc", "10", "20") == "--abc_000010_000020.mp4"
    flat = tmp_path / "flat"
    flat.mkdir()
    for name in ("--abc_000010_000020.mp4", "xyz_9_000000_000010.mp4"):
        write_video(flat / name, numbered_frames(4))
    s = kinetics400_csv(csv, flat)
    assert s.classes == ["abseiling", "air drumming"]
    assert [(it.key, it.label) for it in s.items] == [
        ("--abc_000010_000020", 1), ("xyz_9_000000_000010", 0), ("gone_000005_000015", 1)]
    assert s.missing == {"gone_000005_000015": str(flat / "gone_000005_000015.mp4")}
    assert len(s.items) == 3  # the missing clip is reported and kept: it fails, counted wrong, at test time
    nested = tmp_path / "nested"
    (nested / "air_drumming").mkdir(parents=True)
    (nested / "abseiling").mkdir()
    write_video(nested / "air_drumming" / "--abc_000010_000020.mp4", numbered_frames(4))
    write_video(nested / "abseiling" / "xyz_9_000000_000010.mp4", numbered_frames(4))
    s2 = kinetics400_csv(csv, nested, classes=["abseiling", "air drumming", "zumba"], layout="auto")
    assert s2.items[0].source == nested / "air_drumming" / "--abc_000010_000020.mp4"
    assert list(s2.missing) == ["gone_000005_000015"] and s2.classes[2] == "zumba"
    with pytest.raises(LabelError, match="unknown class 'air drumming'"):
        kinetics400_csv(csv, flat, classes=["abseiling"])


def test_list_split_class_names_and_range(tmp_path):
    (tmp_path / "classes.txt").write_text("fencing\ngolf\n")
    (tmp_path / "l.txt").write_text("a/x.mp4 1\nb/y.mp4 0\n")
    s = list_split(tmp_path / "l.txt", classes=tmp_path / "classes.txt")
    assert [s.class_name(it.label) for it in s.items] == ["golf", "fencing"] and len(s.missing) == 2
    (tmp_path / "m.txt").write_text("a/x.mp4 2\n")
    with pytest.raises(LabelError, match="label 2 out of range for 2 classes"):
        list_split(tmp_path / "m.txt", classes=["fencing", "golf"])


def _items(counts):
    return [ClipItem(f"v{c}_{i}.mp4", c, f"c{c}_v{i}") for c, n in enumerate(counts) for i in range(n)]


def test_holdout_split_is_stratified_deterministic_and_order_free():
    items = _items([10, 5, 2, 1, 20])
    train, val = holdout_split(items, 0.2, seed=7)
    per_class = [sum(it.label == c for it in val) for c in range(5)]
    assert per_class == [2, 1, 1, 0, 4]  # round(0.2 n), at least one of two, never a whole class
    assert {it.key for it in train} | {it.key for it in val} == {it.key for it in items}
    assert not {it.key for it in train} & {it.key for it in val}
    shuffled = list(items)
    random.Random(1).shuffle(shuffled)
    assert {it.key for it in holdout_split(shuffled, 0.2, seed=7)[1]} == {it.key for it in val}
    other = {it.key for it in holdout_split(items, 0.2, seed=8)[1]}
    assert other != {it.key for it in val} and len(other) == len(val)
    with pytest.raises(ValueError, match="duplicate key"):
        holdout_split(items + items[:1])


def test_view_indices_center_first_and_uniform():
    assert view_clip_indices(100, 8, 2, parse_view("center")) == [list(range(42, 58, 2))]
    assert view_clip_indices(100, 8, 2, parse_view("first")) == [list(range(0, 16, 2))]
    clips = view_clip_indices(100, 8, 2, parse_view("4x3"))
    assert [c[0] for c in clips] == [10, 32, 53, 75]  # mmaction2: interval (100 - 15 + 1) / 4, middle of each
    assert all(np.diff(c).tolist() == [2] * 7 for c in clips)
    assert view_clip_indices(20, 8, 4, parse_view("2x1")) == [list(range(1, 16, 2)), list(range(4, 19, 2))]
    assert view_clip_indices(5, 8, 2, parse_view("3x1")) == [[0, 1, 2, 3, 4, 4, 4, 4]] * 3
    for bad in ("2x2", "middle", "0x1"):
        with pytest.raises(ValueError, match="test view"):
            parse_view(bad)


def test_three_crops_cover_the_long_side():
    video = torch.arange(48).repeat(2, 3, 32, 1)  # T, C, H=32, W=48, value = column
    left, mid, right = spatial_crops(video, 32, 3)
    assert [c[0, 0, 0, 0].item() for c in (left, mid, right)] == [0, 8, 16]
    assert spatial_crops(video, 32, 1)[0][0, 0, 0, 0].item() == 8
    tall = video.transpose(-1, -2)  # H=48, W=32
    assert [c[0, 0, 0, 0].item() for c in spatial_crops(tall, 32, 3)] == [0, 8, 16]


@pytest.mark.parametrize("codec,ext", [("libx264", "mp4"), ("mpeg4", "avi")])
def test_view_dataset_yields_the_frames_of_each_view(tmp_path, codec, ext):
    path = write_video(tmp_path / f"v.{ext}", numbered_frames(24), codec)
    items = [ClipItem(path, 1, "v")]
    for view in ("center", "first", "3x3"):
        ds = ViewDataset(items, 4, 2, view, crop_size=32, resize_short=None, mean=(0, 0, 0), std=(1, 1, 1))
        sample = ds[0]
        spec = parse_view(view)
        assert sample["view"] == view
        assert sample["clip"].shape == (spec.num_views, 3, 4, 32, 32)
        want = view_clip_indices(24, 4, 2, spec)
        got = [[frame_number(255 * sample["clip"][k * spec.crops + s, :, t].permute(1, 2, 0).numpy())
                for t in range(4)] for k in range(spec.clips) for s in range(spec.crops)]
        assert got == [w for w in want for _ in range(spec.crops)]
    resized = ViewDataset(items, 4, 2, "2x3", crop_size=36, resize_short=40)[0]["clip"]  # 32x48 -> 40x60
    assert resized.shape == (6, 3, 4, 36, 36) and resized.dtype == torch.float32
