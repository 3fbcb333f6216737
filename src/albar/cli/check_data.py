"""``albar check-data``: find every unreadable, missing, mislabelled or unpaired file before a run does.

Checks the data a run would read, resolved by the same code as ``albar train`` and ``albar eval``
(``albar.data.bundle.resolve_data``): give a run's config (``--config`` plus ``key=value`` overrides), or
flags, which translate into the same config (--hmdb51/--ucf101/--kinetics: ``data.source`` and
``data.splits``; --video-root: ``data.root``; --bias-root, --dataset, --labels-csv, --classes: ``data.bias_root``,
``data.bias_dataset``, ``data.bias_labels``, ``data.classes``; flags win over the config). --list and
--hmdb51-csv add files of their own to check. Under a shared bias root, only the chosen dataset's sets are
checked; the others are counted as skipped. Every file is decoded in parallel (the frames a centre clip needs
plus the last declared frame, to catch truncated streams), and every problem is reported in one pass.
Exit status 1 when anything is wrong, 2 for a bad config; the report names every bad file and why.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# Only the standard library at module level: this module is imported whenever `albar`'s parser is built
# (`albar --help` must not load torch or a video decoder).


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``check-data`` on an argparse sub-parser set; ``run`` is stored as ``handler``."""
    p = subparsers.add_parser("check-data", help="scan datasets and bias sets for bad files and labels",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path, help="a run's YAML config: check the data it trains and evaluates on")
    p.add_argument("overrides", nargs="*", metavar="key.sub=value", help="config overrides, as for albar train")
    p.add_argument("--list", action="append", default=[], type=Path, metavar="LIST",
                   help="mmaction2 list 'path label' or 'dir num_frames label' (repeatable)")
    p.add_argument("--root", type=Path, help="folder the --list paths are relative to (default: the list's)")
    p.add_argument("--hmdb51", type=Path, metavar="SPLITS_DIR", help="folder of <class>_test_split<N>.txt")
    p.add_argument("--hmdb51-csv", action="append", default=[], type=Path, metavar="CSV",
                   help="ALBAR's hmdb51_{train,test}_labels.csv (filename,label[,class]; repeatable)")
    p.add_argument("--ucf101", type=Path, metavar="LIST_DIR", help="the ucfTrainTestlist folder")
    p.add_argument("--kinetics", action="append", default=[], type=Path, metavar="CSV_OR_DIR",
                   help="Kinetics-400 annotation CSVs (train.csv, validate.csv or val.csv, any other) or their "
                        "folder (repeatable; classes from train.csv)")
    p.add_argument("--video-root", type=Path, help="video folder for --hmdb51/--ucf101/--kinetics/--hmdb51-csv")
    p.add_argument("--split", type=int, choices=(1, 2, 3), help="official split (default 1)")
    p.add_argument("--bias-root", type=Path, help="folder of <DS>_<SCUBA|SCUFO|ConflFG>_<Source> sets")
    p.add_argument("--dataset", metavar="NAME", help="which dataset's sets to read under --bias-root (HMDB51, "
                   "UCF101, K400 or your make-bias-set name; default: the dataset checked)")
    p.add_argument("--labels-csv", type=Path, help="filename,label CSV labelling HMDB51/K400 bias sets")
    p.add_argument("--classes", type=Path, help="class names (one per line or classInd style)")
    p.add_argument("--num-classes", type=int, help="model.num_classes: every source must agree with it")
    p.add_argument("--num-frames", type=int, help="frames of a clip (default: the config's, 32)")
    p.add_argument("--stride", type=int, help="frame stride (default: the config's, 2)")
    p.add_argument("--min-frames", type=int, help="fewer decodable frames is an error (default: the config's, 1)")
    p.add_argument("--workers", type=int, default=min(os.cpu_count() or 1, 8))
    p.add_argument("--json", type=Path, help="also write the report here")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(handler=run)
    return p


def probe(job: tuple[str, int, int, int]) -> tuple[str, str | None, int]:
    """Decode what a centre clip needs and the last declared frame of ``source``.

    Returns ``(source, problem or None, frames)``. Asking for the last declared frame makes the reader
    decode to the end, so a stream cut short is reported as truncated (``read_clip``'s rule).
    """
    from albar.data.io import ClipReadError, at_least, read_clip
    from albar.data.sampling import clip_indices

    source, num_frames, stride, min_frames = job
    asked: list[int] = []

    def wanted(n: int) -> list[int]:
        asked.append(n)
        return clip_indices(n, num_frames, stride, "center") + [n - 1]

    try:
        read_clip(source, at_least(min_frames, wanted, source))
    except ClipReadError as err:
        return source, err.reason, asked[-1] if asked else 0
    except Exception as err:  # a decoder bug must not stop the scan: report it with the file
        return source, f"unexpected {type(err).__name__}: {err}", 0
    return source, None, asked[-1]


def _problem(set_name: str, file: str, kind: str, reason: str) -> dict[str, str]:
    return {"set": set_name, "file": file, "kind": kind, "reason": reason}


class _Plan:
    """What to check: the data section (as train/eval resolve it) and the files named only on the command line."""

    def __init__(self) -> None:
        self.data: Any = None  # DataConfig
        self.num_classes: int | None = None
        self.train = True
        self.kinetics_extra: list[Path] = []
        self.problems: list[dict[str, str]] = []


def plan_from_args(args: argparse.Namespace) -> _Plan:
    """Translate ``--config``, overrides and flags into one data section (raises ConfigError for a bad config)."""
    from pydantic import ValidationError

    from albar.config import ConfigError, DataConfig, TrainConfig, _format, load_config

    plan = _Plan()
    overrides = list(getattr(args, "overrides", []) or [])
    cfg: TrainConfig = load_config(args.config, overrides)
    set_by_flags: dict[str, Any] = {}
    datasets = [name for name, value in (("--hmdb51", args.hmdb51), ("--ucf101", args.ucf101),
                                         ("--kinetics", args.kinetics)) if value]
    if len(datasets) > 1:
        plan.problems.append(_problem("", "", "usage", f"{' and '.join(datasets)}: check one dataset at a time "
                                      "(its bias sets are labelled through its splits)"))
        return plan
    if (datasets or args.hmdb51_csv) and not args.video_root:
        plan.problems.append(_problem("", "", "usage", "--video-root is required"))
        return plan
    if args.hmdb51:
        set_by_flags.update(source="hmdb51", splits=args.hmdb51)
    elif args.ucf101:
        set_by_flags.update(source="ucf101", splits=args.ucf101)
    elif args.kinetics:
        folders = {p if p.is_dir() else p.parent for p in args.kinetics}
        if len(folders) > 1:
            plan.problems.append(_problem("", "", "usage", "--kinetics: the annotation CSVs must share a folder, got "
                                          + ", ".join(map(str, sorted(folders)))))
            return plan
        set_by_flags.update(source="kinetics400", splits=folders.pop())
        files = [p for p in args.kinetics if not p.is_dir()]
        standard = {"train.csv", "validate.csv", "val.csv"}
        plan.kinetics_extra = [p for p in files if p.name not in standard]
        plan.train = not files or any(p.name == "train.csv" for p in files)
    elif args.list or args.hmdb51_csv:
        set_by_flags.update(source="lists")
    if datasets:
        set_by_flags["root"] = args.video_root
    for flag, key in (("split", "split"), ("bias_root", "bias_root"), ("dataset", "bias_dataset"),
                      ("labels_csv", "bias_labels"), ("classes", "classes"), ("num_frames", "num_frames"),
                      ("stride", "stride"), ("min_frames", "min_frames")):
        value = getattr(args, flag)
        if value is not None:
            set_by_flags[key] = value
    for option, path in (("--classes", args.classes), ("--labels-csv", args.labels_csv)):
        if path is not None and not Path(path).is_file():
            plan.problems.append(_problem("", str(path), "usage", f"{option}: file not found"))
    if plan.problems:
        return plan
    if set_by_flags.get("source") and set_by_flags["source"] != cfg.data.source:
        # another dataset than the config's: its split settings do not carry over
        base = {k: v for k, v in cfg.data.model_dump().items()
                if k not in ("root", "splits", "train", "val", "test", "bias", "bias_root", "bias_dataset",
                             "bias_labels", "classes")}
    else:
        base = cfg.data.model_dump()
    try:
        plan.data = DataConfig.model_validate({**base, **set_by_flags})
    except ValidationError as err:  # a flag value the data section refuses (e.g. --num-frames 0)
        raise ConfigError("check-data options: " + _format(err).replace("\n  ", "\n  data.")) from None
    plan.num_classes = args.num_classes if args.num_classes is not None else (
        cfg.model.num_classes if args.config is not None or any(
            o.split("=", 1)[0].strip() == "model.num_classes" for o in overrides) else None)
    if plan.data.source == "lists":
        plan.train = plan.data.train is not None
    return plan


def collect_sets(args: argparse.Namespace) -> tuple[dict[str, Any], list[dict[str, str]], dict[str, Any]]:
    """The splits to check (by name), the problems found while resolving them, and facts for the report
    (``skipped`` sets of other datasets, the data section, ``num_classes``)."""
    from albar.data.bundle import resolve_data
    from albar.data.layouts import LabelError, hmdb51_csv, kinetics400_csv, list_split, read_classes

    plan = plan_from_args(args)
    info: dict[str, Any] = {"skipped": [], "num_classes": plan.num_classes}
    sets: dict[str, Any] = {}
    problems = list(plan.problems)
    if problems or plan.data is None:
        return sets, problems, info
    d = plan.data

    def add(name: str, build) -> Any:
        try:
            split = build()
        except LabelError as err:  # what could be labelled is still checked (one pass)
            problems.extend(_problem(name, k, "label", v) for k, v in err.problems.items())
            split = err.partial
            if split is None:
                return None
        except (FileNotFoundError, ValueError, KeyError) as err:
            problems.append(_problem(name, "", "layout", str(err).strip("'\"")))
            return None
        label = split.name
        while label in sets:
            label = f"{label}'"
        sets[label] = split
        return split

    classes0 = read_classes(args.classes) if args.classes else None
    label_splits = []
    for csv_path in args.hmdb51_csv:  # labels HMDB51 bias sets too (the release's videos are named by them)
        s = add(csv_path.stem, lambda p=csv_path, c=classes0: hmdb51_csv(p, args.video_root, c))
        if s is not None:
            label_splits.append(s)
            classes0 = classes0 or s.classes
    lists_first = d.source == "lists"  # without a dataset, the lists name the videos the bias sets come from
    for path in args.list if lists_first else []:
        s = add(path.stem, lambda p=path: list_split(p, args.root, classes0, strict=False))
        if s is not None:
            label_splits.append(s)
    nothing = (d.source == "lists" and d.train is None and d.val is None and d.test is None and d.bias_root is None
               and not d.bias.scuba and not d.bias.scufo and d.bias.conflfg is None)
    if not nothing:
        spec = resolve_data(d, plan.num_classes, train=plan.train, strict=False,
                            progress=not args.no_progress, label_splits=label_splits)
        problems.extend(p.as_dict() for p in spec.problems)
        info["skipped"] = spec.skipped
        info["data"] = spec.config
        if any(p.kind == "num_classes" for p in spec.problems):
            info["num_classes"] = None  # reported once, not again for every item
        for role, split in spec.roles().items():
            label = split.name if split.name not in sets else f"{split.name} ({role})"
            sets[label] = split
        classes0 = classes0 or spec.classes
        info["classes"] = spec.classes
    for csv_path in plan.kinetics_extra:
        add(csv_path.stem, lambda p=csv_path: kinetics400_csv(p, d.root, classes0))
    for path in [] if lists_first else args.list:
        add(path.stem, lambda p=path: list_split(p, args.root, classes0, strict=False))
    return sets, problems, info


def check_sets(
    sets: dict[str, Any],
    num_frames: int = 32,
    stride: int = 2,
    min_frames: int = 1,
    num_classes: int | None = None,
    workers: int = 1,
    progress: bool = False,
) -> tuple[dict[str, Any], list[dict[str, str]]]:
    """Per-set class counts, and every missing/unreadable/truncated/too-short file and label out of range.

    A SCUFO item standing in for a still the release lacks is not probed: its pairing problem says it all.
    """
    from albar.data.bundle import NO_STILL
    from albar.utils import parallel_map

    problems: list[dict[str, str]] = []
    owners: dict[str, list[tuple[str, Any]]] = {}
    summary: dict[str, Any] = {}
    for name, split in sets.items():
        k = num_classes or len(split.classes)
        for it in split.items:
            if it.extra.get(NO_STILL):
                continue
            if not 0 <= it.label < k:
                problems.append(_problem(name, str(it.source), "label",
                                         f"label {it.label} out of range for {k} classes"))
            c = it.extra.get("conflict_label")
            if c is not None and not 0 <= c < k:
                problems.append(_problem(name, str(it.source), "label",
                                         f"conflict_label {c} out of range for {k} classes"))
            if it.key in split.missing:  # the layout looked for it already
                searched = split.searched.get(it.key)
                reason = "no such file" + (f" (searched: {', '.join(searched)})" if searched else "")
                problems.append(_problem(name, str(it.source), "missing", reason))
            else:
                owners.setdefault(str(it.source), []).append((name, it))
        summary[name] = {"items": len(split.items), "class_counts": split.class_counts()}
    jobs = [(src, num_frames, stride, min_frames) for src in owners]
    results = parallel_map(probe, jobs, workers, "check-data", "file", progress)
    for source, problem, frames in sorted(results):
        for name, it in owners[source]:
            if problem:
                problems.append(_problem(name, source, "unreadable", problem))
            elif it.extra.get("num_frames") not in (None, frames):
                problems.append(_problem(name, source, "frames",
                                         f"list says {it.extra['num_frames']} frames, found {frames}"))
    return summary, problems


def run(args: argparse.Namespace) -> int:
    """Scan, print the report (every problem on its own line), optionally write JSON; 1 if anything is wrong,
    2 if the config cannot be read."""
    from albar.config import ConfigError
    from albar.utils import atomic_write_json

    try:
        sets, problems, info = collect_sets(args)
    except ConfigError as err:
        print(f"albar: error: {err}", file=sys.stderr)
        return 2
    data = info.get("data")
    num_frames = args.num_frames or (data.num_frames if data is not None else 32)
    stride = args.stride or (data.stride if data is not None else 2)
    min_frames = args.min_frames or (data.min_frames if data is not None else 1)
    summary, found = check_sets(sets, num_frames, stride, min_frames, info["num_classes"], args.workers,
                                progress=not args.no_progress)
    problems += found
    if not sets and not problems:
        problems.append(_problem("", "", "usage", "nothing to check: give --config, or name a --list, --hmdb51, "
                                 "--ucf101, --kinetics or --bias-root"))
    for name, entry in summary.items():
        counts = entry["class_counts"]
        empty = [c for c, n in counts.items() if n == 0]
        print(f"{name}: {entry['items']} items, {len(counts)} classes"
              + (f", {len(empty)} empty: {', '.join(empty[:10])}" if empty else ""))
    skipped = info.get("skipped") or []
    if skipped:
        print(f"skipped {len(skipped)} set(s) of other datasets under the bias root: {', '.join(skipped)}")
    for p in problems:
        where = " ".join(x for x in (p["set"], p["file"]) if x)
        print(f"{p['kind'].upper()}{' ' + where if where else ''}: {p['reason']}")
    ok = not problems and bool(sets)
    print(f"check-data: {'OK' if ok else f'{len(problems)} problem(s)'} in {sum(len(s.items) for s in sets.values())} "
          f"items of {len(sets)} set(s)")
    if args.json:
        atomic_write_json(args.json, {"ok": ok, "sets": summary, "problems": problems, "skipped": skipped})
    return 0 if ok else 1


def main(argv: Sequence[str] | None = None) -> int:
    """Stand-alone entry (``python -m albar.cli.check_data``), the same as ``albar check-data``."""
    parser = argparse.ArgumentParser(prog="albar")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args, unknown = parser.parse_known_args(["check-data", *(argv if argv is not None else sys.argv[1:])])
    extra = [u for u in unknown if "=" in u and not u.startswith("-")]  # overrides after options
    if len(extra) != len(unknown):
        parser.error(f"unrecognized arguments: {' '.join(u for u in unknown if u not in extra)}")
    args.overrides = [*args.overrides, *extra]
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
