import pytest
import torch

from albar.models import Small3DCNN, build_model, list_models


def test_registry_holds_every_torchvision_video_classifier():
    assert {"swin3d_t", "swin3d_s", "swin3d_b", "r3d_18", "mc3_18", "r2plus1d_18", "s3d", "mvit_v1_b",
            "mvit_v2_s", "small3d"} <= set(list_models())


@pytest.mark.parametrize("name", ["swin3d_t", "r3d_18", "small3d"])
def test_head_resized_and_forward(name):
    model = build_model(name, num_classes=5).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 4, 64, 64))
    assert out.shape == (1, 5)


@pytest.mark.parametrize("name", ["s3d", "mvit_v2_s", "mc3_18", "r2plus1d_18", "mvit_v1_b", "swin3d_b"])
def test_head_resized_without_forward(name):
    model = build_model(name, num_classes=7)
    last = [m for m in model.modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv3d))][-1]
    assert (getattr(last, "out_features", None) or last.out_channels) == 7


def test_local_checkpoint_roundtrip_and_errors(tmp_path):
    a = build_model("small3d", 4)
    torch.save({"model": a.state_dict()}, tmp_path / "ckpt.pt")
    b = build_model("small3d", 4, weights=str(tmp_path / "ckpt.pt"))
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        build_model("small3d", 4, weights=str(tmp_path / "nope.pt"))
    with pytest.raises(ValueError, match="shape mismatch.*fc.weight"):
        build_model("small3d", 6, weights=str(tmp_path / "ckpt.pt"))
    torch.save({"something": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="missing keys"):
        build_model("small3d", 4, weights=str(tmp_path / "other.pt"))
    with pytest.raises(ValueError, match="unknown model 'swin4d'"):
        build_model("swin4d", 4)
    with pytest.raises(ValueError, match="unknown weights 'IMAGENET'.*KINETICS400_V1"):
        build_model("swin3d_t", 4, weights="IMAGENET")


def test_small_model_treats_samples_independently():
    """GroupNorm, not BatchNorm: a sample's output must not depend on its batch-mates (in train mode)."""
    torch.manual_seed(0)
    model = Small3DCNN(3).train()
    x = torch.randn(4, 3, 4, 16, 16)
    assert torch.allclose(model(x)[:1], model(x[:1]), atol=1e-5)
