"""Does ALBAR's finite-difference gradient penalty stay faithful under bf16 autocast? (CPU, NOTES.md issue 13)

The finite difference estimates g . d by (sum_c F(s + h d) - sum_c F(s)) / h (forward) or by a central difference.
Under bf16 autocast the logits carry ~0.4% rounding and the first layer rounds its input to bf16 too, so at a small
``fd_step`` the difference of two nearly equal logit sums may be mostly rounding. This measures the penalty term
alone (official norm, model in train mode, the same stochastic-depth draws for every pass) against the exact
double-backward penalty in fp32: the value's relative error and the cosine of the penalty's parameter gradient.

    python benchmarks/fd_precision.py [--models small3d small3d-gelu swin3d_t] [--steps 1e-3 1e-2 ...] [--seeds 0 1]

Rows: the exact penalty (fp32 reference, and under bf16), the finite difference in fp32 and under
``torch.autocast("cpu", dtype=torch.bfloat16)``, and one mitigation: the same under bf16 with only the final
classifier layer in fp32 ("bf16+fp32 head"). A larger ``fd_step`` is the other (free) mitigation: read it off the
step column. Each seed draws its own random weights and its own clip. The quantisation table says how much of the
shift h d survives the bf16 rounding of the input: |round(s + h d) - round(s)| / |h d| and its cosine to h d.
Shapes: small3d 8 x 3 x 8 x 32 x 32, Swin3D-T 2 x 3 x 16 x 112 x 112 (random init, 8 classes). small3d-gelu is
small3d with GELU for ReLU (same weights): ReLU kinks make the finite difference's parameter gradient noisy even
in fp32, which hides the rounding. s/pass is wall time of one penalty + backward on a shared CPU: indicative only.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from albar.models import build_model
from albar.objectives.albar import finite_difference_penalty, gradient_penalty, static_clip

# small3d-gelu: small3d (same weights per seed) with GELU for ReLU, to tell the ReLU kinks from the rounding
SHAPES = {"small3d": (8, 3, 8, 32, 32), "small3d-gelu": (8, 3, 8, 32, 32), "swin3d_t": (2, 3, 16, 112, 112)}
SMALL_STEPS = [1e-3, 3e-3, 1e-2, 3e-2, 1e-1]
DEFAULT_STEPS = {"small3d": SMALL_STEPS, "small3d-gelu": SMALL_STEPS, "swin3d_t": [1e-3, 3e-3, 1e-2, 1e-1]}
DEFAULT_SEEDS = {"small3d": [0, 1, 2], "small3d-gelu": [0, 1, 2], "swin3d_t": [0, 1]}
# swin3d_t's default grid is small (a pass takes seconds): forward scheme and fp32 head at this step only
SWIN_EXTRA_STEP = 1e-2
NORM = "official"
DRAW_SEED = 123  # the stochastic-depth draws, the same for every pass


@dataclass(frozen=True)
class Variant:
    """One way to compute the penalty: exact or a finite difference, in some precision."""

    precision: str  # "fp32", "bf16" or "bf16+fp32 head"
    scheme: str = "exact"  # "exact", "forward" or "central"
    step: float | None = None

    @property
    def label(self) -> str:
        what = "exact" if self.scheme == "exact" else f"fd {self.scheme} {self.step:g}"
        return f"{self.precision:14s} {what}"


@dataclass
class Result:
    value: float
    grad: Tensor
    seconds: float

    @property
    def finite(self) -> bool:
        return math.isfinite(self.value) and bool(torch.isfinite(self.grad).all())


def plan(model_name: str, steps: list[float] | None, schemes: list[str] | None) -> list[Variant]:
    """The variants to run; the first is the reference (exact, fp32)."""
    out = [Variant("fp32"), Variant("bf16")]
    swin_default = model_name == "swin3d_t" and steps is None and schemes is None
    step_list = steps or DEFAULT_STEPS[model_name]
    pairs = [(sc, st) for sc in (schemes or ["forward", "central"]) for st in step_list]
    if swin_default:
        pairs = [("central", st) for st in step_list] + [("forward", SWIN_EXTRA_STEP)]
    for precision in ("fp32", "bf16"):
        out += [Variant(precision, sc, st) for sc, st in pairs]
    head_steps = [SWIN_EXTRA_STEP] if swin_default else step_list
    out += [Variant("bf16+fp32 head", "central", st) for st in head_steps]
    return out


class FP32Head(nn.Module):
    """Runs the wrapped layer in fp32 whatever the autocast (its input is cast up, the weights stay fp32)."""

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, x: Tensor) -> Tensor:
        with torch.autocast(x.device.type, enabled=False):
            return self.layer(x.float())


@contextlib.contextmanager
def fp32_head(model: nn.Module) -> Iterator[None]:
    """The model's final Linear (``fc`` or ``head``) wrapped in :class:`FP32Head` for the duration; parameter order
    is unchanged (the wrapper takes the layer's place in ``_modules``)."""
    attr = next(a for a in ("fc", "head") if isinstance(getattr(model, a, None), nn.Linear))
    layer = getattr(model, attr)
    setattr(model, attr, FP32Head(layer))
    try:
        yield
    finally:
        setattr(model, attr, layer)


def penalty_grad(model: nn.Module, static: Tensor, v: Variant) -> Result:
    """The penalty (as ``albar_loss``'s static pass computes it) and its parameter gradient, flattened (float64)."""
    model.zero_grad(set_to_none=True)
    inp = static.detach().requires_grad_(True)
    bf16 = v.precision != "fp32"
    cast = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    head = fp32_head(model) if v.precision == "bf16+fp32 head" else contextlib.nullcontext()
    t0 = time.perf_counter()
    with head:
        torch.manual_seed(DRAW_SEED)
        rng = (torch.get_rng_state(), None)  # what albar_loss's _static_pass hands on: the state before the pass
        with cast:
            logits = model(inp)
            if v.scheme == "exact":
                gp = gradient_penalty(logits, inp, NORM)
            else:
                assert v.step is not None
                gp = finite_difference_penalty(model, logits, inp, norm=NORM, step=v.step, scheme=v.scheme, rng=rng)
        gp.backward()  # outside autocast, as the trainer does
    seconds = time.perf_counter() - t0
    grad = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).flatten() for p in model.parameters()])
    return Result(float(gp.detach()), grad.double(), seconds)


def quantisation(model: nn.Module, static: Tensor, steps: list[float]) -> list[tuple[float, float, float]]:
    """Per step: (|round(s + h d) - round(s)| / |h d|, cosine of the two, share of elements that change), bf16
    rounding, with d and h as :func:`finite_difference_penalty` makes them (official norm) from an fp32 pass."""
    inp = static.detach().requires_grad_(True)
    torch.manual_seed(DRAW_SEED)
    (g,) = torch.autograd.grad(model(inp).sum(), inp)
    cols = (g.pow(2).sum(dim=tuple(range(1, g.dim() - 1)), keepdim=True) + 1e-12).sqrt()
    d = g / cols
    b = g.shape[0]
    x = static.detach()
    out = []
    for step in steps:
        h = step * x.flatten(1).norm(dim=1) / d.flatten(1).norm(dim=1)
        shift = h.view(b, *[1] * (g.dim() - 1)) * d
        seen = (x + shift).bfloat16().float() - x.bfloat16().float()
        ratio = float(seen.norm() / shift.norm())
        cos = float(F.cosine_similarity(seen.flatten(), shift.flatten(), dim=0))
        out.append((ratio, cos, float((seen != 0).float().mean())))
    return out


def setup(model_name: str, seed: int, batch: int | None) -> tuple[nn.Module, Tensor]:
    torch.manual_seed(seed)
    model = build_model(model_name.removesuffix("-gelu"), 8).train()
    if model_name.endswith("-gelu"):
        for name, module in list(model.named_modules()):
            if isinstance(module, nn.ReLU):
                model.get_submodule(name.rpartition(".")[0]).register_module(name.rpartition(".")[2], nn.GELU())
    gen = torch.Generator().manual_seed(seed)
    shape = (batch or SHAPES[model_name][0], *SHAPES[model_name][1:])
    return model, static_clip(torch.randn(shape, generator=gen))


def run_model(model_name: str, seeds: list[int], steps: list[float] | None, schemes: list[str] | None,
              batch: int | None) -> int:
    """Prints the tables of one model; returns the number of non-finite results."""
    variants = plan(model_name, steps, schemes)
    shape = (batch or SHAPES[model_name][0], *SHAPES[model_name][1:])
    print(f"\n{model_name} {shape}, seeds {seeds}, official norm, train mode; reference: exact penalty in fp32")
    print("err: penalty value / reference - 1 (%); cos: cosine of the penalty's parameter gradient to the "
          "reference's; |g|: its norm / the reference's")
    rows: dict[Variant, list[tuple[float, float, float]]] = {v: [] for v in variants}
    secs: dict[Variant, float] = {v: 0.0 for v in variants}
    refs, quant, bad = [], [], 0
    fd_steps = sorted({v.step for v in variants if v.step is not None})
    for seed in seeds:
        model, static = setup(model_name, seed, batch)
        ref = penalty_grad(model, static, variants[0])
        refs.append(ref.value)
        for v in variants:
            r = ref if v == variants[0] else penalty_grad(model, static, v)
            secs[v] += r.seconds / len(seeds)
            if not r.finite:
                bad += 1
            cos = float(F.cosine_similarity(r.grad, ref.grad, dim=0))
            rows[v].append((100 * (r.value / ref.value - 1), cos, float(r.grad.norm() / ref.grad.norm())))
        quant.append(quantisation(model, static, fd_steps))
    print("reference penalty values: " + ", ".join(f"{x:.4g}" for x in refs))
    head = " ".join(f"{'err% s' + str(s):>10s} {'cos':>7s} {'|g|':>6s}" for s in seeds)
    print(f"{'precision':14s} {'penalty':20s} {head} {'min cos':>8s} {'s/pass':>7s}")
    for v in variants:
        cells = " ".join(f"{e:+10.3f} {c:7.4f} {n:6.3f}" if math.isfinite(e) and math.isfinite(c) else
                         f"{'non-finite':>25s}" for e, c, n in rows[v])
        worst = min(c for _, c, _ in rows[v])
        print(f"{v.label:35s} {cells} {worst:8.4f} {secs[v]:7.2f}", flush=True)
    print("bf16 input rounding of the shift h d (mean over seeds): kept = |round(s+hd) - round(s)| / |hd|, cos to hd, "
          "share of elements changed")
    for i, step in enumerate(fd_steps):
        kept, cos, changed = (sum(q[i][j] for q in quant) / len(quant) for j in range(3))
        print(f"  fd_step {step:<8g} kept {kept:6.3f}  cos {cos:6.3f}  changed {changed:6.3f}")
    return bad


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    ap.add_argument("--steps", nargs="+", type=float, default=None,
                    help="fd_step values (default: small3d 1e-3 3e-3 1e-2 3e-2 1e-1; swin3d_t 1e-3 3e-3 1e-2 1e-1, "
                         "central only, plus forward and fp32 head at 1e-2)")
    ap.add_argument("--schemes", nargs="+", default=None, choices=["forward", "central"],
                    help="finite-difference schemes (default: both; swin3d_t: see --steps)")
    ap.add_argument("--seeds", nargs="+", type=int, default=None,
                    help="model-and-clip seeds (default: small3d 0 1 2, swin3d_t 0 1)")
    ap.add_argument("--batch", type=int, default=None, help="batch size (default: small3d 8, swin3d_t 2)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    bad = 0
    for name in args.models:
        t1 = time.perf_counter()
        bad += run_model(name, args.seeds or DEFAULT_SEEDS[name], args.steps, args.schemes, args.batch)
        print(f"{name}: {time.perf_counter() - t1:.0f} s")
    print(f"\nnon-finite results (NaN/inf in value or gradient): {bad}; {args.threads} thread(s), "
          f"wall {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
