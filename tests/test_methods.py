"""Batch transformations of issue 5: every output is decoded back to the clip, frame and label it came from.

Encoded clips (float64, so decoding is exact): clip b, frame t has
    channel 0 = t                      (the same ramp for every clip)
    channel 1 = t * (b + 1)            (a ramp whose slope names the clip)
    channel 2 = 1000 * (b + 1) + t     (clip and frame in one number)
A still frame mixed into a clip is constant over time, so the temporal differences of channels 0 and 1
give the clip's own weight and identity whatever was mixed in; channel 2 then names the mixed-in frame.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from albar.methods import (
    MethodConfig,
    MixedBatch,
    background_erasing,
    build_method,
    identity,
    method_entry,
    method_step,
    mixed_cross_entropy,
    mixup,
    stillmix,
    stillmix_frames,
    videomix,
)
from albar.objectives import ALBARLoss, static_clip

B, T, H, W = 6, 5, 4, 6
LABELS = torch.tensor([3, 0, 4, 1, 5, 2])  # distinct, and not the identity: a reordering would show


def encoded(b: int = B, t: int = T, h: int = H, w: int = W) -> torch.Tensor:
    clip = torch.empty(b, 3, t, h, w, dtype=torch.float64)
    for i in range(b):
        for f in range(t):
            clip[i, 0, f] = f
            clip[i, 1, f] = f * (i + 1)
            clip[i, 2, f] = 1000 * (i + 1) + f
    return clip


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def own_weight_and_identity(out: torch.Tensor, i: int) -> tuple[float, int]:
    """Weight of the clip's own (moving) part and which clip it is, from the temporal differences."""
    w = float(out[i, 0, 1, 0, 0] - out[i, 0, 0, 0, 0])
    slope = float(out[i, 1, 1, 0, 0] - out[i, 1, 0, 0, 0])
    return w, round(slope / w) - 1


def still_source(out: torch.Tensor, i: int, own_w: float, own: int) -> tuple[int, int]:
    """(clip, frame) of the still frame mixed into output i, decoded from channel 2 at frame 0."""
    rest = float(out[i, 2, 0, 0, 0]) - own_w * (1000 * (own + 1) + 0)
    code = round(rest / (1 - own_w))
    return code // 1000 - 1, code % 1000


def test_encoding_decodes_an_untouched_clip():
    x = encoded()
    for i in range(B):
        assert own_weight_and_identity(x, i) == (1.0, i)


# ----------------------------------------------------------------------------------- mixed CE


def test_mixed_cross_entropy_matches_hand_computed_value():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 0.5]])
    batch = MixedBatch(clip=torch.zeros(2, 1, 1, 1, 1), target_a=torch.tensor([0, 2]), target_b=torch.tensor([1, 0]),
                       lam=torch.tensor([0.7, 0.25]), applied=torch.ones(2, dtype=torch.bool),
                       partner=torch.tensor([1, 0]))
    z0 = math.log(math.exp(2) + 1 + math.exp(-1))
    s0 = 0.7 * (z0 - 2.0) + 0.3 * (z0 - 0.0)
    s1 = 0.25 * math.log(3) + 0.75 * math.log(3)
    assert mixed_cross_entropy(logits, batch).item() == pytest.approx((s0 + s1) / 2, rel=1e-6)
    # lam = 1 is plain cross-entropy on target_a, whatever target_b is
    batch.lam = torch.ones(2)
    assert mixed_cross_entropy(logits, batch).item() == pytest.approx(F.cross_entropy(logits, batch.target_a).item())
    with pytest.raises(ValueError, match="batch size"):
        mixed_cross_entropy(logits[:1], batch)


# ----------------------------------------------------------------------------------- none / input checks


def test_identity_returns_the_batch_unchanged():
    x = encoded()
    out = identity(x, LABELS)
    assert out.clip is x and torch.equal(out.target_a, LABELS) and torch.equal(out.lam, torch.ones(B))
    assert not out.applied.any()


@pytest.mark.parametrize("fn", [mixup, videomix, background_erasing, stillmix])
def test_bad_inputs_are_rejected_with_the_reason(fn):
    x = encoded()
    with pytest.raises(ValueError, match="B, C, T, H, W"):
        fn(x[0], LABELS, gen())
    with pytest.raises(ValueError, match="float"):
        fn(x.long(), LABELS, gen())
    with pytest.raises(ValueError, match="labels must be"):
        fn(x, LABELS[:3], gen())
    with pytest.raises(ValueError, match="prob"):
        fn(x, LABELS, gen(), prob=1.5)


# ----------------------------------------------------------------------------------- mixup


def test_mixup_mixes_clips_and_labels_consistently():
    x = encoded()
    lams = []
    for seed in range(20):
        out = mixup(x, LABELS, gen(seed), alpha=0.2)
        assert out.clip.shape == x.shape and out.clip.dtype == x.dtype
        assert out.applied.all() and torch.equal(out.target_a, LABELS)
        assert sorted(out.partner.tolist()) == list(range(B))  # a permutation of the batch
        lam = float(out.lam[0])
        assert 0.0 <= lam <= 1.0 and torch.allclose(out.lam, torch.full((B,), lam))
        lams.append(lam)
        for i in range(B):
            # channel 1 slope = lam (i + 1) + (1 - lam) (j + 1): recover j without trusting `partner`
            slope = float(out.clip[i, 1, 1, 0, 0] - out.clip[i, 1, 0, 0, 0])
            if abs(1 - lam) > 1e-3:
                j = round((slope - lam * (i + 1)) / (1 - lam)) - 1
                assert out.target_b[i] == LABELS[j] and out.partner[i] == j
            expected = lam * x[i] + (1 - lam) * x[out.partner[i]]
            assert torch.allclose(out.clip[i], expected)
    assert min(lams) < 0.2 and max(lams) > 0.8  # Beta(0.2, 0.2) is U-shaped


def test_mixup_prob_leaves_the_other_samples_untouched():
    x = encoded(b=200, t=2, h=1, w=1)
    labels = torch.arange(200) % 7
    out = mixup(x, labels, gen(1), prob=0.3)
    n = int(out.applied.sum())
    assert 30 < n < 90
    assert torch.equal(out.clip[~out.applied], x[~out.applied])
    assert (out.lam[~out.applied] == 1).all() and torch.equal(out.target_b[~out.applied], labels[~out.applied])


# ----------------------------------------------------------------------------------- videomix


def test_videomix_pastes_one_box_for_every_frame_and_lam_is_the_kept_area():
    x = encoded(h=10, w=12)
    seen_partial = False
    for seed in range(30):
        out = videomix(x, LABELS, gen(seed))
        y1, y2, x1, x2 = out.info["box"][0].tolist()
        inside = torch.zeros(10, 12, dtype=torch.bool)
        inside[y1:y2, x1:x2] = True
        area = int(inside.sum())
        assert out.lam.tolist() == pytest.approx([1 - area / 120] * B)
        seen_partial |= 0 < area < 120
        for i in range(B):
            j = int(out.partner[i])
            assert torch.equal(out.clip[i][..., ~inside], x[i][..., ~inside])  # outside: the clip itself
            for f in range(T):  # inside: clip j, same frame f, at every frame: the same box throughout
                codes = out.clip[i, 2, f][inside]
                assert (codes == 1000 * (j + 1) + f).all()
            assert out.target_b[i] == LABELS[j] and out.target_a[i] == LABELS[i]
    assert seen_partial


# ----------------------------------------------------------------------------------- BE


def test_be_adds_a_frame_of_the_same_clip_and_keeps_the_label():
    x = encoded()
    weights = []
    for seed in range(15):
        out = background_erasing(x, LABELS, gen(seed))
        assert torch.equal(out.target_a, LABELS) and torch.equal(out.target_b, LABELS)
        assert (out.lam == 1).all() and out.applied.all()
        for i in range(B):
            w, own = own_weight_and_identity(out.clip, i)
            assert own == i
            assert 0.7 - 1e-9 <= w <= 1.0  # a ~ U(0, 0.3), x' = (1 - a) x + a frame
            weights.append(w)
            if w < 1 - 1e-6:
                src, frame = still_source(out.clip, i, w, own)
                assert src == i and frame == int(out.info["frame_index"][i])  # a frame of the SAME clip
    assert max(weights) - min(weights) > 0.05


# ----------------------------------------------------------------------------------- StillMix (random frame)


def test_stillmix_keeps_each_clips_own_label_and_mixes_another_clips_frame():
    x = encoded()
    for seed in range(15):
        out = stillmix(x, LABELS, gen(seed), prob=1.0)  # prob = 1 works (the official ALBAR port crashes)
        assert out.clip.shape == x.shape and out.clip.dtype == x.dtype and out.applied.all()
        assert (out.lam == 1).all()
        for i in range(B):
            w, own = own_weight_and_identity(out.clip, i)
            assert own == i  # no reordering: output i is clip i ...
            assert out.target_a[i] == LABELS[own] and out.target_b[i] == LABELS[own]  # ... with clip i's label
            assert 0.4 < w < 0.6  # lam ~ Beta(200, 200)
            src, frame = still_source(out.clip, i, w, own)
            assert src != i and 0 <= frame < T  # a frame of ANOTHER clip
            assert src == int(out.partner[i]) and frame == int(out.info["frame_index"][i])


def test_stillmix_mixes_only_prob_of_the_batch():
    x = encoded(b=400, t=2, h=1, w=1)
    labels = torch.arange(400) % 5
    assert method_entry("stillmix").default_prob == 0.5
    out = stillmix(x, labels, gen(3))  # default prob 0.5
    n = int(out.applied.sum())
    assert 150 < n < 250
    assert torch.equal(out.clip[~out.applied], x[~out.applied])
    assert not torch.equal(out.clip[out.applied], x[out.applied])
    assert torch.equal(out.target_a, labels)
    assert stillmix(x, labels, gen(3), prob=0.0).applied.sum() == 0
    assert stillmix(x, labels, gen(3), prob=1.0).applied.all()


def test_stillmix_needs_two_clips():
    with pytest.raises(ValueError, match="batch size >= 2"):
        stillmix(encoded(b=1), LABELS[:1], gen())


def test_stillmix_frames_draws_from_the_bank():
    x = encoded()
    bank = torch.stack([torch.full((3, 2, 3), 5000.0 + k, dtype=torch.float64) for k in range(4)])  # 2x3: resized
    out = stillmix_frames(x, LABELS, bank, gen(0), prob=1.0)
    assert torch.equal(out.target_a, LABELS) and (out.partner == -1).all()
    for i in range(B):
        w, own = own_weight_and_identity(out.clip, i)
        assert own == i
        k = int(out.info["bank_index"][i])
        expected = w * x[i] + (1 - w) * (5000.0 + k)
        assert torch.allclose(out.clip[i], expected)
    with pytest.raises(ValueError, match="channels"):
        stillmix_frames(x, LABELS, bank[:, :1], gen())


# ----------------------------------------------------------------------------------- determinism


@pytest.mark.parametrize("fn", [mixup, videomix, background_erasing, stillmix])
def test_same_seed_same_batch_other_seed_other_batch(fn):
    x = encoded()
    a, b = fn(x, LABELS, gen(7), prob=1.0), fn(x, LABELS, gen(7), prob=1.0)
    assert torch.equal(a.clip, b.clip) and torch.equal(a.lam, b.lam) and torch.equal(a.partner, b.partner)
    others = [fn(x, LABELS, gen(s), prob=1.0).clip for s in range(8, 12)]
    assert any(not torch.equal(a.clip, o) for o in others)
    assert torch.equal(x, encoded())  # the input is never modified in place


# ----------------------------------------------------------------------------------- config


def test_method_config_validates_and_names_the_bad_key():
    assert MethodConfig().name == "none" and MethodConfig().static_from == "original"
    assert MethodConfig(name="stillmix").effective_prob == 0.5
    assert MethodConfig(name="mixup").effective_prob == 1.0
    assert MethodConfig(name="stillmix", prob=1.0).effective_prob == 1.0
    with pytest.raises(ValueError, match="mixup_alpah"):
        MethodConfig(name="mixup", mixup_alpah=0.4)
    with pytest.raises(ValueError, match="name"):
        MethodConfig(name="no-such-blending")
    with pytest.raises(ValueError, match="prob"):
        MethodConfig(prob=1.2)
    with pytest.raises(ValueError, match="bank_path"):
        MethodConfig(name="stillmix", stillmix_source="bank")
    with pytest.raises(ValueError, match="bank_path is set but unused"):
        MethodConfig(name="mixup", bank_path="bank.pt")
    with pytest.raises(ValueError, match="static_from"):
        MethodConfig(static_from="static")


# ----------------------------------------------------------------------------------- method_step


class Recorder(torch.nn.Module):
    """A linear classifier that records every input it sees."""

    def __init__(self, in_features: int, classes: int = 6) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fc = torch.nn.Linear(in_features, classes)
        self.seen: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.detach().clone())
        return self.fc(x.flatten(1))


@pytest.mark.parametrize("static_from", ["original", "mixed"])
def test_method_step_cuts_the_static_clip_from_the_configured_tensor(static_from):
    x = encoded().float()
    model = Recorder(x[0].numel())
    cfg = MethodConfig(name="stillmix", prob=1.0, static_from=static_from)
    step = method_step(model, x, LABELS, cfg, ALBARLoss(w_adv=1, w_ent=1, w_gp=1), gen(0))
    motion, static = model.seen
    assert torch.equal(motion, step.batch.clip) and not torch.equal(motion, x)
    source = x if static_from == "original" else step.batch.clip
    assert torch.equal(static, static_clip(source, "middle"))
    other = step.batch.clip if static_from == "original" else x
    assert not torch.equal(static, static_clip(other, "middle"))
    step.terms.total.backward()  # the gradient penalty's double backward runs
    assert step.terms.gp is not None and torch.isfinite(step.terms.total)
    assert step.terms.static_ce.item() == pytest.approx(F.cross_entropy(model.fc(static.flatten(1)), LABELS).item())


def test_method_step_uses_mixed_ce_for_label_mixing_methods():
    x = encoded().float()
    model = Recorder(x[0].numel())
    method = build_method({"name": "mixup", "mixup_alpha": 1.0})
    step = method_step(model, x, LABELS, method, ALBARLoss(w_adv=0, w_ent=0, w_gp=0), gen(4))
    assert len(model.seen) == 1  # no static clip when all ALBAR weights are 0
    lam = float(step.batch.lam[0])
    assert 0.0 < lam < 1.0
    expected = mixed_cross_entropy(step.terms.logits, step.batch)
    assert step.terms.total.item() == pytest.approx(expected.item())
    assert step.terms.total.item() != pytest.approx(F.cross_entropy(step.terms.logits, LABELS).item())


def test_method_step_none_with_zero_weights_is_plain_cross_entropy():
    x = encoded().float()
    model = Recorder(x[0].numel())
    step = method_step(model, x, LABELS, MethodConfig(), ALBARLoss(w_adv=0, w_ent=0, w_gp=0), gen(0))
    assert torch.equal(model.seen[0], x)
    assert step.terms.total.item() == pytest.approx(F.cross_entropy(model.fc(x.flatten(1)), LABELS).item())
