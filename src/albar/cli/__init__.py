"""The ``albar`` command: demo, train, eval, compare, report, predict, extract-features, export, push, check-data,
make-bias-set, build-frame-bank, models.

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
import warnings
from pathlib import Path

MAX_MESSAGE = 4000
PLUGINS_ENV = "ALBAR_PLUGINS"
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
    parser.add_argument("--plugin", action="append", default=[], metavar="MODULE",
                        help="import this module (dotted name, or a .py file) first: its registrations (models, "
                             "objectives, batch methods, dataset layouts) become config names; repeatable, and "
                             f"{PLUGINS_ENV}=a,b does the same (for accelerate launch and scripts)")
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

    checkpoint_help = ("an albar checkpoint (.pt), a folder written by `albar export`, or hf://<user>/<repo>"
                       "[@<revision>] (downloaded once, then HF's cache)")
    ev = sub.add_parser("eval", help="the bias suite (IID, SCUBA, SCUFO, contrasted, ConflFG) on a checkpoint")
    config_args(ev, from_checkpoint=True)
    ev.add_argument("--checkpoint", required=True, help=checkpoint_help)
    ev.add_argument("--out", type=Path, help="output folder (default: eval-<name> beside the checkpoint; for "
                    "hf://user/repo: eval-user--repo here)")
    ev.add_argument("--device", type=_device_arg, default="auto", help="auto (default), cpu or cuda")

    for name, help_text in (("predict", "top-5 per video, and on its static clip (the static-bias probe)"),
                            ("extract-features", "pooled backbone features per video to .npy")):
        p = sub.add_parser(name, help=help_text)
        config_args(p, from_checkpoint=True)
        p.add_argument("--checkpoint", required=True, help=checkpoint_help)
        p.add_argument("--videos", type=Path, nargs="+", required=True)
        p.add_argument("--device", type=_device_arg, default="auto", help=device_help)
        if name == "extract-features":
            p.add_argument("--out", type=Path, required=True,
                           help="folder; each video's .npy keeps its path relative to the working folder (or, "
                           "for videos outside it, to their common folder)")
            p.add_argument("--overwrite", action="store_true", help="replace feature files that exist already")
        else:
            p.add_argument("--json", action="store_true", help="print JSON")

    cmp = sub.add_parser("compare", help="several methods, same budget, over seeds; then the tables and figures")
    config_args(cmp)
    cmp.add_argument("--methods", default="none,mixup,be,stillmix,albar",
                     help="comma-separated: none, mixup, videomix, be, stillmix, albar, albar+stillmix, any "
                          "registered batch method X (plain CE + X) or albar+X, a registered objective, or "
                          "name=fragment.yaml (a config fragment laid over --config)")
    cmp.add_argument("--seeds", help="training seeds, e.g. 0,1,2: one run per method and seed in "
                                     "<out>/<method>/seed<N>, then mean +- std (default: the config's seed)")
    cmp.add_argument("--out", type=Path, required=True, help="folder for the runs and the comparison")

    rep = sub.add_parser("report", help="the tables and figures (mean +- std over seeds) from finished runs")
    rep.add_argument("runs", type=Path, nargs="+",
                     help="run folders, results.json files, or folders holding runs (e.g. a compare --out)")
    rep.add_argument("--out", type=Path, required=True)
    rep.add_argument("--baseline", help="method to compare against (default: none / plain CE)")
    cmp.add_argument("--names", help="display names in tables and figures, comma-separated, one per method")
    rep.add_argument("--names", help="display names, comma-separated, one per run argument; runs given one name "
                                     "are the seeds of one method (default: each run's method name)")
    for p in (cmp, rep):
        p.add_argument("--title", help="title of the figures (default: dataset and model, from the runs' config)")

    for name, help_text in (("export", "a checkpoint as a folder to share: model.safetensors, config.json, model card"),
                            ("push", "export a checkpoint and upload it to the Hugging Face Hub (needs a login)")):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("checkpoint", help=checkpoint_help)
        config_args(p, from_checkpoint=True)
        p.add_argument("--results", type=Path, help="results.json with the bias metrics of these weights (default: "
                       "the one beside the checkpoint, when it describes them)")
        p.add_argument("--license", help="license id for the card's metadata (e.g. mit, apache-2.0, cc-by-4.0)")
        if name == "export":
            p.add_argument("--out", type=Path, required=True, help="the folder to write")
            p.add_argument("--repo", help="user/name the folder will be pushed to (for the card's usage lines)")
            p.add_argument("--overwrite", action="store_true", help="replace the files of an earlier export in --out")
        else:
            p.add_argument("--repo", required=True, help="the Hub repository, user/name (created if missing)")
            p.add_argument("--private", action="store_true", help="create the repository private")
            p.add_argument("--revision", help="branch to push to (default: main)")
            p.add_argument("--message", help="commit message")
            p.add_argument("--out", type=Path, help="also keep the uploaded folder here (default: a temporary one)")

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
    from albar.cli import detect_actors, scene_labels  # argparse only at import (issue 12)

    detect_actors.add_parser(sub)
    scene_labels.add_parser(sub)
    sub.add_parser("models", help="list the model names the registry knows")
    return parser


def _command(argv: list[str]) -> str | None:
    """The sub-command in ``argv``: its first word that is neither an option nor ``--plugin``'s value."""
    after_plugin = False
    for a in argv:
        if a == "--plugin":
            after_plugin = True
        elif after_plugin or a.startswith("-"):
            after_plugin = False
        else:
            return a
    return None


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


_previous_show = warnings.showwarning


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
    """albar's own warnings as one ``albar: warning:`` line; other libraries' as Python prints them."""
    if Path(filename).resolve().is_relative_to(_PACKAGE):
        _warn(str(message))
    else:
        _previous_show(message, category, filename, lineno, file, line)


def main(argv: list[str] | None = None) -> int:
    """Run the ``albar`` command line; returns the exit status (see the module docstring)."""
    global _previous_show
    _previous_show, warnings.showwarning = warnings.showwarning, _show_warning
    try:
        return _main(argv)
    finally:
        warnings.showwarning = _previous_show


def _main(argv: list[str] | None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(full=_command(argv) == "check-data")
    args, unknown = parser.parse_known_args(argv)
    # overrides may come after options too (argparse stops collecting positionals at the first option)
    extra = [u for u in unknown if "=" in u and not u.startswith("-")]
    if len(extra) != len(unknown) or (extra and not hasattr(args, "overrides")):
        if "--plugin" in unknown:
            parser.error("--plugin goes before the command: albar --plugin MODULE train ...")
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    if extra:
        args.overrides = [*args.overrides, *extra]
    if args.command in ("predict", "extract-features"):  # `--videos a.mp4 key=value`: not a video
        moved = [v for v in args.videos if "=" in v.name and not v.exists()]
        args.videos = [v for v in args.videos if v not in moved]
        args.overrides = [*args.overrides, *map(str, moved)]
    try:
        load_plugins(os.environ.get(PLUGINS_ENV, "").split(","), source=PLUGINS_ENV)
        load_plugins(args.plugin)
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


def load_plugins(names: list[str], source: str = "--plugin") -> None:
    """Import each registration module once, before any config is read: a dotted module name (on sys.path) or a
    ``.py`` file (imported under its file stem, which must not be another module's name). A plugin that is not
    there is a user error naming it (and ``source``: the option or the environment variable); an error inside
    the plugin keeps its traceback (it is the plugin's code)."""
    import importlib
    import importlib.util

    for name in dict.fromkeys(n.strip() for n in names if n.strip()):
        if name.endswith(".py") or os.sep in name:
            path = Path(name).expanduser().resolve()
            if not path.is_file():
                raise ValueError(f"{source} {name}: no such file" + (
                    " (a package folder: give its name, with its parent folder on PYTHONPATH)" if path.is_dir()
                    else ""))
            known = sys.modules.get(path.stem)
            if known is not None and Path(getattr(known, "__file__", "") or "").resolve() == path:
                continue  # imported already
            try:
                other = known or importlib.util.find_spec(path.stem)
            except (ImportError, ValueError):
                other = None
            where = getattr(other, "__file__", None) or getattr(other, "origin", None)
            if other is not None and (where is None or Path(where).resolve() != path):
                raise ValueError(f"{source} {name}: {path.stem!r} is the name of another module "
                                 f"({where or 'built in'}); importing the file under it would replace that module: "
                                 "rename the file")
            spec = importlib.util.spec_from_file_location(path.stem, path)
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            sys.modules[path.stem] = module  # classes defined there pickle by this name (loader workers)
            try:
                spec.loader.exec_module(module)
            except BaseException:
                del sys.modules[path.stem]
                raise
            continue
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name is None or not (name == err.name or name.startswith(err.name + ".")):
                raise  # the plugin imports something missing: its own traceback says what
            raise ValueError(f"{source} {name}: no module named {err.name!r} on the Python path (a file in this "
                             f"folder: give its path, ./{name.split('.')[-1]}.py, or set PYTHONPATH=.)") from None


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
    if args.command in ("check-data", "make-bias-set", "detect-actors", "scene-labels"):
        return args.handler(args)
    if args.command == "report":
        from albar.evaluation.compare import load_runs, split_names, write_comparison

        runs = load_runs(args.runs, names=split_names(args.names, len(args.runs), "run arguments"))
        written = write_comparison(args.out, runs, args.baseline, title=args.title)
        print((args.out / "comparison.md").read_text())
        print("wrote " + ", ".join(str(p) for p in written))
        return 0
    if args.command in ("eval", "predict", "extract-features"):
        return _from_checkpoint(args)
    if args.command in ("export", "push"):
        return _share(args)

    from albar.config import load_config

    overrides = list(args.overrides)
    if getattr(args, "resume", None) is not None:
        if not args.resume.is_file():  # before the data are built
            return _fail(f"--resume: checkpoint not found: {args.resume}")
        overrides.append(f"resume={args.resume}")
    cfg = load_config(args.config, overrides)
    _check_before_data(cfg)
    progress = not args.no_progress
    if args.command == "train":
        from albar.training.run import fit

        summary = fit(cfg, progress=progress, method=args.method, force=args.force)  # prints its own summary
        if args.json:
            print(json.dumps({k: v for k, v in summary.items() if not isinstance(v, dict)}, indent=2))
        return 0
    if args.command == "compare":
        from albar.cli.compare import parse_seeds, run_compare
        from albar.evaluation.compare import split_names

        seeds = parse_seeds(args.seeds) if args.seeds is not None else None
        names = split_names(args.names, None, "methods")
        run_compare(cfg, args.methods, args.out, progress, seeds=seeds, names=names, title=args.title)
        return 0
    if args.command == "build-frame-bank":
        return _frame_bank(args, cfg)
    raise AssertionError(f"unhandled command {args.command}")


def _check_before_data(cfg) -> None:
    """What the config asks for that can fail, checked before any data are read: the model's arguments, its
    input size (HF models), its weights' location, W&B."""
    import importlib.util

    from albar.models import hf
    from albar.models.registry import check_model_kwargs, check_weights_source
    from albar.training.compile import check_backend, check_precision

    m = cfg.model
    check_model_kwargs(m.name, m.kwargs)
    check_weights_source(m.weights)
    if hf.is_hf(m.name):
        hf.check_input(m.name, m.kwargs, cfg.data.num_frames, cfg.data.crop_size)
        attn, o = hf.attention_of(m.name, m.kwargs), cfg.objective
        exact_gp = float(getattr(o, "w_gp", 0) or 0) and getattr(o, "gp_mode", "exact") == "exact"
        if exact_gp and attn is not None and attn not in hf.DOUBLE_BACKWARD_ATTENTIONS:
            raise ValueError(f"model.kwargs.attn_implementation={attn}: ALBAR's exact gradient penalty (objective."
                             f"w_gp={o.w_gp}) differentiates through the attention twice, which only "
                             f"{' or '.join(hf.DOUBLE_BACKWARD_ATTENTIONS)} attention can (or objective.gp_mode="
                             "finite_difference); leave attn_implementation unset")
    check_backend(cfg.compile)
    if cfg.compile.enabled:
        import torch

        check_precision(cfg.compile, "cuda" if torch.cuda.is_available() else "cpu", cfg.mixed_precision)
    if cfg.log.wandb and importlib.util.find_spec("wandb") is None:
        raise ValueError("log.wandb: true needs the wandb package: pip install 'albar[wandb]' (or set log.wandb=false)")


def _share(args: argparse.Namespace) -> int:
    """export and push: a checkpoint as a self-describing folder (model.safetensors, config.json, model card)."""
    from albar import sharing

    common = {"config_path": args.config, "overrides": args.overrides, "results": args.results,
              "license": args.license}
    if args.command == "export":
        files, notes = sharing.export_model(args.checkpoint, args.out, repo_id=args.repo, overwrite=args.overwrite,
                                            **common)
        for note in notes:
            _warn(note)
        print(f"wrote {', '.join(str(f) for f in files)}")
        return 0
    url, files, notes = sharing.push_to_hub(args.checkpoint, args.repo, private=args.private, revision=args.revision,
                                            commit_message=args.message, keep=args.out, **common)
    for note in notes:
        _warn(note)
    print(f"pushed {', '.join(str(f) for f in files)} to hf://{args.repo}: {url}")
    return 0


def _frame_bank(args: argparse.Namespace, cfg) -> int:
    """Reference network and bank from the training split of ``cfg`` (its held-out validation never enters)."""
    import torch

    from albar.data.bundle import build_data
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


def _from_checkpoint(args: argparse.Namespace) -> int:
    """eval, predict and extract-features: config, class names and preprocessing from the checkpoint (an albar
    checkpoint, an exported folder or hf://user/repo)."""
    from albar import sharing
    from albar.evaluation.inference import class_names, resolve_config

    if args.command != "eval":
        missing = [str(v) for v in args.videos if not v.exists()]
        if missing:
            return _fail(f"no such video: {', '.join(missing)}")
    info = sharing.read_source(args.checkpoint)
    cfg, warnings = resolve_config(info, args.config, args.overrides)
    for warning in warnings:
        _warn(warning)
    if args.command == "eval":
        from albar.evaluation.inference import resolve_device
        from albar.evaluation.report import format_table
        from albar.training.run import evaluate_checkpoint

        if sharing.is_hub(args.checkpoint):  # the snapshot sits in HF's cache: name it, and write elsewhere
            repo, _ = sharing.parse_hub(args.checkpoint)
            checkpoint = Path(args.checkpoint)  # hf:/user/repo[@rev]: named in results.json
            default_out = Path(f"eval-{repo.replace('/', '--')}")
        else:
            checkpoint = info.path
            default_out = checkpoint.parent / f"eval-{checkpoint.stem}"
        out = args.out or default_out
        if args.device.startswith("cuda:"):
            raise ValueError(f"--device {args.device}: eval takes auto, cpu or cuda (pick the GPU with "
                             "CUDA_VISIBLE_DEVICES)")
        resolve_device(args.device)  # cuda without a GPU: a clear error
        summary = evaluate_checkpoint(cfg, checkpoint, out, progress=not args.no_progress, classes=info.classes,
                                      state=info.state, cpu={"cpu": True, "cuda": False}.get(args.device))
        print(format_table({checkpoint.stem: summary}))
        print(f"results: {out / 'results.json'}")
        return 0

    from albar.evaluation.inference import clip_kwargs, extract_features, predict_videos, resolve_device
    from albar.models import model_from_state

    device = resolve_device(args.device)
    model = model_from_state(cfg.model.name, cfg.model.num_classes, info.state, str(info.path), **cfg.model.kwargs)
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
    frame = getattr(cfg.objective, "frame", "middle")  # the static probe's frame: ALBAR's, or the middle one
    rows = predict_videos(model, args.videos, kwargs, classes, frame=frame, device=device)
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
