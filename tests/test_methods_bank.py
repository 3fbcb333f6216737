"""StillMix's frame bank: a 2D reference network, the bank's selection, its file, and mixing from it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import write_folder
from torch.utils.data import Dataset

from albar.data import ClipDataset, ClipItem
from albar.methods import (
    MethodConfig,
    build_frame_bank,
    build_method,
    build_reference_model,
    load_frame_bank,
    method_step,
    save_frame_bank,
    select_frames,
    train_reference_network,
)
from albar.objectives import ALBARLoss

COLOURS = [(220, 30, 30), (30, 200, 40), (40, 40, 220)]
STILL = 4  # frames 0..3 show the class colour (the "biased" frames); frames 4..7 are grey noise


@pytest.fixture(scope="module")
def coloured_clips(tmp_path_factory) -> list[ClipItem]:
    """12 JPEG-folder videos of 8 frames, 16x16: class colour in the first half, grey noise after."""
    root = tmp_path_factory.mktemp("clips")
    rng = np.random.default_rng(0)
    items = []
    for c, colour in enumerate(COLOURS):
        for v in range(4):
            frames = rng.integers(100, 156, size=(8, 16, 16, 3)).astype(np.uint8)
            frames[:STILL] = np.array(colour, dtype=np.uint8)
            key = f"c{c}_v{v}"
            items.append(ClipItem(source=write_folder(root / key, frames), label=c, key=key))
    return items


class Brightness(torch.nn.Module):
    """A fixed 'reference network': confidence grows with a frame's mean, so the ranking is known."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = x.mean(dim=(1, 2, 3))
        return torch.stack([4 * m, torch.zeros_like(m)], dim=1)


class Ramp(Dataset):
    """Clip v, frame t has the constant value (v * 4 + t) / 40: a known brightness for every frame."""

    def __init__(self, videos: int = 5, frames: int = 4, jitter: bool = False) -> None:
        self.videos, self.frames, self.jitter = videos, frames, jitter

    def __len__(self) -> int:
        return self.videos

    def __getitem__(self, v: int) -> dict:
        clip = torch.empty(3, self.frames, 2, 2)
        for t in range(self.frames):
            clip[:, t] = (v * self.frames + t) / 40
        if self.jitter:
            clip = clip + torch.rand(()) * 0.1
        return {"clip": clip, "label": v % 2, "key": f"v{v}", "index": v}


def test_select_frames_strategies():
    conf = torch.tensor([0.9, 0.1, 0.5, 0.7, 0.3, 0.2, 0.8, 0.6, 0.4, 0.05])
    assert select_frames(conf, 3, "top").tolist() == [0, 6, 3]
    g = torch.Generator().manual_seed(0)
    kept = select_frames(conf, 100, "quantile", quantile=(0.1, 1.0), generator=g)
    assert sorted(kept.tolist()) == sorted(set(range(10)) - {9})  # the least confident 10% dropped
    kept = select_frames(conf, 2, "quantile", quantile=(0.5, 1.0), generator=g)
    assert len(kept) == 2 and (conf[kept] >= 0.5).all()
    kept = select_frames(conf, 100, "threshold", threshold=0.6, generator=g)
    assert sorted(kept.tolist()) == [0, 3, 6, 7]
    with pytest.raises(ValueError, match="threshold"):
        select_frames(conf, 3, "threshold")
    with pytest.raises(ValueError, match="no frame passes"):
        select_frames(conf, 3, "threshold", threshold=0.95)
    with pytest.raises(ValueError, match="quantile"):
        select_frames(conf, 3, "quantile", quantile=(0.5, 0.2))
    with pytest.raises(ValueError, match="selection"):
        select_frames(conf, 3, "best")


def test_bank_holds_the_most_confident_frames_with_provenance(tmp_path):
    data = Ramp()
    bank = build_frame_bank(Brightness(), data, size=6, selection="top", dtype=torch.float32)
    # brightness (v * 4 + t) / 40 is highest for the last clips' last frames: rows 19, 18, ..., 14
    assert sorted((bank.video_index * 4 + bank.frame_index).tolist()) == list(range(14, 20))
    for k in range(len(bank)):
        v, t = int(bank.video_index[k]), int(bank.frame_index[k])
        assert torch.equal(bank.frames[k], data[v]["clip"][:, t])
        assert bank.label[k] == v % 2 and bank.keys[k] == f"v{v}"
    excluded_max = max((v * 4 + t) / 40 for v in range(5) for t in range(4) if v * 4 + t < 14)
    assert (bank.frames.mean(dim=(1, 2, 3)) > excluded_max).all()
    assert (bank.score > 0.5).all() and (bank.pred == 0).all()

    path = tmp_path / "sub" / "bank.pt"
    save_frame_bank(bank, path)
    assert [p.name for p in path.parent.iterdir()] == ["bank.pt"]  # atomic: no temporary left behind
    again = load_frame_bank(path)
    assert torch.equal(again.frames, bank.frames) and again.keys == bank.keys
    assert again.meta["selection"] == "top" and again.meta["num_scored"] == 20 and again.meta["size"] == 6
    torch.save({"frames": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not an albar frame bank"):
        load_frame_bank(tmp_path / "other.pt")
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load_frame_bank(tmp_path / "missing.pt")


def test_bank_refuses_a_dataset_that_changes_between_passes():
    with pytest.raises(RuntimeError, match="second pass"):
        build_frame_bank(Brightness(), Ramp(jitter=True), size=4, selection="top")


def test_reference_network_finds_the_static_frames_and_is_seeded(coloured_clips):
    train = ClipDataset(coloured_clips, num_frames=8, mode="center")
    net = train_reference_network(train, num_classes=3, epochs=6, batch_size=6, lr=1e-2, frames_per_clip=4, seed=1)
    again = train_reference_network(train, num_classes=3, epochs=6, batch_size=6, lr=1e-2, frames_per_clip=4, seed=1)
    for p, q in zip(net.state_dict().values(), again.state_dict().values()):
        assert torch.equal(p, q)
    bank = build_frame_bank(net, train, size=12, selection="top", score="gt")
    # the confidently classified frames are the coloured (static-cue) ones, of the right class
    assert (bank.frame_index < STILL).all()
    assert torch.equal(bank.pred, bank.label) and (bank.score > 0.6).all()
    assert bank.frames.dtype == torch.float16 and bank.frames.shape == (12, 3, 16, 16)


def test_stillmix_bank_method_from_a_saved_bank(tmp_path):
    bank = build_frame_bank(Brightness(), Ramp(), size=4, selection="top")
    save_frame_bank(bank, tmp_path / "bank.pt")
    cfg = MethodConfig(name="stillmix", stillmix_source="bank", bank_path=tmp_path / "bank.pt", prob=1.0)
    method = build_method(cfg)
    clip = torch.zeros(1, 3, 3, 4, 4)  # a batch of one works with a bank
    labels = torch.tensor([1])
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 3 * 16, 2))
    step = method_step(model, clip, labels, method, ALBARLoss(w_adv=1, w_ent=1, w_gp=0), torch.Generator())
    k = int(step.batch.info["bank_index"][0])
    w = float(step.batch.info["mix_weight"][0])
    value = float(bank.frames[k, 0, 0, 0])  # a constant 2x2 frame, resized to the clip's 4x4
    assert torch.allclose(step.batch.clip[0], torch.full((3, 3, 4, 4), (1 - w) * value), atol=1e-3)
    assert torch.equal(step.batch.target_a, labels)
    with pytest.raises(ValueError, match="does not use one"):
        build_method(MethodConfig(name="mixup"), bank=bank)


def test_reference_model_names():
    assert build_reference_model("resnet18", 5).eval()(torch.zeros(1, 3, 32, 32)).shape == (1, 5)
    with pytest.raises(ValueError, match="unknown reference model 'nope'"):
        build_reference_model("nope", 5)
    with pytest.raises(ValueError, match="no pretrained weights"):
        build_reference_model("tiny2d", 5, weights="IMAGENET1K_V1")
