"""The ``albar`` command: ``albar demo``, ``albar models``."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def _default_cache() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "albar"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="albar", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="plain CE vs ALBAR on the synthetic benchmark (a few minutes on a CPU)")
    demo.add_argument("--out", type=Path, default=Path("albar-demo"), help="output folder (results.json, results.png)")
    demo.add_argument("--cache", type=Path, default=_default_cache(), help="where the benchmark is built once")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--epochs", type=int, default=6)
    demo.add_argument("--no-progress", action="store_true", help="no progress bars")
    sub.add_parser("models", help="list the model names the registry knows")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "demo":
        from albar.cli.demo import run_demo

        if args.epochs < 1:
            print("albar demo: --epochs must be >= 1", file=sys.stderr)
            return 2
        run_demo(args.out, args.cache, seed=args.seed, epochs=args.epochs, progress=not args.no_progress)
        return 0
    if args.command == "models":
        from albar.models import list_models

        print("\n".join(list_models()))
        return 0
    return 2
