"""Official vs per-sample gradient-penalty norm on paper-sized inputs (ALBAR.md 5b).

The released code's norm (one L2 norm per (sample, width column) over C, T, H, then the mean) against the
per-sample norm over all of C, T, H, W, on the same input gradient of a video model's static clip. The ratio
says how much weaker the official penalty is, i.e. which w_gp on the per-sample norm matches the paper's 10.
Random weights (no download here); inputs are static clips of a random normalised frame and of a smooth frame.

    python benchmarks/gp_norm_ratio.py [--model swin3d_t] [--frames 32] [--size 224] [--samples 2]
"""

from __future__ import annotations

import argparse
import math

import torch
import torch.nn.functional as F

from albar.models import build_model
from albar.objectives import static_clip


def norms(grad: torch.Tensor) -> tuple[float, float]:
    """(official, per-sample) norm of one sample's gradient (1, C, T, H, W), as the objective computes them."""
    official = float((grad.pow(2).sum(dim=(1, 2, 3)) + 1e-12).sqrt().mean())
    return official, float(grad.flatten(1).norm(dim=1).mean())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="swin3d_t")
    p.add_argument("--frames", type=int, default=32)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--samples", type=int, default=2)
    p.add_argument("--classes", type=int, default=51)
    args = p.parse_args()
    torch.manual_seed(0)
    model = build_model(args.model, args.classes).eval()  # eval: stochastic depth off, samples independent
    print(f"{args.model}, input 1x3x{args.frames}x{args.size}x{args.size}, random init, 1/sqrt(W) = "
          f"{1 / math.sqrt(args.size):.4f}")
    print(f"{'input':>8} {'official':>10} {'per-sample':>11} {'ratio':>7}")
    ratios = []
    for _ in range(args.samples):
        noise = torch.randn(1, 3, 1, args.size, args.size)
        smooth = F.interpolate(torch.randn(1, 3, 1, 8, 8), size=(1, args.size, args.size), mode="trilinear")
        for kind, frame in (("noise", noise), ("smooth", smooth)):
            s = static_clip(frame.expand(-1, -1, args.frames, -1, -1), "first").requires_grad_(True)
            (grad,) = torch.autograd.grad(model(s).sum(), s)
            official, sample = norms(grad)
            ratios.append(official / sample)
            print(f"{kind:>8} {official:10.4g} {sample:11.4g} {official / sample:7.4f}")
    print(f"ratio official / per-sample: mean {sum(ratios) / len(ratios):.4f}, min {min(ratios):.4f}, "
          f"max {max(ratios):.4f}; w_gp 10 on the official norm ~ w_gp {10 * sum(ratios) / len(ratios):.2f} "
          "on the per-sample norm")


if __name__ == "__main__":
    main()
