"""HF transformers video classifiers in the registry (``hf:videomae``, ``hf:timesformer``, ``hf:vivit``,
``hf:<model id>``): albar's (B, C, T, H, W) clips in, the head sized to the dataset, ALBAR's gradient penalty
through them (a double backward), and a VideoMAE that trains through `albar train`. Tiny sizes on a CPU; no
network (a "model id" here is a local folder written by transformers' save_pretrained)."""

from __future__ import annotations

import json
import os

os.environ["HF_HUB_OFFLINE"] = "1"  # before transformers/huggingface_hub read it

import pytest  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402
from helpers import write_config  # noqa: E402

transformers = pytest.importorskip("transformers")

from albar import albar_loss  # noqa: E402
from albar.cli import main  # noqa: E402
from albar.evaluation.inference import feature_extractor  # noqa: E402
from albar.models import build_model, list_models, replace_head  # noqa: E402

# 16 px, 4 frames, one layer of width 32: ~20k parameters
TINY = {"image_size": 16, "patch_size": 8, "num_frames": 4, "hidden_size": 32, "num_hidden_layers": 1,
        "num_attention_heads": 2, "intermediate_size": 64}
FAMILIES = {"hf:videomae": {**TINY, "tubelet_size": 2}, "hf:timesformer": TINY,
            "hf:vivit": {**{k: v for k, v in TINY.items() if k != "patch_size"}, "tubelet_size": [2, 8, 8]}}
DOUBLE_BACKWARD_FAILS = "derivative for .*scaled_dot_product.* is not implemented"


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    """No network even where huggingface_hub was imported before this module set HF_HUB_OFFLINE."""
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


def clips(batch=3, frames=4, size=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 3, frames, size, size, generator=g)  # albar's layout: (B, C, T, H, W)


def test_the_registry_lists_the_hf_families():
    assert {"hf:videomae", "hf:timesformer", "hf:vivit"} <= set(list_models())


@pytest.mark.parametrize("name", list(FAMILIES))
def test_hf_models_take_albar_clips_and_have_a_head_per_dataset(name):
    torch.manual_seed(0)
    model = build_model(name, 5, **FAMILIES[name]).eval()
    x = clips()
    with torch.no_grad():
        logits = model(x)
        # the same clips handed to the transformers model in its own layout, (B, T, C, H, W)
        reference = model.hf(pixel_values=x.permute(0, 2, 1, 3, 4)).logits
    assert logits.shape == (3, 5)
    torch.testing.assert_close(logits, reference, rtol=0, atol=0)
    replace_head(model, 7)
    assert model(x).shape == (3, 7)
    features = feature_extractor(model)(x)
    assert features.shape == (3, TINY["hidden_size"])


@pytest.mark.parametrize("name", list(FAMILIES))
def test_albar_gradient_penalty_double_backward_through_hf_models(name):
    torch.manual_seed(0)
    model = build_model(name, 4, **FAMILIES[name])
    x, y = clips(4), torch.tensor([0, 1, 2, 3])
    terms = albar_loss(model, x, y, w_adv=1.0, w_ent=4.0, w_gp=10.0)
    assert float(terms.gp.detach()) > 0
    terms.total.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    # the penalty's own gradient reaches the weights (the second backward is not cut off)
    model.zero_grad()
    only_gp = albar_loss(model, x, y, w_adv=0.0, w_ent=0.0, w_gp=1.0)
    (only_gp.total - only_gp.ce).backward()
    assert sum(float(p.grad.abs().sum()) for p in model.parameters() if p.grad is not None) > 0


def test_sdpa_attention_trains_albar_exactly_and_the_cli_refuses_kernels_without_a_double_backward(
        tiny_benchmark, tmp_path, capsys):
    from albar.objectives import gradient_penalty

    x, y = clips(2), torch.tensor([0, 1])
    grads = {}
    for attn in ("sdpa", "eager"):
        torch.manual_seed(0)
        model = build_model("hf:videomae", 4, **FAMILIES["hf:videomae"], attn_implementation=attn).train()
        if attn == "sdpa":  # the fused kernel alone cannot be differentiated twice...
            s = x.clone().requires_grad_(True)
            with pytest.raises(RuntimeError, match=DOUBLE_BACKWARD_FAILS):
                gradient_penalty(model(s), s).backward()
            model.zero_grad(set_to_none=True)
        albar_loss(model, x, y, w_gp=10.0).total.backward()  # ...ALBAR's penalty pass runs its math kernel
        grads[attn] = torch.cat([p.grad.flatten() for p in model.parameters()])
    assert torch.allclose(grads["sdpa"], grads["eager"], rtol=1e-4, atol=1e-6)
    # with the static pass checkpointed too: its recomputation in backward runs the math kernel again
    torch.manual_seed(0)
    model = build_model("hf:videomae", 4, **FAMILIES["hf:videomae"], attn_implementation="sdpa").train()
    albar_loss(model, x, y, w_gp=10.0, checkpoint_static=True).total.backward()
    assert torch.allclose(torch.cat([p.grad.flatten() for p in model.parameters()]), grads["eager"], rtol=1e-4,
                          atol=1e-6)
    # transformers' default for VideoMAE is sdpa: the model albar builds without attn_implementation
    assert build_model("hf:videomae", 4, **FAMILIES["hf:videomae"]).hf.config._attn_implementation == "sdpa"
    cfg = write_config(tmp_path, tiny_benchmark, "flash", **{"model.name": "hf:videomae", "model.kwargs": {
        **FAMILIES["hf:videomae"], "attn_implementation": "flash_attention_2"}})
    assert main(["train", "--config", str(cfg), "--no-progress"]) == 2
    assert "model.kwargs.attn_implementation=flash_attention_2" in capsys.readouterr().err
    assert not (tmp_path / "flash").exists()  # refused before any work


def test_config_errors_name_the_key(tiny_benchmark, tmp_path, capsys):
    with pytest.raises(ValueError, match="model.kwargs.hiden_size: hf:videomae's config has no such field"):
        build_model("hf:videomae", 4, hiden_size=32)
    with pytest.raises(ValueError, match="unknown HF model family 'videomea'"):
        build_model("hf:videomea", 4)
    # clips of 16 px into a model made for 32: said before any data are read, with both keys
    cfg = write_config(tmp_path, tiny_benchmark, "size", **{"model.name": "hf:vivit",
                       "model.kwargs": {**FAMILIES["hf:vivit"], "image_size": 32}})
    assert main(["train", "--config", str(cfg), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "model.kwargs.image_size=32 but data.crop_size=16" in err


def test_pretrained_id_loads_its_weights_with_a_new_head(tmp_path):
    torch.manual_seed(1)
    source = transformers.VideoMAEForVideoClassification(transformers.VideoMAEConfig(**FAMILIES["hf:videomae"],
                                                                                     num_labels=400))
    source.save_pretrained(tmp_path / "videomae-k400")
    name = f"hf:{tmp_path / 'videomae-k400'}"  # a folder stands for a Hub id: from_pretrained reads both
    model = build_model(name, 6)
    encoder = {k: v for k, v in source.state_dict().items() if not k.startswith("classifier")}
    mine = model.hf.state_dict()
    assert all(torch.equal(mine[k], v) for k, v in encoder.items())
    assert model.hf.classifier.out_features == 6
    assert model(clips()).shape == (3, 6)
    # kwargs override the id's config; unknown ones are refused
    with pytest.raises(ValueError, match="model.kwargs.not_a_field"):
        build_model(name, 6, not_a_field=1)


def test_videomae_trains_one_albar_step_through_albar_train_and_predicts_from_its_export(tiny_benchmark, tmp_path,
                                                                                        capsys):
    n_train = tiny_benchmark.spec.train
    cfg = write_config(tmp_path, tiny_benchmark, "videomae", **{
        "model.name": "hf:videomae", "model.kwargs": FAMILIES["hf:videomae"],
        "optim.batch_size": n_train, "optim.epochs": 1, "optim.warmup_epochs": 0, "objective.ramp_epochs": 0})
    assert main(["train", "--config", str(cfg), "--no-progress"]) == 0
    out = tmp_path / "videomae"
    steps = [json.loads(line) for line in (out / "steps.jsonl").read_text().splitlines()]
    assert len(steps) == 1 and steps[0]["gp"] > 0 and all(
        v == v and abs(v) != float("inf") for v in steps[0].values() if isinstance(v, float))
    results = json.loads((out / "results.json").read_text())
    assert 0 <= results["methods"]["run"]["iid_top1"] <= 100
    # the export reloads the trained weights exactly
    saved = torch.load(out / "model.pt", map_location="cpu", weights_only=True)
    assert saved["config"]["model"]["name"] == "hf:videomae"
    assert main(["export", str(out / "model.pt"), "--out", str(tmp_path / "exp")]) == 0
    video = sorted(p for p in tiny_benchmark.root.rglob("*.mp4"))[0]
    capsys.readouterr()
    rows = []
    for source in (out / "model.pt", tmp_path / "exp"):
        assert main(["predict", "--checkpoint", str(source), "--videos", str(video), "--json", "--device", "cpu"]) == 0
        rows.append(json.loads(capsys.readouterr().out))
    assert rows[0] == rows[1]
    card = (tmp_path / "exp" / "README.md").read_text()
    assert yaml.safe_load(card.split("---\n")[1])["tags"][-1] == "videomae"
