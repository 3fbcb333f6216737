"""Cost of one training step at paper scale: Swin3D-T, 32 x 224 x 224 clips, plain CE vs ALBAR.

Prints seconds per step, clips/s and peak GPU memory for each precision, the gradient penalty's value in
bf16/fp16 against fp32 on the same input and weights, and the time per epoch that follows for the
paper's datasets (one GPU, batch 8, 80% of the training split).

    python benchmarks/gpu_step.py [--batch 8] [--steps 8] [--model swin3d_t]
"""

from __future__ import annotations

import argparse
import time

import torch

from albar.models import build_model
from albar.objectives import ALBARLoss

TRAIN_CLIPS = {"HMDB51 split 1": int(3570 * 0.8), "UCF101 split 1": int(9537 * 0.8), "Kinetics-400": int(240_000 * 0.8)}


def bench(model, criterion, x, y, dtype, steps: int) -> tuple[float, float]:
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
    scaler = torch.amp.GradScaler("cuda", enabled=dtype == torch.float16)
    torch.cuda.reset_peak_memory_stats()
    times = []
    for i in range(steps + 2):
        torch.cuda.synchronize()
        t = time.perf_counter()
        with torch.autocast("cuda", dtype=dtype, enabled=dtype != torch.float32):
            terms = criterion(model, x, y)
        scaler.scale(terms.total).backward()
        scaler.step(opt)
        scaler.update()
        opt.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        if i >= 2:
            times.append(time.perf_counter() - t)
        assert torch.isfinite(terms.total), terms.scalars()
    return sorted(times)[len(times) // 2], torch.cuda.max_memory_allocated() / 2**30


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="swin3d_t")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--frames", type=int, default=32)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--steps", type=int, default=8)
    args = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}; {args.model}, batch {args.batch}, "
          f"{args.frames}x{args.size}x{args.size}")
    torch.manual_seed(0)
    x = torch.randn(args.batch, 3, args.frames, args.size, args.size, device="cuda")
    y = torch.randint(0, 51, (args.batch,), device="cuda")
    model = build_model(args.model, 51).cuda().train()
    # The gradient penalty under autocast, against fp32 on the same input and weights.
    gp = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16), ("fp16", torch.float16)):
        with torch.autocast("cuda", dtype=dtype, enabled=dtype != torch.float32):
            terms = ALBARLoss(1, 4, 10)(model, x[:2], y[:2])
        terms.total.backward()
        model.zero_grad(set_to_none=True)
        gp[name] = terms.gp.item()
    print("gradient penalty on one batch: " + ", ".join(f"{k} {v:.4g}" for k, v in gp.items())
          + f" (bf16 vs fp32: {100 * abs(gp['bf16'] - gp['fp32']) / gp['fp32']:.1f}%)")
    print(f"{'precision':9s} {'objective':9s} {'s/step':>7s} {'clips/s':>8s} {'peak GiB':>9s}")
    rows = {}
    for pname, dtype in (("bf16", torch.bfloat16), ("fp32+tf32", torch.float32), ("fp16", torch.float16)):
        for oname, crit in (("plain CE", ALBARLoss(0, 0, 0)), ("ALBAR", ALBARLoss(1, 4, 10))):
            try:
                s, mem = bench(model, crit, x, y, dtype, args.steps)
            except torch.OutOfMemoryError:
                print(f"{pname:9s} {oname:9s} out of memory")
                torch.cuda.empty_cache()
                continue
            rows[(pname, oname)] = s
            print(f"{pname:9s} {oname:9s} {s:7.3f} {args.batch / s:8.1f} {mem:9.1f}")
    print("\nestimated time per epoch on this GPU (one GPU, batch 8, 80% of the training split):")
    for (pname, oname), s in rows.items():
        if pname == "bf16":
            cells = ", ".join(f"{d} {n / args.batch * s / 60:.1f} min" for d, n in TRAIN_CLIPS.items())
            print(f"  {oname:9s} {cells}")


if __name__ == "__main__":
    main()
