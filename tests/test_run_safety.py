"""Runs that lose nothing and never mislead: non-finite updates, replayed steps, validation failures, feedback as
the run goes, self-describing checkpoints, BatchNorm under ALBAR, one run per folder.

(SIGTERM/SIGUSR1 mid-epoch of one process and the rerun to identical weights: tests/test_engine.py, with kill -9
and Ctrl-C.)
"""

import contextlib
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers import write_config
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import albar.training.trainer as trainer
from albar.cli import main
from albar.config import load_config
from albar.data import ClipDataset
from albar.models import build_model
from albar.training import NonFiniteLossError, train
from albar.training.checkpoint import load_resume_state
from albar.training.run import fit
from albar.training.run_folder import ConfigChanged, RunLock

META_KEYS = {"config", "classes", "preprocessing", "albar_version"}


def finite(weights: dict) -> bool:
    return all(bool(torch.isfinite(v).all()) for v in weights.values() if v.is_floating_point())


def tiny_cfg(tmp_path: Path, bench, name: str, **overrides):
    return load_config(write_config(tmp_path, bench, name, **overrides))


def train_items(bench) -> ClipDataset:
    return ClipDataset(bench.items("train"), bench.spec.num_frames, 1, mode="random", seed=0)


def launch_two(config: Path) -> subprocess.Popen:
    """`accelerate launch` of 2 CPU processes in a session of their own (a job's process group)."""
    return subprocess.Popen(
        [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines",
         "1", "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "albar", "train", "--config", str(config),
         "--no-progress"],
        env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, start_new_session=True,
    )


def test_sigterm_to_every_rank_saves_and_the_rerun_ends_like_an_uninterrupted_run(tiny_benchmark, tmp_path):
    """As Slurm ends a job: SIGTERM to every process of the group (launcher and both ranks), mid-epoch, with
    last.pt written only per epoch. The ranks agree on the step, save both random states, and exit."""
    common = {"optim.epochs": 3, "optim.batch_size": 4, "checkpoint.every_steps": 0, "eval.batch_size": 16}
    ref, run = (write_config(tmp_path, tiny_benchmark, name, **common) for name in ("ref", "run"))
    reference = launch_two(ref)
    _, err = reference.communicate(timeout=300)
    assert reference.returncode == 0, err[-3000:]
    job = launch_two(run)
    steps = tmp_path / "run" / "steps.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and not (steps.is_file() and len(steps.read_text().splitlines()) >= 6):
        time.sleep(0.005)
    os.killpg(job.pid, signal.SIGTERM)
    _, err = job.communicate(timeout=120)  # no rank waits forever for the other
    assert job.returncode != 0 and "stopped by SIGTERM" in err, err[-3000:]
    state = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert 4 < state["step"] < 12 and len(state["rng"]) == 2  # mid-epoch 2 or 3, not the epoch-1 checkpoint
    rerun = launch_two(run)
    _, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err[-3000:]
    a = torch.load(tmp_path / "ref" / "last.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "run" / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_sigterm_to_a_process_group_with_loader_workers_saves_and_exits(tiny_benchmark, tmp_path):
    """Slurm signals every process of the job, data-loader workers included: the workers must not die first
    (the run would fail before it saves), nor keep the run from exiting afterwards."""
    cfg = write_config(tmp_path, tiny_benchmark, "run", **{"data.num_workers": 2, "checkpoint.every_steps": 0})
    job = subprocess.Popen([sys.executable, "-m", "albar", "train", "--config", str(cfg), "--no-progress"],
                           env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, start_new_session=True)
    steps = tmp_path / "run" / "steps.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and not (steps.is_file() and len(steps.read_text().splitlines()) >= 6):
        time.sleep(0.005)
    os.killpg(job.pid, signal.SIGTERM)
    try:
        _, err = job.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(job.pid, signal.SIGKILL)
        raise
    assert job.returncode != 0 and "stopped by SIGTERM" in err, err[-3000:]
    state = load_resume_state(tmp_path / "run" / "last.pt")
    assert state["step"] == len(steps.read_text().splitlines()) > 4  # mid-epoch 2 at the earliest


def test_a_diverging_update_stops_the_run_and_last_pt_keeps_the_step_before(tiny_benchmark, tmp_path, capsys):
    """lr 1e6 with a checkpoint every step: the code as it was wrote NaN weights into last.pt at step 2."""
    cfg = write_config(tmp_path, tiny_benchmark, "nan", **{"optim.lr": 1e6})
    assert main(["train", "--config", str(cfg), "--no-progress"]) == 1
    err = capsys.readouterr().err
    bad_step = int(re.search(r"optimiser step (\d+)", err)[1])
    assert "loss" in err and bad_step >= 2, err
    state = load_resume_state(tmp_path / "nan" / "last.pt")  # a checkpoint a run can continue from
    assert state["step"] == bad_step - 1 and finite(state["model"])


def test_weights_that_turned_non_finite_are_never_saved(tiny_benchmark, tmp_path, monkeypatch):
    """Second line of defence: should a non-finite update get through, the save refuses it (last.pt stays)."""
    monkeypatch.setattr(trainer, "clip_and_check", lambda *args, **kwargs: None)  # the gradient check is gone
    cfg = tiny_cfg(tmp_path, tiny_benchmark, "nan", **{"optim.lr": 1e6})
    with pytest.raises(NonFiniteLossError, match=r"after optimiser step (\d+).*non-finite.*left as it was") as info:
        train(cfg, train_items(tiny_benchmark), out_dir=tmp_path / "nan", progress=False)
    bad_step = int(re.search(r"step (\d+)", str(info.value))[1])
    state = torch.load(tmp_path / "nan" / "last.pt", weights_only=True)
    assert state["step"] == bad_step - 1 and finite(state["model"])


def test_steps_redone_after_a_crash_are_logged_once(tiny_benchmark, tmp_path, monkeypatch):
    """last.pt per epoch only: a crash in epoch 2 makes the rerun redo steps 5.. of steps.jsonl."""
    cfg = tiny_cfg(tmp_path, tiny_benchmark, "crash", **{"optim.epochs": 2, "checkpoint.every_steps": 0})
    real, calls = trainer.method_step, []

    def crash_at_step_7(*args, **kwargs):
        calls.append(1)
        if len(calls) == 7:
            raise RuntimeError("power cut")
        return real(*args, **kwargs)

    monkeypatch.setattr(trainer, "method_step", crash_at_step_7)
    with pytest.raises(RuntimeError, match="power cut"):
        train(cfg, train_items(tiny_benchmark), out_dir=tmp_path / "crash", progress=False)
    monkeypatch.setattr(trainer, "method_step", real)
    steps = tmp_path / "crash" / "steps.jsonl"
    assert [json.loads(line)["step"] for line in steps.read_text().splitlines()] == [1, 2, 3, 4, 5, 6]
    train(cfg, train_items(tiny_benchmark), out_dir=tmp_path / "crash", progress=False)
    assert [json.loads(line)["step"] for line in steps.read_text().splitlines()] == list(range(1, 9))


@pytest.fixture(scope="module")
def finished(tiny_benchmark, tmp_path_factory):
    """A whole `albar train` (2 epochs, TensorBoard on) whose validation list holds an unreadable file."""
    tmp = tmp_path_factory.mktemp("finished")
    root = tiny_benchmark.root
    corrupt = tmp / "corrupt.mp4"
    corrupt.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(500))  # an MP4 header, then nothing decodable
    val = tmp / "val.txt"
    val.write_text((root / "lists" / "val.txt").read_text() + f"{corrupt} 1\n")
    lists = root / "lists"
    bias = {kind: {s: {"list": str(lists / f"{kind}_{s}.txt"), "key": "stem"} for s in tiny_benchmark.sources}
            for kind in ("scuba", "scufo")}  # the synthetic source's own sets, as mmaction2 lists
    cfg = write_config(tmp, tiny_benchmark, "run", **{
        "optim.epochs": 2, "checkpoint.every_steps": 0, "log.tensorboard": True, "data.source": "lists",
        "data.root": str(root), "data.train": {"list": str(lists / "train.txt")}, "data.val": {"list": str(val)},
        "data.test": {"list": str(lists / "test.txt")},
        "data.bias": {**bias, "conflfg": {"list": str(lists / "conflfg.txt"), "key": "stem"}},
    })
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["train", "--config", str(cfg), "--no-progress"])
    assert code == 0, err.getvalue()[-3000:]
    return {"out": tmp / "run", "config": cfg, "corrupt": corrupt, "stdout": out.getvalue(),
            "stderr": err.getvalue()}


def test_unreadable_validation_files_are_named_like_training_failures(finished):
    out, corrupt = finished["out"], str(finished["corrupt"])
    failed = [json.loads(line) for line in (out / "failed_files.jsonl").read_text().splitlines()]
    assert [(f["source"], f["set"]) for f in failed] == [(corrupt, "val")]
    every = [json.loads(line) for line in (out / "failures.jsonl").read_text().splitlines()]
    assert [(r["source"], r["set"], r["epoch"]) for r in every] == [(corrupt, "val", 0), (corrupt, "val", 1)]
    lines = [ln for ln in finished["stderr"].splitlines() if "unreadable validation file" in ln]
    assert len(lines) == 2 and all(corrupt in ln for ln in lines)  # one per epoch, naming the file
    epochs = (out / "epochs.csv").read_text().splitlines()
    header = epochs[0].split(",")
    for row in epochs[1:]:
        values = dict(zip(header, row.split(",")))
        assert values["failed_files"] == "0" and values["val_failed"] == "1"  # not charged to the training set
        # the unreadable item counts as wrong: top-1 over all 9 items
        assert round(float(values["val_top1"]) * 9 / 100, 6).is_integer()


def test_each_epoch_is_reported_and_the_run_ends_with_its_table_and_files(finished):
    out, stdout = finished["out"], finished["stdout"]
    epoch_lines = [ln for ln in stdout.splitlines() if ln.startswith("epoch ")]
    assert [ln.split()[1] for ln in epoch_lines] == ["1/2", "2/2"]  # printed with --no-progress too
    for ln in epoch_lines:
        for part in ("loss", "ce", "gp", "train top-1", "val top-1", "best", "/epoch", "ETA"):
            assert part in ln, (part, ln)
    log = (out / "train.log").read_text()
    assert all(ln in log for ln in epoch_lines)
    assert "IID top-1" in stdout and "SCUBA" in stdout  # the result table
    for name in ("results.json", "best.pt", "model.pt", "epochs.csv", "train.log"):
        assert name in stdout.split("IID top-1")[1] and (out / name).is_file(), name


def test_checkpoints_describe_themselves(finished, tiny_benchmark):
    out = finished["out"]
    for name in ("last.pt", "best.pt", "model.pt"):
        ckpt = torch.load(out / name, weights_only=True)
        assert META_KEYS <= set(ckpt), name
        assert ckpt["classes"] == tiny_benchmark.classes and ckpt["preprocessing"]["num_frames"] == 4
    exported = torch.load(out / "model.pt", weights_only=True)
    assert "optimizer" not in exported  # weights only
    best = torch.load(out / "best.pt", weights_only=True)
    assert all(torch.equal(best["model"][k], exported["model"][k]) for k in best["model"])
    build_model("small3d", 4).load_state_dict(exported["model"])


def test_tensorboard_gets_the_final_bias_metrics(finished):
    events = EventAccumulator(str(finished["out"] / "albar"))
    events.Reload()
    for tag in ("test/iid_top1", "test/scuba_top1", "test/scufo_top1", "test/contrasted", "test/conflfg_top1"):
        (scalar,) = events.Scalars(tag)
        assert scalar.step == 8  # the last optimiser step: 2 epochs of 4
    results = json.loads((finished["out"] / "results.json").read_text())["methods"]["run"]
    assert events.Scalars("test/scuba_top1")[0].value == pytest.approx(results["scuba_top1"])


def test_one_run_per_folder_and_no_silent_config_change(finished, tmp_path, capsys):
    out, cfg = finished["out"], finished["config"]
    with RunLock(out):  # another run holds the folder
        assert main(["train", "--config", str(cfg), "--no-progress"]) == 2
    assert str(out) in capsys.readouterr().err
    assert main(["train", "--config", str(cfg), "--no-progress", "optim.lr=0.1"]) == 2
    assert "optim.lr" in capsys.readouterr().err
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    changed = load_config(cfg, [f"out_dir={copy}", "optim.lr=0.1"])
    with pytest.raises(ConfigChanged):
        fit(changed, progress=False)
    fit(changed, progress=False, force=True)  # continues: training is done, the evaluation runs again
    assert "optim.lr" in (copy / "config_history.jsonl").read_text()


def bn_cfg(tmp_path: Path, bench, freeze: bool, albar: bool = True):
    weights = {} if albar else {"objective.w_adv": 0.0, "objective.w_ent": 0.0, "objective.w_gp": 0.0}
    return tiny_cfg(tmp_path, bench, "bn", **{"model.kwargs": {"norm": "batch"}, "model.freeze_bn": freeze,
                                              "optim.epochs": 1, "resume": "never", **weights})


def test_albar_warns_about_batchnorm_in_train_mode(tiny_benchmark, tmp_path, recwarn):
    cfg = bn_cfg(tmp_path, tiny_benchmark, freeze=False)
    with pytest.warns(UserWarning, match=r"r3d_18 has \d+ BatchNorm layers.*freeze_bn"):
        trainer.warn_batchnorm(cfg.model_copy(update={"model": cfg.model.model_copy(update={"name": "r3d_18"})}),
                               build_model("r3d_18", 4))
    with pytest.warns(UserWarning, match="BatchNorm layers in train mode under ALBAR"):
        train(cfg, train_items(tiny_benchmark), progress=False)
    recwarn.clear()
    train(bn_cfg(tmp_path, tiny_benchmark, freeze=True), train_items(tiny_benchmark), progress=False)
    train(bn_cfg(tmp_path, tiny_benchmark, freeze=False, albar=False), train_items(tiny_benchmark), progress=False)
    train(tiny_cfg(tmp_path, tiny_benchmark, "gn", **{"optim.epochs": 1}), train_items(tiny_benchmark),
          progress=False)  # small3d's GroupNorm
    assert not [w for w in recwarn if "BatchNorm" in str(w.message)]


def test_freeze_bn_keeps_the_running_statistics(tiny_benchmark, tmp_path):
    frozen = train(bn_cfg(tmp_path, tiny_benchmark, freeze=True), train_items(tiny_benchmark), progress=False).model
    bn = frozen.features[1]
    assert isinstance(bn, torch.nn.BatchNorm3d)
    assert torch.equal(bn.running_mean, torch.zeros_like(bn.running_mean)) and int(bn.num_batches_tracked) == 0
    assert not torch.equal(bn.weight, torch.ones_like(bn.weight))  # its affine weights still trained
    with pytest.warns(UserWarning):
        free = train(bn_cfg(tmp_path, tiny_benchmark, freeze=False), train_items(tiny_benchmark), progress=False)
    assert int(free.model.features[1].num_batches_tracked) > 0


def test_forced_changes_of_the_optimiser_take_effect_on_resume(tiny_benchmark, tmp_path):
    """`--force` with a new lr, weight decay or epoch count continues with the NEW values: the saved optimiser
    state must not bring the old ones back (config.yaml would then describe another run)."""
    from albar.training.schedule import warmup_cosine

    first = tiny_cfg(tmp_path, tiny_benchmark, "run", **{"optim.epochs": 1, "checkpoint.every_steps": 0})
    fit(first, progress=False)
    longer = tiny_cfg(tmp_path, tiny_benchmark, "run", **{"optim.epochs": 2, "optim.lr": 1e-3,
                                                          "optim.weight_decay": 0.5, "checkpoint.every_steps": 0})
    fit(longer, progress=False, force=True)
    steps = [json.loads(line) for line in (tmp_path / "run" / "steps.jsonl").read_text().splitlines()]
    per_epoch = len(steps) // 2
    total, warmup = 2 * per_epoch, per_epoch  # optim.warmup_epochs 1 (tests/helpers.py)
    for rec in steps[per_epoch:]:  # epoch 2 follows the new schedule: lr 1e-3, 2 epochs
        assert rec["lr"] == pytest.approx(1e-3 * warmup_cosine(rec["step"] - 1, total, warmup), rel=1e-9)
    state = load_resume_state(tmp_path / "run" / "last.pt")
    assert {g["weight_decay"] for g in state["optimizer"]["param_groups"]} == {0.5}


def test_resuming_another_runs_checkpoint_names_it(tiny_benchmark, tmp_path, capsys):
    other = write_config(tmp_path, tiny_benchmark, "other", **{"optim.epochs": 1})
    assert main(["train", "--config", str(other), "--no-progress"]) == 0
    narrower = {"optim.epochs": 1, "model.kwargs": {"widths": [8, 8, 8, 8]}}  # another architecture
    mine = write_config(tmp_path, tiny_benchmark, "mine", **narrower)
    code = main(["train", "--config", str(mine), "--no-progress", "--resume", str(tmp_path / "other" / "last.pt")])
    err = capsys.readouterr().err
    assert code == 2 and "other/last.pt" in err and "do not fit" in err
