"""``albar make-bias-set``: SCUBA + SCUFO (+ ConflFG) from your videos, actor masks and backgrounds.

One run builds one background source into a new folder ``--out``:
  <out>/<DS>_SCUBA_<Source>/<key>__<n>.zip    (or <key>__<n>/frame000001.jpg with --layout stillmix)
  <out>/<DS>_SCUFO_<Source>/<key>__<n>.jpg
  <out>/<DS>_ConflFG_Stripe/<moving>__<pasted>__<n>.zip   (with --conflfg N; the pasted still actor is
      moved to where the moving actor covers it least; manifest.json records its offset and visible share)
  <out>/lists/{scuba_<Source>,scufo_<Source>,conflfg}.txt, labels.csv, manifest.json [, leakage.json]
Masks: --masks DIR (DIR/<video key>/00001.png per frame) or --boxes FILE (CSV key,frame,x1,y1,x2,y2 or
JSON). Backgrounds: --backgrounds DIR (any images, searched recursively) or --stripes. See docs/bias_sets.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``make-bias-set`` on an argparse sub-parser set; ``run`` is stored as ``handler``."""
    p = subparsers.add_parser("make-bias-set", help="build SCUBA/SCUFO/ConflFG from videos, masks and backgrounds",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--videos", type=Path, required=True, metavar="LIST",
                   help="mmaction2 list 'path label' (or rawframes); a video's key is its file stem")
    p.add_argument("--root", type=Path, help="folder the list's paths are relative to (default: the list's)")
    masks = p.add_mutually_exclusive_group(required=True)
    masks.add_argument("--masks", type=Path, metavar="DIR", help="per-frame masks: DIR/<video key>/00001.png")
    masks.add_argument("--boxes", type=Path, metavar="FILE",
                       help="per-frame boxes, filled: CSV key,frame,x1,y1,x2,y2 or JSON")
    p.add_argument("--first-index", type=int, default=1,
                   help="number of a video's first frame in mask file names / box rows (SAM-Track: 0)")
    bg = p.add_mutually_exclusive_group(required=True)
    bg.add_argument("--backgrounds", type=Path, metavar="DIR", help="folder of background images")
    bg.add_argument("--stripes", action="store_true", help="StillMix's sinusoidal stripe generator")
    p.add_argument("--source", help="background source name in folder names (default: Stripe, or the "
                                    "--backgrounds folder's name)")
    p.add_argument("--dataset", required=True, help="dataset prefix of folder names, e.g. UCF101, HMDB51")
    p.add_argument("--out", type=Path, required=True, help="new folder to build into")
    p.add_argument("--per-video", type=int, default=1, help="SCUBA composites per video")
    p.add_argument("--conflfg", type=int, default=0, help="ConflFG videos per moving video (0: none)")
    p.add_argument("--min-visible", type=float, default=0.5,
                   help="ConflFG: the pasted still actor is placed where the moving actor covers it least; skip "
                        "the pairing if even there less than this share of it is visible (mean over frames)")
    p.add_argument("--layout", choices=("albar", "stillmix"), default="albar")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--min-area", type=float, default=0.01,
                   help="a frame whose mask covers less than this share of it is 'small'")
    p.add_argument("--max-small-frames", type=float, default=0.5,
                   help="skip a video with more than this share of small frames")
    p.add_argument("--quality", type=int, default=95, help="JPEG quality")
    p.add_argument("--leakage-masks", type=Path, metavar="DIR",
                   help="finer per-frame masks of the same videos: measure the background the --boxes/--masks leak")
    p.add_argument("--leakage-first-index", type=int,
                   help="number of the first frame in --leakage-masks file names (default: --first-index)")
    p.add_argument("--classes", type=Path, help="class names (written to classes.txt; labels checked against them)")
    p.add_argument("--workers", type=int, default=min(os.cpu_count() or 1, 8))
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(handler=run)
    return p


def run(args: argparse.Namespace) -> int:
    from albar.biasgen import BiasSetSpec, BoxTable, ImageBackgrounds, MaskFolder, StripeBackgrounds, build_bias_set
    from albar.data.layouts import read_classes

    try:
        masks = MaskFolder(args.masks, args.first_index) if args.masks else BoxTable(args.boxes, args.first_index)
        fine_first = args.first_index if args.leakage_first_index is None else args.leakage_first_index
        fine = MaskFolder(args.leakage_masks, fine_first) if args.leakage_masks else None
        backgrounds = ImageBackgrounds(args.backgrounds) if args.backgrounds else StripeBackgrounds()
        source = args.source or ("Stripe" if args.stripes else "".join(c for c in args.backgrounds.name if c.isalnum()))
        spec = BiasSetSpec(dataset=args.dataset, source=source, per_video=args.per_video, conflfg=args.conflfg,
                           layout=args.layout, seed=args.seed, min_area=args.min_area,
                           max_small_fraction=args.max_small_frames, quality=args.quality,
                           min_visible=args.min_visible)
        classes = read_classes(args.classes) if args.classes else None
        result = build_bias_set(args.videos, masks, args.out, spec, backgrounds, root=args.root, leakage_masks=fine,
                                classes=classes, workers=max(1, args.workers), progress=not args.no_progress)
    except (FileNotFoundError, FileExistsError, ValueError) as err:
        print(f"albar make-bias-set: error: {err}", file=sys.stderr)
        return 2
    m, c = result.manifest, result.counts
    print(f"{c['used']} of {c['videos']} videos used; skipped: "
          + ", ".join(f"{k} {v}" for k, v in c["skipped"].items()))
    for key, s in list(m["skipped"].items())[:20]:
        print(f"  skipped {key}: {s['reason']}")
    if len(m["skipped"]) > 20:
        print(f"  ... {len(m['skipped']) - 20} more in {result.out / 'manifest.json'}")
    print(f"wrote {c['scuba']} SCUBA, {c['scufo']} SCUFO, {c['conflfg']} ConflFG to {result.out}")
    if "conflfg_visible_share" in m:
        v = m["conflfg_visible_share"]
        print(f"ConflFG pasted actor visible (not under the moving actor): mean {v['mean']:.1%}, "
              f"least {v['min']:.1%} of a clip")
    if m.get("conflfg_skipped"):
        print(f"ConflFG pairings skipped: {len(m['conflfg_skipped'])}")
        for key, reason in list(m["conflfg_skipped"].items())[:20]:
            print(f"  skipped {key}: {reason}")
    if "leakage" in m:
        print("leakage: " + json.dumps(m["leakage"]["overall"]))
    for name, path in result.lists.items():
        print(f"  {name}: {path}")
    return 0
