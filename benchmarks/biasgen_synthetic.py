"""Box-built vs mask-built SCUBA on the synthetic benchmark: how much background a box leaks, and what it
does to a plain-CE model's SCUBA accuracy.

The synthetic test clips' exact object masks are re-rendered (``render_clip_with_masks``); the box of a
frame is its mask's bounding box. Both sets get stripe backgrounds drawn with the same seed, so they differ
only in the mask. Then ``albar eval`` runs the checkpoint on both (commands printed).

    PYTHONPATH=src python benchmarks/biasgen_synthetic.py --bench /tmp/albarcache/synthetic-v2-4000x8x32-s0 \\
        --out /tmp/biasgen-syn --checkpoint /tmp/cmp_full/none/best.pt
"""

from __future__ import annotations

import argparse
import csv
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from albar.cli import main as albar
from albar.data.io import read_clip
from albar.synthetic import load_benchmark
from albar.synthetic.render import ClipSpec, render_clip_with_masks


def write_masks_and_boxes(bench_root: Path, out: Path, margin: int = 0) -> tuple[Path, Path]:
    """``out/masks/<key>/00001.png`` (binary: antialiased mask > 0.5) and ``out/boxes.csv`` (their boxes,
    grown by ``margin`` pixels on every side and clipped to the frame: annotated boxes are rarely tight)."""
    bench = load_benchmark(bench_root)
    rows = ["key,frame,x1,y1,x2,y2\n"]
    worst = 0.0
    with open(bench_root / "lists" / "test_meta.csv", newline="") as fh:
        meta = list(csv.DictReader(fh))
    for i, r in enumerate(meta):
        spec = ClipSpec(r["motion"], r["shape"], int(r["colour"]), r["background"], int(r["seed"]))
        frames, masks = render_clip_with_masks(spec, bench.spec.num_frames, bench.spec.size)
        if i < 20:  # the re-rendered clip is the one on disk (up to H.264 loss)
            decoded = read_clip(bench_root / "videos" / "test" / f"{r['key']}.mp4", lambda n: range(n))
            worst = max(worst, float(np.abs(decoded.astype(float) - frames).mean()))
        folder = out / "masks" / r["key"]
        folder.mkdir(parents=True, exist_ok=True)
        for t, m in enumerate(masks > 0.5):
            Image.fromarray(m.astype(np.uint8) * 255).save(folder / f"{t + 1:05d}.png")
            ys, xs = np.nonzero(m)
            if len(xs):
                size = bench.spec.size
                x1, y1 = max(xs.min() - margin, 0), max(ys.min() - margin, 0)
                x2, y2 = min(xs.max() + 1 + margin, size), min(ys.max() + 1 + margin, size)
                rows.append(f"{r['key']},{t + 1},{x1},{y1},{x2},{y2}\n")
    if worst > 12:  # H.264 loss on these noisy 32x32 clips is ~6; another render differs by ~50
        sys.exit(f"re-rendered clips differ from {bench_root}'s videos (mean abs {worst:.1f}): another render version")
    (out / "boxes.csv").write_text("".join(rows))
    print(f"masks and boxes of {len(meta)} test clips (re-render vs video: mean abs diff <= {worst:.2f})")
    return out / "masks", out / "boxes.csv"


def paired(checkpoint: Path, overrides: list[str], bench_root: Path) -> dict:
    """Per clip, box set vs mask set: who is right where, the mean probability of the true class, and how
    often the prediction is the class the clip's (leaked) training background stands for."""
    import torch
    from accelerate import Accelerator

    from albar.config import load_config
    from albar.data.bundle import build_data
    from albar.evaluation.predict import predict
    from albar.models import build_model, load_checkpoint_weights
    from albar.synthetic.render import TRAIN_BACKGROUNDS

    cfg = load_config(checkpoint.parent / "config.yaml", overrides + ["data.test=null"])
    torch.set_num_threads(1)
    data = build_data(cfg.data, cfg.seed, cfg.model.num_classes, train=False, progress=False)
    model = build_model(cfg.model.name, cfg.model.num_classes, None, **cfg.model.kwargs)
    load_checkpoint_weights(model, checkpoint)
    acc = Accelerator(cpu=True)
    model = acc.prepare(model)
    with open(bench_root / "lists" / "test_meta.csv", newline="") as fh:
        bg_class = {r["key"]: TRAIN_BACKGROUNDS.index(r["background"]) for r in csv.DictReader(fh)}
    preds = {name: predict(model, data.scuba[name], acc, 64) for name in ("box", "mask")}
    box, mask = preds["box"], preds["mask"]
    assert box.keys == mask.keys
    right = {k: v.predicted() == v.labels for k, v in preds.items()}
    out = {"clips": len(box.keys), "both_right": int((right["box"] & right["mask"]).sum()),
           "only_box_right": int((right["box"] & ~right["mask"]).sum()),
           "only_mask_right": int((~right["box"] & right["mask"]).sum())}
    for name, p in preds.items():
        cue = np.array([bg_class[k.split("__")[0]] for k in p.keys])
        off = cue != p.labels  # clips whose training background points to another class
        out[name] = {"top1": float(right[name].mean()),
                     "mean_p_true": float(p.scores[np.arange(len(p.keys)), p.labels].mean()),
                     "predicts_background_class_when_it_differs": float((p.predicted() == cue)[off].mean()),
                     "clips_whose_background_differs": int(off.sum())}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bench", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--checkpoint", type=Path, help="a trained run's best.pt (its config.yaml beside it)")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--box-margin", type=int, default=0, help="pixels added around each tight box")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    masks, boxes = write_masks_and_boxes(args.bench, args.out, args.box_margin)
    common = ["--videos", str(args.bench / "lists" / "test.txt"), "--root", str(args.bench), "--stripes",
              "--dataset", "SYN", "--seed", "0", "--leakage-masks", str(masks), "--workers", str(args.workers),
              "--no-progress"]
    summary = {}
    for name, mask_args in (("box", ["--boxes", str(boxes)]), ("mask", ["--masks", str(masks)])):
        cmd = ["make-bias-set", *mask_args, *common, "--out", str(args.out / name)]
        if not (args.out / name / "manifest.json").is_file():
            print("albar " + shlex.join(cmd))
            if albar(cmd) != 0:
                return 1
        m = json.loads((args.out / name / "manifest.json").read_text())
        summary[name] = {"counts": m["counts"], "leakage": m["leakage"]["overall"]}
    print(f"built in {time.time() - t0:.0f} s")
    if args.checkpoint is not None:
        overrides = ["data.source=lists", f"data.test={{list: {args.bench / 'lists' / 'test.txt'}}}",
                     "data.num_workers=0"]
        for name in ("box", "mask"):
            for kind in ("scuba", "scufo"):
                overrides += [f"data.bias.{kind}.{name}.list={args.out / name / 'lists' / f'{kind}_Stripe.txt'}",
                              f"data.bias.{kind}.{name}.root={args.out / name}", f"data.bias.{kind}.{name}.key=stem"]
        cmd = ["eval", "--config", str(args.checkpoint.parent / "config.yaml"), "--checkpoint", str(args.checkpoint),
               "--out", str(args.out / "eval"), "--no-progress", *overrides]
        print("albar " + shlex.join(cmd))
        t1 = time.time()
        if albar(cmd) != 0:
            return 1
        summary["eval"] = json.loads((args.out / "eval" / "results.json").read_text())
        summary["eval_seconds"] = round(time.time() - t1, 1)
        summary["paired"] = paired(args.checkpoint, overrides, args.bench)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps({k: v for k, v in summary.items() if k != "eval"}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
