import json
import os

import pytest
import torch
from accelerate.utils import set_seed
from helpers import relative_weight_gap

from albar.cli.demo import demo_config
from albar.config import ConfigError, load_config, parse_config
from albar.data import ClipDataset
from albar.models import build_model
from albar.training import NonFiniteLossError, train, warmup_cosine


def small_cfg(**objective):
    cfg = demo_config(seed=0, epochs=2, objective=objective or {"w_adv": 1.0, "w_ent": 4.0, "w_gp": 10.0})
    cfg.model.num_classes = 4
    cfg.data.num_frames = 4
    cfg.data.crop_size = 16
    cfg.optim.batch_size = 8
    return cfg


def train_set(bench):
    return ClipDataset(bench.items("train"), 4, 1, mode="random", seed=0)


def test_training_is_reproducible_and_saves_weights(tiny_benchmark, tmp_path):
    cfg = small_cfg()
    val = ClipDataset(tiny_benchmark.items("val"), 4)
    a = train(cfg, train_set(tiny_benchmark), val, out_dir=tmp_path, progress=False)
    b = train(cfg, train_set(tiny_benchmark), val, progress=False)
    assert len(a.history) == 2
    assert {"train_loss", "train_ce", "train_static_ce", "train_neg_entropy", "train_gp", "val_top1", "lr"} <= set(
        a.history[0]
    )
    for x, y in zip(a.model.state_dict().values(), b.model.state_dict().values()):
        assert torch.equal(x, y)
    saved = torch.load(tmp_path / "last.pt", weights_only=True)
    assert torch.equal(saved["model"]["fc.weight"], a.model.state_dict()["fc.weight"])
    assert saved["epoch"] == 2 and saved["step"] == 8 and (tmp_path / "best.pt").is_file()
    steps = [json.loads(line) for line in (tmp_path / "steps.jsonl").read_text().splitlines()]
    assert len(steps) == 8 and a.history[-1]["lr"] == steps[-1]["lr"]  # the LR the last step used
    # 8 steps, 4 of warm-up: the last step is 3/4 down the cosine, and the schedule reaches 0 after it
    assert steps[-1]["lr"] == pytest.approx(3e-3 * warmup_cosine(7, 8, 4)) and steps[-1]["lr"] > 0
    assert [s["lr"] for s in steps[:4]] == pytest.approx([3e-3 * f for f in (0.25, 0.5, 0.75, 1.0)])


def test_non_finite_loss_stops_with_the_step_and_terms(tiny_benchmark, monkeypatch):
    import albar.training.trainer as trainer

    real = trainer.build_model

    def poisoned(*args, **kwargs):
        model = real(*args, **kwargs)
        model.fc.register_forward_hook(lambda m, i, o: o * float("nan"))
        return model

    monkeypatch.setattr(trainer, "build_model", poisoned)
    with pytest.raises(NonFiniteLossError, match=r"epoch 1, optimiser step 1:.*'loss'"):
        train(small_cfg(), train_set(tiny_benchmark), progress=False)


def test_warmup_then_cosine_schedule():
    factors = [warmup_cosine(s, 10, 2) for s in range(10)]
    assert factors[:2] == [0.5, 1.0]
    assert factors[2] == pytest.approx(1.0) and factors[-1] < factors[5] < factors[2]
    assert warmup_cosine(10, 10, 2) == pytest.approx(0.0)


def test_config_errors_name_the_key():
    with pytest.raises(ConfigError, match=r"optim\.lrr"):
        parse_config({"optim": {"lrr": 1}})
    with pytest.raises(ConfigError, match=r"objective\.w_adv"):
        parse_config({"objective": {"w_adv": "a lot"}})
    assert load_config(None, ["mixed_precision=no"]).mixed_precision == "no"  # YAML's `no` is false
    with pytest.raises(ConfigError, match=r"objective\.frame"):
        parse_config({"objective": {"frame": "centre"}})


def test_a_save_that_fails_midway_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    import errno

    from albar.training.checkpoint import load_checkpoint, save_checkpoint

    path = tmp_path / "last.pt"
    save_checkpoint(path, {"step": 1, "w": torch.ones(3)})
    umask = os.umask(0o022)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # readable by the team, as a plain write would be

    def disk_full(obj, f):
        if hasattr(f, "write"):  # torch.save writes to a path or to an open file
            f.write(b"half a checkpoint")
        else:
            with open(f, "wb") as fh:
                fh.write(b"half a checkpoint")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(OSError, match="No space left"):
        save_checkpoint(path, {"step": 2, "w": torch.zeros(3)})
    assert load_checkpoint(path)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temporary file left behind
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="bad.pt"):
        load_checkpoint(tmp_path / "bad.pt")


def test_gradient_accumulation_matches_the_larger_batch(tiny_benchmark):
    """2 micro-batches of 4 accumulate to the step of one batch of 8 (plain CE, same clips, same order)."""
    big = small_cfg(w_adv=0.0, w_ent=0.0, w_gp=0.0)
    big.optim.epochs = 1
    small = big.model_copy(deep=True)
    small.optim.batch_size, small.optim.grad_accum = 4, 2
    a = train(big, train_set(tiny_benchmark), progress=False)
    b = train(small, train_set(tiny_benchmark), progress=False)
    set_seed(0)
    init = build_model("small3d", 4).state_dict()
    assert relative_weight_gap(a.model.state_dict(), b.model.state_dict(), init) < 0.02
    wrong = big.model_copy(deep=True)
    wrong.optim.epochs = 2  # twice the steps: what stepping on every micro-batch would look like
    c2 = train(wrong, train_set(tiny_benchmark), progress=False)
    assert relative_weight_gap(a.model.state_dict(), c2.model.state_dict(), init) > 0.2
    clipped = big.model_copy(deep=True)
    clipped.optim.grad_clip = 1e-6  # a tiny clip norm changes the update
    c = train(clipped, train_set(tiny_benchmark), progress=False)
    assert not torch.allclose(a.model.state_dict()["fc.weight"], c.model.state_dict()["fc.weight"], atol=1e-5)


def test_epoch_means_of_each_term_cover_the_steps_that_computed_it(tiny_benchmark, tmp_path):
    """With a ramp, ALBAR's first step has weight 0 and computes no static terms: the epoch's mean static CE is
    over the steps that did (epochs.csv and TensorBoard read these records)."""
    cfg = small_cfg(w_adv=0.5, w_ent=1.0, w_gp=1.0, ramp_epochs=1)
    run = train(cfg, train_set(tiny_benchmark), out_dir=tmp_path, progress=False)
    steps = [json.loads(line) for line in (tmp_path / "steps.jsonl").read_text().splitlines()]
    first = [s for s in steps if s["epoch"] == 1]
    assert "static_ce" not in first[0] and all("static_ce" in s for s in first[1:])
    for term in ("static_ce", "gp", "loss"):
        values = [s[term] for s in first if term in s]
        assert run.history[0][f"train_{term}"] == pytest.approx(sum(values) / len(values), rel=1e-6)
