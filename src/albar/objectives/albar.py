"""The ALBAR objective (ICLR 2025), as pure functions plus one small module.

    L = CE(F(x), y) - w_adv * CE(F(s), y) + w_ent * sum_c p_c log p_c + w_gp * ||d sum_c F(s)_c / ds||

where ``s`` is the static clip: one frame of the augmented motion clip ``x`` repeated over time.
All terms update all parameters in one step: there is no separate adversary.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Union

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor
from torch.nn.attention import SDPBackend, sdpa_kernel

from albar.objectives.base import Objective, StepInput
from albar.objectives.registry import register_objective

FrameChoice = Union[Literal["middle", "random", "first", "last"], int]
# "sample": one L2 norm per sample over all of C, T, H, W (the paper's Eq. 4). "official": the released code's norm,
# one L2 norm per (sample, width column) over C, T, H, then the mean over samples and columns: ~1/sqrt(W) of the
# per-sample norm (0.0665 at W = 224). The paper's w_gp = 10 was tuned with "official".
GPNorm = Literal["sample", "official"]
GP_NORMS = ("sample", "official")


def static_frame_index(num_frames: int, frame: FrameChoice, generator: torch.Generator | None = None) -> int:
    """Index of the frame that the static clip repeats (paper's main result: the middle one, T // 2)."""
    if num_frames < 1:
        raise ValueError(f"a clip needs at least one frame, got num_frames={num_frames}")
    if frame == "middle":
        return num_frames // 2
    if frame == "first":
        return 0
    if frame == "last":
        return num_frames - 1
    if frame == "random":
        return int(torch.randint(num_frames, (1,), generator=generator).item())
    if isinstance(frame, int) and not isinstance(frame, bool):
        if not -num_frames <= frame < num_frames:
            raise ValueError(f"static frame index {frame} is out of range for a clip of {num_frames} frames")
        return frame % num_frames
    raise ValueError(f"static frame must be 'middle', 'random', 'first', 'last' or an int, got {frame!r}")


def static_clip(
    clip: Tensor,
    frame: FrameChoice = "middle",
    time_dim: int = 2,
    generator: torch.Generator | None = None,
) -> Tensor:
    """One frame of ``clip`` repeated over time; the same index for the whole batch.

    ``clip`` is (B, C, T, H, W) by default (``time_dim=2``), as torchvision's video models take it. Cut
    it from the *augmented* clip so that crop and flip match the motion clip.
    """
    t = clip.shape[time_dim]
    idx = static_frame_index(t, frame, generator)
    one = clip.narrow(time_dim, idx, 1)
    return one.expand_as(clip).contiguous()


def adversarial_ce(static_logits: Tensor, target: Tensor) -> Tensor:
    """Cross-entropy of the static clip's prediction; the objective *subtracts* it (weight w_adv)."""
    return F.cross_entropy(static_logits, target)


def negative_entropy(logits: Tensor) -> Tensor:
    """Batch mean of sum_c p_c log p_c, from ``log_softmax`` so it stays finite for any finite logits.

    Minimising it drives the static prediction towards uniform. (softmax followed by log, as the official
    code does, gives NaN once a probability underflows to 0.)
    """
    logp = F.log_softmax(logits.to(torch.promote_types(logits.dtype, torch.float32)), dim=-1)
    return (logp.exp() * logp).sum(dim=-1).mean()


def gradient_penalty(static_logits: Tensor, static_input: Tensor, norm: GPNorm = "sample") -> Tensor:
    """Batch mean of the norm of d(sum_c logits_c)/d(static input).

    ``norm="sample"``: one L2 norm per sample over ALL non-batch dims (the paper's Eq. 4). ``norm="official"``:
    what the released code computes and what the paper's weights were tuned with: ``sqrt(sum(g**2) + 1e-12)``
    over every non-batch dim but the last (for (B, C, T, H, W): over C, T, H per width column), then the mean
    over samples and columns. It is at most the per-sample norm / sqrt(W) (0.0665x on Swin3D-T at 224 px).

    Built with ``create_graph=True`` so that the ordinary backward of the total loss differentiates it
    (double backprop). ``static_input`` must require grad and have produced ``static_logits``. Assumes
    the model treats samples independently (LayerNorm/GroupNorm, or BatchNorm in eval mode).
    """
    if norm not in GP_NORMS:
        raise ValueError(f"gradient-penalty norm must be one of {GP_NORMS}, got {norm!r}")
    (grad,) = torch.autograd.grad(static_logits.sum(), static_input, create_graph=True)
    if norm == "official":
        if grad.dim() < 3:
            raise ValueError(f"the official norm needs (B, ..., W) inputs of >= 3 dims, got {tuple(grad.shape)}")
        return (grad.pow(2).sum(dim=tuple(range(1, grad.dim() - 1))) + 1e-12).sqrt().mean()
    return grad.flatten(1).norm(p=2, dim=1).mean()


@dataclass
class ALBARTerms:
    """The total loss and every term, for logging. Terms are reported as computed, before weighting."""

    total: Tensor
    ce: Tensor
    logits: Tensor
    static_ce: Tensor | None = None
    neg_entropy: Tensor | None = None
    gp: Tensor | None = None

    def scalars(self) -> dict[str, float]:
        out = {"loss": self.total, "ce": self.ce, "static_ce": self.static_ce,
               "neg_entropy": self.neg_entropy, "gp": self.gp}
        return {k: float(v.detach()) for k, v in out.items() if v is not None}


GPMode = Literal["exact", "finite_difference"]
# below this fd_step, bf16/fp16 rounding dominates the finite difference (benchmarks/fd_precision.py)
FD_MIN_STEP_LOW_PRECISION = 3e-3
FDScheme = Literal["forward", "central"]


class _PrecomputedGrad(torch.autograd.Function):
    """A scalar whose backward adds gradients computed earlier, times the incoming gradient.

    Lets the objective backpropagate the motion loss early (freeing its activations) while the caller's
    ``total.backward()`` (with its 1/grad_accum and any loss scale in the incoming gradient) still puts
    exactly that scaled motion gradient into ``.grad``: the trainer's code stays as it is.
    """

    @staticmethod
    def forward(ctx, value: Tensor, grads: list[Tensor | None], *params: Tensor) -> Tensor:  # type: ignore[override]
        ctx.grads = grads
        return value.detach().clone()

    @staticmethod
    def backward(ctx, g: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        grads, ctx.grads = ctx.grads, None
        if grads is None:
            raise RuntimeError("the motion loss's precomputed gradient was already used: backward the total once")
        return (None, None, *[None if gr is None else gr * g.to(gr.dtype) for gr in grads])


def _backward_motion_now(model: Callable[[Tensor], Tensor], ce: Tensor) -> Tensor:
    """``ce``'s parameter gradients now (its graph freed); returns a stand-in scalar that adds them on backward."""
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"objective.motion_first needs an nn.Module model (to find its parameters), got "
                        f"{type(model).__name__}")
    for dev in ("cuda", "xpu"):
        if torch.is_autocast_enabled(dev) and torch.get_autocast_dtype(dev) == torch.float16:
            raise ValueError("objective.motion_first does not work with fp16 mixed precision: the early backward "
                             "would run without the GradScaler's loss scale (underflow). Use bf16 or turn it off")
    params = [p for p in model.parameters() if p.requires_grad]
    grads = torch.autograd.grad(ce, params, allow_unused=True)
    return _PrecomputedGrad.apply(ce.detach(), list(grads), *params)


def _rng_states(device: torch.device) -> tuple[Tensor, Tensor | None]:
    return torch.get_rng_state(), (torch.cuda.get_rng_state(device) if device.type == "cuda" else None)


def _replay(states: tuple[Tensor, Tensor | None], device: torch.device, fn: Callable[[], Tensor]) -> Tensor:
    """``fn()`` with the random state ``states`` (the same drop-path/dropout draws as the pass that began
    there); the global random state afterwards is as before the call."""
    cpu, dev = states
    with torch.random.fork_rng(devices=[device] if dev is not None else []):
        torch.set_rng_state(cpu)
        if dev is not None:
            torch.cuda.set_rng_state(dev, device)
        return fn()


def finite_difference_penalty(
    forward: Callable[[Tensor], Tensor],
    static_logits: Tensor,
    static_input: Tensor,
    norm: GPNorm = "official",
    step: float = 1e-2,
    scheme: FDScheme = "central",
    rng: tuple[Tensor, Tensor | None] | None = None,
) -> Tensor:
    """The gradient penalty of :func:`gradient_penalty` by a finite difference (Finlay & Oberman, 1905.11468).

    With g = d(sum_c F(s)_c)/ds and d its direction (per sample, or per width column for ``norm="official"``;
    detached), g . d is the penalty's norm, and g . d ~ (sum_c F(s + h d) - sum_c F(s)) / h (``forward``) or
    (sum_c F(s + h d) - sum_c F(s - h d)) / 2h (``central``). Its parameter gradient then needs first-order
    backward only. ``h`` makes the step ``||h d|| = step * ||s||`` per sample. ``rng``: the random state the
    pass that made ``static_logits`` began with; the shifted passes replay it (same stochastic-depth draws).
    ``static_input`` must require grad and have produced ``static_logits``.
    """
    if norm not in GP_NORMS:
        raise ValueError(f"gradient-penalty norm must be one of {GP_NORMS}, got {norm!r}")
    if scheme not in ("forward", "central"):
        raise ValueError(f"finite-difference scheme must be 'forward' or 'central', got {scheme!r}")
    device = static_input.device.type
    low = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else None
    if step < FD_MIN_STEP_LOW_PRECISION and low in (torch.bfloat16, torch.float16):
        warnings.warn(f"finite-difference gradient penalty with fd_step={step:g} under {low} autocast: the "
                      "difference of two nearly equal outputs is then mostly rounding (Swin3D-T, bf16: gradient "
                      "cosine 0.97 to the exact penalty at 1e-3, 0.9995 at the default 1e-2); use fd_step >= "
                      f"{FD_MIN_STEP_LOW_PRECISION:g}", UserWarning, stacklevel=2)
    (g,) = torch.autograd.grad(static_logits.sum(), static_input, retain_graph=True)
    g = g.detach().float()
    b = g.shape[0]
    if norm == "official":
        if g.dim() < 3:
            raise ValueError(f"the official norm needs (B, ..., W) inputs of >= 3 dims, got {tuple(g.shape)}")
        cols = (g.pow(2).sum(dim=tuple(range(1, g.dim() - 1)), keepdim=True) + 1e-12).sqrt()
        direction, ncols = g / cols, g.shape[-1]
    else:
        direction, ncols = g / g.flatten(1).norm(dim=1).clamp_min(1e-12).view(b, *[1] * (g.dim() - 1)), 1
    x = static_input.detach()
    h = step * x.float().flatten(1).norm(dim=1).clamp_min(1e-6) / direction.flatten(1).norm(dim=1).clamp_min(1e-12)
    shift = (h.view(b, *[1] * (g.dim() - 1)) * direction).to(x.dtype)
    states = rng if rng is not None else _rng_states(x.device)

    def f(z: Tensor) -> Tensor:
        return _replay(states, x.device, lambda: forward(z)).float().sum(dim=1)

    if scheme == "forward":
        diff = (f(x + shift) - static_logits.float().sum(dim=1)) / h
    else:
        diff = (f(x + shift) - f(x - shift)) / (2 * h)
    return diff.mean() / ncols


def double_backward_safe(model: Callable[[Tensor], Tensor]) -> Callable[[Tensor], Tensor]:
    """``model`` as the pass whose input gradient is differentiated again must run it: every torch.compile in
    it ignored (compiled graphs refuse double backward; ``force_eager`` reaches nested, regional and wrapped
    compilation: ``torch.compile(DDP(m))``, ``DDP(torch.compile(m))``, ``m.block.compile()``...) and
    ``scaled_dot_product_attention`` on its math kernel (the fused kernels' backward is not differentiable).
    Both are set inside the call, so a checkpointed pass's recomputation in backward runs the same way."""

    def run(x: Tensor) -> Tensor:
        with torch.compiler.set_stance("force_eager"), sdpa_kernel(SDPBackend.MATH):
            return model(x)

    return run


def _static_pass(
    model: Callable[[Tensor], Tensor], static: Tensor, generator: torch.Generator | None, with_gp: bool,
    gp_norm: GPNorm, checkpoint_static: bool, gp_batch: int | None, gp_mode: GPMode, fd_step: float,
    fd_scheme: FDScheme,
) -> tuple[Tensor, Tensor | None]:
    """The static clips' logits (batch order) and, ``with_gp``, their penalty: on all of them, or on
    ``gp_batch`` drawn from ``generator`` (the others through a plain forward)."""

    def static_forward(x: Tensor) -> Tensor:
        if checkpoint_static and torch.is_grad_enabled():
            return torch.utils.checkpoint.checkpoint(model, x, use_reentrant=False)
        return model(x)

    def penalty(inp: Tensor) -> tuple[Tensor, Tensor]:
        """Logits of ``inp`` (requiring grad) and their penalty. The exact penalty's pass runs eager and with
        SDPA's math kernel: compiled graphs and the fused attention kernels have no double backward."""
        if gp_mode == "exact":
            net = double_backward_safe(model)
            out = torch.utils.checkpoint.checkpoint(net, inp, use_reentrant=False) if checkpoint_static else net(inp)
            return out, gradient_penalty(out, inp, gp_norm)
        rng = _rng_states(inp.device)
        out = static_forward(inp)
        return out, finite_difference_penalty(static_forward, out, inp, gp_norm, fd_step, fd_scheme, rng)

    if not with_gp:
        return static_forward(static.detach()), None
    b_all = static.shape[0]
    if gp_batch is None or gp_batch >= b_all:
        return penalty(static.detach().requires_grad_(True))
    pick = torch.randperm(b_all, generator=generator)
    chosen, rest = pick[:gp_batch].to(static.device), pick[gp_batch:].to(static.device)
    sub_logits, gp = penalty(static[chosen].detach().requires_grad_(True))
    rest_logits = static_forward(static[rest].detach())
    inverse = torch.argsort(torch.cat([chosen, rest]))
    return torch.cat([sub_logits, rest_logits])[inverse], gp


def albar_loss(
    model: Callable[[Tensor], Tensor],
    clip: Tensor,
    target: Tensor,
    w_adv: float = 1.0,
    w_ent: float = 4.0,
    w_gp: float = 10.0,
    frame: FrameChoice = "middle",
    time_dim: int = 2,
    generator: torch.Generator | None = None,
    static_from: Tensor | None = None,
    motion_loss: Callable[[Tensor], Tensor] | None = None,
    gp_norm: GPNorm = "official",
    motion_first: bool = False,
    checkpoint_static: bool = False,
    gp_batch: int | None = None,
    gp_mode: GPMode = "exact",
    fd_step: float = 1e-2,
    fd_scheme: FDScheme = "central",
) -> ALBARTerms:
    """ALBAR loss for one batch; call ``.total.backward()`` on the result.

    Motion and static clips go through ``model`` in two forwards, so that the gradient penalty's double
    backward runs through the static half only (2x cheaper than one concatenated forward, measured on
    the small 3D CNN) and BatchNorm never mixes the two. With all three weights 0 no static clip is
    made: this is plain cross-entropy, the "None" baseline, through the same code.

    ``static_from``: cut the static clip from this tensor instead of ``clip`` (e.g. the un-mixed clip
    when a mixing augmentation changed ``clip``). ``motion_loss``: replaces CE(F(x), target) for the
    motion clip (e.g. a Mixup loss over soft labels); receives the motion logits. ``gp_norm``: see
    :func:`gradient_penalty`; the default, "official", is the norm the paper's weights were tuned with.

    Cost options (defaults: today's computation, same numbers):
    ``motion_first``: backpropagate the motion loss before the static forward (its activations are freed
    before the static pass; ``model`` must be an nn.Module; not with fp16 autocast). The returned ``total``
    still backpropagates the motion gradient, scaled by whatever scales the total: same gradients.
    ``checkpoint_static``: the static forward under non-reentrant checkpointing (recomputed in backward, same
    random draws): same gradients, less memory, one more static forward.
    ``gp_batch``: the penalty on ``gp_batch`` of the B static clips, drawn from ``generator`` (their own forward
    with input gradient; the others through a plain forward): an unbiased estimate of the batch-mean penalty.
    ``gp_mode="finite_difference"``: :func:`finite_difference_penalty` (first-order only; ``fd_step``,
    ``fd_scheme``) instead of the double backward.

    A compiled ``model`` (``torch.compile``, ``module.compile()``, whole or in regions) runs every first-order
    pass compiled; the exact penalty's pass runs it eager and with SDPA's math kernel
    (:func:`double_backward_safe`), so models with SDPA attention keep their fused kernels everywhere else.
    """
    use_static = any(w != 0 for w in (w_adv, w_ent, w_gp))
    if not use_static:
        logits = model(clip)
        ce = motion_loss(logits) if motion_loss is not None else F.cross_entropy(logits, target)
        return ALBARTerms(total=ce, ce=ce, logits=logits)
    if gp_mode not in ("exact", "finite_difference"):
        raise ValueError(f"gp_mode must be 'exact' or 'finite_difference', got {gp_mode!r}")
    if gp_batch is not None and gp_batch < 1:
        raise ValueError(f"gp_batch must be >= 1 (or None for the whole batch), got {gp_batch}")

    static = static_clip(static_from if static_from is not None else clip, frame, time_dim, generator)
    logits = model(clip)
    ce = motion_loss(logits) if motion_loss is not None else F.cross_entropy(logits, target)
    ce_term = ce
    if motion_first and ce.requires_grad and torch.is_grad_enabled():
        ce_term = _backward_motion_now(model, ce)
        logits = logits.detach()

    static_logits, gp = _static_pass(model, static, generator, w_gp != 0, gp_norm, checkpoint_static, gp_batch,
                                     gp_mode, fd_step, fd_scheme)
    static_ce = adversarial_ce(static_logits, target)
    neg_ent = negative_entropy(static_logits)
    total = ce_term - w_adv * static_ce + w_ent * neg_ent
    if gp is not None:
        total = total + w_gp * gp
    return ALBARTerms(total=total, ce=ce, logits=logits, static_ce=static_ce, neg_entropy=neg_ent, gp=gp)


class ALBARParams(BaseModel):
    """``objective:`` parameters of ALBAR (``name: albar``)."""

    model_config = ConfigDict(extra="forbid")

    # finite and >= 0: a negative weight turns a term around (w_ent < 0 sharpens the static prediction)
    w_adv: float = Field(ge=0, allow_inf_nan=False, default=1.0)
    w_ent: float = Field(ge=0, allow_inf_nan=False, default=4.0)
    w_gp: float = Field(ge=0, allow_inf_nan=False, default=10.0)
    frame: Union[Literal["middle", "random", "first", "last"], int] = "middle"
    # Gradient-penalty norm. official (default): the released code's, one norm per (sample, width column) over
    # C, T, H, then the mean: what the paper's w_gp = 10 was tuned with. sample: the per-sample norm of the
    # paper's Eq. 4, ~sqrt(W) times larger (15x at 224 px): pair it with a w_gp ~sqrt(W) times smaller.
    gp_norm: GPNorm = "official"
    # Static-clip weights ramp linearly from 0 over this many epochs. A model trained from scratch
    # otherwise collapses to a constant output (CE(x) - CE(s) = 0 when F ignores its input); the paper
    # fine-tunes a Kinetics-pretrained model and needs no ramp (0).
    ramp_epochs: float = Field(ge=0, default=0)
    # Cost options (issue 13); the defaults compute what ALBAR always computed, with the same numbers.
    # motion_first: backpropagate the motion loss before the static forward (frees its activations; same
    # gradients; not with fp16 mixed precision). checkpoint_static: non-reentrant checkpointing of the static
    # pass (same gradients, less memory, one more static forward).
    motion_first: bool = False
    checkpoint_static: bool = False
    # gp_batch: the penalty on this many of the batch's static clips (drawn from the step's generator), an
    # unbiased estimate of the batch-mean penalty; None: every clip. gp_mode finite_difference: the penalty by a
    # finite difference along the input gradient's direction (first-order passes only; fd_step relative to the
    # clip's norm; fd_scheme forward or central).
    gp_batch: int | None = Field(default=None, ge=1)
    gp_mode: GPMode = "exact"
    fd_step: float = Field(gt=0, lt=1, allow_inf_nan=False, default=1e-2)
    fd_scheme: FDScheme = "central"


class ALBARLoss(Objective):
    """The objective with its weights and static-frame choice fixed; see :func:`albar_loss`.

    ``gp_norm`` is "official" by default: with it the paper's weights (1, 4, 10) train the penalty the
    published numbers were trained with; "sample" is the per-sample norm of the paper's Eq. 4 (~sqrt(W)x stronger).

    >>> criterion = ALBARLoss(w_adv=1, w_ent=4, w_gp=10)
    >>> terms = criterion(model, clips, labels)     # doctest: +SKIP
    >>> terms.total.backward()                      # doctest: +SKIP
    """

    def __init__(
        self, w_adv: float = 1.0, w_ent: float = 4.0, w_gp: float = 10.0, frame: FrameChoice = "middle",
        time_dim: int = 2, gp_norm: GPNorm = "official", ramp_epochs: float = 0.0, motion_first: bool = False,
        checkpoint_static: bool = False, gp_batch: int | None = None, gp_mode: GPMode = "exact",
        fd_step: float = 1e-2, fd_scheme: FDScheme = "central",
    ) -> None:
        super().__init__()
        if isinstance(frame, bool):
            static_frame_index(1, frame)  # raises, with the same message as at run time
        # the config's rules (ALBARParams) for the Python API too: one set of checks, one set of messages
        p = ALBARParams(w_adv=w_adv, w_ent=w_ent, w_gp=w_gp, frame=frame, gp_norm=gp_norm, ramp_epochs=ramp_epochs,
                        motion_first=motion_first, checkpoint_static=checkpoint_static, gp_batch=gp_batch,
                        gp_mode=gp_mode, fd_step=fd_step, fd_scheme=fd_scheme)
        self.w_adv, self.w_ent, self.w_gp, self.frame, self.time_dim = p.w_adv, p.w_ent, p.w_gp, p.frame, time_dim
        self.gp_norm, self.ramp_epochs = p.gp_norm, p.ramp_epochs
        self.motion_first, self.checkpoint_static = p.motion_first, p.checkpoint_static
        self.gp_batch, self.gp_mode, self.fd_step, self.fd_scheme = p.gp_batch, p.gp_mode, p.fd_step, p.fd_scheme

    @classmethod
    def from_params(cls, params: ALBARParams) -> ALBARLoss:
        return cls(**params.model_dump())

    @property
    def per_sample_inputs(self) -> bool:  # type: ignore[override]
        """Static clips pass through the model only when a static-clip weight is on."""
        return any(w != 0 for w in (self.w_adv, self.w_ent, self.w_gp))

    def weight_scale(self, step: int | None, steps_per_epoch: int | None) -> float:
        """The static-clip weights' factor after ``step`` optimiser steps: a linear ramp from 0 over
        ``ramp_epochs`` epochs (1 without a ramp, or when ``step`` is None)."""
        if step is None or not self.ramp_epochs:
            return 1.0
        if not steps_per_epoch:
            raise ValueError("ALBAR's ramp_epochs needs steps_per_epoch to place the step in its ramp")
        ramp = round(self.ramp_epochs * steps_per_epoch)
        return min(1.0, step / ramp) if ramp else 1.0

    def step_loss(self, model: Callable[[Tensor], Tensor], batch: StepInput) -> ALBARTerms:
        """The objective of one training step; the static clip comes from ``batch.static_source``."""
        return self(model, batch.clip, batch.labels, generator=batch.generator, static_from=batch.static_source,
                    motion_loss=batch.motion_loss, weight_scale=self.weight_scale(batch.step, batch.steps_per_epoch))

    def forward(
        self, model: Callable[[Tensor], Tensor], clip: Tensor, target: Tensor,
        generator: torch.Generator | None = None, static_from: Tensor | None = None,
        motion_loss: Callable[[Tensor], Tensor] | None = None, weight_scale: float = 1.0,
    ) -> ALBARTerms:
        """``weight_scale`` multiplies the three static-clip weights (a ramp from 0 during warm-up)."""
        w = weight_scale
        return albar_loss(model, clip, target, w * self.w_adv, w * self.w_ent, w * self.w_gp, self.frame,
                          self.time_dim, generator, static_from, motion_loss, self.gp_norm, self.motion_first,
                          self.checkpoint_static, self.gp_batch, self.gp_mode, self.fd_step, self.fd_scheme)

    def extra_repr(self) -> str:
        return (f"w_adv={self.w_adv}, w_ent={self.w_ent}, w_gp={self.w_gp}, frame={self.frame!r}, "
                f"gp_norm={self.gp_norm!r}, ramp_epochs={self.ramp_epochs}, motion_first={self.motion_first}, "
                f"checkpoint_static={self.checkpoint_static}, gp_batch={self.gp_batch}, gp_mode={self.gp_mode!r}, "
                f"fd_step={self.fd_step}, fd_scheme={self.fd_scheme!r}")


register_objective("albar", params=ALBARParams)(ALBARLoss.from_params)
