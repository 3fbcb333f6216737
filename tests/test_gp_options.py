"""ALBAR's cost options (issue 13): motion_first, checkpoint_static, gp_batch, gp_mode=finite_difference.

The defaults must keep today's numbers; the exact options must give today's gradients; the cheaper penalties
must estimate today's penalty (unbiased subset; finite difference close to the double backward).
"""

import pytest
import torch
import torch.nn.functional as F
from torchvision.models.video.swin_transformer import SwinTransformer3d

from albar.models import build_model
from albar.objectives import ALBARLoss, build_objective, gradient_penalty, static_clip
from albar.objectives.albar import finite_difference_penalty


def tiny_swin(drop: float = 0.1) -> torch.nn.Module:
    """Swin3D-T's blocks at toy size, with stochastic depth (train mode)."""
    torch.manual_seed(0)
    return SwinTransformer3d(patch_size=[2, 4, 4], embed_dim=16, depths=[1, 1], num_heads=[1, 2],
                             window_size=[2, 2, 2], stochastic_depth_prob=drop, num_classes=3).train()


def small() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model("small3d", 3).train()


MODELS = {"small3d": (small, (4, 3, 4, 16, 16)), "swin3d_t": (tiny_swin, (4, 3, 4, 16, 16))}


def batch(shape: tuple[int, ...], seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g), torch.randint(0, 3, (shape[0],), generator=g)


def grads_of(model: torch.nn.Module, crit: ALBARLoss, clip, target, accum: int = 4, seed: int = 5):
    """Parameter gradients of two micro-batches, each ``total / accum`` (as the trainer backpropagates)."""
    model.zero_grad(set_to_none=True)
    torch.manual_seed(seed)  # stochastic depth draws
    totals = []
    for k in range(2):
        terms = crit(model, clip + k, target, generator=torch.Generator().manual_seed(k))
        (terms.total / accum).backward()
        totals.append(float(terms.total.detach()))
    return [p.grad.clone() for p in model.parameters()], totals, terms


def cosine(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    va, vb = torch.cat([x.flatten() for x in a]), torch.cat([x.flatten() for x in b])
    return float(F.cosine_similarity(va, vb, dim=0))


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("option", [{"motion_first": True}, {"checkpoint_static": True},
                                    {"motion_first": True, "checkpoint_static": True}])
def test_exact_options_give_the_default_gradients(name, option):
    build, shape = MODELS[name]
    model = build()
    clip, target = batch(shape)
    ref, ref_totals, ref_terms = grads_of(model, ALBARLoss(1, 4, 10), clip, target)
    got, totals, terms = grads_of(model, ALBARLoss(1, 4, 10, **option), clip, target)
    assert totals == pytest.approx(ref_totals, rel=1e-5)
    assert float(terms.gp.detach()) == pytest.approx(float(ref_terms.gp.detach()), rel=1e-5)
    assert torch.equal(terms.logits.argmax(1), ref_terms.logits.argmax(1))
    for r, x in zip(ref, got):
        torch.testing.assert_close(x, r, rtol=1e-4, atol=1e-6)


def test_motion_first_gradient_follows_the_scale_of_the_total():
    """The caller's scaling of ``total`` (1/grad_accum, a loss scale) applies to the early motion gradient."""
    model = small()
    clip, target = batch((2, 3, 4, 16, 16))
    crit = ALBARLoss(0.5, 0, 0, motion_first=True)
    g1, _, _ = grads_of(model, crit, clip, target, accum=1)
    g8, _, _ = grads_of(model, crit, clip, target, accum=8)
    for a, b in zip(g1, g8):
        torch.testing.assert_close(b * 8, a, rtol=1e-5, atol=1e-7)
    terms = crit(model, clip, target)
    terms.total.backward()
    with pytest.raises(RuntimeError):
        terms.total.backward()  # graph freed, as for any loss


def test_gp_batch_is_the_penalty_of_the_drawn_clips_and_keeps_the_other_terms():
    model = small()
    clip, target = batch((6, 3, 4, 16, 16))
    exact = ALBARLoss(1, 4, 10)(model, clip, target)
    crit = ALBARLoss(1, 4, 10, gp_batch=2)
    sub = crit(model, clip, target, generator=torch.Generator().manual_seed(3))
    # the adversarial CE and entropy see every static clip, through the per-sample model: unchanged
    assert float(sub.static_ce.detach()) == pytest.approx(float(exact.static_ce.detach()), rel=1e-5)
    assert float(sub.neg_entropy.detach()) == pytest.approx(float(exact.neg_entropy.detach()), rel=1e-5)
    chosen = torch.randperm(6, generator=torch.Generator().manual_seed(3))[:2]
    s = static_clip(clip)[chosen].requires_grad_(True)
    assert float(sub.gp.detach()) == pytest.approx(float(gradient_penalty(model(s), s, "official").detach()), rel=1e-5)
    # the same generator draws the same clips: a resumed run repeats the step exactly
    again = crit(model, clip, target, generator=torch.Generator().manual_seed(3))
    assert float(again.gp.detach()) == float(sub.gp.detach())
    # larger than the batch: the whole batch, exactly
    whole = ALBARLoss(1, 4, 10, gp_batch=64)(model, clip, target, generator=torch.Generator().manual_seed(3))
    assert float(whole.gp.detach()) == pytest.approx(float(exact.gp.detach()), rel=1e-6)


def test_gp_batch_gradient_is_unbiased():
    """Averaged over the subsets drawn, the penalty's gradient is the full batch's."""
    model = small()
    clip, target = batch((4, 3, 4, 16, 16))
    params = list(model.parameters())

    def gp_grad(crit: ALBARLoss, seed: int) -> list[torch.Tensor]:
        gp = crit(model, clip, target, generator=torch.Generator().manual_seed(seed)).gp
        grads = torch.autograd.grad(gp, params, allow_unused=True)  # the head's bias does not enter d F / d s
        return [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)]

    full = gp_grad(ALBARLoss(1, 4, 10), 0)
    n = 120
    mean = [torch.zeros_like(p) for p in params]
    for seed in range(n):
        for m, g in zip(mean, gp_grad(ALBARLoss(1, 4, 10, gp_batch=1), seed)):
            m += g / n
    one = gp_grad(ALBARLoss(1, 4, 10, gp_batch=1), 0)
    assert cosine(mean, full) > 0.995  # a single draw is further off: the average converges to the full gradient
    assert cosine(mean, full) > cosine(one, full)


def test_finite_difference_is_exact_for_a_linear_model():
    torch.manual_seed(0)
    lin = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 4 * 8 * 8, 5))
    clip, target = batch((3, 3, 4, 8, 8))
    for norm in ("official", "sample"):
        exact = ALBARLoss(1, 4, 10, gp_norm=norm)(lin, clip, target)
        for scheme in ("forward", "central"):
            fd = ALBARLoss(1, 4, 10, gp_norm=norm, gp_mode="finite_difference", fd_scheme=scheme)(lin, clip, target)
            assert float(fd.gp.detach()) == pytest.approx(float(exact.gp.detach()), rel=1e-4)


def test_finite_difference_gradient_points_with_the_exact_one_on_a_smooth_model():
    """Swin (GELU, LayerNorm, stochastic depth): the first-order penalty's gradient is the double backward's.
    (On a ReLU net it is not: the difference crosses activation kinks, which the double backward ignores.)"""
    model = tiny_swin()
    clip, target = batch((4, 3, 4, 16, 16))
    exact, _, ex_terms = grads_of(model, ALBARLoss(1, 4, 10), clip, target)
    for scheme in ("forward", "central"):
        fd, _, fd_terms = grads_of(model, ALBARLoss(1, 4, 10, gp_mode="finite_difference", fd_scheme=scheme),
                                   clip, target)
        assert float(fd_terms.gp.detach()) == pytest.approx(float(ex_terms.gp.detach()), rel=0.02)
        assert cosine(fd, exact) > 0.999


def test_finite_difference_replays_stochastic_depth():
    """The shifted pass sees the base pass's drop-path draws; with other draws the difference is off."""
    model = tiny_swin(drop=0.5)
    for seed in range(4):
        clip, _ = batch((4, 3, 4, 16, 16), seed)
        s = static_clip(clip).requires_grad_(True)
        torch.manual_seed(7)
        exact = float(gradient_penalty(model(s), s, "official").detach())
        torch.manual_seed(7)
        state = (torch.get_rng_state(), None)
        out = model(s)
        fd = float(finite_difference_penalty(model, out, s, "official", 1e-2, "forward", state).detach())
        assert fd == pytest.approx(exact, rel=0.01)
        torch.manual_seed(7)
        out = model(s)
        unshared = (torch.get_rng_state(), None)  # the state after the base pass: other drop-path draws
        bad = float(finite_difference_penalty(model, out, s, "official", 1e-2, "forward", unshared).detach())
        assert bad != pytest.approx(exact, rel=0.05)


def test_options_are_config_parameters_with_checked_values():
    crit = build_objective({"name": "albar", "gp_batch": 2, "gp_mode": "finite_difference", "fd_scheme": "forward",
                            "motion_first": True, "checkpoint_static": True})
    assert (crit.gp_batch, crit.gp_mode, crit.fd_scheme, crit.motion_first, crit.checkpoint_static) == \
        (2, "finite_difference", "forward", True, True)
    default = build_objective({"name": "albar"})
    assert (default.gp_batch, default.gp_mode, default.motion_first, default.checkpoint_static) == \
        (None, "exact", False, False)
    for bad in ({"gp_batch": 0}, {"gp_mode": "approx"}, {"fd_step": 0}, {"fd_scheme": "backward"}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            build_objective({"name": "albar", **bad})


def test_the_trainer_with_motion_first_and_checkpointing_trains_as_the_default(tiny_benchmark):
    """Through the real loop (accelerate's backward of total / grad_accum, two micro-batches): same weights."""
    from accelerate.utils import set_seed
    from helpers import relative_weight_gap
    from test_training import small_cfg, train_set

    from albar.training import train

    def run(**options):
        cfg = small_cfg(w_adv=1.0, w_ent=4.0, w_gp=10.0, **options)
        cfg.optim.epochs, cfg.optim.batch_size, cfg.optim.grad_accum = 1, 4, 2
        return train(cfg, train_set(tiny_benchmark), progress=False).model.state_dict()

    ref = run()
    lean = run(motion_first=True, checkpoint_static=True)
    set_seed(0)
    init = build_model("small3d", 4).state_dict()
    assert relative_weight_gap(ref, lean, init) < 1e-3
    sub = run(gp_batch=1)  # an estimate: the run differs (and would be refused if the option were not passed on)
    assert relative_weight_gap(ref, sub, init) > 1e-6


def test_finite_difference_under_bf16_keeps_the_exact_gradient_at_the_default_step_and_warns_below():
    """bf16 rounds the logits (~0.4%): the default fd_step keeps the difference above the rounding; a step below
    FD_MIN_STEP_LOW_PRECISION is said, not silently trained on (benchmarks/fd_precision.py has the sweep)."""
    import warnings

    model = tiny_swin(drop=0.0)
    static = static_clip(batch((4, 3, 4, 16, 16))[0], "middle")

    def penalty_grad(bf16: bool, exact: bool, step: float = 1e-2) -> list[torch.Tensor]:
        model.zero_grad(set_to_none=True)
        s = static.clone().requires_grad_(True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = model(s)
            gp = (gradient_penalty(out, s, "official") if exact
                  else finite_difference_penalty(model, out, s, "official", step, "central"))
        gp.backward()
        return [torch.zeros_like(p) if p.grad is None else p.grad.clone() for p in model.parameters()]

    reference = penalty_grad(bf16=False, exact=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the default step under bf16 says nothing
        assert cosine(penalty_grad(bf16=True, exact=False), reference) > 0.999
    with pytest.warns(UserWarning, match=r"fd_step=0.001 under torch.bfloat16 autocast.*fd_step >= 0.003"):
        assert cosine(penalty_grad(bf16=True, exact=False, step=1e-3), reference) < 0.995  # why it warns (0.974)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # fp32: a small step is fine
        assert cosine(penalty_grad(bf16=False, exact=False, step=1e-3), reference) > 0.999
