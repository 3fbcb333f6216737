"""Training and evaluation straight from HMDB51's distributed layout and ALBAR's bias-set release."""

import json

import numpy as np
import yaml
from helpers import numbered_frames, write_video, write_zip
from PIL import Image

from albar.cli import main
from albar.config import load_config
from albar.data.bundle import build_data


def hmdb_tree(root):
    """2 classes x 6 videos (4 train, 2 test) in HMDB51's layout, and the release's bias sets of the tests."""
    classes = ["brush_hair", "cartwheel"]
    (root / "splits").mkdir(parents=True)
    rng = np.random.default_rng(0)
    tests = []
    for c, cls in enumerate(classes):
        (root / "videos" / cls).mkdir(parents=True)
        lines = []
        for i in range(6):
            name = f"{cls}_clip{i}_f_nm_np1_fr_med_{i}.avi"
            frames = numbered_frames(10, 32, 32)
            frames[..., c] = rng.integers(100, 255)
            write_video(root / "videos" / cls / name, frames, "mpeg4")
            split = 1 if i < 4 else 2
            lines.append(f"{name} {split}")
            if split == 2:
                tests.append((name[:-4], frames))
        lines.append(f"{cls}_unused.avi 0")
        (root / "splits" / f"{cls}_test_split1.txt").write_text("\n".join(lines) + "\n")
    bias = root / "bias"
    for source in ("Places365", "Stripe"):
        scuba, scufo = bias / f"HMDB51_SCUBA_{source}", bias / f"HMDB51_SCUFO_{source}"
        scuba.mkdir(parents=True)
        scufo.mkdir(parents=True)
        for key, frames in tests:
            write_zip(scuba / f"{key}__1.zip", frames)
            Image.fromarray(frames[5]).save(scufo / f"{key}__1.jpg")
    conf = bias / "HMDB51_ConflFG_Stripe"
    conf.mkdir()
    write_zip(conf / f"{tests[0][0]}__{tests[-1][0]}__1.zip", tests[0][1])
    return root


def config(root, out):
    return {
        "out_dir": str(out), "threads": 1, "log": {"tensorboard": False},
        "model": {"name": "small3d", "num_classes": 2},
        "data": {"source": "hmdb51", "root": str(root / "videos"), "splits": str(root / "splits"), "split": 1,
                 "bias_root": str(root / "bias"), "val_fraction": 0.25, "num_frames": 4, "stride": 2,
                 "crop_size": 16, "resize_short": 16, "num_workers": 0},
        "optim": {"lr": 1e-3, "lr_reference_batch": None, "batch_size": 2, "epochs": 1, "warmup_epochs": 0},
    }


def test_hmdb51_layout_and_release_bias_sets_are_found_and_labelled(tmp_path):
    root = hmdb_tree(tmp_path / "hmdb")
    cfg = load_config(None, [f"{k}={json.dumps(v)}" for k, v in config(root, tmp_path / "run").items()])
    data = build_data(cfg.data, seed=0, num_classes=2, progress=False)
    assert data.classes == ["brush_hair", "cartwheel"]
    assert len(data.train) == 6 and len(data.val) == 2 and len(data.test) == 4  # 25% of train held out
    assert sorted(data.scuba) == sorted(data.scufo) == ["places365", "stripe"]
    scuba = data.scuba["stripe"].items
    assert [it.key for it in scuba] == [it.key for it in data.scufo["stripe"].items]
    assert {it.key.removesuffix("__1"): it.label for it in scuba} == {it.key: it.label for it in data.test.items}
    (conf,) = data.conflfg.items
    assert (conf.label, conf.extra["conflict_label"]) == (0, 1)


def test_train_on_hmdb51_layout_writes_per_source_results(tmp_path):
    root = hmdb_tree(tmp_path / "hmdb")
    path = tmp_path / "cfg.yaml"
    cfg = config(root, tmp_path / "run")
    cfg["log"]["tensorboard"] = True
    path.write_text(yaml.safe_dump(cfg))
    assert main(["train", "--config", str(path), "--no-progress"]) == 0
    assert list((tmp_path / "run").rglob("events.out.tfevents.*"))  # TensorBoard scalars
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    block = results["methods"]["run"]
    assert set(block["per_source"]) == {"places365", "stripe"}
    assert results["classes"] == ["brush_hair", "cartwheel"]
    for key in ("iid_top1", "scuba_top1", "scufo_top1", "contrasted", "conflfg_top1"):
        assert 0.0 <= block[key] <= 100.0
    bad = config(root, tmp_path / "run2")
    bad["data"]["splits"] = str(tmp_path / "nowhere")
    path.write_text(yaml.safe_dump(bad))
    assert main(["train", "--config", str(path)]) == 2


def test_multi_view_testing_is_configurable_and_recorded(tmp_path):
    root = hmdb_tree(tmp_path / "hmdb")
    cfg = config(root, tmp_path / "run")
    cfg["data"]["test_view"] = "2x3"
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["train", "--config", str(path), "--no-progress"]) == 0
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["test_view"] == "2x3" and set(results["methods"]["run"]["per_source"]) == {"places365", "stripe"}
    cfg["data"]["test_view"] = "centre"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["train", "--config", str(path)]) == 2


def test_check_data_labels_release_bias_sets_through_the_split(tmp_path, capsys):
    root = hmdb_tree(tmp_path / "hmdb")
    args = ["check-data", "--hmdb51", str(root / "splits"), "--video-root", str(root / "videos"), "--bias-root",
            str(root / "bias"), "--no-progress"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "HMDB51_SCUBA_Stripe: 4 items" in out and "OK" in out
    assert main([*args, "--classes", str(tmp_path / "nope.txt")]) == 1
    assert "--classes: file not found" in capsys.readouterr().out
    lost = sorted((root / "bias" / "HMDB51_SCUFO_Stripe").glob("*.jpg"))[0]
    lost.unlink()  # one SCUBA clip loses its partner
    assert main(args) == 1
    assert f"PAIRING HMDB51_SCUFO_Stripe {root / 'bias' / 'HMDB51_SCUBA_Stripe' / lost.stem}.zip: SCUBA clip has no " \
           "SCUFO partner" in capsys.readouterr().out
    # a run keeps the pair, with a SCUFO item that fails when read (counted against the model), and says so
    cfg = load_config(None, [f"{k}={json.dumps(v)}" for k, v in config(root, tmp_path / "run").items()])
    said: list[str] = []
    data = build_data(cfg.data, seed=0, num_classes=2, train=False, warn=said.append)
    scufo = {it.key: it.source for it in data.scufo["stripe"].items}
    assert sorted(scufo) == sorted(it.key for it in data.scuba["stripe"].items) and scufo[lost.stem] == lost
    assert any(lost.stem in line and "counts as a failed item" in line for line in said)
