"""The datasets and bias releases as users have them on disk (FORMATS.md), not as our own writers make them.

Fixtures are generated here from the documented facts: HMDB51 names with `__`, `(`, `)`, `!`, `&`, `+` and
split lines with a trailing space; UCF101's CRLF lists, BOM-less and BOM classInd, and its HandstandPushups
folder holding v_HandStandPushups files; Kinetics-400 in the four layouts people download, with YouTube ids
starting with `-` and labels with spaces and parentheses; one bias root shared by HMDB51, UCF101 and K400;
release zips with a subfolder and directory entries; zero-byte and missing files; a SCUBA clip without its
SCUFO still and a still without its clip; a ConflFG name whose moving key contains `__`.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import yaml
from helpers import numbered_frames, write_video
from PIL import Image

from albar.cli import main
from albar.config import load_config
from albar.data.bias_sets import albar_bias_set, class_labeler, conflfg_parts
from albar.data.bundle import build_data, resolve_data, warnings_of
from albar.data.layouts import hmdb51_split, kinetics400_csv, read_classes, ucf101_split
from albar.data.splits import holdout_split

SIZE = 16


def jpeg(frame: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, "JPEG", quality=95)
    return buf.getvalue()


def release_zip(path: Path, frames: np.ndarray, subfolder: str | None = None) -> Path:
    """A release zip: JPEG frames in name order, optionally inside a subfolder listed as a directory entry."""
    prefix = f"{subfolder}/" if subfolder else ""
    with zipfile.ZipFile(path, "w") as zf:
        if subfolder:
            zf.writestr(prefix, b"")  # the directory entry some zip tools write
        for i, f in enumerate(frames):
            zf.writestr(f"{prefix}img_{i + 1:05d}.jpg", jpeg(f))
    return path


def clip(c: int, n: int = 8) -> np.ndarray:
    frames = numbered_frames(n, SIZE, SIZE)
    frames[..., c] = 200  # the class shows in one colour channel
    return frames


# ------------------------------------------------------------------------------------ HMDB51 + releases

WAVE = ["_I_ll_Just_Wave_My_Hand__sung_by_Uncle_Bob_wave_u_cm_np1_fr_goo_0",  # `__` inside the name
        "(Rad)Schlag_die_Bank!_wave_h_cm_np1_le_med_1",
        "Tom_&_Jerry_+_Friends_wave_f_nm_np1_ri_bad_2", "Hello__World__wave_u_nm_np1_fr_med_3",
        "Wave_at_the_sea_wave_u_nm_np1_fr_med_4", "Wave_goodbye_wave_u_nm_np1_fr_med_5",
        "Zero_Byte_Clip_wave_u_nm_np1_fr_med_6"]
FENCE = ["Fencing_Practice_(Epee)!_fencing_f_cm_np2_le_goo_0",
         "_Olympic__Final__fencing_f_nm_np2_ri_med_1",  # leading underscore and `__`
         "Fencing_Club_fencing_f_cm_np2_le_med_2", "Fencing_Club_fencing_f_cm_np2_le_med_3",
         "Fencing_Club_fencing_f_cm_np2_le_med_4", "Fencing_Club_fencing_f_cm_np2_le_med_5",
         "Gone_Missing_fencing_f_nm_np2_le_med_6"]
CLASSES = ["fencing", "wave"]  # sorted: label 0 fencing, 1 wave


def hmdb_layout(root: Path) -> dict:
    """HMDB51 split 1 (test: videos 0, 1, 6 of each class; 6 of wave zero-byte, 6 of fencing missing) and a
    shared bias root; returns the planted problems by kind."""
    videos, splits = root / "videos", root / "testTrainMulti_7030_splits"
    splits.mkdir(parents=True)
    planted: dict[str, Path] = {}
    for c, (cls, names) in enumerate(zip(CLASSES, (FENCE, WAVE))):
        (videos / cls).mkdir(parents=True)
        lines = []
        for i, name in enumerate(names):
            split = 2 if i in (0, 1, 6) else 1
            lines.append(f"{name}.avi {split} ")  # the release's trailing space
            if i < 6:
                write_video(videos / cls / f"{name}.avi", clip(c), "mpeg4")
        lines.append(f"Never_Used_{cls}_u_nm_np1_fr_med_9.avi 0 ")
        (splits / f"{cls}_test_split1.txt").write_text("\n".join(lines) + "\n")
    (videos / "wave" / f"{WAVE[6]}.avi").write_bytes(b"")
    planted["test_empty"] = videos / "wave" / f"{WAVE[6]}.avi"
    planted["test_missing"] = videos / "fencing" / f"{FENCE[6]}.avi"
    # one training video is zero bytes: the one the hold-out keeps in training (a validation failure is the
    # trainer's to name)
    train_items = hmdb51_split(splits, videos, 1, "train").items
    kept, _ = holdout_split(train_items, 0.25, 0)
    bad_train = next(it for it in kept if it.label == 1)
    bad_train.source.write_bytes(b"")
    planted["train_empty"] = bad_train.source

    bias = root / "bias"
    scuba, scufo, conf = (bias / f"HMDB51_{k}" for k in ("SCUBA_Stripe", "SCUFO_Stripe", "ConflFG_Stripe"))
    for folder in (scuba, scufo, conf):
        folder.mkdir(parents=True)
    tests = {FENCE[0]: 0, FENCE[1]: 0, WAVE[0]: 1, WAVE[1]: 1}
    for n, (key, c) in enumerate(tests.items()):
        release_zip(scuba / f"{key}__1.zip", clip(c), subfolder=key if n % 2 else None)
        (scufo / f"{key}__1.jpg").write_bytes(jpeg(clip(c)[3]))
    (scuba / f"{FENCE[1]}__2.zip").write_bytes(b"")  # an empty zip (its still is fine)
    (scufo / f"{FENCE[1]}__2.jpg").write_bytes(jpeg(clip(0)[2]))
    (scufo / f"{FENCE[0]}__1.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")  # corrupt still
    release_zip(scuba / f"{WAVE[1]}__2.zip", clip(1))  # a SCUBA clip without its SCUFO still
    (scufo / f"{WAVE[0]}__3.jpg").write_bytes(jpeg(clip(1)[1]))  # a still without its SCUBA clip
    planted.update({
        "scuba_empty": scuba / f"{FENCE[1]}__2.zip", "scufo_corrupt": scufo / f"{FENCE[0]}__1.jpg",
        "no_still": scuba / f"{WAVE[1]}__2.zip", "no_clip": scufo / f"{WAVE[0]}__3.jpg",
    })
    # ConflFG: moving key with `__` inside; a pasted key starting with `_` (three underscores in a row)
    release_zip(conf / f"{WAVE[0]}__{FENCE[0]}__1.zip", clip(1), subfolder="frames")
    release_zip(conf / f"{FENCE[0]}__{WAVE[0]}__1.zip", clip(0))
    release_zip(conf / f"{WAVE[1]}__{FENCE[1]}__1.zip", clip(1))
    # the other datasets' sets of the same release, side by side: never this run's business
    for name, files in (("UCF101_SCUBA_Stripe", {"v_Archery_g01_c01__1.zip": b""}),
                        ("UCF101_SCUFO_Stripe", {"v_Archery_g02_c01__1.jpg": b"junk"}),
                        ("UCF101_ConflFG_Stripe", {"v_Archery_g01_c01__v_Fencing_g01_c01__1.zip": b"junk"}),
                        ("K400_SCUBA_Places365", {"-abc_def_000010_000020__1.zip": b""}),
                        ("K400_SCUFO_Places365", {"unpaired__1.jpg": b""})):
        (bias / name).mkdir()
        for fname, data in files.items():
            (bias / name / fname).write_bytes(data)
    return planted


def hmdb_config(root: Path, out: Path, **data) -> dict:
    return {
        "out_dir": str(out), "threads": 1, "log": {"tensorboard": False},
        "model": {"name": "small3d", "num_classes": 2},
        "data": {"source": "hmdb51", "root": str(root / "videos"), "splits": str(root / "testTrainMulti_7030_splits"),
                 "split": 1, "bias_root": str(root / "bias"), "val_fraction": 0.25, "num_frames": 4, "stride": 1,
                 "crop_size": SIZE, "resize_short": SIZE, "train_crop": "center", "num_workers": 0,
                 "max_failure_fraction": 0.5, **data},
        "optim": {"lr": 1e-3, "lr_reference_batch": None, "batch_size": 2, "epochs": 1, "warmup_epochs": 0},
    }


def write_yaml(path: Path, cfg: dict) -> Path:
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_hmdb51_names_and_conflfg_keys_with_double_underscores(tmp_path):
    planted = hmdb_layout(tmp_path)
    cfg = load_config(None, [f"{k}={json.dumps(v)}" for k, v in hmdb_config(tmp_path, tmp_path / "run").items()])
    spec = resolve_data(cfg.data, num_classes=2, progress=False)
    assert spec.classes == CLASSES
    assert [it.key for it in spec.test.items] == [FENCE[0], FENCE[1], FENCE[6], WAVE[0], WAVE[1], WAVE[6]]
    assert spec.test.missing == {FENCE[6]: str(planted["test_missing"])}
    conf = {it.key: (it.label, it.extra["conflict_label"]) for it in spec.conflfg.items}
    assert conf == {f"{WAVE[0]}__{FENCE[0]}__1": (1, 0),  # moving wave (with `__`), pasted fencer
                    f"{FENCE[0]}__{WAVE[0]}__1": (0, 1),  # pasted key begins with `_`: `___` in the name
                    f"{WAVE[1]}__{FENCE[1]}__1": (1, 0)}
    # the same resolution as a library call, against the keys that exist
    known = {it.key for s in (spec.train, spec.test) for it in s.items}
    assert conflfg_parts(f"{FENCE[0]}__{WAVE[0]}__1", known) == (FENCE[0], WAVE[0])
    with pytest.raises(KeyError, match="two keys of the dataset"):
        conflfg_parts(f"{WAVE[0]}__Nobody_0__1", known)
    with pytest.raises(KeyError, match="several '__'"):  # without the keys, `__` inside a name is ambiguous
        conflfg_parts(f"{WAVE[0]}__{FENCE[0]}__1")


def test_shared_bias_root_checks_only_the_chosen_dataset_and_keeps_bad_items(tmp_path):
    planted = hmdb_layout(tmp_path)
    cfg = load_config(None, [f"{k}={json.dumps(v)}" for k, v in hmdb_config(tmp_path, tmp_path / "run").items()])
    said: list[str] = []
    data = build_data(cfg.data, seed=0, num_classes=2, progress=False, warn=said.append)
    assert sorted(data.scuba) == sorted(data.scufo) == ["stripe"]
    scuba = {it.key: it.source for it in data.scuba["stripe"].items}
    scufo = {it.key: it.source for it in data.scufo["stripe"].items}
    assert scuba[f"{FENCE[1]}__2"] == planted["scuba_empty"]  # an empty zip stays in the set
    assert scufo[f"{FENCE[0]}__1"] == planted["scufo_corrupt"]  # a corrupt still stays
    assert scufo[f"{WAVE[1]}__2"] == planted["scufo_corrupt"].parent / f"{WAVE[1]}__2.jpg"  # absent: fails when read
    assert not scufo[f"{WAVE[1]}__2"].exists() and sorted(scufo) == sorted(scuba)
    assert f"{WAVE[0]}__3" not in scufo  # a still without a clip has nothing to pair with: left out...
    text = "\n".join(said)
    assert f"{planted['no_clip']}: SCUFO still has no SCUBA partner: left out" in text  # ...and said so
    assert f"{planted['no_still']}: SCUBA clip has no SCUFO partner" in text
    assert f"{planted['test_missing']}: missing" in text
    assert "skipped 5 set(s) of other datasets" in text
    assert not any("UCF101_" in line or "K400_" in line for line in said)


def problem_files(report: dict) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for p in report["problems"]:
        out.setdefault(p["kind"], set()).add(p["file"])
    return out


def test_check_data_on_a_shared_root_reports_exactly_the_planted_problems(tmp_path, capsys):
    planted = hmdb_layout(tmp_path)
    want = {
        "unreadable": {str(planted[k]) for k in ("test_empty", "train_empty", "scuba_empty", "scufo_corrupt")},
        "missing": {str(planted["test_missing"])},
        "pairing": {str(planted["no_still"]), str(planted["no_clip"])},
    }
    flags = ["check-data", "--hmdb51", str(tmp_path / "testTrainMulti_7030_splits"), "--video-root",
             str(tmp_path / "videos"), "--bias-root", str(tmp_path / "bias"), "--num-frames", "4", "--stride", "1",
             "--workers", "1", "--no-progress", "--json", str(tmp_path / "flags.json")]
    assert main(flags) == 1
    out = capsys.readouterr().out
    report = json.loads((tmp_path / "flags.json").read_text())
    assert problem_files(report) == want, out
    assert len(report["problems"]) == 7  # each once
    assert "skipped 5 set(s) of other datasets under the bias root" in out
    reasons = {p["file"]: p["reason"] for p in report["problems"]}
    assert reasons[str(planted["test_empty"])] == "empty file"
    assert set(report["sets"]) == {"hmdb51_split1_train", "hmdb51_split1_test", "HMDB51_SCUBA_Stripe",
                                   "HMDB51_SCUFO_Stripe", "HMDB51_ConflFG_Stripe"}
    # the same check from the run's config, and with an override: the same data spec, the same report
    cfg = write_yaml(tmp_path / "cfg.yaml", hmdb_config(tmp_path, tmp_path / "run"))
    assert main(["check-data", "--config", str(cfg), "--workers", "1", "--no-progress",
                 "--json", str(tmp_path / "config.json")]) == 1
    assert json.loads((tmp_path / "config.json").read_text()) == report
    capsys.readouterr()
    assert main(["check-data", "--config", str(cfg), "model.num_classes=5", "--workers", "1", "--no-progress",
                 "--json", str(tmp_path / "five.json")]) == 1
    five = json.loads((tmp_path / "five.json").read_text())
    assert [p["reason"] for p in five["problems"] if p["kind"] == "num_classes"] == [
        f"model.num_classes=5 but the HMDB51 split files in {tmp_path / 'testTrainMulti_7030_splits'} define 2 "
        "classes"]
    assert problem_files(five) == {**want, "num_classes": {str(tmp_path / "testTrainMulti_7030_splits")}}


def test_check_data_imports_no_heavy_module():
    """`albar --help` builds the parser, which imports check_data: torch and the decoders must stay unloaded."""
    code = "import sys, albar.cli.check_data; print(sorted(m for m in ('torch', 'av', 'PIL') if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_train_and_eval_complete_on_every_quirk_and_name_each_bad_item_once(tmp_path, capsys):
    planted = hmdb_layout(tmp_path)
    cfg = write_yaml(tmp_path / "cfg.yaml", hmdb_config(tmp_path, tmp_path / "run"))
    assert main(["train", "--config", str(cfg), "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert f"{planted['no_clip']}: SCUFO still has no SCUBA partner: left out" in err
    want = {"iid": {WAVE[6], FENCE[6]}, "scuba_stripe": {f"{FENCE[1]}__2"},
            "scufo_stripe": {f"{FENCE[0]}__1", f"{WAVE[1]}__2"}}
    results = json.loads((tmp_path / "run" / "results.json").read_text())["methods"]["run"]
    assert {k: set(v) for k, v in results["failed_items"].items()} == want
    assert f"{WAVE[0]}__3" not in json.dumps(results["failed_items"])  # in no denominator...
    assert results["left_out_files"] == {"scufo_stripe": {  # ...but named with the results
        str(planted["no_clip"]): "SCUFO still has no SCUBA partner: left out (no clip to contrast it with)"}}
    assert results["sets"]["scufo_stripe"]["left_out"] == 1 and "left_out" not in results["sets"]["iid"]
    assert str(planted["train_empty"]) in (tmp_path / "run" / "failed_files.jsonl").read_text()
    assert main(["eval", "--config", str(cfg), "--checkpoint", str(tmp_path / "run" / "best.pt"), "--out",
                 str(tmp_path / "eval"), "--no-progress"]) == 0
    evaluated = json.loads((tmp_path / "eval" / "results.json").read_text())["methods"]["best"]
    assert {k: set(v) for k, v in evaluated["failed_items"].items()} == want


def test_num_classes_is_checked_against_every_source_before_any_work(tmp_path, capsys):
    hmdb_layout(tmp_path)
    for n in (3, 51):  # too large: the head would have classes no video has
        cfg = write_yaml(tmp_path / "cfg.yaml", {**hmdb_config(tmp_path, tmp_path / f"run{n}"),
                                                 "model": {"name": "small3d", "num_classes": n}})
        assert main(["train", "--config", str(cfg), "--no-progress"]) == 2
        assert f"model.num_classes={n} but the HMDB51 split files in" in capsys.readouterr().err
        assert not (tmp_path / f"run{n}" / "last.pt").exists()
    # lists: a class file counts classes both ways; without one, the largest label bounds from below
    (tmp_path / "l").mkdir()
    (tmp_path / "l" / "train.txt").write_text("a.mp4 0\nb.mp4 4\n")
    (tmp_path / "l" / "classes.txt").write_text("a\nb\nc\nd\ne\n")
    lists = {"source": "lists", "root": str(tmp_path / "l"), "train": {"list": str(tmp_path / "l" / "train.txt")}}
    with pytest.raises(ValueError, match=r"model.num_classes=6 but the class list .*classes.txt names 5 classes"):
        resolve_data(load_config(None, [f"data={json.dumps(lists)}"]).data, num_classes=6)
    (tmp_path / "l" / "classes.txt").unlink()
    with pytest.raises(ValueError, match=r"label 4 of .*b.mp4 is out of range for model.num_classes=3 .* at least 5"):
        resolve_data(load_config(None, [f"data={json.dumps(lists)}"]).data, num_classes=3)
    assert resolve_data(load_config(None, [f"data={json.dumps(lists)}"]).data, num_classes=7).train is not None


# --------------------------------------------------------------------------------------------- UCF101

def test_ucf101_crlf_bom_lists_and_the_handstandpushups_folder(tmp_path):
    videos, lists = tmp_path / "UCF-101", tmp_path / "ucfTrainTestlist"
    lists.mkdir()
    (lists / "classInd.txt").write_bytes(b"\xef\xbb\xbf1 ApplyEyeMakeup\r\n2 HandstandPushups\r\n")  # BOM + CRLF
    for cls, stem in (("ApplyEyeMakeup", "v_ApplyEyeMakeup_g08_c01"), ("ApplyEyeMakeup", "v_ApplyEyeMakeup_g01_c01"),
                      ("HandstandPushups", "v_HandStandPushups_g08_c01"),  # the folder's spelling is not the file's
                      ("HandstandPushups", "v_HandStandPushups_g01_c02")):
        (videos / cls).mkdir(parents=True, exist_ok=True)
        write_video(videos / cls / f"{stem}.avi", clip(0, 4), "mpeg4")
    (lists / "trainlist01.txt").write_bytes(b"ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1\r\n"
                                            b"HandstandPushups/v_HandStandPushups_g08_c01.avi 2\r\n")
    (lists / "testlist01.txt").write_bytes(b"ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi\r\n"
                                           b"HandstandPushups/v_HandStandPushups_g01_c02.avi\r\n")
    assert read_classes(lists / "classInd.txt") == ["ApplyEyeMakeup", "HandstandPushups"]
    test = ucf101_split(lists, videos, 1, "test")
    assert [(it.key, it.label) for it in test.items] == [("v_ApplyEyeMakeup_g01_c01", 0),
                                                          ("v_HandStandPushups_g01_c02", 1)]
    assert not test.missing
    # the release's UCF101 sets: named after the file, so labelled through the split or, for a video the split
    # does not list, through the name matched case-insensitively (never a LabelError for the whole set)
    bias = tmp_path / "bias"
    (bias / "UCF101_SCUBA_Stripe").mkdir(parents=True)
    for stem in ("v_HandStandPushups_g01_c02__1", "v_HandStandPushups_g03_c04__1", "v_ApplyEyeMakeup_g01_c01__1"):
        release_zip(bias / "UCF101_SCUBA_Stripe" / f"{stem}.zip", clip(1, 4))
    s = albar_bias_set(bias, "UCF101", "SCUBA", "Stripe", class_labeler(test.classes), test.classes)
    assert [(it.key, it.label) for it in s.items] == [("v_ApplyEyeMakeup_g01_c01__1", 0),
                                                      ("v_HandStandPushups_g01_c02__1", 1),
                                                      ("v_HandStandPushups_g03_c04__1", 1)]
    cfg = load_config(None, ["data.source=ucf101", f"data.root={videos}", f"data.splits={lists}",
                             f"data.bias_root={bias}"])
    spec = resolve_data(cfg.data, num_classes=2)
    assert [it.label for it in spec.scuba["stripe"].items] == [0, 1, 1]
    # check-data is one pass: an unknown class on one line does not hide the rest of that list
    with (lists / "testlist01.txt").open("ab") as f:
        f.write(b"Bogus/v_Bogus_g01_c01.avi\r\nApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi\r\n"
                b"ApplyEyeMakeup/v_ApplyEyeMakeup_g02_c01.avi\r\n")
    found = resolve_data(cfg.data, num_classes=2, strict=False, progress=False)
    kinds = {(p.kind, Path(p.file).name) for p in found.problems}
    assert ("label", "testlist01.txt:3") in kinds  # the unknown class, at its line
    assert any(p.kind == "duplicate" and "v_ApplyEyeMakeup_g01_c01" in p.reason for p in found.problems)
    assert "v_ApplyEyeMakeup_g02_c01" in found.test.missing  # the missing file of the same list, still checked


# ------------------------------------------------------------------------------------------ Kinetics-400

K400_TRAIN = ("label,youtube_id,time_start,time_end,split\r\n"
              "air drumming,-Abc_d-E12,10,20,train\r\n"
              "\"petting animal (not cat)\",--xyZ_98765,0,10,train\r\n"
              "air drumming,kGg9_-bbbbb,31,41,train\r\n")
K400_VAL = ("label,youtube_id,time_start,time_end,split\n"
            "air drumming,-q-q-q-q-q-,5,15,validate\n"
            "\"petting animal (not cat)\",_underscore1,100,110,validate\n"
            "\"petting animal (not cat)\",-gone-gone-,7,17,validate\n"
            "air drumming,zeroBytes_1,0,10,validate\n")


def k400_copy(root: Path, layout: str, source: Path) -> Path:
    """Clips of both CSVs arranged as ``layout`` (the val split's folder is ``val``, its CSV says ``validate``);
    the clip of -gone-gone- is missing and zeroBytes_1's is zero bytes, as in every real copy."""
    videos = root / layout
    rows = [r.split(",") for r in (K400_TRAIN + K400_VAL).replace("\r", "").splitlines() if not r.startswith("label")]
    for row in rows:
        label = ",".join(row[:-4]).strip('"')
        yid, start, end, split = row[-4:]
        name = f"{yid}_{int(start):06d}_{int(end):06d}.mp4"
        folder = {"train": "train", "validate": "val"}[split]
        where = {"flat": videos, "split": videos / folder, "split_label": videos / folder / label,
                 "videos_split_label": videos / f"videos_{folder}" / label.replace(" ", "_")}[layout]
        where.mkdir(parents=True, exist_ok=True)
        if yid == "-gone-gone-":
            continue
        if yid == "zeroBytes_1":
            (where / name).write_bytes(b"")
        else:
            shutil.copyfile(source, where / name)
    return videos


@pytest.mark.parametrize("layout", ["flat", "split", "split_label", "videos_split_label"])
def test_kinetics400_layouts_are_found_automatically(tmp_path, layout):
    source = write_video(tmp_path / "c.mp4", clip(0, 4))
    csvs = tmp_path / "annotations"
    csvs.mkdir()
    (csvs / "train.csv").write_text(K400_TRAIN)
    (csvs / ("val.csv" if layout == "split" else "validate.csv")).write_text(K400_VAL)  # copies use either name
    videos = k400_copy(tmp_path, layout, source)
    cfg = load_config(None, ["data.source=kinetics400", f"data.root={videos}", f"data.splits={csvs}"])
    spec = resolve_data(cfg.data, num_classes=2)
    assert spec.classes == ["air drumming", "petting animal (not cat)"]
    assert [(it.key, it.label) for it in spec.train.items] == [
        ("-Abc_d-E12_000010_000020", 0), ("--xyZ_98765_000000_000010", 1), ("kGg9_-bbbbb_000031_000041", 0)]
    assert not spec.train.missing and all(it.source.is_file() for it in spec.train.items)
    assert list(spec.test.missing) == ["-gone-gone-_000007_000017"]  # zero bytes is there: it fails when read
    searched = spec.test.searched["-gone-gone-_000007_000017"]
    assert str(videos / "val" / "petting animal (not cat)" / "-gone-gone-_000007_000017.mp4") in searched
    assert str(videos / "videos_val" / "petting_animal_(not_cat)" / "-gone-gone-_000007_000017.mp4") in searched
    said: list[str] = []
    data = build_data(cfg.data, seed=0, num_classes=2, train=False, progress=False, warn=said.append)
    assert len(data.test) == 4  # the missing clip is kept: it counts against the model
    line = next(s for s in said if "-gone-gone-" in s)
    assert "searched: " in line and str(videos / "videos_val" / "petting_animal_(not_cat)") in line
    with pytest.raises(ValueError, match=r"model.num_classes=400 but the Kinetics-400 annotation CSVs .* define 2"):
        resolve_data(cfg.data, num_classes=400)
    if layout == "split_label":  # check-data's flags resolve the same way: the two planted problems, no more
        report = tmp_path / "report.json"
        assert main(["check-data", "--kinetics", str(csvs), "--video-root", str(videos), "--num-frames", "2",
                     "--workers", "1", "--no-progress", "--json", str(report)]) == 1
        problems = json.loads(report.read_text())["problems"]
        assert [(p["kind"], Path(p["file"]).name) for p in problems] == [
            ("missing", "-gone-gone-_000007_000017.mp4"), ("unreadable", "zeroBytes_1_000000_000010.mp4")]
        assert str(videos / "val" / "petting animal (not cat)" / "-gone-gone-_000007_000017.mp4") in \
            problems[0]["reason"]


def test_kinetics400_without_a_split_column_uses_the_csv_name(tmp_path):
    source = write_video(tmp_path / "c.mp4", clip(0, 4))
    (tmp_path / "v" / "val" / "air_drumming").mkdir(parents=True)
    shutil.copyfile(source, tmp_path / "v" / "val" / "air_drumming" / "-x_000001_000011.mp4")
    (tmp_path / "val.csv").write_text("label,youtube_id,time_start,time_end\nair drumming,-x,1,11\n")
    s = kinetics400_csv(tmp_path / "val.csv", tmp_path / "v")
    assert not s.missing and s.items[0].source == tmp_path / "v" / "val" / "air_drumming" / "-x_000001_000011.mp4"


# -------------------------------------------------------------------------------- bad lists, named early

def lists_data(tmp_path: Path, **sets) -> dict:
    data = {"source": "lists", "root": str(tmp_path)}
    for name, text in sets.items():
        (tmp_path / f"{name}.txt").write_text(text)
        node = data
        *parents, last = name.split("__")
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = {"list": str(tmp_path / f"{name}.txt"), "key": "stem"}
    return data


def test_duplicate_keys_and_conflfg_without_conflict_labels_stop_before_training(tmp_path, capsys):
    train = "c.mp4 0\nd.mp4 1\n"
    dup = lists_data(tmp_path, train=train, test="a/x.mp4 0\nb/x.mp4 1\n")  # two videos, one key
    with pytest.raises(ValueError, match=r"duplicate key 'x' \(2 times\) in .*test.txt"):
        resolve_data(load_config(None, [f"data={json.dumps(dup)}"]).data, num_classes=2)
    # a duplicate in the training list matters when validation is held out of it (by key): named with its file
    held = lists_data(tmp_path, train="a/c.mp4 0\nb/c.mp4 0\nd.mp4 1\n")
    with pytest.raises(ValueError, match=r"duplicate key 'c' \(2 times\) in .*train.txt"):
        resolve_data(load_config(None, [f"data={json.dumps(held)}"]).data, num_classes=2)
    conf = lists_data(tmp_path, train=train, bias__conflfg="# moving, pasted\nm1.zip 0 1\nm2.zip 1\n")
    with pytest.raises(ValueError, match=r"bias__conflfg.txt:3: 'm2.zip 1' has no conflict label"):
        resolve_data(load_config(None, [f"data={json.dumps(conf)}"]).data, num_classes=2)
    cfg = {"out_dir": str(tmp_path / "run"), "model": {"name": "small3d", "num_classes": 2}, "data": conf}
    assert main(["train", "--config", str(write_yaml(tmp_path / "cfg.yaml", cfg)), "--no-progress"]) == 2
    assert "has no conflict label" in capsys.readouterr().err and not (tmp_path / "run" / "last.pt").exists()


def test_empty_and_badly_encoded_split_files_are_named(tmp_path):
    videos, splits = tmp_path / "videos", tmp_path / "splits"
    splits.mkdir()
    (splits / "wave_test_split1.txt").write_text("a.avi 1 \nb.avi 2 \n")
    (splits / "golf_test_split1.txt").write_text("\n  \n")  # empty
    with pytest.raises(ValueError, match=r"golf_test_split1.txt: no entries"):
        hmdb51_split(splits, videos, 1, "test")
    (splits / "golf_test_split1.txt").write_bytes("Caf\u00e9_golf_0.avi 1 \n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"golf_test_split1.txt:1: not UTF-8"):
        hmdb51_split(splits, videos, 1, "test")
    (splits / "golf_test_split1.txt").write_bytes("\ufeffCaf\u00e9_golf_0.avi 2 \r\n".encode())  # BOM, CRLF
    assert [it.key for it in hmdb51_split(splits, videos, 1, "test").items] == ["Café_golf_0", "b"]
    (tmp_path / "validate.csv").write_text("label,youtube_id,time_start,time_end,split\n")
    with pytest.raises(ValueError, match=r"validate.csv: no rows"):
        kinetics400_csv(tmp_path / "validate.csv", videos)


def test_bias_sets_built_on_split_1_label_a_run_on_split_2(tmp_path):
    """The release was generated from split-1 test videos; in splits 2 and 3 some of them are marked 0 (unused),
    yet the split file still names their class: they label the bias sets all the same."""
    hmdb_layout(tmp_path)
    splits = tmp_path / "testTrainMulti_7030_splits"
    for cls in CLASSES:
        lines = (splits / f"{cls}_test_split1.txt").read_text().splitlines()
        moved = [ln.replace(" 2 ", " 0 ") if i in (0, 1) else ln.replace(" 1 ", " 2 ", 1) if i == 2 else ln
                 for i, ln in enumerate(lines)]
        (splits / f"{cls}_test_split2.txt").write_text("\n".join(moved) + "\n")
    cfg = load_config(None, [f"{k}={json.dumps(v)}" for k, v in hmdb_config(tmp_path, tmp_path / "run").items()]
                      + ["data.split=2"])
    spec = resolve_data(cfg.data, num_classes=2, progress=False)
    assert FENCE[0] not in {it.key for s in (spec.train, spec.test) for it in s.items}  # unused in split 2
    labels = {it.key: it.label for it in spec.scuba["stripe"].items}
    assert labels[f"{FENCE[0]}__1"] == 0 and labels[f"{WAVE[0]}__1"] == 1
    conf = {it.key: (it.label, it.extra["conflict_label"]) for it in spec.conflfg.items}
    assert conf[f"{WAVE[0]}__{FENCE[0]}__1"] == (1, 0)
    assert not [p for p in spec.problems if p.kind == "leak"]  # no bias video is a training video of split 2

    # one split-1 test video that split 3 trains on: its clips measure memory, and the run says so per set
    lines = (splits / "wave_test_split1.txt").read_text().splitlines()
    (splits / "wave_test_split3.txt").write_text("\n".join(
        ln.replace(" 2 ", " 1 ") if ln.startswith(WAVE[1]) else ln for ln in lines) + "\n")
    (splits / "fencing_test_split3.txt").write_text((splits / "fencing_test_split1.txt").read_text())
    said: list[str] = []
    for only_eval in (False, True):  # eval reads the training split's keys too
        spec = resolve_data(cfg.data.model_copy(update={"split": 3}), num_classes=2, train=not only_eval,
                            progress=False)
        leaks = {p.set: p.reason for p in spec.problems if p.kind == "leak"}
        assert sorted(leaks) == ["HMDB51_ConflFG_Stripe", "HMDB51_SCUBA_Stripe", "HMDB51_SCUFO_Stripe"]
        assert leaks["HMDB51_SCUBA_Stripe"].startswith(f"2 of 6 clips come from videos this run trains on (first: "
                                                       f"{WAVE[1]}__1)")
        said += warnings_of(spec, train=not only_eval)
    assert any("HMDB51_SCUBA_Stripe" in line and "memorised" in line for line in said)


def test_set_level_gaps_in_a_release_cost_only_what_is_missing(tmp_path):
    """A source whose SCUFO folder is missing, a ConflFG folder left empty (make-bias-set skipped every pairing)
    and a stray file name in a set: each is named, and the rest of the release is still evaluated."""
    hmdb_layout(tmp_path)
    bias = tmp_path / "bias"
    (bias / "HMDB51_SCUBA_VQGAN").mkdir()
    release_zip(bias / "HMDB51_SCUBA_VQGAN" / f"{FENCE[0]}__1.zip", clip(0))
    for f in (bias / "HMDB51_ConflFG_Stripe").iterdir():
        f.unlink()
    stray = bias / "HMDB51_SCUBA_Stripe" / "x__y__0.zip"
    release_zip(stray, clip(0))
    # what else lands in a downloaded folder: a note, OS metadata, a subfolder, an upper-case extension
    scuba_dir = bias / "HMDB51_SCUBA_Stripe"
    n_clips = len(list(scuba_dir.glob("*.zip"))) - 1
    (scuba_dir / "README.txt").write_text("Stripe backgrounds\n")
    (scuba_dir / ".DS_Store").write_bytes(b"\0")
    (scuba_dir / "extra").mkdir()
    release_zip(scuba_dir / "extra" / f"{FENCE[0]}__7.zip", clip(0))
    renamed = sorted(p for p in scuba_dir.glob("*.zip") if p != stray)[0]
    renamed.rename(renamed.with_suffix(".ZIP"))
    cfg = load_config(None, [f"{k}={json.dumps(v)}" for k, v in hmdb_config(tmp_path, tmp_path / "run").items()])
    said: list[str] = []
    data = build_data(cfg.data, seed=0, num_classes=2, progress=False, warn=said.append)
    assert sorted(data.scuba) == ["stripe", "vqgan"] and sorted(data.scufo) == ["stripe"]
    assert data.conflfg is None and str(stray) not in {str(it.source) for it in data.scuba["stripe"].items}
    text = "\n".join(said)
    assert "no SCUFO set for this source: SCUBA evaluated alone" in text
    assert "HMDB51_ConflFG_Stripe" in text and "no files: set skipped" in text
    assert f"{stray}" in text and "left out" in text
    # the stray file is in no denominator: the data say so, for the results (``left_out_files``)
    assert len(data.scuba["stripe"].items) == n_clips  # the .ZIP clip is a clip
    assert sorted(data.left_out["scuba_stripe"]) == sorted(map(str, [stray, scuba_dir / "README.txt",
                                                                    scuba_dir / "extra"]))  # not .DS_Store
    assert "not a .zip file" in data.left_out["scuba_stripe"][str(scuba_dir / "README.txt")]
    from albar.evaluation.suite import with_left_out

    summary = with_left_out({"sets": {"scuba_stripe": {"items": 3}, "iid": {"items": 6}}}, data.left_out)
    assert summary["sets"] == {"scuba_stripe": {"items": 3, "left_out": 3}, "iid": {"items": 6}}
    assert summary["left_out_files"] == {"scuba_stripe": data.left_out["scuba_stripe"]}  # only evaluated sets
