"""W&B through accelerate's tracker (``log.wandb: true``), offline: the run's config, per-step losses, epoch
metrics and final bias metrics land in a W&B run in the run folder, readable back from the ``.wandb`` file.
Without the package, the config is refused before any work with the install hint."""

from __future__ import annotations

import json
import struct
import sys

import pytest
from helpers import write_config

from albar.cli import main

wandb = pytest.importorskip("wandb")


@pytest.fixture
def offline_wandb(monkeypatch, tmp_path):
    """Offline, and every W&B folder under tmp: nothing written to the home folder, no network."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_DIR", raising=False)  # the default then: the run folder
    for var, sub in (("WANDB_CONFIG_DIR", "config"), ("WANDB_CACHE_DIR", "cache"), ("WANDB_DATA_DIR", "data")):
        monkeypatch.setenv(var, str(tmp_path / "wandb-home" / sub))
    monkeypatch.chdir(tmp_path)


def read_records(path):
    """Protobuf records of a ``.wandb`` file: a 7-byte header, then LevelDB-log blocks of 32 KiB whose chunks
    (crc32, length, type: 1 full, 2 first, 3 middle, 4 last) carry the records."""
    from wandb.proto import wandb_internal_pb2

    data, block = path.read_bytes(), 32768
    assert data[:4] == b":W&B"
    pos, chunks, records = 7, b"", []
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a chunk header is padding
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        body, pos = data[pos + 7:pos + 7 + length], pos + 7 + length
        if kind in (1, 2):
            chunks = body
        elif kind in (3, 4):
            chunks += body
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(chunks)
            records.append(record)
    return records


def test_training_logs_config_steps_and_bias_metrics_to_an_offline_wandb_run(tiny_benchmark, tmp_path,
                                                                            offline_wandb):
    cfg = write_config(tmp_path, tiny_benchmark, "wb", **{"log.wandb": True, "log.project": "albar-test",
                                                          "optim.epochs": 2})
    assert main(["train", "--config", str(cfg), "--no-progress"]) == 0
    wandb.teardown()  # run.finish() may return before W&B's writer process has flushed the file; this waits
    out = tmp_path / "wb"
    files = list((out / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(files) == 1, "one offline W&B run, inside the run folder"
    assert not (tmp_path / "wandb").exists()  # nothing in the working directory
    records = read_records(files[0])
    run = next(r.run for r in records if r.WhichOneof("record_type") == "run")
    assert run.project == "albar-test" and run.display_name == "wb"
    config = {i.key: json.loads(i.value_json) for r in records if r.WhichOneof("record_type") == "config"
              for i in r.config.update}
    assert config["model.name"] == "small3d" and config["objective.w_gp"] == 10.0
    history = {}
    for r in records:
        if r.WhichOneof("record_type") == "history":
            row = {i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in r.history.item}
            history.setdefault(row["_step"], {}).update(row)

    steps = [json.loads(line) for line in (out / "steps.jsonl").read_text().splitlines()]
    assert sorted(history) == [s["step"] for s in steps]  # one W&B step per optimiser step, none dropped
    for s in steps:  # every term of every step, as steps.jsonl has it (the static terms after the ramp's step 0)
        terms = {k: v for k, v in s.items() if k not in ("step", "epoch", "time")}
        assert {k: history[s["step"]][f"train/{k}"] for k in terms} == pytest.approx(terms)
    assert "train/gp" in history[steps[-1]["step"]]
    last = history[steps[-1]["step"]]
    (_, results), = json.loads((out / "results.json").read_text())["methods"].items()
    assert last["test/iid_top1"] == pytest.approx(results["iid_top1"])
    assert last["test/scuba_top1"] == pytest.approx(results["scuba_top1"])
    assert last["epoch/epoch"] == 2 and "epoch/val_top1" in last


def test_wandb_missing_is_refused_before_any_work(tiny_benchmark, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "wandb", None)  # `import wandb` now fails, as when it is not installed
    cfg = write_config(tmp_path, tiny_benchmark, "nowb", **{"log.wandb": True})
    assert main(["train", "--config", str(cfg), "--no-progress"]) == 2
    assert "pip install 'albar[wandb]'" in capsys.readouterr().err
    assert not (tmp_path / "nowb").exists()
