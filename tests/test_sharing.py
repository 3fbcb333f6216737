"""Sharing a trained model: `albar export` writes model.safetensors + config.json + a model card (README.md with
the Hub's YAML front matter) + the run's results; `albar push` uploads exactly that folder; the folder, and
hf://user/repo, load wherever a checkpoint is accepted and predict what the checkpoint predicts.

No network: HF_HUB_OFFLINE=1 for every test; the Hub's upload and download calls are intercepted where a test
needs them, and the offline failure is the real huggingface_hub's. The data are HMDB51 as distributed
(FORMATS.md): ``<class>/<video>.avi`` (MPEG-4 Part 2) and ``<class>_test_split1.txt`` lines ``<video>.avi <1|2|0>``
with a trailing space; class names come from the split files.
"""

from __future__ import annotations

import json
import os
import shutil

os.environ["HF_HUB_OFFLINE"] = "1"  # before huggingface_hub is imported (it reads the variable once)

import huggingface_hub  # noqa: E402
import huggingface_hub.constants  # noqa: E402
import numpy as np
import pytest  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402
from data_fixtures import HMDB_CLASSES, small_hmdb51  # noqa: E402
from safetensors import safe_open  # noqa: E402

from albar.cli import main  # noqa: E402
from albar.models import build_model  # noqa: E402
from albar.sharing import load_model  # noqa: E402

CLASSES = HMDB_CLASSES
REPO = "someone/albar-hmdb-small3d"


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    """No test may reach the network: huggingface_hub reads HF_HUB_OFFLINE at import, so set both."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))


@pytest.fixture(scope="module")
def layout(tmp_path_factory):
    return small_hmdb51(tmp_path_factory.mktemp("hmdb"))


@pytest.fixture(scope="module")
def run(layout, tmp_path_factory):
    """One epoch of `albar train`: the run folder (model.pt, best.pt, last.pt, results.json)."""
    tmp = tmp_path_factory.mktemp("run")
    cfg = {
        "out_dir": str(tmp / "out"), "threads": 1, "log": {"tensorboard": False},
        "model": {"name": "small3d", "num_classes": 2, "kwargs": {"widths": [4, 4, 4, 4]}},
        "objective": {"w_adv": 0.5, "w_ent": 10.0, "w_gp": 10.0},
        "data": {"source": "hmdb51", "root": str(layout / "videos"), "splits": str(layout / "splits"), "split": 1,
                 "val_fraction": 0.25, "num_frames": 4, "stride": 1, "crop_size": 16, "resize_short": 16,
                 "num_workers": 0, "test_view": "first"},
        "optim": {"lr": 1e-3, "lr_reference_batch": None, "batch_size": 2, "epochs": 1, "warmup_epochs": 0},
    }
    (tmp / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["train", "--config", str(tmp / "cfg.yaml"), "--no-progress"]) == 0
    return tmp / "out"


@pytest.fixture(scope="module")
def exported(run, tmp_path_factory):
    out = tmp_path_factory.mktemp("exp") / "albar-hmdb"
    assert main(["export", str(run / "model.pt"), "--out", str(out), "--repo", REPO, "--license", "mit"]) == 0
    return out


def front_matter(card: str) -> dict:
    assert card.startswith("---\n")
    return yaml.safe_load(card.split("---\n")[1])


def predict_json(capsys, checkpoint, videos) -> list[dict]:
    capsys.readouterr()
    assert main(["predict", "--checkpoint", str(checkpoint), "--videos", *map(str, videos), "--json",
                 "--device", "cpu"]) == 0
    return json.loads(capsys.readouterr().out)


def videos_of(layout):
    return sorted((layout / "videos").rglob("*.avi"))[:3]


def test_export_writes_weights_with_their_description_and_a_card_with_the_bias_table(run, exported):
    assert sorted(p.name for p in exported.iterdir()) == ["README.md", "config.json", "model.safetensors",
                                                          "results.json"]
    checkpoint = torch.load(run / "model.pt", map_location="cpu", weights_only=True)
    run_results = json.loads((run / "results.json").read_text())
    (method, metrics), = run_results["methods"].items()

    # the weights, bit for bit, and a header that says what they are without any other file
    with safe_open(str(exported / "model.safetensors"), framework="pt") as fh:
        header = fh.metadata()
        assert set(fh.keys()) == set(checkpoint["model"])
        for key in fh.keys():
            assert torch.equal(fh.get_tensor(key), checkpoint["model"][key]), key
    assert json.loads(header["classes"]) == CLASSES
    assert json.loads(header["config"]) == checkpoint["config"]
    assert json.loads(header["preprocessing"]) == checkpoint["preprocessing"]

    config = json.loads((exported / "config.json").read_text())
    assert config["classes"] == CLASSES and config["config"] == checkpoint["config"]
    assert config["preprocessing"]["num_frames"] == 4 and config["preprocessing"]["crop_size"] == 16

    results = json.loads((exported / "results.json").read_text())
    assert results["methods"] == {method: metrics} and results["checkpoint"] == "model.safetensors"

    card = (exported / "README.md").read_text()
    meta = front_matter(card)
    assert meta["library_name"] == "albar" and meta["license"] == "mit"
    assert meta["pipeline_tag"] == "video-classification"
    reported = {m["name"]: m["value"] for m in meta["model-index"][0]["results"][0]["metrics"]}
    assert reported["IID top-1"] == round(metrics["iid_top1"], 2)
    # the Hub's own parser reads the metadata (a malformed model-index would be dropped by the Hub)
    hub_card = huggingface_hub.ModelCard(card)
    assert {r.metric_name: r.metric_value for r in hub_card.data.eval_results}["IID top-1"] == reported["IID top-1"]
    # the bias table, the recipe, the classes, how to load it
    assert f"| {method} | {metrics['iid_top1']:.2f} |" in card
    assert "SCUFO's chance level is 50.00" in card
    assert "| `objective.w_ent` | 10 |" in card and "| `optim.lr` | 0.001 |" in card
    assert "`brush_hair`, `cartwheel`" in card
    assert f"albar predict --checkpoint hf://{REPO}" in card


def test_the_exported_folder_predicts_what_the_checkpoint_predicts(run, exported, layout, capsys, tmp_path):
    videos = videos_of(layout)
    from_checkpoint = predict_json(capsys, run / "model.pt", videos)
    from_folder = predict_json(capsys, exported, videos)
    assert from_folder == from_checkpoint
    assert from_folder[0]["motion"][0]["class"] in CLASSES  # the names travel with the folder

    # in Python: the model from its folder, in eval mode, with what it records
    model, info = load_model(exported)
    reference = build_model("small3d", 2, str(run / "model.pt"), widths=[4, 4, 4, 4]).eval()
    x = torch.rand(2, 3, 4, 16, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(model(x), reference(x))
    assert not model.training and info.classes == CLASSES and info.preprocessing["num_frames"] == 4

    for source, out in ((run / "model.pt", tmp_path / "a"), (exported, tmp_path / "b")):
        assert main(["extract-features", "--checkpoint", str(source), "--videos", *map(str, videos), "--out",
                     str(out), "--device", "cpu"]) == 0
    names = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.npy"))
    assert len(names) == len(videos)
    assert names == sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*.npy"))
    for rel in names:
        np.testing.assert_array_equal(np.load(tmp_path / "a" / rel), np.load(tmp_path / "b" / rel))


def test_eval_and_model_weights_take_the_folder(run, exported, capsys, tmp_path):
    out = tmp_path / "eval"
    assert main(["eval", "--checkpoint", str(exported), "--out", str(out), "--device", "cpu", "--no-progress"]) == 0
    got = json.loads((out / "results.json").read_text())["methods"]["albar-hmdb"]
    (_, want), = json.loads((run / "results.json").read_text())["methods"].items()
    assert got["iid_top1"] == want["iid_top1"] and got["sets"]["iid"] == want["sets"]["iid"]

    # model.weights: a training run can start from the exported folder
    model = build_model("small3d", 2, str(exported), widths=[4, 4, 4, 4])
    state = torch.load(run / "model.pt", map_location="cpu", weights_only=True)["model"]
    assert all(torch.equal(model.state_dict()[k], v) for k, v in state.items())
    empty = tmp_path / "not-exported"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="without model.safetensors"):
        build_model("small3d", 2, str(empty), widths=[4, 4, 4, 4])


def test_training_starts_from_an_exported_folder(run, exported, tmp_path):
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    cfg["out_dir"] = str(tmp_path / "finetune")
    cfg["model"]["weights"] = str(exported)
    cfg["optim"]["lr"] = 1e-12  # the weights barely move: what the run ends with is what it started from
    (tmp_path / "ft.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["train", "--config", str(tmp_path / "ft.yaml"), "--no-progress"]) == 0
    start = torch.load(run / "model.pt", map_location="cpu", weights_only=True)["model"]
    end = torch.load(tmp_path / "finetune" / "model.pt", map_location="cpu", weights_only=True)["model"]
    for key, value in start.items():
        torch.testing.assert_close(end[key], value, rtol=0, atol=1e-6)


def test_push_uploads_exactly_the_exported_folder_and_hf_loads_it_back(run, exported, layout, capsys, monkeypatch,
                                                                       tmp_path):
    calls: dict = {}
    uploaded = tmp_path / "uploaded"

    def create_repo(self, repo_id, **kwargs):
        calls["create_repo"] = (repo_id, kwargs)

    def upload_folder(self, *, repo_id, folder_path, **kwargs):
        calls["upload_folder"] = (repo_id, kwargs)
        shutil.copytree(folder_path, uploaded)  # the folder is temporary: keep what the Hub would receive
        return huggingface_hub.CommitInfo(commit_url=f"https://huggingface.co/{repo_id}/commit/abc",
                                          commit_message="m", commit_description="", oid="abc")

    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", create_repo)
    monkeypatch.setattr(huggingface_hub.HfApi, "upload_folder", upload_folder)
    assert main(["push", str(run / "model.pt"), "--repo", REPO, "--license", "mit", "--private"]) == 0
    assert calls["create_repo"] == (REPO, {"private": True, "exist_ok": True, "repo_type": "model"})
    assert calls["upload_folder"][0] == REPO and calls["upload_folder"][1]["repo_type"] == "model"
    assert "hf://someone/albar-hmdb-small3d" in capsys.readouterr().out
    # what was uploaded is what `albar export` writes for that repository, byte for byte
    assert sorted(p.name for p in uploaded.iterdir()) == sorted(p.name for p in exported.iterdir())
    for f in exported.iterdir():
        assert (uploaded / f.name).read_bytes() == f.read_bytes(), f.name

    # hf://: the snapshot of the repository (intercepted: no network) loads like the checkpoint
    downloads = []

    def snapshot_download(repo_id, revision=None, allow_patterns=None, **kwargs):
        downloads.append((repo_id, revision))
        assert "model.safetensors" in allow_patterns and "README.md" in allow_patterns
        return str(uploaded)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    videos = videos_of(layout)
    assert predict_json(capsys, f"hf://{REPO}@v1", videos) == predict_json(capsys, run / "model.pt", videos)
    assert downloads[0] == (REPO, "v1")
    model = build_model("small3d", 2, f"hf://{REPO}", widths=[4, 4, 4, 4])  # model.weights: hf://
    state = torch.load(run / "model.pt", map_location="cpu", weights_only=True)["model"]
    assert all(torch.equal(model.state_dict()[k], v) for k, v in state.items())


def test_hf_source_not_in_the_cache_while_offline_is_a_clean_error(capsys):
    # the real huggingface_hub, offline, with an empty cache
    assert main(["predict", "--checkpoint", f"hf://{REPO}", "--videos", __file__]) == 2
    err = capsys.readouterr().err
    assert err.startswith("albar: error: hf://someone/albar-hmdb-small3d: cannot get") and "Traceback" not in err
    assert main(["predict", "--checkpoint", "hf://not-a-repo", "--videos", __file__]) == 2
    assert "write hf://<user or org>/<repo>" in capsys.readouterr().err


def test_results_of_other_weights_never_reach_the_card(run, tmp_path, capsys):
    # last.pt holds the last epoch; results.json describes best.pt: not these weights
    out = tmp_path / "last"
    assert main(["export", str(run / "last.pt"), "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "describes 'best.pt'" in err and "no bias table" in err
    assert not (out / "results.json").exists()
    card = (out / "README.md").read_text()
    assert "model-index" not in front_matter(card) and "No bias evaluation was exported" in card
    # asked for explicitly, it is refused
    assert main(["export", str(run / "last.pt"), "--out", str(tmp_path / "x"), "--results",
                 str(run / "results.json")]) == 2
    assert "describes 'best.pt'" in capsys.readouterr().err


def test_a_folder_is_not_overwritten_and_mixed_exports_are_refused(run, exported, tmp_path, capsys):
    assert main(["export", str(run / "model.pt"), "--out", str(exported)]) == 2
    assert "pass --overwrite" in capsys.readouterr().err
    # a config.json from another export beside these weights: refused, naming both files
    mixed = tmp_path / "mixed"
    shutil.copytree(exported, mixed)
    config = json.loads((mixed / "config.json").read_text())
    config["classes"] = ["run", "walk"]
    (mixed / "config.json").write_text(json.dumps(config))
    assert main(["predict", "--checkpoint", str(mixed), "--videos", __file__]) == 2
    err = capsys.readouterr().err
    assert "config.json and" in err and "model.safetensors disagree on 'classes'" in err
