"""End-to-end training throughput of `albar train`: real encoded videos, the loader, the model, the objective.

Writes N H.264 videos (320x240, 96 frames) of moving shapes, then trains on them with the paper's input
(32 x 2 frames, short side 256, random resized crop 224) for a few epochs, and prints clips/s from the step
timestamps after the first epoch and the peak GPU memory, then the same time split into steps inside an epoch
(the loader and the model in steady state) and epoch boundaries (validation, checkpoints, workers starting
again). Run once per objective:

    python benchmarks/train_throughput.py --out /tmp/tp --model swin3d_t --objective albar --workers 8
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import av
import numpy as np
import torch

from albar.cli import main as albar


def write_videos(root: Path, n: int, classes: int = 4) -> Path:
    rng = np.random.default_rng(0)
    lines = []
    for i in range(n):
        path = root / f"v{i:04d}.mp4"
        if not path.exists():
            bg = rng.integers(0, 255, (240, 320, 3), dtype=np.uint8)
            with av.open(str(path), "w") as c:
                s = c.add_stream("libx264", rate=30)
                s.width, s.height, s.pix_fmt = 320, 240, "yuv420p"
                for t in range(96):
                    f = bg.copy()
                    x = (3 * t + 7 * i) % 260
                    f[90:150, x:x + 60] = (40 * (i % classes), 200, 100)
                    c.mux(s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
                c.mux(s.encode())
        lines.append(f"{path.name} {i % classes}")
    (root / "list.txt").write_text("\n".join(lines) + "\n")
    return root / "list.txt"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--videos", type=int, default=160)
    ap.add_argument("--model", default="swin3d_t")
    ap.add_argument("--objective", choices=["ce", "albar"], default="albar")
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--precision", default="bf16")
    args = ap.parse_args()
    data = args.out / "videos"
    data.mkdir(parents=True, exist_ok=True)
    lst = write_videos(data, args.videos)
    run = args.out / f"run-{args.model}-{args.objective}"
    weights = ["objective.w_adv=0", "objective.w_ent=0", "objective.w_gp=0"] if args.objective == "ce" else []
    code = albar(["train", f"out_dir={run}", "resume=never", f"model.name={args.model}", "model.num_classes=4",
                  f"mixed_precision={args.precision}", f"data.train={{list: {lst}}}", "data.val_fraction=0.1",
                  f"data.num_workers={args.workers}", f"optim.batch_size={args.batch}", f"optim.epochs={args.epochs}",
                  "optim.warmup_epochs=0", "log.tensorboard=false", "--no-progress", *weights])
    if code:
        return code
    steps = [json.loads(line) for line in (run / "steps.jsonl").read_text().splitlines()]
    later = [s for s in steps if s["epoch"] > 1]
    seconds = later[-1]["time"] - later[0]["time"]
    clips = (len(later) - 1) * args.batch
    peak = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else float("nan")
    print(f"{args.model} {args.objective} {args.precision}, batch {args.batch}, {args.workers} workers: "
          f"{clips / seconds:.1f} clips/s over {len(later) - 1} steps (epochs 2+, includes validation pauses), "
          f"peak GPU memory {peak:.1f} GiB")
    # Split the wall time: steps inside an epoch (model + loader in steady state) and what an epoch boundary
    # costs (validation, checkpoints, the loader's workers starting again, its first batch). On a small set the
    # boundary can dominate the end-to-end figure above.
    inner = [b["time"] - a["time"] for a, b in zip(steps, steps[1:]) if a["epoch"] == b["epoch"] and a["epoch"] > 1]
    bounds = [b["time"] - a["time"] for a, b in zip(steps, steps[1:]) if b["epoch"] == a["epoch"] + 1]
    if inner:
        per_step = sorted(inner)[len(inner) // 2]
        print(f"inside epochs: median {per_step:.3f} s/step = {args.batch / per_step:.1f} clips/s "
              f"(slowest step {max(inner):.3f} s, {len(inner)} steps); epoch boundaries: "
              + ", ".join(f"{b:.1f} s" for b in bounds) + f" (steps per epoch {len(steps) // args.epochs})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
