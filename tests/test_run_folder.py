"""One run per folder: the lock, the saved config, leftovers of killed processes, atomic writes, checkpoints."""

from __future__ import annotations

import errno
import json
import multiprocessing as mp
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from albar.config import TrainConfig, dump_config, load_config
from albar.synthetic import BenchmarkSpec, build_benchmark
from albar.training.checkpoint import (
    checkpoint_meta,
    load_checkpoint,
    load_resume_state,
    require_finite,
    save_checkpoint,
)
from albar.training.run_folder import (
    HISTORY_NAME,
    ConfigChanged,
    RunFolderBusy,
    RunLock,
    clean_stale,
    prepare_run_config,
)
from albar.utils import HOST_ID, NotAFolderError, atomic_write, atomic_write_text

FORK = mp.get_context("fork")


# ---------------------------------------------------------------- the lock


def _hold_lock(folder: str, ready, spawn_child: bool) -> None:
    lock = RunLock(folder).acquire()
    assert lock.held
    if spawn_child:  # a process it starts (like a data-loader worker) inherits the lock
        child = os.fork()
        if child == 0:
            time.sleep(600)
            os._exit(0)
        ready.put(child)
    else:
        ready.put(os.getpid())
    time.sleep(600)


def _try_lock(folder: str, result) -> None:
    try:
        with RunLock(folder):
            result.put(("ok", ""))
    except Exception as err:  # noqa: BLE001 - reported to the parent as it is
        result.put((type(err).__name__, str(err)))


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def test_a_second_process_cannot_take_a_held_run_folder(tmp_path):
    out = tmp_path / "run"
    with RunLock(out):
        result = FORK.Queue()
        p = FORK.Process(target=_try_lock, args=(str(out), result))
        p.start()
        kind, message = result.get(timeout=60)
        p.join(60)
    assert kind == "RunFolderBusy"
    assert str(out) in message and f"pid {os.getpid()}" in message and HOST_ID in message
    # released on exit: the next run gets it
    with RunLock(out) as lock:
        assert lock.held


def test_a_killed_holder_does_not_block_the_folder(tmp_path):
    out = tmp_path / "run"
    ready = FORK.Queue()
    p = FORK.Process(target=_hold_lock, args=(str(out), ready, False))
    p.start()
    pid = ready.get(timeout=60)
    with pytest.raises(RunFolderBusy, match=f"pid {pid}"):
        RunLock(out).acquire()
    os.kill(pid, signal.SIGKILL)  # no chance to clean up
    p.join(60)
    assert json.loads((out / ".lock").read_text())["pid"] == pid  # the stale lock file is still there
    with RunLock(out) as lock:
        assert lock.held
        assert json.loads((out / ".lock").read_text())["pid"] == os.getpid()


def test_lock_kept_by_a_dead_holders_child_says_so(tmp_path):
    out = tmp_path / "run"
    ready = FORK.Queue()
    p = FORK.Process(target=_hold_lock, args=(str(out), ready, True))
    p.start()
    child = ready.get(timeout=60)
    try:
        os.kill(p.pid, signal.SIGKILL)
        os.waitpid(p.pid, 0)  # not p.join(): the child holds a copy of the pipe that join waits on
        with pytest.raises(RunFolderBusy) as err:
            RunLock(out).acquire()
        assert f"pid {p.pid}" in str(err.value) and "no longer runs" in str(err.value)
    finally:
        _kill(child)
    for _ in range(600):  # the child is reaped by init; its lock goes with it
        try:
            with RunLock(out):
                break
        except RunFolderBusy:
            time.sleep(0.05)
    else:
        pytest.fail("the lock was not released after its last holder died")


def test_non_main_processes_take_no_lock(tmp_path):
    with RunLock(tmp_path / "run"), RunLock(tmp_path / "run", is_main=False) as other:
        assert not other.held


def test_out_dir_under_a_file_is_named(tmp_path):
    (tmp_path / "afile").write_text("x")
    with pytest.raises(NotAFolderError) as err:
        RunLock(tmp_path / "afile" / "run").acquire()
    assert isinstance(err.value, ValueError) and isinstance(err.value, NotADirectoryError)
    assert str(tmp_path / "afile") in str(err.value) and "is a file" in str(err.value)
    with pytest.raises(NotAFolderError, match="afile is a file"):
        RunLock(tmp_path / "afile").acquire()


# ---------------------------------------------------------------- the saved config


def _cfg(out: Path, **changes) -> TrainConfig:
    data = {"out_dir": str(out), "optim": {"lr": 1e-3, "epochs": 3}, "data": {"num_workers": 2}}
    for key, value in changes.items():
        node = data
        *parents, last = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    return TrainConfig.model_validate(data)


def _finished_run(out: Path) -> bytes:
    """A run folder as a run leaves it: config.yaml and a checkpoint."""
    prepare_run_config(out, _cfg(out), force=False)
    (out / "last.pt").write_bytes(b"weights")
    return (out / "config.yaml").read_bytes()


def test_new_run_writes_its_config(tmp_path):
    out = tmp_path / "run"
    cfg = _cfg(out)
    prepare_run_config(out, cfg, force=False)
    assert load_config(out / "config.yaml") == cfg


def test_changed_config_refuses_with_the_diff(tmp_path):
    out = tmp_path / "run"
    saved = _finished_run(out)
    with pytest.raises(ConfigChanged) as err:
        prepare_run_config(out, _cfg(out, **{"optim.lr": 0.01, "seed": 3}), force=False)
    message = str(err.value)
    assert "optim.lr: 0.001 -> 0.01" in message and "seed: 0 -> 3" in message and "--force" in message
    assert str(out) in message and "epochs" not in message
    assert (out / "config.yaml").read_bytes() == saved  # never rewritten silently
    assert not (out / HISTORY_NAME).exists()


def test_a_run_saved_before_gp_norm_existed_is_not_resumed_with_another_norm(tmp_path):
    """Older versions had only the per-sample norm and did not write objective.gp_norm: resuming such a run
    under today's default (official) would silently change its penalty ~sqrt(W)-fold."""
    out = tmp_path / "run"
    _finished_run(out)
    old = yaml.safe_load((out / "config.yaml").read_text())
    del old["objective"]["gp_norm"]
    (out / "config.yaml").write_text(yaml.safe_dump(old, sort_keys=False))
    with pytest.raises(ConfigChanged, match='objective.gp_norm: "sample" -> "official"'):
        prepare_run_config(out, _cfg(out), force=False)
    prepare_run_config(out, _cfg(out, **{"objective.gp_norm": "sample"}), force=False)  # the old run, continued


def test_result_neutral_changes_are_allowed_and_change_nothing(tmp_path):
    out = tmp_path / "run"
    saved = _finished_run(out)
    moved = tmp_path / "moved"
    cfg = _cfg(moved, **{"data.num_workers": 0, "resume": "never", "threads": 1, "eval.batch_size": 3,
                         "checkpoint.every_steps": 5, "log.tensorboard": False, "log.project": "x",
                         "data.max_failure_fraction": 0.5})
    prepare_run_config(out, cfg, force=False)
    assert (out / "config.yaml").read_bytes() == saved
    assert not (out / HISTORY_NAME).exists()


def test_force_continues_and_records_the_change(tmp_path):
    out = tmp_path / "run"
    saved = _finished_run(out)
    new = _cfg(out, **{"optim.lr": 0.01})
    prepare_run_config(out, new, force=True)
    assert load_config(out / "config.yaml") == new
    (entry,) = [json.loads(line) for line in (out / HISTORY_NAME).read_text().splitlines()]
    assert entry["changes"] == {"optim.lr": [0.001, 0.01]} and entry["event"] == "forced"
    assert entry["previous"] == saved.decode() and entry["pid"] == os.getpid()
    prepare_run_config(out, new, force=False)  # the recorded config is now the run's
    prepare_run_config(out, _cfg(out, **{"optim.lr": 0.1}), force=True)
    assert len((out / HISTORY_NAME).read_text().splitlines()) == 2


def test_without_config_yaml_the_checkpoints_config_is_compared(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    old = _cfg(out)
    save_checkpoint(out / "last.pt", {"model": {"w": torch.zeros(2)}, "config": old.model_dump(mode="json")})
    with pytest.raises(ConfigChanged, match=r"last\.pt.*optim\.epochs: 3 -> 9"):
        prepare_run_config(out, _cfg(out, **{"optim.epochs": 9}), force=False)
    assert not (out / "config.yaml").exists()
    prepare_run_config(out, _cfg(out, **{"data.num_workers": 7}), force=False)
    assert load_config(out / "config.yaml").optim == old.optim


def test_a_run_without_checkpoint_is_replaced_but_recorded(tmp_path):
    out = tmp_path / "run"
    prepare_run_config(out, _cfg(out), force=False)
    before = (out / "config.yaml").read_text()
    prepare_run_config(out, _cfg(out, seed=5), force=False)  # nothing was trained with the old one
    assert load_config(out / "config.yaml").seed == 5
    (entry,) = [json.loads(line) for line in (out / HISTORY_NAME).read_text().splitlines()]
    assert entry["changes"] == {"seed": [0, 5]} and entry["previous"] == before


def test_unreadable_saved_config_refuses_without_force(tmp_path):
    out = tmp_path / "run"
    _finished_run(out)
    (out / "config.yaml").write_bytes(b"\x00\x01binary")
    with pytest.raises(ConfigChanged, match="config.yaml.*cannot be read.*--force"):
        prepare_run_config(out, _cfg(out), force=False)
    prepare_run_config(out, _cfg(out), force=True)
    assert load_config(out / "config.yaml") == _cfg(out)
    assert "binary" in json.loads((out / HISTORY_NAME).read_text())["previous"]


# ---------------------------------------------------------------- leftovers of killed processes


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def _write_slowly(path: str, ready) -> None:
    def write(tmp: Path) -> None:
        tmp.write_bytes(b"partial")
        ready.put(str(tmp))
        time.sleep(600)

    atomic_write(path, write)


def test_temporaries_of_a_killed_writer_are_removed_and_a_live_ones_kept(tmp_path):
    target = tmp_path / "last.pt"
    target.write_bytes(b"good")
    ready = FORK.Queue()
    killed = FORK.Process(target=_write_slowly, args=(str(target), ready))
    killed.start()
    killed_tmp = Path(ready.get(timeout=60))
    os.kill(killed.pid, signal.SIGKILL)
    killed.join(60)
    ready = FORK.Queue()  # a fresh one: the killed process may have died holding the first one's lock
    live = FORK.Process(target=_write_slowly, args=(str(tmp_path / "epochs.csv"), ready))
    live.start()
    live_tmp = Path(ready.get(timeout=60))
    try:
        assert killed_tmp.parent == tmp_path and str(killed.pid) in killed_tmp.name
        other_host = tmp_path / f".results.json.{killed.pid}@elsewhere-1.0123abcd.tmp"
        other_host.write_text("")
        old_style = tmp_path / ".steps.jsonl.ab3_x9zq.tmp"  # tempfile.mkstemp's names, no pid
        old_style.write_text("")
        os.utime(old_style, (time.time() - 3600, time.time() - 3600))
        fresh_old_style = tmp_path / ".config.yaml.zz12ab_c.tmp"
        fresh_old_style.write_text("")
        dead_build = tmp_path / f".bench.building-{_dead_pid()}@{HOST_ID}"
        dead_build.mkdir()
        removed = clean_stale(tmp_path)
        assert sorted(removed) == sorted([killed_tmp, old_style, dead_build])
        assert live_tmp.is_file() and other_host.is_file() and fresh_old_style.is_file()
        assert target.read_bytes() == b"good"
    finally:
        _kill(live.pid)
        live.join(60)


def test_benchmark_build_removes_dead_build_folders_only(tmp_path):
    root = tmp_path / "synthetic"
    dead = tmp_path / f".synthetic.building-{_dead_pid()}@{HOST_ID}"
    legacy_dead = tmp_path / f".synthetic.building-{_dead_pid()}"  # named by older versions: pid only
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        live = tmp_path / f".synthetic.building-{sleeper.pid}@{HOST_ID}"
        for d in (dead, legacy_dead, live):
            (d / "videos").mkdir(parents=True)
        spec = BenchmarkSpec(num_classes=2, num_frames=2, size=16, train=2, val=2, test=2, bias_set=2)
        build_benchmark(root, spec, workers=1, progress=False)
        assert not dead.exists() and not legacy_dead.exists() and live.is_dir()
        assert (root / "manifest.json").is_file()
    finally:
        sleeper.kill()
        sleeper.wait()


# ---------------------------------------------------------------- atomic writes


def test_atomic_write_sets_the_usual_mode_without_touching_the_umask(tmp_path, monkeypatch):
    old = os.umask(0o027)
    try:
        def no_umask(mask: int) -> int:  # another thread may create files at any time: never change it
            raise AssertionError("atomic_write changed the process umask")

        monkeypatch.setattr(os, "umask", no_umask)
        atomic_write_text(tmp_path / "a.txt", "x")
        save_checkpoint(tmp_path / "c.pt", {"w": torch.zeros(1)})
        monkeypatch.undo()
        assert os.umask(0o027) == 0o027
        assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o640
        assert (tmp_path / "c.pt").stat().st_mode & 0o777 == 0o640
    finally:
        os.umask(old)


def test_atomic_write_syncs_the_data_before_the_rename(tmp_path, monkeypatch):
    events = []
    fsync, replace = os.fsync, os.replace

    def record_fsync(fd: int) -> None:
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        fsync(fd)

    def record_replace(src, dst) -> None:
        events.append(("replace", str(src)))
        replace(src, dst)

    monkeypatch.setattr(os, "fsync", record_fsync)
    monkeypatch.setattr(os, "replace", record_replace)
    atomic_write_text(tmp_path / "a.txt", "x")
    (kind1, tmp), (kind2, src), (kind3, folder) = events
    assert (kind1, kind2, kind3) == ("fsync", "replace", "fsync")
    assert tmp == src and Path(tmp).name.startswith(".a.txt.") and folder == str(tmp_path)


def test_atomic_write_under_a_file_names_it(tmp_path):
    (tmp_path / "f").write_text("")
    with pytest.raises(NotAFolderError, match=f"{tmp_path / 'f'}, which is a file"):
        atomic_write_text(tmp_path / "f" / "sub" / "x.txt", "x")


def _save_with_file_size_limit(path: str, result) -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write then fails with EFBIG instead of killing us
    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
    try:
        save_checkpoint(path, {"model": {"w": torch.ones(100_000)}})
        result.put(("ok", 0, ""))
    except Exception as err:  # noqa: BLE001
        result.put((type(err).__name__, getattr(err, "errno", None), str(err)))


def test_a_failed_save_names_the_file_and_keeps_the_previous_one(tmp_path):
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"model": {"w": torch.zeros(3)}})
    result = FORK.Queue()
    p = FORK.Process(target=_save_with_file_size_limit, args=(str(path), result))
    p.start()
    kind, code, message = result.get(timeout=60)
    p.join(60)
    assert kind == "OSError" and code == errno.EFBIG
    assert message.endswith(f"cannot write {path}: File too large")
    assert torch.equal(load_checkpoint(path)["model"]["w"], torch.zeros(3))
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temporary left


@pytest.fixture
def full_disk(tmp_path):
    """A real 64 KiB file system (tmpfs); needs root, skipped elsewhere (the test above covers the logic)."""
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)],
                                           capture_output=True).returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    yield mnt
    subprocess.run(["umount", "--lazy", str(mnt)], check=True)  # lazy: a traceback may still hold a file


def test_disk_full_during_a_save_is_an_oserror_naming_the_file(full_disk):
    path = full_disk / "last.pt"
    save_checkpoint(path, {"model": {"w": torch.zeros(3)}})
    big = {"model": {"w": torch.ones(100_000)}}
    with pytest.raises(OSError) as err:
        save_checkpoint(path, big)
    assert err.value.errno == errno.ENOSPC and str(path) in str(err.value)
    assert "No space left on device" in str(err.value) and "unexpected pos" not in str(err.value)
    # torch.save straight to a path (as other writers use atomic_write) fails in C++: translated too
    with pytest.raises(OSError) as err:
        atomic_write(full_disk / "bank.pt", lambda tmp: torch.save(big, tmp))
    assert err.value.errno == errno.ENOSPC and str(full_disk / "bank.pt") in str(err.value)
    assert torch.equal(load_checkpoint(path)["model"]["w"], torch.zeros(3))
    assert sorted(p.name for p in full_disk.iterdir()) == ["last.pt"]


# ---------------------------------------------------------------- checkpoints


def _resumable(model: torch.nn.Module) -> dict:
    """A state with the keys train() writes to last.pt."""
    from albar.training.checkpoint import rng_state

    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.randn(2, 3)).sum().backward()
    opt.step()
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    return {"model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
            "scaler": None, "step": 1, "epoch": 0, "batch_in_epoch": 1, "best_score": None, "history": [],
            "rng": [rng_state()], "epoch_stats": None}


def test_load_resume_state_accepts_a_last_checkpoint(tmp_path):
    model = torch.nn.Linear(3, 2)
    state = _resumable(model)
    save_checkpoint(tmp_path / "last.pt", state)
    loaded = load_resume_state(tmp_path / "last.pt")
    assert loaded["step"] == 1 and torch.equal(loaded["model"]["weight"], model.weight.detach())


def test_load_resume_state_refuses_weights_only_and_foreign_files(tmp_path):
    model = torch.nn.Linear(3, 2)
    cfg = TrainConfig()
    save_checkpoint(tmp_path / "best.pt", {"model": model.state_dict(), "epoch": 2, "val_top1": 50.0,
                                           **checkpoint_meta(cfg, ["a", "b"])})
    with pytest.raises(ValueError, match=r"best\.pt holds weights only.*resume from last\.pt"):
        load_resume_state(tmp_path / "best.pt")
    torch.save(model.state_dict(), tmp_path / "plain.pth")
    with pytest.raises(ValueError, match=r"plain\.pth is a plain state_dict"):
        load_resume_state(tmp_path / "plain.pth")
    # another trainer's checkpoint (mmaction2/mmengine: meta, state_dict, optimizer)
    torch.save({"meta": {"epoch": 3}, "state_dict": model.state_dict(), "optimizer": {}}, tmp_path / "epoch_3.pth")
    with pytest.raises(ValueError, match=r"epoch_3\.pth is not an albar checkpoint.*missing model.*state_dict"):
        load_resume_state(tmp_path / "epoch_3.pth")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ValueError, match=r"cannot read checkpoint to resume from .*notes\.txt"):
        load_resume_state(tmp_path / "notes.txt")
    torch.save([1, 2], tmp_path / "list.pt")
    with pytest.raises(ValueError, match=r"list\.pt is not an albar checkpoint: it holds a list"):
        load_resume_state(tmp_path / "list.pt")


def test_non_finite_weights_are_never_saved_nor_resumed(tmp_path):
    model = torch.nn.Linear(3, 2)
    state = _resumable(model)
    require_finite(state, 3, tmp_path / "last.pt")  # finite: fine
    bad = dict(state, model={**state["model"], "bias": torch.tensor([0.0, float("nan")])})
    with pytest.raises(FloatingPointError, match=r"model\.bias holds 1 non-finite values .*last\.pt is left"):
        require_finite(bad, 3, tmp_path / "last.pt")
    bad_opt = dict(state, optimizer={**state["optimizer"], "state": {0: {
        **state["optimizer"]["state"][0], "exp_avg": torch.full((2, 3), float("inf"))}}})
    with pytest.raises(FloatingPointError, match=r"optimizer\.state\.0\.exp_avg"):
        require_finite(bad_opt, 3, tmp_path / "last.pt")
    torch.save(bad, tmp_path / "old_nan_last.pt")  # as an older version could write it
    with pytest.raises(ValueError, match=r"old_nan_last\.pt: model\.bias holds 1 non-finite"):
        load_resume_state(tmp_path / "old_nan_last.pt")


def test_checkpoint_meta_describes_the_preprocessing_and_survives_a_save(tmp_path):
    cfg = load_config(None, ["data.num_frames=8", "data.stride=4", "data.crop_size=112", "data.test_view=4x3",
                             "data.mean=[0.5, 0.5, 0.5]"])
    meta = checkpoint_meta(cfg, ["brush_hair", "cartwheel"])
    assert set(meta) == {"config", "classes", "preprocessing", "albar_version"}
    assert meta["preprocessing"] == {"num_frames": 8, "stride": 4, "crop_size": 112, "resize_short": 256,
                                     "mean": [0.5, 0.5, 0.5], "std": [0.229, 0.224, 0.225], "test_view": "4x3",
                                     "train_crop": "random_resized", "hflip": True}
    save_checkpoint(tmp_path / "model.pt", {"model": {"w": torch.zeros(1)}, **meta})
    loaded = load_checkpoint(tmp_path / "model.pt")  # weights_only=True: plain types only
    assert loaded["classes"] == ["brush_hair", "cartwheel"]
    assert TrainConfig.model_validate(loaded["config"]) == cfg
    assert yaml.safe_load(dump_config(cfg)) == loaded["config"]


def test_ctrl_c_during_a_checkpoint_write_keeps_the_file_and_the_interrupt(tmp_path):
    """Ctrl-C lands inside torch.save's writer (a multi-GB checkpoint takes seconds): the C++ zip writer turns
    the KeyboardInterrupt into "unexpected pos" and both the file and the interrupt were lost. Now the write
    completes, then the KeyboardInterrupt arrives (the trainer saves and exits 130)."""
    state = {"w": torch.arange(100_000, dtype=torch.float32)}
    calls = []

    class CtrlCMidWrite:
        def __init__(self, fh):
            self.fh = fh

        def write(self, data):
            calls.append(len(data))
            if len(calls) == 2:
                signal.raise_signal(signal.SIGINT)  # as if the user pressed Ctrl-C now
            return self.fh.write(data)

        def flush(self):
            self.fh.flush()

    def write(tmp):
        with open(tmp, "wb") as fh:
            torch.save(state, CtrlCMidWrite(fh))

    with pytest.raises(KeyboardInterrupt):
        atomic_write(tmp_path / "last.pt", write)
    assert len(calls) > 2  # the write went on after the signal
    assert torch.equal(torch.load(tmp_path / "last.pt", weights_only=True)["w"], state["w"])
    with pytest.raises(KeyboardInterrupt):  # and the handler is the default one again
        signal.raise_signal(signal.SIGINT)
