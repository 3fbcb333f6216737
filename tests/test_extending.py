"""The extension points of docs/extending.md, used as a researcher would: a loss, a batch method and a dataset
layout, each registered from this file alone and trained for one step."""

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from pydantic import BaseModel, Field

from albar.cli.demo import demo_config
from albar.config import ConfigError, apply_fragment, config_from_data, load_config
from albar.data import ClipDataset
from albar.data.bundle import build_data
from albar.data.layouts import LAYOUTS, DatasetLayout, DatasetSplit, read_csv_rows, register_layout
from albar.methods import MixedBatch, build_method, method_entry
from albar.methods.batch import _bcast, _check, _kept_labels, _select
from albar.methods.registry import METHODS, register_method
from albar.objectives import LossTerms, Objective, StepInput
from albar.objectives.registry import OBJECTIVES, register_objective
from albar.training import train

CALLS: list[dict] = []


# ------------------------------------------------------------------------ a loss: label-smoothed CE

class SmoothingParams(BaseModel):
    smoothing: float = Field(default=0.1, ge=0, lt=1)


@register_objective("toy_smoothed", params=SmoothingParams)
class Smoothed(Objective):
    def __init__(self, p: SmoothingParams) -> None:
        super().__init__()
        self.smoothing = p.smoothing

    def step_loss(self, model, batch: StepInput) -> LossTerms:
        logits = model(batch.clip)
        loss = F.cross_entropy(logits, batch.labels, label_smoothing=self.smoothing)
        CALLS.append({"objective": self.smoothing, "step": batch.step, "per_epoch": batch.steps_per_epoch,
                      "loss": float(loss.detach())})
        return LossTerms(total=loss, logits=logits, parts={"smoothed_ce": loss})


# ------------------------------------------------------------------------ a batch method: darken clips

class DarkenParams(BaseModel):
    factor: float = Field(default=0.5, gt=0, le=1)


@register_method("toy_darken", params=DarkenParams, default_prob=0.25)
def darken(p: DarkenParams):
    def transform(clip, labels, generator, prob) -> MixedBatch:
        _check(clip, labels)
        applied = _select(clip.shape[0], prob, generator)
        out = torch.where(_bcast(applied, clip), p.factor * clip, clip)
        CALLS.append({"method": p.factor, "prob": prob, "applied": int(applied.sum())})
        return _kept_labels(clip, labels, out, applied, torch.arange(clip.shape[0]), {})
    return transform


# ------------------------------------------------------------------------ a dataset layout: CSV + class folder

@register_layout("toy_csv")
class ToyCSV(DatasetLayout):
    """data.splits: a folder with classes.txt and train.csv / test.csv rows ``video,class``; videos under root."""

    files = "toy CSVs"

    def classes(self, cfg) -> list[str]:
        self.check(cfg)
        return (cfg.splits / "classes.txt").read_text().split()

    def split(self, cfg, subset, classes) -> DatasetSplit:
        from albar.data.lists import ClipItem

        rows = read_csv_rows(cfg.splits / f"{subset}.csv", ["video", "class"])
        items = [ClipItem(cfg.root / r["video"], classes.index(r["class"]), Path(r["video"]).stem) for r in rows]
        return DatasetSplit(subset, items, list(classes), origin=str(cfg.splits / f"{subset}.csv"))


@pytest.fixture(autouse=True)
def fresh_calls():
    CALLS.clear()
    yield
    CALLS.clear()


@pytest.fixture(scope="module", autouse=True)
def unregister():
    yield
    OBJECTIVES.remove("toy_smoothed")
    METHODS.remove("toy_darken")
    LAYOUTS.remove("toy_csv")


def one_step_cfg(bench, **sections):
    """The demo recipe on the tiny benchmark: 32 training clips in one batch, one epoch: one optimiser step."""
    data = {"model": {"name": "small3d", "num_classes": bench.spec.num_classes},
            "data": {"num_frames": bench.spec.num_frames, "crop_size": bench.spec.size},
            "optim": {"batch_size": 32, "epochs": 1, "warmup_epochs": 0}, **sections}
    return apply_fragment(demo_config(0, 1, {}), data)


def train_clips(bench) -> ClipDataset:
    return ClipDataset(bench.items("train"), bench.spec.num_frames, 1, mode="random", seed=0)


def test_a_loss_registered_in_a_test_file_trains_one_step(tiny_benchmark, tmp_path):
    cfg = one_step_cfg(tiny_benchmark, objective={"name": "toy_smoothed", "smoothing": 0.2})
    assert cfg.objective.smoothing == 0.2 and cfg.objective.model_dump() == {"name": "toy_smoothed",
                                                                             "smoothing": 0.2}
    run = train(cfg, train_clips(tiny_benchmark), out_dir=tmp_path, progress=False)
    assert CALLS == [{"objective": 0.2, "step": 0, "per_epoch": 1, "loss": pytest.approx(CALLS[0]["loss"])}]
    logged = json.loads((tmp_path / "steps.jsonl").read_text())
    assert logged["smoothed_ce"] == pytest.approx(CALLS[0]["loss"]) and run.step == 1
    assert run.history[0]["train_smoothed_ce"] == pytest.approx(CALLS[0]["loss"])
    # its parameters are validated like the built-ins', naming the key
    with pytest.raises(ConfigError, match=r"objective\.smoothing"):
        config_from_data({"objective": {"name": "toy_smoothed", "smoothing": 1.5}})
    with pytest.raises(ConfigError, match=r"objective\.w_adv: .*not of 'toy_smoothed'"):
        config_from_data({"objective": {"name": "toy_smoothed", "w_adv": 0.5}})


def test_a_batch_method_registered_in_a_test_file_trains_one_step_with_albar(tiny_benchmark):
    cfg = one_step_cfg(tiny_benchmark, method={"name": "toy_darken", "factor": 0.25},
                       objective={"name": "albar", "w_adv": 0.5, "w_ent": 1.0, "w_gp": 1.0})
    assert cfg.method.effective_prob == 0.25 and method_entry("toy_darken").mixes_labels is False
    run = train(cfg, train_clips(tiny_benchmark), progress=False)
    assert [c["method"] for c in CALLS] == [0.25] and CALLS[0]["prob"] == 0.25 and 0 < CALLS[0]["applied"] < 32
    assert {"train_static_ce", "train_gp"} <= set(run.history[0])  # ALBAR + the new method in one step
    method = build_method({"name": "toy_darken", "prob": 1.0})
    clip = torch.rand(2, 3, 4, 8, 8)
    assert torch.equal(method(clip, torch.tensor([0, 1]), torch.Generator()).clip, 0.5 * clip)
    with pytest.raises(ValueError, match="bank given, but batch method 'toy_darken' does not use one"):
        build_method({"name": "toy_darken"}, bank=object())


def test_a_dataset_layout_registered_in_a_test_file_trains_one_step(tiny_benchmark, tmp_path):
    bench = tiny_benchmark
    splits = tmp_path / "splits"
    splits.mkdir()
    (splits / "classes.txt").write_text("\n".join(bench.classes))
    for subset, name in (("train", "train"), ("test", "test")):
        rows = [f"{it.source.relative_to(bench.root)},{bench.classes[it.label]}" for it in bench.items(name)]
        (splits / f"{subset}.csv").write_text("video,class\n" + "\n".join(rows) + "\n")
    cfg = one_step_cfg(bench, data={"source": "toy_csv", "root": str(bench.root), "splits": str(splits),
                                    "num_frames": bench.spec.num_frames, "crop_size": bench.spec.size,
                                    "val_fraction": 0.25, "cache": False},
                       optim={"batch_size": 24, "epochs": 1, "warmup_epochs": 0})
    data = build_data(cfg.data, cfg.seed, cfg.model.num_classes, progress=False)
    assert data.classes == bench.classes and len(data.train) + len(data.val) == len(bench.items("train"))
    assert [it.source for it in data.test.items] == [it.source for it in bench.items("test")]
    run = train(cfg, data.train, data.val, progress=False)
    assert run.step == 1 and 0 <= run.history[0]["val_top1"] <= 100
    with pytest.raises(ConfigError, match="unknown data source 'toy_csvv'"):
        config_from_data({"data": {"source": "toy_csvv"}})


def test_objective_ce_is_albar_with_zero_weights(tiny_benchmark):
    """Plain CE as its own objective gives the same weights, bit for bit, as ALBAR with all weights 0."""
    ce = one_step_cfg(tiny_benchmark, objective={"name": "ce"}, optim={"batch_size": 8, "epochs": 1,
                                                                      "warmup_epochs": 0})
    zero = apply_fragment(ce, {"objective": {"name": "albar", "w_adv": 0, "w_ent": 0, "w_gp": 0}})
    a = train(ce, train_clips(tiny_benchmark), progress=False)
    b = train(zero, train_clips(tiny_benchmark), progress=False)
    assert a.step == b.step == 4 and a.history[0].keys() == b.history[0].keys()
    assert all(torch.equal(x, y) for x, y in zip(a.model.state_dict().values(), b.model.state_dict().values()))


def test_switching_the_objective_of_a_config_file(tmp_path):
    """objective.name=ce on a file with ALBAR weights is refused (they would be ignored); replacing the section
    works, as does a fragment."""
    base = Path(__file__).resolve().parents[1] / "configs" / "synthetic.yaml"
    with pytest.raises(ConfigError, match=r"objective\.w_adv: w_adv is set but unused"):
        load_config(base, ["objective.name=ce"])
    assert load_config(base, ["objective={name: ce}"]).objective.model_dump() == {"name": "ce"}
    cfg = apply_fragment(load_config(base), {"objective": {"name": "ce"}, "method": {"name": "mixup"}})
    assert cfg.objective.name == "ce" and cfg.method.mixup_alpha == 0.2


# ------------------------------------------------------------------------ `albar --plugin`: no script needed

PLUGIN = '''
import torch.nn.functional as F
from pydantic import BaseModel

from albar.objectives import LossTerms, Objective
from albar.objectives.registry import register_objective


class Params(BaseModel):
    scale: float = 1.0


@register_objective("plugin_scaled_ce", params=Params)
class ScaledCE(Objective):
    def __init__(self, p):
        super().__init__()
        self.scale = p.scale

    def step_loss(self, model, batch):
        logits = model(batch.clip)
        return LossTerms(self.scale * F.cross_entropy(logits, batch.labels), logits)
'''


def test_a_plugin_file_registers_an_objective_for_the_command_line(tiny_benchmark, tmp_path, capsys, monkeypatch):
    from helpers import write_config

    from albar.cli import main

    plugin = tmp_path / "my_albar_ext.py"
    plugin.write_text(PLUGIN)
    cfg = write_config(tmp_path, tiny_benchmark, "run", **{"optim.epochs": 1, "checkpoint.every_steps": 0})
    fragment = "objective={name: plugin_scaled_ce, scale: 2.0}"
    assert main(["train", "--config", str(cfg), "--no-progress", fragment]) == 2  # without it: an unknown name
    assert "plugin_scaled_ce" in capsys.readouterr().err
    assert main(["--plugin", str(plugin), "train", "--config", str(cfg), "--no-progress", fragment]) == 0
    saved = torch.load(tmp_path / "run" / "last.pt", weights_only=True)["config"]["objective"]
    assert saved == {"name": "plugin_scaled_ce", "scale": 2.0}
    # the environment variable does the same (accelerate launch, scripts); a second load is a no-op
    monkeypatch.setenv("ALBAR_PLUGINS", str(plugin))
    assert main(["--plugin", str(plugin), "eval", "--checkpoint", str(tmp_path / "run" / "last.pt"), "--out",
                 str(tmp_path / "eval"), "--no-progress"]) == 0
    monkeypatch.delenv("ALBAR_PLUGINS")
    capsys.readouterr()
    assert main(["--plugin", "no_such_albar_plugin", "models"]) == 2
    assert "--plugin no_such_albar_plugin: no module named 'no_such_albar_plugin'" in capsys.readouterr().err
    assert main(["--plugin", str(tmp_path / "absent.py"), "models"]) == 2
    assert "absent.py: no such file" in capsys.readouterr().err
    from albar.cli import _command

    assert _command(["--plugin", "check-data.py", "check-data", "--help"]) == "check-data"  # the value is no command
