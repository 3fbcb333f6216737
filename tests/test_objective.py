import math

import pytest
import torch
import torch.nn.functional as F

from albar.objectives import (
    ALBARLoss,
    adversarial_ce,
    albar_loss,
    gradient_penalty,
    negative_entropy,
    static_clip,
    static_frame_index,
)


class Linear(torch.nn.Module):
    """logits = W . flatten(x): d(sum logits)/dx = sum_c W_c, the same for every sample."""

    def __init__(self, in_features: int, classes: int) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(in_features, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1))


def test_static_clip_repeats_one_frame_of_the_clip():
    clip = torch.arange(2 * 3 * 5 * 2 * 2, dtype=torch.float32).reshape(2, 3, 5, 2, 2)
    for frame, idx in [("middle", 2), ("first", 0), ("last", 4), (3, 3), (-1, 4)]:
        s = static_clip(clip, frame)
        assert s.shape == clip.shape
        for t in range(5):
            assert torch.equal(s[:, :, t], clip[:, :, idx])
    g = torch.Generator().manual_seed(0)
    picked = {static_frame_index(5, "random", g) for _ in range(50)}
    assert picked <= set(range(5)) and len(picked) > 1


def test_static_frame_rejects_bad_choice():
    with pytest.raises(ValueError, match="out of range"):
        static_frame_index(4, 4)
    with pytest.raises(ValueError, match="'middle'"):
        static_frame_index(4, "centre")
    with pytest.raises(ValueError):
        ALBARLoss(frame="centre")
    assert ALBARLoss(frame=20).frame == 20  # an index valid for 32-frame clips is accepted up front


def test_terms_match_hand_computed_values():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 0.5]])
    target = torch.tensor([0, 2])
    # CE by hand: -log softmax at the target
    z0 = math.log(math.exp(2) + 1 + math.exp(-1))
    ce = ((z0 - 2.0) + math.log(3.0)) / 2
    assert adversarial_ce(logits, target).item() == pytest.approx(ce, rel=1e-6)
    p0 = [math.exp(v - z0) for v in (2.0, 0.0, -1.0)]
    neg_ent0 = sum(p * math.log(p) for p in p0)
    neg_ent1 = -math.log(3.0)  # uniform: sum p log p = -log K
    assert negative_entropy(logits).item() == pytest.approx((neg_ent0 + neg_ent1) / 2, rel=1e-6)


def test_gradient_penalty_equals_analytic_norm_for_linear_model():
    torch.manual_seed(0)
    model = Linear(3 * 4 * 5 * 6, 7)
    s = torch.randn(2, 3, 4, 5, 6, requires_grad=True)
    gp = gradient_penalty(model(s), s)
    expected = model.fc.weight.sum(0).norm()  # per-sample norm over ALL of C, T, H, W
    assert gp.item() == pytest.approx(expected.item(), rel=1e-5)


def test_gradient_penalty_covers_the_width_axis():
    """The official code summed over dims [1, 2, 3] only: a gradient living in W alone went unseen."""
    model = Linear(1 * 1 * 1 * 4, 1)
    with torch.no_grad():
        model.fc.weight.copy_(torch.tensor([[3.0, 0.0, 4.0, 0.0]]))
    s = torch.zeros(1, 1, 1, 1, 4, requires_grad=True)
    assert gradient_penalty(model(s), s).item() == pytest.approx(5.0)


def test_negative_entropy_finite_at_extreme_logits():
    logits = torch.tensor([[1e4, -1e4, 0.0], [-1e4, -1e4, 1e4]], requires_grad=True)
    value = negative_entropy(logits)
    assert torch.isfinite(value) and value.item() == pytest.approx(0.0, abs=1e-6)
    value.backward()
    assert torch.isfinite(logits.grad).all()
    naive = (F.softmax(logits, -1) * F.softmax(logits, -1).log()).sum(-1).mean()  # the official code's way
    assert torch.isnan(naive)  # the bug we do not copy


def test_gradcheck_of_the_whole_objective_float64():
    torch.manual_seed(0)
    conv = torch.nn.Sequential(
        torch.nn.Conv3d(2, 3, 3, padding=1), torch.nn.Tanh(), torch.nn.AdaptiveAvgPool3d(1), torch.nn.Flatten(),
        torch.nn.Linear(3, 4),
    ).double()
    target = torch.tensor([1, 3])

    clip = torch.randn(2, 2, 3, 4, 4, dtype=torch.float64)
    # The loss as a function of the first layer's weight: its gradient includes the gradient penalty's
    # double backprop, checked against finite differences.
    params = list(conv.parameters())
    weight = params[0]

    def by_weight(w):
        return albar_loss(lambda x: conv[1:](F.conv3d(x, w, params[1], padding=1)), clip, target).total

    assert torch.autograd.gradcheck(by_weight, (weight.detach().clone().requires_grad_(True),), eps=1e-6, atol=1e-5)


def test_total_is_the_weighted_sum_and_zero_weights_is_plain_ce():
    torch.manual_seed(0)
    model = Linear(3 * 4 * 2 * 2, 5)
    clip = torch.randn(3, 3, 4, 2, 2)
    target = torch.tensor([0, 4, 2])
    t = albar_loss(model, clip, target, w_adv=1.0, w_ent=4.0, w_gp=10.0)
    expected = t.ce - 1.0 * t.static_ce + 4.0 * t.neg_entropy + 10.0 * t.gp
    assert t.total.item() == pytest.approx(expected.item(), rel=1e-6)
    s = static_clip(clip)
    assert t.static_ce.item() == pytest.approx(F.cross_entropy(model(s), target).item(), rel=1e-6)
    assert set(t.scalars()) == {"loss", "ce", "static_ce", "neg_entropy", "gp"}
    plain = albar_loss(model, clip, target, 0.0, 0.0, 0.0)
    assert plain.total.item() == pytest.approx(F.cross_entropy(model(clip), target).item(), rel=1e-6)
    assert plain.static_ce is None and set(plain.scalars()) == {"loss", "ce"}


def test_adversarial_term_pushes_static_prediction_away_from_label():
    torch.manual_seed(0)
    model = Linear(3 * 4 * 2 * 2, 5)
    clip = torch.randn(8, 3, 4, 2, 2)
    target = torch.randint(0, 5, (8,))
    before = F.cross_entropy(model(static_clip(clip)), target).item()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(20):
        opt.zero_grad()
        albar_loss(model, clip, target, w_adv=1.0, w_ent=0.0, w_gp=0.0).total.backward()
        opt.step()
    assert F.cross_entropy(model(static_clip(clip)), target).item() > before


def test_module_in_a_user_loop_and_weight_scale():
    torch.manual_seed(0)
    model = Linear(3 * 4 * 2 * 2, 5)
    criterion = ALBARLoss(w_adv=1, w_ent=4, w_gp=10)
    clip, target = torch.randn(4, 3, 4, 2, 2), torch.randint(0, 5, (4,))
    terms = criterion(model, clip, target)
    terms.total.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    off = criterion(model, clip, target, weight_scale=0.0)
    assert off.gp is None and off.total.item() == pytest.approx(off.ce.item())
    assert "w_ent=4" in repr(criterion)


def _linear_with_gradient(grad: torch.Tensor) -> tuple[Linear, torch.Tensor]:
    """A one-output linear model whose input gradient is ``grad`` (shape (1, C, T, H, W)), and an input."""
    model = Linear(grad.numel(), 1)
    with torch.no_grad():
        model.fc.weight.copy_(grad.reshape(1, -1))
    return model, torch.zeros_like(grad, requires_grad=True)


def test_official_norm_by_hand():
    """The released code's norm: one L2 norm per width column over C, T, H, then the mean (ALBAR.md 5b)."""
    grad = torch.tensor([[3.0, 4.0], [0.0, 5.0]]).reshape(1, 1, 1, 2, 2)  # rows h, columns w
    model, s = _linear_with_gradient(grad)
    # column w=0 holds (3, 0): norm 3; column w=1 holds (4, 5): norm sqrt(41); mean (3 + 6.4031) / 2
    assert gradient_penalty(model(s), s, "official").item() == pytest.approx((3 + math.sqrt(41)) / 2, rel=1e-6)
    assert gradient_penalty(model(s), s, "sample").item() == pytest.approx(math.sqrt(50), rel=1e-6)
    with pytest.raises(ValueError, match="official"):
        gradient_penalty(model(s), s, "column")


def test_official_norm_is_at_most_the_sample_norm_over_sqrt_width():
    torch.manual_seed(0)
    for width in (2, 7, 32):
        grad = torch.randn(1, 3, 4, 5, width)
        model, s = _linear_with_gradient(grad)
        official = gradient_penalty(model(s), s, "official").item()
        sample = gradient_penalty(model(s), s, "sample").item()
        assert official <= sample / math.sqrt(width) * (1 + 1e-6)
        assert official > 0.5 * sample / math.sqrt(width)  # i.i.d. columns: close to the bound


def test_loss_and_config_default_to_the_official_norm_and_take_sample():
    """The paper's weights were tuned with the official norm: the defaults pair (1, 4, 10) with it."""
    from albar.config import TrainConfig

    torch.manual_seed(0)
    model = Linear(3 * 4 * 2 * 6, 5)
    clip, target = torch.randn(2, 3, 4, 2, 6), torch.tensor([1, 3])
    default = albar_loss(model, clip, target)
    official = albar_loss(model, clip, target, gp_norm="official")
    sample = ALBARLoss(gp_norm="sample")(model, clip, target)
    assert default.gp.item() == official.gp.item() and sample.gp.item() > 2 * official.gp.item()
    assert ALBARLoss().gp_norm == "official" and TrainConfig().objective.gp_norm == "official"
    with pytest.raises(ValueError, match="gp_norm"):
        ALBARLoss(gp_norm="per-sample")
    # the Python API refuses what the config refuses: a negative weight turns its term around
    with pytest.raises(ValueError, match="w_ent"):
        ALBARLoss(w_ent=-4.0)
    with pytest.raises(ValueError, match="w_gp"):
        ALBARLoss(w_gp=float("nan"))


@pytest.mark.parametrize("dataset", ["hmdb51", "ucf101", "k400"])
def test_paper_configs_train_the_published_objective(dataset):
    """The published numbers come from w = (1, 4, 10) on the official norm (ALBAR.md 5b); the per-sample norm
    with w_gp = 10 would be a ~15x stronger penalty at 224 px."""
    from pathlib import Path

    from albar.config import load_config

    cfg = load_config(Path(__file__).parents[1] / "configs" / f"{dataset}_swin3d_t.yaml")
    ob = cfg.objective
    assert (ob.w_adv, ob.w_ent, ob.w_gp, ob.gp_norm, ob.frame) == (1.0, 4.0, 10.0, "official", "middle")
    assert cfg.data.crop_size == 224 and cfg.model.name == "swin3d_t"
