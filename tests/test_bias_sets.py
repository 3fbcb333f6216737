import json

import numpy as np
import pytest
from helpers import frame_number, numbered_frames, write_folder, write_zip
from PIL import Image

from albar.data import ClipDataset
from albar.data.bias_sets import (
    albar_bias_set,
    aras_set,
    bias_dir,
    check_pairing,
    class_labeler,
    conflfg_parts,
    csv_labeler,
    find_bias_sets,
    regenerate_scufo,
    scufo_frame,
    stillmix_bias_set,
    strip_instance,
    ucf_class,
)
from albar.data.layouts import DatasetSplit, LabelError
from albar.data.lists import ClipItem
from albar.data.views import ViewDataset
from albar.evaluation.metrics import Predictions, contrasted_accuracy

HMDB = ["brush_hair", "fencing", "golf"]


@pytest.fixture
def albar_root(tmp_path):
    """ALBAR's release layout for HMDB51 (Places365) and UCF101 (Stripe), plus ConflFG."""
    root = tmp_path / "bias"
    scuba, scufo = bias_dir(root, "HMDB51", "SCUBA", "Places365"), bias_dir(root, "HMDB51", "SCUFO", "Places365")
    scuba.mkdir(parents=True)
    scufo.mkdir(parents=True)
    for i, stem in enumerate(["Fencing_A_f_1__1", "Fencing_A_f_1__2", "Golf_B_g_2__1"]):
        write_zip(scuba / f"{stem}.zip", numbered_frames(6 + i))
        Image.fromarray(numbered_frames(1)[0]).save(scufo / f"{stem}.jpg")
    ucf = bias_dir(root, "UCF101", "SCUBA", "Stripe")
    ucf.mkdir()
    write_zip(ucf / "v_Archery_g01_c02.zip", numbered_frames(4))
    conf = bias_dir(root, "HMDB51", "ConflFG", "Stripe")
    conf.mkdir()
    write_zip(conf / "Fencing_A_f_1__Golf_B_g_2__1.zip", numbered_frames(4))
    csv = tmp_path / "hmdb51_labels.csv"
    csv.write_text("filename,label\nfencing/Fencing_A_f_1.avi,1\ngolf/Golf_B_g_2.avi,2\n")
    return root, csv


def test_file_name_conventions():
    assert strip_instance("Fencing_A_f_1__12") == "Fencing_A_f_1" and strip_instance("a_b") == "a_b"
    assert ucf_class("v_ApplyEyeMakeup_g08_c01__1") == "ApplyEyeMakeup"
    assert conflfg_parts("Fencing_A_f_1__Golf_B_g_2__1") == ("Fencing_A_f_1", "Golf_B_g_2")
    with pytest.raises(KeyError, match="moving key"):
        conflfg_parts("Fencing_A_f_1__1")


def test_albar_layout_labels_from_csv_and_class_mapping(albar_root):
    root, csv = albar_root
    assert sorted(find_bias_sets(root)) == [("HMDB51", "ConflFG", "Stripe"), ("HMDB51", "SCUBA", "Places365"),
                                            ("HMDB51", "SCUFO", "Places365"), ("UCF101", "SCUBA", "Stripe")]
    scuba = albar_bias_set(root, "HMDB51", "SCUBA", "Places365", csv_labeler(csv), HMDB)
    assert [(it.key, scuba.class_name(it.label)) for it in scuba.items] == [
        ("Fencing_A_f_1__1", "fencing"), ("Fencing_A_f_1__2", "fencing"), ("Golf_B_g_2__1", "golf")]
    assert scuba.items[0].source.suffix == ".zip" and scuba.name == "HMDB51_SCUBA_Places365"
    scufo = albar_bias_set(root, "HMDB51", "SCUFO", "Places365",
                           class_labeler(HMDB, {"Fencing_A_f_1": "fencing", "Golf_B_g_2": "golf"}), HMDB)
    assert [it.label for it in scufo.items] == [1, 1, 2] and scufo.items[0].source.suffix == ".jpg"
    clip = ClipDataset(scufo.items, 4)[0]["clip"]  # a still is a motionless clip
    assert clip.shape == (3, 4, 32, 48) and bool((clip == clip[:, :1]).all())
    still = ViewDataset(scufo.items, 4, 2, "2x3", crop_size=32, resize_short=None, min_frames=8)[0]
    assert still["clip"].shape == (6, 3, 4, 32, 32)  # a still is never "too short" (that would raise)
    ucf = albar_bias_set(root, "UCF101", "SCUBA", "Stripe", class_labeler(["ApplyEyeMakeup", "Archery"]),
                         ["ApplyEyeMakeup", "Archery"])
    assert [(it.key, it.label) for it in ucf.items] == [("v_Archery_g01_c02", 1)]
    with pytest.raises(LabelError) as err:
        albar_bias_set(root, "HMDB51", "SCUBA", "Places365", class_labeler(HMDB, {"Golf_B_g_2": "golf"}), HMDB)
    assert sorted(err.value.problems) == [str(bias_dir(root, "HMDB51", "SCUBA", "Places365") / f)
                                          for f in ("Fencing_A_f_1__1.zip", "Fencing_A_f_1__2.zip")]


def test_conflfg_moving_and_pasted_labels(albar_root):
    root, csv = albar_root
    conf = albar_bias_set(root, "HMDB51", "ConflFG", "Stripe", csv_labeler(csv), HMDB)
    (it,) = conf.items
    assert (it.label, it.extra["conflict_label"]) == (1, 2)  # moving fencer, pasted golfer
    override = albar_bias_set(root, "HMDB51", "ConflFG", "Stripe", lambda s: 0, HMDB,
                              conflict_labels={"Fencing_A_f_1__Golf_B_g_2__1": 1})
    assert (override.items[0].label, override.items[0].extra["conflict_label"]) == (0, 1)


def test_stillmix_layout_and_aras(tmp_path):
    frames = tmp_path / "frames"
    frames.mkdir()
    write_folder(frames / "vidA__1", numbered_frames(5))
    write_folder(frames / "vidB__2", numbered_frames(7))
    (tmp_path / "scuba.txt").write_text("vidA__1 5 0\nvidB__2 7 2\n")
    s = stillmix_bias_set(tmp_path / "scuba.txt", frames, HMDB, name="hmdb51_scuba_stripe")
    assert [(it.key, it.label, it.extra["num_frames"]) for it in s.items] == [("vidA__1", 0, 5), ("vidB__2", 2, 7)]
    assert s.name == "hmdb51_scuba_stripe" and not s.missing
    (tmp_path / "aras.txt").write_text("a/x.mp4 3\n")
    a = aras_set(tmp_path / "aras.txt", tmp_path, [str(i) for i in range(400)])
    assert a.name == "k400_aras" and a.items[0].key == "x" and list(a.missing) == ["x"]


def test_regenerate_scufo_is_seeded_per_key_and_recorded(tmp_path):
    frames = tmp_path / "frames"
    frames.mkdir()
    items = []
    for i in range(6):
        write_folder(frames / f"vid{i}__1", numbered_frames(20))
        items.append(ClipItem(frames / f"vid{i}__1", i % 3, f"vid{i}__1"))
    (frames / "broken__1").mkdir()  # a SCUBA clip with no frames
    items.append(ClipItem(frames / "broken__1", 0, "broken__1"))
    scuba = DatasetSplit("HMDB51_SCUBA_Stripe", items, HMDB)
    out = regenerate_scufo(scuba, tmp_path / "HMDB51_SCUFO_Stripe", seed=5)
    manifest = json.loads((tmp_path / "HMDB51_SCUFO_Stripe" / "manifest.json").read_text())
    assert manifest["seed"] == 5 and manifest["errors"] == {"broken__1": "no frames"}
    chosen = {k: v["frame"] for k, v in manifest["frames"].items()}
    assert len(chosen) == 6 and len(set(chosen.values())) > 1  # not always the same frame
    for it in out.items[:6]:  # the still written is the frame the manifest names
        assert frame_number(np.asarray(Image.open(it.source))) == chosen[it.key] == scufo_frame(it.key, 20, 5)
    assert [it.key for it in out.items] == [it.key for it in items] and list(out.missing) == ["broken__1"]
    assert check_pairing(scuba, out).ok
    # same seed, reversed order: same frames; other seed: other frames
    again = regenerate_scufo(DatasetSplit("s", items[::-1], HMDB), tmp_path / "again", seed=5)
    assert json.loads((tmp_path / "again" / "manifest.json").read_text())["frames"] == manifest["frames"]
    assert len(again.items) == 7
    regenerate_scufo(scuba, tmp_path / "other", seed=6)
    other = json.loads((tmp_path / "other" / "manifest.json").read_text())["frames"]
    assert {k: v["frame"] for k, v in other.items()} != chosen


def test_pairing_is_by_key_and_names_unpaired_keys():
    scuba = [ClipItem("a.zip", 0, "a"), ClipItem("b.zip", 1, "b"), ClipItem("c.zip", 2, "c")]
    scufo = [ClipItem("c.jpg", 2, "c"), ClipItem("a.jpg", 0, "a"), ClipItem("d.jpg", 1, "d"), ClipItem("b.jpg", 2, "b")]
    report = check_pairing(scuba, scufo)
    assert report.paired == ["a", "b", "c"] and not report.ok
    assert report.problems() == {"d": "SCUFO still has no SCUBA partner", "b": "SCUBA label 1 != SCUFO label 2"}
    assert check_pairing(scuba, scufo[:2]).only_scuba == ["b"]
    # the metric pairs by key too: SCUFO given in another order scores the same
    labels = np.array([0, 1, 2])
    s = Predictions(["a", "b", "c"], labels, np.eye(3))
    f = Predictions(["c", "a", "b"], labels[[2, 0, 1]], np.array([[1, 0, 0], [1, 0, 0], [0, 0, 1]], float))
    assert contrasted_accuracy(s, f) == pytest.approx(100 * 2 / 3)  # a is recognised from its still: b, c are not
