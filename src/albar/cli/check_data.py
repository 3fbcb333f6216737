"""``albar check-data``: find every unreadable, missing, mislabelled or unpaired file before a run does.

Scans dataset splits (HMDB51/UCF101 official splits, Kinetics-400 CSVs, mmaction2 lists) and bias-set roots
(ALBAR's ``<DS>_<KIND>_<Source>`` folders), decoding in parallel the frames a 32 x 2 centre clip needs plus
the last declared frame of every file (to catch truncated streams). Exit status 1 when anything is wrong;
the report names every bad file and why.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from albar.data.bias_sets import (
    LabelFn,
    albar_bias_set,
    check_pairing,
    class_labeler,
    csv_labeler,
    find_bias_sets,
)
from albar.data.datasets import (
    DatasetSplit,
    LabelError,
    hmdb51_csv,
    hmdb51_split,
    kinetics400_csv,
    list_split,
    read_classes,
    ucf101_split,
)
from albar.data.io import ClipReadError, at_least, read_clip
from albar.data.sampling import clip_indices
from albar.utils import atomic_write_json, parallel_map


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``check-data`` on an argparse sub-parser set; ``run`` is stored as ``handler``."""
    p = subparsers.add_parser("check-data", help="scan datasets and bias sets for bad files and labels",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--list", action="append", default=[], type=Path, metavar="LIST",
                   help="mmaction2 list 'path label' or 'dir num_frames label' (repeatable)")
    p.add_argument("--root", type=Path, help="folder the --list paths are relative to (default: the list's)")
    p.add_argument("--hmdb51", type=Path, metavar="SPLITS_DIR", help="folder of <class>_test_split<N>.txt")
    p.add_argument("--hmdb51-csv", action="append", default=[], type=Path, metavar="CSV",
                   help="ALBAR's hmdb51_{train,test}_labels.csv (filename,label[,class]; repeatable)")
    p.add_argument("--ucf101", type=Path, metavar="LIST_DIR", help="the ucfTrainTestlist folder")
    p.add_argument("--kinetics", action="append", default=[], type=Path, metavar="CSV",
                   help="Kinetics-400 annotation CSV (repeatable; classes from the first)")
    p.add_argument("--video-root", type=Path, help="video folder for --hmdb51/--ucf101/--kinetics")
    p.add_argument("--split", type=int, default=1, choices=(1, 2, 3))
    p.add_argument("--bias-root", type=Path, help="folder of <DS>_<SCUBA|SCUFO|ConflFG>_<Source> sets")
    p.add_argument("--labels-csv", type=Path, help="filename,label CSV labelling HMDB51/K400 bias sets")
    p.add_argument("--classes", type=Path, help="class names (one per line or classInd style)")
    p.add_argument("--num-classes", type=int, help="labels must be below this (default: number of classes)")
    p.add_argument("--num-frames", type=int, default=32)
    p.add_argument("--stride", type=int, default=2)
    p.add_argument("--min-frames", type=int, default=1, help="fewer decodable frames is an error (too short)")
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


def _labeler(
    ds: str, args: argparse.Namespace, classes: list[str] | None, split_names: dict[str, str],
) -> LabelFn | None:
    """UCF101: the class in the file name; else --labels-csv; else the split the generated videos come from."""
    if ds == "UCF101" and classes:
        return class_labeler(classes)
    if args.labels_csv:
        return csv_labeler(args.labels_csv, classes)
    if split_names and classes:
        return class_labeler(classes, split_names)
    return None


def collect_sets(args: argparse.Namespace) -> tuple[dict[str, DatasetSplit], list[dict[str, str]]]:
    """The splits the arguments name, plus the problems found while building them (labels, pairing)."""
    sets: dict[str, DatasetSplit] = {}
    problems: list[dict[str, str]] = []
    for option, path in (("--classes", args.classes), ("--labels-csv", args.labels_csv)):
        if path is not None and not Path(path).is_file():
            problems.append({"set": "", "file": str(path), "kind": "usage", "reason": f"{option}: file not found"})
    if problems:
        return sets, problems
    classes = read_classes(args.classes) if args.classes else None

    def add(name: str, build) -> DatasetSplit | None:
        try:
            split = build()
        except LabelError as err:
            problems.extend({"set": name, "file": k, "kind": "label", "reason": v} for k, v in err.problems.items())
            return None
        except (FileNotFoundError, ValueError) as err:
            problems.append({"set": name, "file": "", "kind": "layout", "reason": str(err)})
            return None
        sets[split.name] = split
        return split

    needs_root = args.hmdb51 or args.hmdb51_csv or args.ucf101 or args.kinetics
    if needs_root and not args.video_root:
        problems.append({"set": "", "file": "", "kind": "usage", "reason": "--video-root is required"})
        return sets, problems
    for subset in ("train", "test"):
        if args.hmdb51:
            s = add(f"hmdb51_{subset}", lambda sub=subset: hmdb51_split(args.hmdb51, args.video_root, args.split, sub))
            classes = classes or (s.classes if s else None)
        if args.ucf101:
            s = add(f"ucf101_{subset}", lambda sub=subset: ucf101_split(args.ucf101, args.video_root, args.split, sub))
            classes = classes or (s.classes if s else None)
    for csv_path in args.hmdb51_csv:
        s = add(csv_path.stem, lambda p=csv_path, c=classes: hmdb51_csv(p, args.video_root, c))
        classes = classes or (s.classes if s else None)
    k400_classes = classes
    for csv_path in args.kinetics:
        s = add(csv_path.stem, lambda p=csv_path, c=k400_classes: kinetics400_csv(p, args.video_root, c))
        k400_classes = k400_classes or (s.classes if s else None)
    for path in args.list:
        add(path.stem, lambda p=path: list_split(p, args.root, classes, strict=False))
    if args.bias_root:
        found = find_bias_sets(args.bias_root) if args.bias_root.is_dir() else {}
        if not found:
            problems.append({"set": str(args.bias_root), "file": "", "kind": "layout",
                             "reason": "no <DS>_<SCUBA|SCUFO|ConflFG>_<Source> folders"})
        split_names = {it.key: split.classes[it.label] for split in sets.values() for it in split.items
                       if 0 <= it.label < len(split.classes)}
        for (ds, kind, source), _folder in found.items():
            names = classes if ds != "K400" else (k400_classes or classes)
            label_of = _labeler(ds, args, names, split_names)
            if label_of is None or names is None:
                reason = ("no labels: pass the dataset's split (--hmdb51, --kinetics), --classes (UCF101), or "
                          "--labels-csv and --classes")
                problems.append({"set": f"{ds}_{kind}_{source}", "file": "", "kind": "usage", "reason": reason})
                continue
            add(f"{ds}_{kind}_{source}", lambda d=ds, k=kind, s=source, f=label_of, n=names:
                albar_bias_set(args.bias_root, d, k, s, f, n))
        for ds in sorted({d for (d, _, _) in found}):
            for source in {s for (d, _, s) in found if d == ds}:
                a, b = sets.get(f"{ds}_SCUBA_{source}"), sets.get(f"{ds}_SCUFO_{source}")
                if a and b:
                    for key, reason in check_pairing(a, b).problems().items():
                        problems.append({"set": f"{ds}_{source}", "file": key, "kind": "pairing", "reason": reason})
    return sets, problems


def check_sets(
    sets: dict[str, DatasetSplit],
    num_frames: int = 32,
    stride: int = 2,
    min_frames: int = 1,
    num_classes: int | None = None,
    workers: int = 1,
    progress: bool = False,
) -> tuple[dict[str, Any], list[dict[str, str]]]:
    """Per-set class counts, and every missing/unreadable/truncated/too-short file and label out of range."""
    problems: list[dict[str, str]] = []
    owners: dict[str, list[tuple[str, Any]]] = {}
    summary: dict[str, Any] = {}
    for name, split in sets.items():
        k = num_classes or len(split.classes)
        for it in split.items:
            if not 0 <= it.label < k:
                problems.append({"set": name, "file": str(it.source), "kind": "label",
                                 "reason": f"label {it.label} out of range for {k} classes"})
            for extra_label in ("conflict_label",):
                c = it.extra.get(extra_label)
                if c is not None and not 0 <= c < k:
                    problems.append({"set": name, "file": str(it.source), "kind": "label",
                                     "reason": f"{extra_label} {c} out of range for {k} classes"})
            if not it.source.exists():
                problems.append({"set": name, "file": str(it.source), "kind": "missing", "reason": "no such file"})
            else:
                owners.setdefault(str(it.source), []).append((name, it))
        summary[name] = {"items": len(split.items), "class_counts": split.class_counts()}
    jobs = [(src, num_frames, stride, min_frames) for src in owners]
    results = parallel_map(probe, jobs, workers, "check-data", "file", progress)
    for source, problem, frames in sorted(results):
        for name, it in owners[source]:
            if problem:
                problems.append({"set": name, "file": source, "kind": "unreadable", "reason": problem})
            elif it.extra.get("num_frames") not in (None, frames):
                problems.append({"set": name, "file": source, "kind": "frames",
                                 "reason": f"list says {it.extra['num_frames']} frames, found {frames}"})
    return summary, problems


def run(args: argparse.Namespace) -> int:
    """Scan, print the report (every problem on its own line), optionally write JSON; 1 if anything is wrong."""
    sets, problems = collect_sets(args)
    summary, found = check_sets(sets, args.num_frames, args.stride, args.min_frames, args.num_classes,
                                args.workers, progress=not args.no_progress)
    problems += found
    if not sets and not problems:
        problems.append({"set": "", "file": "", "kind": "usage",
                         "reason": "nothing to check: name a --list, --hmdb51, --ucf101, --kinetics or --bias-root"})
    for name, info in summary.items():
        counts = info["class_counts"]
        empty = [c for c, n in counts.items() if n == 0]
        print(f"{name}: {info['items']} items, {len(counts)} classes"
              + (f", {len(empty)} empty: {', '.join(empty[:10])}" if empty else ""))
    for p in problems:
        where = " ".join(x for x in (p["set"], p["file"]) if x)
        print(f"{p['kind'].upper()}{' ' + where if where else ''}: {p['reason']}")
    ok = not problems and bool(sets)
    print(f"check-data: {'OK' if ok else f'{len(problems)} problem(s)'} in {sum(len(s.items) for s in sets.values())} "
          f"items of {len(sets)} set(s)")
    if args.json:
        atomic_write_json(args.json, {"ok": ok, "sets": summary, "problems": problems})
    return 0 if ok else 1


def main(argv: Sequence[str] | None = None) -> int:
    """Stand-alone entry until ``albar check-data`` is wired into the main parser."""
    parser = argparse.ArgumentParser(prog="albar")
    add_parser(parser.add_subparsers(dest="command", required=True))
    return run(parser.parse_args(["check-data", *(argv if argv is not None else sys.argv[1:])]))


if __name__ == "__main__":
    sys.exit(main())
