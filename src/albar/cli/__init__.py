"""The ``albar`` command: demo, train, eval, compare, report, predict, extract-features, check-data, make-bias-set,
build-frame-bank, models.

Building the parser imports nothing heavy (no torch): ``albar --help`` answers at once. Each command imports
what it needs when it runs. ``check-data``'s module imports the data stack, so its full sub-parser is built
only when that command is asked for (a one-line entry lists it otherwise).

Exit status and errors (one rule, :func:`_exit_code`):

- 0: done. 2: the user's input is wrong (config, paths, options, checkpoint, data). 1: the run failed while
  running (unreadable clips past the allowed share, a diverged training, a full disk or an I/O error).
  130: interrupted (Ctrl-C); 128 + N: stopped by signal N (SIGTERM, SIGUSR1) after saving ``last.pt``.
- Shown as one ``albar: error: ...`` message without a traceback:

  * ``ConfigError`` (a config file or override: names the file and the key), exit 2;
  * ``ValueError``/``KeyError`` that albar's own code raises with a ``raise`` statement: albar raises those
    with messages written for users (a bad value, a missing or foreign file, a busy or changed run folder, a
    checkpoint that cannot be resumed), exit 2;
  * ``ClipReadError``, ``TooManyFailures`` and a ``FloatingPointError`` albar raises (non-finite loss or
    weights), exit 1;
  * ``OSError`` naming a file (``err.filename``) or raised by albar: "<file>: <reason>"; exit 1 for a full
    disk, an exceeded quota or file-size limit, an I/O error (the run got that far; the checkpoint it
    replaces is intact), exit 2
    otherwise (not a folder, permission denied, read-only, missing: the user's path).

- Anything else keeps its traceback: a ``ValueError`` from inside torch, numpy or pydantic, a ``KeyError``
  from a dict lookup, a ``TypeError``... is a bug (or an input nobody foresaw), and the traceback is what
  fixes it. Messages are cut to ``MAX_MESSAGE`` characters.
"""

from __future__ import annotations

import argparse
import dis
import errno
import json
import linecache
import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

MAX_MESSAGE = 4000
_PACKAGE = Path(__file__).resolve().parents[1]  # src/albar
_RUNTIME_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO}  # the run got this far
_RAISE_OPS = {dis.opmap[name] for name in ("RAISE_VARARGS", "RERAISE") if name in dis.opmap}
_CHECK_DATA_HELP = "scan datasets and bias sets for bad files and labels"


def _default_cache() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "albar"


def _device_arg(value: str) -> str:
    """``--device``: auto, cpu, cuda or cuda:N (checked against the machine when the command runs)."""
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", value):
        raise argparse.ArgumentTypeError(f"{value!r}: use auto, cpu, cuda or cuda:N")
    return value


def build_parser(full: bool = True) -> argparse.ArgumentParser:
    """The ``albar`` parser. ``full=False`` lists ``check-data`` by name only (its module imports torch)."""
    from albar import __version__

    parser = argparse.ArgumentParser(prog="albar", description="Train video models on motion; measure static bias.")
    parser.add_argument("--version", action="version", version=f"albar {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="plain CE vs ALBAR on the synthetic benchmark (a few minutes on a CPU)")
    demo.add_argument("--out", type=Path, default=Path("albar-demo"), help="output folder (results.json, results.png)")
    demo.add_argument("--cache", type=Path, default=_default_cache(), help="where the benchmark is built once")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--epochs", type=int, default=6)
    demo.add_argument("--no-progress", action="store_true", help="no progress bars")

    def config_args(p: argparse.ArgumentParser, from_checkpoint: bool = False) -> None:
        p.add_argument("--config", type=Path, help="YAML config (configs/*.yaml)" + (
            "; default: the one recorded in the checkpoint (a file given here replaces it)" if from_checkpoint else ""))
        p.add_argument("overrides", nargs="*", metavar="key.sub=value", help="config overrides, e.g. optim.lr=2e-4")
        p.add_argument("--no-progress", action="store_true")

    device_help = "auto (default: the GPU when there is one), cpu, cuda or cuda:N"

    train = sub.add_parser("train", help="train per a config (accelerate launch -m albar train ... for many GPUs)")
    config_args(train)
    train.add_argument("--resume", type=Path, help="continue from this checkpoint (default: out_dir/last.pt if any)")
    train.add_argument("--method", default="run", help="name of this run in results.json")
    train.add_argument("--force", action="store_true",
                       help="continue a run in out_dir although the config changed (recorded in the folder)")
    train.add_argument("--json", action="store_true", help="print the result metrics as JSON at the end")

    ev = sub.add_parser("eval", help="the bias suite (IID, SCUBA, SCUFO, contrasted, ConflFG) on a checkpoint")
    config_args(ev, from_checkpoint=True)
    ev.add_argument("--checkpoint", type=Path, required=True)
    ev.add_argument("--out", type=Path, help="output folder (default: <checkpoint folder>/eval-<name>)")
    ev.add_argument("--device", type=_device_arg, default="auto", help="auto (default), cpu or cuda")

    for name, help_text in (("predict", "top-5 per video, and on its static clip (the static-bias probe)"),
                            ("extract-features", "pooled backbone features per video to .npy")):
        p = sub.add_parser(name, help=help_text)
        config_args(p, from_checkpoint=True)
        p.add_argument("--checkpoint", type=Path, required=True)
        p.add_argument("--videos", type=Path, nargs="+", required=True)
        p.add_argument("--device", type=_device_arg, default="auto", help=device_help)
        if name == "extract-features":
            p.add_argument("--out", type=Path, required=True,
                           help="folder; each video's .npy keeps its path relative to the videos' common folder")
            p.add_argument("--overwrite", action="store_true", help="replace feature files that exist already")
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

    if full:
        from albar.cli import check_data

        check_data.add_parser(sub)
    else:
        sub.add_parser("check-data", help=_CHECK_DATA_HELP, add_help=False)
    bank = sub.add_parser("build-frame-bank", help="StillMix's frame bank: train a 2D reference network on single "
                          "frames of the training list, keep the frames it classifies confidently")
    config_args(bank)
    bank.add_argument("--out", type=Path, required=True, help="bank file (.pt) for method.bank_path")
    bank.add_argument("--epochs", type=int, default=3, help="epochs of the 2D reference network")
    bank.add_argument("--reference-model", default="tiny2d", help="tiny2d or a torchvision image classifier name")
    bank.add_argument("--size", type=int, default=1024, help="frames in the bank")

    from albar.cli import make_bias_set  # argparse only at import

    make_bias_set.add_parser(sub)
    sub.add_parser("models", help="list the model names the registry knows")
    return parser


def _command(argv: list[str]) -> str | None:
    """The sub-command in ``argv``: its first word that is not an option (the top level takes no values)."""
    return next((a for a in argv if not a.startswith("-")), None)


def _shorten(text: str, limit: int = MAX_MESSAGE) -> str:
    return text if len(text) <= limit else f"{text[:limit]}... [{len(text) - limit} more characters]"


def _fail(message: str, code: int = 2) -> int:
    print(f"albar: error: {_shorten(message)}", file=sys.stderr)
    return code


def _warn(message: str) -> None:
    print(f"albar: warning: {_shorten(message)}", file=sys.stderr)


def _raised_by_albar(err: BaseException) -> bool:
    """Whether ``err`` comes from a ``raise`` statement in albar's own source: not from a library albar called,
    nor from a failed lookup (``d[k]``) or conversion (``int(s)``) in albar's code, which are bugs."""
    tb = err.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    code = tb.tb_frame.f_code
    try:
        if not Path(code.co_filename).resolve().is_relative_to(_PACKAGE):
            return False
    except (OSError, ValueError):
        return False
    try:
        return code.co_code[tb.tb_lasti] in _RAISE_OPS  # the instruction that raised
    except IndexError:  # an interpreter whose offsets differ: read the source line instead
        return linecache.getline(code.co_filename, tb.tb_lineno).lstrip().startswith("raise")


def _exit_code(err: BaseException) -> int | None:
    """The exit status for ``err`` under the rule of this module's docstring; None: let it show its traceback."""
    from albar.config import ConfigError

    if isinstance(err, ConfigError):
        return 2
    mod = sys.modules
    clip_read = getattr(mod.get("albar.data.io"), "ClipReadError", None)
    too_many = getattr(mod.get("albar.data.robust"), "TooManyFailures", None)
    if any(cls is not None and isinstance(err, cls) for cls in (clip_read, too_many)):
        return 1
    if isinstance(err, OSError) and (err.filename is not None or _raised_by_albar(err)):
        return 1 if err.errno in _RUNTIME_ERRNOS else 2
    if isinstance(err, FloatingPointError) and _raised_by_albar(err):
        return 1
    if isinstance(err, (ValueError, KeyError)) and _raised_by_albar(err):
        return 2
    return None


def _message(err: BaseException) -> str:
    """``err`` as a user reads it: KeyError without its repr quotes, OSError as "<file>: <reason>"."""
    if isinstance(err, KeyError) and len(err.args) == 1 and isinstance(err.args[0], str):
        return err.args[0]  # str(KeyError("x")) is "'x'"
    if isinstance(err, OSError) and err.strerror:
        if err.filename is None:
            return str(err.strerror)
        target = f" -> {err.filename2}" if err.filename2 is not None else ""
        return f"{err.filename}{target}: {err.strerror}"
    return str(err)


def main(argv: list[str] | None = None) -> int:
    """Run the ``albar`` command line; returns the exit status (see the module docstring)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(full=_command(argv) == "check-data")
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
    try:
        return _run(args)
    except KeyboardInterrupt as err:  # Ctrl-C, or a stop signal (SIGTERM...) after the trainer saved and said so
        return int(getattr(err, "exit_code", 130))
    except BrokenPipeError:  # `albar models | head`: the reader left; say nothing more
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError):  # stdout without a file descriptor (captured)
            pass
        return 141
    except (ValueError, KeyError, OSError, RuntimeError, FloatingPointError) as err:
        code = _exit_code(err)
        if code is None:
            raise  # a bug: keep the traceback
        return _fail(_message(err), code)


def _run(args: argparse.Namespace) -> int:
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

        results = load_runs(args.runs)
        written = write_comparison(args.out, results, args.baseline)
        print((args.out / "comparison.md").read_text())
        print("wrote " + ", ".join(str(p) for p in written))
        return 0
    if args.command in ("eval", "predict", "extract-features"):
        return _from_checkpoint(args)

    from albar.config import load_config

    overrides = list(args.overrides)
    if getattr(args, "resume", None) is not None:
        if not args.resume.is_file():  # before the data are built
            return _fail(f"--resume: checkpoint not found: {args.resume}")
        overrides.append(f"resume={args.resume}")
    cfg = load_config(args.config, overrides)
    from albar.models.registry import check_model_kwargs

    check_model_kwargs(cfg.model.name, cfg.model.kwargs)  # before any data are read
    progress = not args.no_progress
    if args.command == "train":
        from albar.training.run import fit

        summary = fit(cfg, progress=progress, method=args.method, force=args.force)  # prints its own summary
        if args.json:
            print(json.dumps({k: v for k, v in summary.items() if not isinstance(v, dict)}, indent=2))
        return 0
    if args.command == "compare":
        from albar.cli.compare import run_compare

        run_compare(cfg, [m.strip() for m in args.methods.split(",") if m.strip()], args.out, progress)
        return 0
    if args.command == "build-frame-bank":
        return _frame_bank(args, cfg)
    raise AssertionError(f"unhandled command {args.command}")


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


@contextmanager
def _accelerate_device(device: str) -> Iterator[None]:
    """Make ``accelerate`` (which ``evaluate_checkpoint`` uses) run on ``device``: auto, cpu or cuda."""
    from albar.evaluation.inference import resolve_device

    if device.startswith("cuda:"):
        raise ValueError(f"--device {device}: eval takes auto, cpu or cuda (pick the GPU with CUDA_VISIBLE_DEVICES)")
    resolve_device(device)  # cuda without a GPU: a clear error
    if device != "cpu":
        yield
        return
    before = os.environ.get("ACCELERATE_USE_CPU")
    os.environ["ACCELERATE_USE_CPU"] = "true"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("ACCELERATE_USE_CPU", None)
        else:
            os.environ["ACCELERATE_USE_CPU"] = before


def _from_checkpoint(args: argparse.Namespace) -> int:
    """eval, predict and extract-features: config, class names and preprocessing from the checkpoint."""
    from albar.evaluation.inference import class_names, read_checkpoint, resolve_config

    if args.command != "eval":
        missing = [str(v) for v in args.videos if not v.exists()]
        if missing:
            return _fail(f"no such video: {', '.join(missing)}")
    info = read_checkpoint(args.checkpoint)
    cfg, warnings = resolve_config(info, args.config, args.overrides)
    for warning in warnings:
        _warn(warning)
    if args.command == "eval":
        from albar.evaluation.report import format_table
        from albar.training.run import evaluate_checkpoint

        out = args.out or args.checkpoint.parent / f"eval-{args.checkpoint.stem}"
        with _accelerate_device(args.device):
            summary = evaluate_checkpoint(cfg, args.checkpoint, out, progress=not args.no_progress,
                                          classes=info.classes)
        print(format_table({args.checkpoint.stem: summary}))
        print(f"results: {out / 'results.json'}")
        return 0

    from albar.evaluation.inference import clip_kwargs, extract_features, predict_videos, resolve_device
    from albar.models import build_model, load_checkpoint_weights

    device = resolve_device(args.device)
    model = build_model(cfg.model.name, cfg.model.num_classes, None, **cfg.model.kwargs)
    load_checkpoint_weights(model, info.state, name=str(info.path))
    kwargs = clip_kwargs(cfg)
    if args.command == "extract-features":
        written, failed = extract_features(model, args.videos, kwargs, args.out, device, args.overwrite)
        for video, target in written:
            print(f"{video} -> {target}")
        print(f"wrote {len(written)} feature file(s) under {args.out}")
        return _report_failures(failed, len(args.videos))
    classes, note = class_names(info, cfg)
    if note:
        _warn(note)
    rows = predict_videos(model, args.videos, kwargs, classes, frame=cfg.objective.frame, device=device)
    failed = [(Path(r["video"]), r["error"]) for r in rows if "error" in r]
    if args.json:
        print(json.dumps(rows, indent=2))
        return _report_failures(failed, len(rows))
    width = max([len(str(m["class"])) for r in rows for m in r.get("motion", [])] + [5])
    for row in rows:
        print(row["video"])
        if "error" in row:
            print(f"  could not be read: {row['error']}")
            continue
        for m, s in zip(row["motion"], row["static"]):
            print(f"  {m['class']!s:>{width}} {100 * m['prob']:5.1f}%    "
                  f"static: {s['class']!s:>{width}} {100 * s['prob']:5.1f}%")
    return _report_failures(failed, len(rows))


def _report_failures(failed: list[tuple[Path, str]], total: int) -> int:
    """Exit 1 naming every video that could not be read (the others' results are printed/written)."""
    if not failed:
        return 0
    names = "; ".join(f"{video}: {reason}" for video, reason in failed)
    return _fail(f"{len(failed)} of {total} video(s) could not be read: {names}", code=1)
