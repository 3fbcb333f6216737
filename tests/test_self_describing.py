"""Checkpoints describe themselves: predict, eval and extract-features need only --checkpoint.

The fixture is HMDB51 as distributed (FORMATS.md): ``<class>/<video>.avi`` and ``<class>_test_split1.txt``
whose lines are ``<video>.avi <1|2|0>`` (1 train, 2 test, 0 unused); class names come from the split files.
"""

import json

import numpy as np
import pytest
import torch
import yaml
from data_fixtures import HMDB_CLASSES, small_hmdb51
from helpers import numbered_frames, write_video

from albar.cli import main
from albar.config import load_config
from albar.models import build_model
from albar.training.checkpoint import checkpoint_meta

CLASSES = HMDB_CLASSES


def run_config(root, out):
    return {
        "out_dir": str(out), "threads": 1, "log": {"tensorboard": False},
        "model": {"name": "small3d", "num_classes": 2, "kwargs": {"widths": [4, 4, 4, 4]}},
        "data": {"source": "hmdb51", "root": str(root / "videos"), "splits": str(root / "splits"), "split": 1,
                 "val_fraction": 0.25, "num_frames": 4, "stride": 1, "crop_size": 16, "resize_short": 16,
                 "num_workers": 0, "test_view": "first"},
        "optim": {"lr": 1e-3, "lr_reference_batch": None, "batch_size": 2, "epochs": 1, "warmup_epochs": 0},
    }


@pytest.fixture(scope="module")
def layout(tmp_path_factory):
    return small_hmdb51(tmp_path_factory.mktemp("hmdb"))


@pytest.fixture(scope="module")
def trained(layout, tmp_path_factory):
    """One epoch of `albar train` on the layout: the run folder."""
    tmp = tmp_path_factory.mktemp("run")
    path = tmp / "cfg.yaml"
    path.write_text(yaml.safe_dump(run_config(layout, tmp / "out")))
    assert main(["train", "--config", str(path), "--no-progress"]) == 0
    return tmp / "out"


def hand_checkpoint(layout, path, with_meta=True, classes=CLASSES, **overrides):
    """A checkpoint as `albar train` writes one (weights + checkpoint_meta), without training."""
    cfg = load_config(None, [f"{k}={json.dumps(v)}" for k, v in run_config(layout, path.parent / "x").items()])
    if overrides:
        cfg = cfg.model_copy(update=overrides)
    model = build_model(cfg.model.name, cfg.model.num_classes, None, **cfg.model.kwargs)
    state = {"model": model.state_dict()}
    if with_meta:
        state.update(checkpoint_meta(cfg, classes))
    torch.save(state, path)
    return path


def test_checkpoints_of_a_run_record_config_classes_and_preprocessing(trained):
    for name in ("best.pt", "last.pt", "model.pt"):
        state = torch.load(trained / name, map_location="cpu", weights_only=True)
        assert state["classes"] == CLASSES, name
        assert state["config"]["data"]["num_frames"] == 4 and state["preprocessing"]["crop_size"] == 16, name


def test_predict_from_the_checkpoint_alone_prints_class_names(trained, layout, capsys):
    video = layout / "videos" / "cartwheel" / "cartwheel_v4_f_nm_np1_fr_med_4.avi"
    capsys.readouterr()
    assert main(["predict", "--checkpoint", str(trained / "best.pt"), "--videos", str(video), "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["video"] == str(video)
    assert {m["class"] for m in row["motion"]} == set(CLASSES)  # names, both classes of the top-2
    assert {m["class"] for m in row["static"]} == set(CLASSES)


def test_predict_text_output_names_classes(layout, tmp_path, capsys):
    ckpt = hand_checkpoint(layout, tmp_path / "best.pt")
    video = layout / "videos" / "brush_hair" / "brush_hair_v4_f_nm_np1_fr_med_4.avi"
    assert main(["predict", "--checkpoint", str(ckpt), "--videos", str(video), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "brush_hair" in out and "cartwheel" in out


def test_recorded_class_names_that_cannot_name_the_outputs_are_refused(layout, tmp_path, capsys):
    video = layout / "videos" / "brush_hair" / "brush_hair_v4_f_nm_np1_fr_med_4.avi"
    three = hand_checkpoint(layout, tmp_path / "three.pt", classes=[*CLASSES, "wave"])  # a 2-class head
    assert main(["predict", "--checkpoint", str(three), "--videos", str(video), "--device", "cpu"]) == 2
    assert f"{three} records 3 class names for model.num_classes=2" in capsys.readouterr().err
    twice = hand_checkpoint(layout, tmp_path / "twice.pt", classes=[CLASSES[0], CLASSES[0]])
    assert main(["predict", "--checkpoint", str(twice), "--videos", str(video), "--device", "cpu"]) == 2
    assert f"{twice}: 'classes' names {CLASSES[0]!r} more than once" in capsys.readouterr().err


def test_old_checkpoint_needs_config_and_then_gets_the_layouts_class_names(layout, tmp_path, capsys):
    ckpt = hand_checkpoint(layout, tmp_path / "old.pt", with_meta=False)
    video = layout / "videos" / "brush_hair" / "brush_hair_v4_f_nm_np1_fr_med_4.avi"
    assert main(["predict", "--checkpoint", str(ckpt), "--videos", str(video)]) == 2
    err = capsys.readouterr().err
    assert str(ckpt) in err and "--config" in err
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(run_config(layout, tmp_path / "x")))
    assert main(["predict", "--checkpoint", str(ckpt), "--config", str(cfg), "--videos", str(video), "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert {m["class"] for m in row["motion"]} == set(CLASSES)  # from the split files, not indices


def test_override_of_recorded_preprocessing_warns(layout, tmp_path, capsys):
    ckpt = hand_checkpoint(layout, tmp_path / "best.pt")
    video = layout / "videos" / "brush_hair" / "brush_hair_v4_f_nm_np1_fr_med_4.avi"
    assert main(["predict", "--checkpoint", str(ckpt), "--videos", str(video), "data.num_frames=2"]) == 0
    err = capsys.readouterr().err
    assert "warning" in err and "data.num_frames=2" in err and "4" in err
    assert main(["predict", "--checkpoint", str(ckpt), "--videos", str(video)]) == 0
    assert "warning" not in capsys.readouterr().err


def test_eval_without_config_uses_the_recorded_data(trained, tmp_path, capsys):
    out = tmp_path / "eval"
    assert main(["eval", "--checkpoint", str(trained / "model.pt"), "--out", str(out), "--no-progress"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["classes"] == CLASSES
    (metrics,) = results["methods"].values()
    assert 0 <= metrics["iid_top1"] <= 100  # the recorded data section's test split (2 videos) was evaluated
    assert "iid" in capsys.readouterr().out.lower()


def test_eval_refuses_data_whose_classes_differ_from_the_checkpoints(layout, tmp_path, capsys):
    ckpt = hand_checkpoint(layout, tmp_path / "best.pt", classes=CLASSES[::-1])  # same names, other order
    assert main(["eval", "--checkpoint", str(ckpt), "--out", str(tmp_path / "eval"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert str(ckpt) in err and "'cartwheel'" in err and "'brush_hair'" in err
    assert not (tmp_path / "eval" / "results.json").exists()


def test_extract_features_keeps_relative_paths_and_never_overwrites(layout, tmp_path, capsys):
    ckpt = hand_checkpoint(layout, tmp_path / "best.pt")
    frames = numbered_frames(8, 16, 16)
    for sub in ("a", "b"):
        (tmp_path / "in" / sub).mkdir(parents=True)
    a = write_video(tmp_path / "in" / "a" / "clip.avi", frames, "mpeg4")
    frames[..., 0] = 250
    b = write_video(tmp_path / "in" / "b" / "clip.avi", frames, "mpeg4")
    out = tmp_path / "feats"
    args = ["extract-features", "--checkpoint", str(ckpt), "--videos", str(a), str(b), "--out", str(out)]
    assert main(args) == 0
    fa, fb = np.load(out / "a" / "clip.npy"), np.load(out / "b" / "clip.npy")
    assert fa.shape == fb.shape == (4,) and not np.array_equal(fa, fb)
    printed = capsys.readouterr().out
    assert str(out / "a" / "clip.npy") in printed and str(out / "b" / "clip.npy") in printed
    assert main(args) == 2  # a second run does not overwrite silently
    assert "--overwrite" in capsys.readouterr().err
    assert main([*args, "--overwrite"]) == 0
    dup = ["extract-features", "--checkpoint", str(ckpt), "--videos", str(a), str(a), "--out", str(tmp_path / "f2")]
    assert main(dup) == 2
    assert "would both write" in capsys.readouterr().err


def test_features_of_videos_extracted_one_at_a_time_keep_apart(layout, tmp_path, monkeypatch):
    """Relative to the working folder, a video's features land in the same place alone or with others."""
    ckpt = hand_checkpoint(layout, tmp_path / "best.pt")
    for sub in ("a", "b"):
        (tmp_path / "in" / sub).mkdir(parents=True)
        write_video(tmp_path / "in" / sub / "clip.avi", numbered_frames(8, 16, 16), "mpeg4")
    monkeypatch.chdir(tmp_path / "in")
    out = tmp_path / "feats"
    for sub in ("a", "b"):
        args = ["extract-features", "--checkpoint", str(ckpt), "--videos", f"{sub}/clip.avi", "--out", str(out)]
        assert main(args) == 0
    assert (out / "a" / "clip.npy").is_file() and (out / "b" / "clip.npy").is_file()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without a GPU")
def test_device_cuda_without_gpu_is_a_clean_error(layout, tmp_path, capsys):
    ckpt = hand_checkpoint(layout, tmp_path / "best.pt")
    video = layout / "videos" / "brush_hair" / "brush_hair_v4_f_nm_np1_fr_med_4.avi"
    assert main(["predict", "--checkpoint", str(ckpt), "--videos", str(video), "--device", "cuda"]) == 2
    assert "--device cuda" in capsys.readouterr().err


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_predict_runs_on_the_gpu(layout, tmp_path, capsys):
    ckpt = hand_checkpoint(layout, tmp_path / "best.pt")
    video = layout / "videos" / "brush_hair" / "brush_hair_v4_f_nm_np1_fr_med_4.avi"
    base = ["predict", "--checkpoint", str(ckpt), "--videos", str(video), "--json"]
    assert main([*base, "--device", "cpu"]) == 0
    cpu = json.loads(capsys.readouterr().out)
    assert main([*base, "--device", "cuda"]) == 0
    gpu = json.loads(capsys.readouterr().out)
    assert [m["class"] for m in gpu[0]["motion"]] == [m["class"] for m in cpu[0]["motion"]]
    assert gpu[0]["motion"][0]["prob"] == pytest.approx(cpu[0]["motion"][0]["prob"], abs=1e-4)
