"""The ``albar`` command: demo, train, eval, compare, report, predict, extract-features, check-data, make-bias-set,
models."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


def _default_cache() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "albar"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="albar", description="Train video models on motion; measure static bias.")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="plain CE vs ALBAR on the synthetic benchmark (a few minutes on a CPU)")
    demo.add_argument("--out", type=Path, default=Path("albar-demo"), help="output folder (results.json, results.png)")
    demo.add_argument("--cache", type=Path, default=_default_cache(), help="where the benchmark is built once")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--epochs", type=int, default=6)
    demo.add_argument("--no-progress", action="store_true", help="no progress bars")

    def config_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--config", type=Path, help="YAML config (configs/*.yaml)")
        p.add_argument("overrides", nargs="*", metavar="key.sub=value", help="config overrides, e.g. optim.lr=2e-4")
        p.add_argument("--no-progress", action="store_true")

    train = sub.add_parser("train", help="train per a config (accelerate launch -m albar train ... for many GPUs)")
    config_args(train)
    train.add_argument("--resume", type=Path, help="continue from this checkpoint (default: out_dir/last.pt if any)")
    train.add_argument("--method", default="run", help="name of this run in results.json")

    ev = sub.add_parser("eval", help="the bias suite (IID, SCUBA, SCUFO, contrasted, ConflFG) on a checkpoint")
    config_args(ev)
    ev.add_argument("--checkpoint", type=Path, required=True)
    ev.add_argument("--out", type=Path, help="output folder (default: <checkpoint folder>/eval-<name>)")

    for name, help_text in (("predict", "top-5 per video, and on its static clip (the static-bias probe)"),
                            ("extract-features", "pooled backbone features per video to .npy")):
        p = sub.add_parser(name, help=help_text)
        config_args(p)
        p.add_argument("--checkpoint", type=Path, required=True)
        p.add_argument("--videos", type=Path, nargs="+", required=True)
        if name == "extract-features":
            p.add_argument("--out", type=Path, required=True)
        else:
            p.add_argument("--json", action="store_true", help="print JSON")

    cmp = sub.add_parser("compare", help="several methods, same budget and seed, then the comparison table and charts")
    config_args(cmp)
    cmp.add_argument("--methods", default="none,mixup,be,stillmix,albar",
                     help="comma-separated: none, mixup, videomix, be, stillmix, albar, albar+stillmix")
    cmp.add_argument("--out", type=Path, required=True, help="folder for one run per method and the comparison")

    rep = sub.add_parser("report", help="the comparison table and charts from finished runs")
    rep.add_argument("runs", type=Path, nargs="+", help="run folders (or results.json files)")
    rep.add_argument("--out", type=Path, required=True)
    rep.add_argument("--baseline", help="method to compare against (default: none / plain CE)")

    from albar.cli import check_data, make_bias_set

    check_data.add_parser(sub)
    bank = sub.add_parser("build-frame-bank", help="StillMix's frame bank: train a 2D reference network on single "
                          "frames of the training list, keep the frames it classifies confidently")
    config_args(bank)
    bank.add_argument("--out", type=Path, required=True, help="bank file (.pt) for method.bank_path")
    bank.add_argument("--epochs", type=int, default=3, help="epochs of the 2D reference network")
    bank.add_argument("--reference-model", default="tiny2d", help="tiny2d or a torchvision image classifier name")
    bank.add_argument("--size", type=int, default=1024, help="frames in the bank")

    make_bias_set.add_parser(sub)
    sub.add_parser("models", help="list the model names the registry knows")
    return parser


def _fail(message: str, code: int = 2) -> int:
    print(f"albar: error: {message}", file=sys.stderr)
    return code


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    # overrides may come after options too (argparse stops collecting positionals at the first option)
    extra = [u for u in unknown if "=" in u and not u.startswith("-")]
    if len(extra) != len(unknown) or (extra and not hasattr(args, "overrides")):
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    if extra:
        args.overrides = [*args.overrides, *extra]
    if args.command in ("predict", "extract-features"):  # `--videos a.mp4 key=value`: not a video
        moved = [v for v in args.videos if "=" in v.name and not v.exists()]
        args.videos = [v for v in args.videos if v not in moved]
        args.overrides = [*args.overrides, *map(str, moved)]
    if args.command == "models":
        from albar.models import list_models

        print("\n".join(list_models()))
        return 0
    if args.command == "demo":
        from albar.cli.demo import run_demo

        if args.epochs < 1:
            return _fail("--epochs must be >= 1")
        run_demo(args.out, args.cache, seed=args.seed, epochs=args.epochs, progress=not args.no_progress)
        return 0

    if args.command in ("check-data", "make-bias-set"):
        return args.handler(args)
    if args.command == "report":
        from albar.evaluation.compare import load_runs, write_comparison

        try:
            results = load_runs(args.runs)
            written = write_comparison(args.out, results, args.baseline)
        except (FileNotFoundError, ValueError) as err:
            return _fail(str(err))
        print((args.out / "comparison.md").read_text())
        print("wrote " + ", ".join(str(p) for p in written))
        return 0

    from albar.config import ConfigError, load_config
    from albar.data.io import ClipReadError
    from albar.data.robust import TooManyFailures
    from albar.training.trainer import NonFiniteLossError

    overrides = list(args.overrides)
    if getattr(args, "resume", None) is not None:
        overrides.append(f"resume={args.resume}")
    try:
        cfg = load_config(args.config, overrides)
    except ConfigError as err:
        return _fail(str(err))
    progress = not args.no_progress
    try:
        if args.command == "train":
            from albar.training.run import fit

            summary = fit(cfg, progress=progress, method=args.method)
            print(json.dumps({k: v for k, v in summary.items() if not isinstance(v, dict)}, indent=2))
            return 0
        if args.command == "compare":
            from albar.cli.compare import run_compare

            run_compare(cfg, [m.strip() for m in args.methods.split(",") if m.strip()], args.out, progress)
            return 0
        if args.command == "build-frame-bank":
            return _frame_bank(args, cfg)
        if args.command == "eval":
            from albar.evaluation.report import format_table
            from albar.training.run import evaluate_checkpoint

            out = args.out or args.checkpoint.parent / f"eval-{args.checkpoint.stem}"
            summary = evaluate_checkpoint(cfg, args.checkpoint, out, progress=progress)
            print(format_table({args.checkpoint.stem: summary}))
            print(f"results: {out / 'results.json'}")
            return 0
        return _inference(args, cfg)
    except (FileNotFoundError, ValueError, KeyError) as err:
        return _fail(str(err).strip("'\""))
    except (ClipReadError, TooManyFailures, NonFiniteLossError) as err:  # the run failed: say why, exit 1
        return _fail(str(err), code=1)
    except KeyboardInterrupt:
        return 130


def _frame_bank(args: argparse.Namespace, cfg) -> int:
    """Reference network and bank from the training split of ``cfg`` (its held-out validation never enters)."""
    import torch

    from albar.data.build import build_data
    from albar.data.dataset import ClipDataset
    from albar.methods import build_frame_bank, save_frame_bank, train_reference_network

    data = build_data(cfg.data, cfg.seed, cfg.model.num_classes, progress=not args.no_progress)
    train = data.train
    # deterministic frames (evaluation transform, centre clip) of the training clips, as build_frame_bank needs
    frames = ClipDataset(train.items, cfg.data.num_frames, cfg.data.stride, "center", data.val.transform, cfg.seed,
                         min_frames=cfg.data.min_frames)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    net = train_reference_network(train, cfg.model.num_classes, args.reference_model, epochs=args.epochs,
                                  seed=cfg.seed, device=device, num_workers=cfg.data.num_workers)
    bank = build_frame_bank(net, frames, size=args.size, seed=cfg.seed, device=device,
                            num_workers=cfg.data.num_workers)
    save_frame_bank(bank, args.out)
    print(f"wrote {args.out}: {len(bank.frames)} frames; train with method.name=stillmix "
          f"method.stillmix_source=bank method.bank_path={args.out}")
    return 0


def _inference(args: argparse.Namespace, cfg) -> int:
    from albar.evaluation.inference import extract_features, predict_videos
    from albar.models import build_model, load_checkpoint_weights

    model = build_model(cfg.model.name, cfg.model.num_classes, None, **cfg.model.kwargs)
    load_checkpoint_weights(model, args.checkpoint)
    d = cfg.data
    from albar.data.transforms import build_transform

    mode = d.test_view if d.test_view in ("center", "first") else "center"  # one clip per video here
    kwargs = {"num_frames": d.num_frames, "stride": d.stride, "mode": mode, "seed": cfg.seed,
              "transform": build_transform(False, d.crop_size, d.resize_short, d.train_crop, d.hflip, d.mean, d.std)}
    missing = [str(v) for v in args.videos if not v.exists()]
    if missing:
        return _fail(f"no such video: {', '.join(missing)}")
    if args.command == "extract-features":
        written = extract_features(model, args.videos, kwargs, args.out)
        print(f"wrote {len(written)} feature files to {args.out}")
        return 0
    classes_file = d.root / "classes.txt" if d.root is not None else None
    classes = classes_file.read_text().split() if classes_file and classes_file.is_file() else None
    rows = predict_videos(model, args.videos, kwargs, classes, frame=cfg.objective.frame)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for row in rows:
        print(row["video"])
        for m, s in zip(row["motion"], row["static"]):
            print(f"  {m['class']!s:>20} {100 * m['prob']:5.1f}%    static: {s['class']!s:>20} {100 * s['prob']:5.1f}%")
    return 0
