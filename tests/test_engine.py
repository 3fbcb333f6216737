"""The training engine as a user runs it: `albar train/eval` processes, kills, resumes, two processes."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import assert_same_training, write_config

from albar.cli import main

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def run_train(config: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "albar", "train", "--config", str(config), "--no-progress", *extra],
                          env=ENV, capture_output=True, text=True, timeout=300)


def step_lrs(out: Path) -> dict[int, float]:
    lrs = {}
    for line in (out / "steps.jsonl").read_text().splitlines():
        rec = json.loads(line)
        lrs[rec["step"]] = rec["lr"]  # a step redone after a resume: the later line wins
    return lrs


@pytest.fixture(scope="module")
def reference(tiny_benchmark, tmp_path_factory):
    """An uninterrupted run: the yardstick for resume and eval."""
    tmp = tmp_path_factory.mktemp("ref")
    cfg = write_config(tmp, tiny_benchmark, "ref")
    proc = run_train(cfg)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return tmp / "ref"


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT, signal.SIGTERM, signal.SIGUSR1])
def test_killed_run_resumes_to_identical_weights(tiny_benchmark, reference, tmp_path, sig):
    """kill -9, Ctrl-C, and what Slurm/Kubernetes send before a kill (SIGTERM) or ahead of the time limit
    (SIGUSR1): the rerun ends with the weights of an uninterrupted run."""
    cfg = write_config(tmp_path, tiny_benchmark, "run")
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "albar", "train", "--config", str(cfg), "--no-progress"],
                            env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline:  # wait until it is mid-way through epoch 2 (4 steps per epoch)
        steps = out / "steps.jsonl"
        if steps.is_file() and len(steps.read_text().splitlines()) >= 6:
            break
        time.sleep(0.005)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode != 0, "the run finished before it could be interrupted"
    assert not (out / "results.json").exists()
    if sig == signal.SIGINT:
        assert "interrupted: saved" in err
    state = torch.load(out / "last.pt", weights_only=True)
    assert 0 < state["step"] < 16
    if sig in (signal.SIGTERM, signal.SIGUSR1):  # saved at a step boundary, said so, and left the epochs so far
        assert f"stopped by {sig.name}" in err and str(out / "last.pt") in err, err[-2000:]
        assert f"stopped by {sig.name}" in (out / "train.log").read_text()
        rows = (out / "epochs.csv").read_text().splitlines()[1:]
        assert len(rows) == len(state["history"]) >= 1
    resumed = run_train(cfg)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resumed from" in resumed.stdout
    a = torch.load(reference / "last.pt", weights_only=True)["model"]
    b = torch.load(out / "last.pt", weights_only=True)["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert step_lrs(out) == step_lrs(reference)
    # the steps redone after the resume replace their first records: each step once, in order
    assert [json.loads(line)["step"] for line in (out / "steps.jsonl").read_text().splitlines()] == list(range(1, 17))
    assert json.loads((out / "results.json").read_text()) == json.loads((reference / "results.json").read_text())
    # per-epoch records too: the interrupted epoch's training metrics include its batches before the kill
    assert (out / "epochs.csv").read_text() == (reference / "epochs.csv").read_text()


def test_eval_of_a_checkpoint_reproduces_training_time_metrics(reference, capsys):
    code = main(["eval", "--config", str(reference / "config.yaml"), "--checkpoint", str(reference / "best.pt"),
                 "--out", str(reference / "eval"), "--no-progress"])
    assert code == 0
    trained = json.loads((reference / "results.json").read_text())["methods"]["run"]
    evaluated = json.loads((reference / "eval" / "results.json").read_text())["methods"]["best"]
    for key in ("iid_top1", "scuba_top1", "scufo_top1", "contrasted", "conflfg_top1", "per_source"):
        assert evaluated[key] == trained[key], key
    assert "Contrasted" in capsys.readouterr().out


def test_two_processes_match_one_with_the_same_global_batch(tiny_benchmark, tmp_path):
    """accelerate launch, 2 CPU processes over gloo, batch 4 each, vs 1 process with batch 8."""
    one = write_config(tmp_path, tiny_benchmark, "one", **{"optim.epochs": 2, "checkpoint.every_steps": 0})
    two = write_config(tmp_path, tiny_benchmark, "two", **{"optim.epochs": 2, "optim.batch_size": 4,
                                                          "checkpoint.every_steps": 0, "eval.batch_size": 16})
    assert run_train(one).returncode == 0
    launch = subprocess.run(
        [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
         "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "albar", "train",
         "--config", str(two), "--no-progress"],
        env=ENV, capture_output=True, text=True, timeout=300,
    )
    assert launch.returncode == 0, launch.stderr[-3000:]
    assert_same_training(tmp_path / "one", tmp_path / "two", tiny_benchmark)


def test_config_errors_exit_2_and_name_the_key(tmp_path, capsys, tiny_benchmark):
    bad = tmp_path / "bad.yaml"
    bad.write_text("optim:\n  lrr: 0.1\n")
    assert main(["train", "--config", str(bad)]) == 2
    assert "optim.lrr" in capsys.readouterr().err
    bad.write_text("optim:\n  epochs: many\n")
    assert main(["train", "--config", str(bad)]) == 2
    assert "optim.epochs" in capsys.readouterr().err
    assert main(["train", "--config", str(tmp_path / "nope.yaml")]) == 2
    assert "nope.yaml" in capsys.readouterr().err
    cfg = write_config(tmp_path, tiny_benchmark, "paths", **{"data.source": "lists",
                                                             "data.train": {"list": str(tmp_path / "missing.txt")}})
    assert main(["train", "--config", str(cfg)]) == 2
    assert "data.train.list" in capsys.readouterr().err
    assert main(["train", "--config", str(cfg), "optim.batch_size=-1"]) == 2
    assert "optim.batch_size" in capsys.readouterr().err
    assert main(["train", "--config", str(cfg), "--no-progress", "optim.epochs=-1"]) == 2  # after an option too
    assert "optim.epochs" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", "--config", str(cfg), "--bogus"])


def test_bad_files_are_replaced_in_training_and_count_as_wrong_in_evaluation(tiny_benchmark, tmp_path):
    root = tiny_benchmark.root
    (tmp_path / "corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(500))
    train_lines = (root / "lists" / "train.txt").read_text().splitlines()
    test_lines = (root / "lists" / "test.txt").read_text().splitlines()
    bad = f"{tmp_path / 'corrupt.mp4'} 1"
    (tmp_path / "train.txt").write_text("\n".join([*train_lines, bad]) + "\n")
    (tmp_path / "test.txt").write_text("\n".join([*test_lines, bad, f"{tmp_path / 'gone.mp4'} 2"]) + "\n")
    cfg = write_config(tmp_path, tiny_benchmark, "bad", **{
        "optim.epochs": 1, "checkpoint.every_steps": 0, "data.source": "lists", "data.root": str(root),
        "data.train": {"list": str(tmp_path / "train.txt")}, "data.val": {"list": str(root / "lists" / "val.txt")},
        "data.test": {"list": str(tmp_path / "test.txt")}, "data.max_failure_fraction": 0.2,
    })
    assert main(["train", "--config", str(cfg), "--no-progress"]) == 0
    out = tmp_path / "bad"
    failed = [json.loads(line) for line in (out / "failed_files.jsonl").read_text().splitlines()]
    assert [f["source"] for f in failed] == [str(tmp_path / "corrupt.mp4")]
    results = json.loads((out / "results.json").read_text())["methods"]["run"]
    failed_keys = {Path(k).name: reason for k, reason in results["failed_items"]["iid"].items()}
    assert set(failed_keys) == {"corrupt", "gone"} and "no such file" in failed_keys["gone"]
    # the two unreadable test items count as wrong: accuracy is over all 10 items, so a multiple of 10%
    assert round(results["iid_top1"] * len(test_lines + [bad, bad]) / 100, 6).is_integer()
    assert max(results["iid_top1"], results["iid_top5"]) <= 100 * 8 / 10


def test_predict_with_static_probe_and_extract_features(reference, tiny_benchmark, tmp_path, capsys):
    videos = sorted((tiny_benchmark.root / "videos" / "test").glob("*.mp4"))[:3]
    args = ["--config", str(reference / "config.yaml"), "--checkpoint", str(reference / "best.pt"), "--videos",
            *map(str, videos)]
    assert main(["predict", *args, "--json", "--no-progress"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["video"] for r in rows] == [str(v) for v in videos]
    for r in rows:
        assert len(r["motion"]) == len(r["static"]) == 4  # top-5 of 4 classes
        assert r["motion"][0]["class"] in tiny_benchmark.classes
        assert abs(sum(p["prob"] for p in r["static"]) - 1) < 1e-4
    assert main(["predict", *args]) == 0
    assert "static:" in capsys.readouterr().out
    out = tmp_path / "feats"
    assert main(["extract-features", *args, "--out", str(out)]) == 0
    feats = [np.load(out / f"{v.stem}.npy") for v in videos]
    assert all(f.shape == (32,) and f.dtype == np.float32 for f in feats)  # small3d's pooled width
    assert not np.allclose(feats[0], feats[1])
    assert main(["predict", *args[:4], "--videos", str(tmp_path / "nope.mp4")]) == 2
    (tmp_path / "bad.mp4").write_text("not a video")
    assert main(["predict", *args[:4], "--videos", str(tmp_path / "bad.mp4")]) == 1  # a message, no traceback
    assert "bad.mp4" in capsys.readouterr().err
    # a multi-view test view: predict averages the views; an override after --videos is still an override
    assert main(["predict", *args, "data.test_view=2x3", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 3
