"""From a validated data config to the data of a run: train, val, test and the bias sets.

One resolution, :func:`resolve_data`, turns a ``data`` section into named splits of items (no decoding)
plus what it found wrong. ``train`` and ``eval`` (through :func:`build_data`) and ``check-data`` (which probes
the files of the same splits) all go through it, so the three cannot disagree on which sets exist, how
their items are labelled or which files they read. In strict mode (``build_data``) the first fatal problem
raises, naming the file, key or config value, before any work; ``check-data`` collects every problem in one
pass instead. Non-fatal problems (a missing file, a SCUBA clip without its SCUFO still) are reported and the
item kept: it fails when read and counts against the model.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from albar.data.bias_sets import (
    NOT_AN_ITEM,
    LabelFn,
    albar_bias_set,
    chain_labelers,
    check_pairing,
    class_labeler,
    complete_scufo,
    conflfg_parts,
    csv_labeler,
    find_bias_sets,
    release_files,
    strip_instance,
    ucf_class,
)
from albar.data.dataset import ClipDataset
from albar.data.layouts import LAYOUTS, DatasetLayout, DatasetSplit, LabelError, Subset, read_classes
from albar.data.lists import ClipItem, read_list, read_text_lines
from albar.data.spec import DataConfig, SetConfig
from albar.data.splits import holdout_split
from albar.data.transforms import build_transform
from albar.data.views import ViewDataset
from albar.synthetic import build_benchmark

T = TypeVar("T")

# ClipItem.extra key of a SCUFO item standing in for a still the release lacks (see complete_scufo)
NO_STILL = "no_scufo_still"


@dataclass
class DataProblem:
    """Something wrong with the data, named: the set, the file (or key), what kind, why.

    ``fatal``: the run cannot start (labels, layout, num_classes, duplicates); otherwise the affected item is
    kept and fails when read, counted against the model.
    """

    set: str
    file: str
    kind: str  # usage, layout, label, num_classes, duplicate, pairing, leak, missing, unreadable, frames
    reason: str
    fatal: bool = True

    def as_dict(self) -> dict[str, str]:
        return {"set": self.set, "file": self.file, "kind": self.kind, "reason": self.reason}

    def line(self) -> str:
        where = " ".join(x for x in (self.set, self.file) if x)
        return f"{self.kind.upper()}{' ' + where if where else ''}: {self.reason}"


@dataclass
class ResolvedData:
    """The splits a data section names, before any decoding. ``train`` is the whole training split (the
    validation hold-out is cut by :func:`build_data`); ``skipped`` are the release folders of other datasets
    under a shared bias root."""

    train: DatasetSplit | None = None
    val: DatasetSplit | None = None
    test: DatasetSplit | None = None
    scuba: dict[str, DatasetSplit] = field(default_factory=dict)
    scufo: dict[str, DatasetSplit] = field(default_factory=dict)
    conflfg: DatasetSplit | None = None
    classes: list[str] | None = None
    problems: list[DataProblem] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    config: DataConfig | None = None  # the resolved section (synthetic: pointing at the built lists)
    # the keys of the videos this config trains on, also when only evaluating (read where the layout gives them)
    train_keys: set[str] = field(default_factory=set)

    def roles(self) -> dict[str, DatasetSplit]:
        """Every split by role: train, val, test, scuba_<source>, scufo_<source>, conflfg."""
        out = {k: v for k, v in (("train", self.train), ("val", self.val), ("test", self.test)) if v is not None}
        out.update({f"scuba_{k}": v for k, v in self.scuba.items()})
        out.update({f"scufo_{k}": v for k, v in self.scufo.items()})
        if self.conflfg is not None:
            out["conflfg"] = self.conflfg
        return out


class _Collect:
    """Runs resolution steps: strict, the first fatal problem raises; else each is recorded and skipped."""

    def __init__(self, strict: bool) -> None:
        self.strict = strict
        self.problems: list[DataProblem] = []

    def fail(self, problem: DataProblem, error: Exception | None = None) -> None:
        if self.strict and problem.fatal:
            raise error if error is not None else ValueError(problem.reason)
        self.problems.append(problem)

    def attempt(self, name: str, step: Callable[[], T]) -> T | None:
        try:
            return step()
        except LabelError as err:
            if self.strict:
                raise
            self.problems += [p for p in (DataProblem(name, k, "label", v) for k, v in err.problems.items())
                              if p not in self.problems]
            return err.partial  # what could be labelled is still checked: the report is one pass
        except (FileNotFoundError, ValueError, KeyError) as err:
            if self.strict:
                raise
            found = [DataProblem(name, "", "layout", str(err).strip("'\""))]
        self.problems += [p for p in found if p not in self.problems]  # two splits read from one bad file
        return None


# --------------------------------------------------------------------------------------------- synthetic

def synthetic_lists(cfg: DataConfig, progress: bool = True) -> DataConfig:
    """Build the synthetic benchmark if needed and return ``cfg`` pointing at its lists."""
    if cfg.root is None:
        raise ValueError("data.root: the synthetic benchmark needs a folder to be built in")
    bench = build_benchmark(cfg.root, cfg.synthetic, progress=progress)
    lists = bench.root / "lists"
    paired = {"scuba": {}, "scufo": {}, "conflfg": {"list": lists / "conflfg.txt", "key": "stem"}}
    for source in bench.sources:
        for kind in ("scuba", "scufo"):
            paired[kind][source] = {"list": lists / f"{kind}_{source}.txt", "key": "stem"}
    return DataConfig.model_validate({
        **cfg.model_dump(), "source": "lists", "root": bench.root, "bias": paired,
        **{split: {"list": lists / f"{split}.txt"} for split in ("train", "val", "test")},
    })


# ------------------------------------------------------------------------------------ dataset layouts

def layout_of(cfg: DataConfig) -> DatasetLayout:
    """The registered layout ``data.source`` names (HMDB51, UCF101, Kinetics-400, ...)."""
    layout = cfg.layout
    if layout is None:
        raise ValueError(f"data.source={cfg.source!r} is not a dataset layout")
    return layout


def official_classes(cfg: DataConfig) -> list[str]:
    """The class names of the dataset ``data.source`` names, without reading any split's items."""
    return layout_of(cfg).classes(cfg)


def official_split(cfg: DataConfig, subset: Subset, classes: Sequence[str] | None = None) -> DatasetSplit:
    """One split of the dataset ``data.source`` names, from its distributed files (``classes`` as
    :func:`official_classes` gives them)."""
    return layout_of(cfg).split(cfg, subset, classes or [])


# ---------------------------------------------------------------------------------------------- lists

def _conflfg_without_conflict(spec: SetConfig, items: Sequence[ClipItem]) -> str | None:
    """``file:line`` and the line of the first ConflFG entry without its conflict (pasted actor) label."""
    lines = [(n, line) for n, line in enumerate(read_text_lines(spec.list), 1)
             if line.strip() and not line.lstrip().startswith("#")]  # the entries read_list reads, in order
    for (lineno, line), it in zip(lines, items):
        if "conflict_label" not in it.extra:
            return f"{spec.list}:{lineno}: {line.strip()!r}"
    return None


def _list_set(
    name: str, spec: SetConfig, default_root: Path | None, classes: list[str] | None, num_classes: int | None,
) -> DatasetSplit:
    """A configured list as a split; every label must fit the classes and ``model.num_classes``."""
    if not spec.list.is_file():
        raise FileNotFoundError(f"data.{name}.list: file not found: {spec.list}")
    items = read_list(spec.list, root=spec.root or default_root, key=spec.key)
    if name == "bias.conflfg":
        bad = _conflfg_without_conflict(spec, items)
        if bad:
            raise ValueError(f"data.bias.conflfg: {bad} has no conflict label: ConflFG lines are '<path> <label> "
                             "<pasted actor's label>' (rawframes: '<dir> <num_frames> <label> <pasted label>')")
    limits = [(n, what) for n, what in ((num_classes, f"model.num_classes={num_classes}"),
                                        (len(classes) if classes else None,
                                         f"{len(classes or [])} class names")) if n is not None]
    for limit, what in limits:
        for extra in ("label", "conflict_label"):
            bad_items = [it for it in items if (it.label if extra == "label" else it.extra.get(extra, -1)) >= limit]
            if bad_items:
                it = bad_items[0]
                value = it.label if extra == "label" else it.extra[extra]
                raise ValueError(
                    f"data.{name}: {extra} {value} of {it.source} is out of range for {what} ({len(bad_items)} such "
                    f"entries in {spec.list}; the list needs at least {value + 1} classes)")
    names = list(classes) if classes else [str(i) for i in range(num_classes or max(it.label for it in items) + 1)]
    missing = {it.key: str(it.source) for it in items if not it.source.exists()}
    return DatasetSplit(spec.list.stem, items, names, missing, str(spec.list))


def _class_names(cfg: DataConfig) -> tuple[list[str] | None, Path | None]:
    path = cfg.classes or ((cfg.root / "classes.txt") if cfg.root is not None else None)
    if cfg.classes is not None and not cfg.classes.is_file():
        raise FileNotFoundError(f"data.classes: file not found: {cfg.classes}")
    if path is None or not path.is_file():
        return None, None
    return read_classes(path), path


# ------------------------------------------------------------------------------------------ bias sets

def release_dataset(cfg: DataConfig, found: Sequence[str]) -> str:
    """The dataset prefix whose sets a run reads under ``data.bias_root``."""
    if cfg.bias_dataset:
        return cfg.bias_dataset
    if cfg.layout is not None and cfg.layout.release_name:
        return cfg.layout.release_name
    names = sorted(set(found))
    if len(names) == 1:
        return names[0]
    raise ValueError(f"data.bias_dataset: {cfg.bias_root} holds the sets of {', '.join(names) or 'no dataset'}; "
                     "name the one to read (e.g. data.bias_dataset=HMDB51, check-data --dataset HMDB51)")


def bias_labeler(cfg: DataConfig, ds: str, classes: Sequence[str], splits: Sequence[DatasetSplit]) -> LabelFn:
    """Labels of the release's files: generated videos are named after the video they come from, so a key
    is labelled through the dataset's own splits, then ``data.bias_labels`` (a ``filename,label`` CSV), then
    (UCF101) the class in its ``v_<Class>_gNN_cNN`` name, matched case-insensitively."""
    mapping: dict[str, str] = {}
    for split in splits:
        for it in split.items:
            if 0 <= it.label < len(split.classes):
                mapping[it.key] = split.classes[it.label]
                mapping.setdefault(Path(it.source).stem, split.classes[it.label])
    labelers = [class_labeler(classes, mapping)] if mapping else []
    if cfg.bias_labels is not None:
        labelers.append(csv_labeler(cfg.bias_labels, classes))
    if ds == "UCF101":
        labelers.append(class_labeler(classes, ucf_class))
    if not labelers:
        raise ValueError(f"data.bias_labels: nothing labels the {ds} sets in {cfg.bias_root}: give the dataset's "
                         "splits (data.source), a filename,label CSV (data.bias_labels) or lists naming the videos")
    return chain_labelers(*labelers)


def _release_sets(
    cfg: DataConfig, classes: list[str] | None, splits: Sequence[DatasetSplit], run: _Collect, spec: ResolvedData,
) -> dict[str, dict[str, DatasetSplit]]:
    """The chosen dataset's sets under ``data.bias_root``: {kind: {source: split}}; others are skipped."""
    found_sets: dict[str, dict[str, DatasetSplit]] = {"scuba": {}, "scufo": {}, "conflfg": {}}
    root = cfg.bias_root
    assert root is not None
    found = find_bias_sets(root) if root.is_dir() else {}
    if not found:
        what = "no <DS>_<SCUBA|SCUFO|ConflFG>_<Source> folders" + ("" if root.is_dir() else " (not a folder)")
        run.fail(DataProblem(str(root), "", "layout", what),
                 FileNotFoundError(f"data.bias_root: {what}: {root}"))
        return found_sets
    ds = run.attempt("data.bias_dataset", lambda: release_dataset(cfg, [d for d, _, _ in found]))
    if ds is None:
        return found_sets
    spec.skipped = sorted(p.name for (d, _, _), p in found.items() if d != ds)
    mine = {(k, s): p for (d, k, s), p in found.items() if d == ds}
    if not mine:
        run.fail(DataProblem(str(root), "", "layout", f"no {ds}_SCUBA_*, {ds}_SCUFO_* or {ds}_ConflFG_* folder"),
                 FileNotFoundError(f"data.bias_root: no {ds}_SCUBA_*, {ds}_SCUFO_* or {ds}_ConflFG_* folder in "
                                   f"{root}"))
        return found_sets
    if classes is None:
        run.fail(DataProblem(str(root), "", "usage", f"the {ds} sets need class names: data.classes (or a "
                             "classes.txt in data.root) or a dataset source"),
                 ValueError(f"data.classes: the {ds} sets in {root} need class names"))
        return found_sets
    label_of = run.attempt(f"{ds} bias sets", lambda: bias_labeler(cfg, ds, classes, splits))
    if label_of is None:
        return found_sets
    for (kind, source), folder in mine.items():
        if not release_files(folder, kind)[0]:  # e.g. make-bias-set skipped every pair
            run.problems.append(DataProblem(folder.name, str(folder), "layout", "no files: set skipped", fatal=False))
            continue
        split = run.attempt(folder.name, lambda k=kind, s=source: albar_bias_set(
            root, ds, k, s, label_of, classes, leave_out_unlabelled=True))
        if split is not None:
            found_sets[kind.lower()][source.lower()] = split
            run.problems += [DataProblem(folder.name, path, "layout" if why.startswith(NOT_AN_ITEM) else "label",
                                         f"{why}: left out", fatal=False) for path, why in split.left_out.items()]
    return found_sets


# ------------------------------------------------------------------------------------------ resolution

def resolve_data(
    cfg: DataConfig,
    num_classes: int | None = None,
    train: bool = True,
    strict: bool = True,
    progress: bool = True,
    label_splits: Sequence[DatasetSplit] = (),
) -> ResolvedData:
    """The splits ``cfg`` names, labelled and checked, before any decoding (see the module docstring).

    Checked here: ``model.num_classes`` against every source of class names (official splits, class files,
    list labels), duplicate keys in val/test/bias sets, ConflFG conflict labels, SCUBA/SCUFO pairing
    (labels must agree; a SCUBA clip without its still keeps a failing SCUFO item; a still without a clip
    is left out). ``label_splits`` label bias-set files besides the dataset's own splits (check-data's extra
    CSVs). ``strict``: raise the first fatal problem; else collect all in ``problems``.
    """
    run = _Collect(strict)
    if cfg.source == "synthetic":
        cfg = synthetic_lists(cfg, progress)
    spec = ResolvedData(config=cfg)
    known_splits: list[DatasetSplit] = list(label_splits)
    if cfg.source in LAYOUTS:
        spec.classes = _layout_splits(cfg, spec, run, num_classes, train, known_splits)
    else:
        spec.classes = _list_splits(cfg, spec, run, num_classes, train, known_splits)
        if spec.classes is None and label_splits:  # e.g. check-data --hmdb51-csv: names from the labelling CSV
            spec.classes = list(label_splits[0].classes)
    _bias_splits(cfg, spec, run, num_classes, known_splits)
    _no_duplicate_keys(spec, run)
    _pair(cfg, spec, run)
    _no_training_videos(spec, run, known_splits)
    spec.problems = run.problems
    return spec


def _no_training_videos(spec: ResolvedData, run: _Collect, known_splits: list[DatasetSplit]) -> None:
    """A bias clip cut from a video the run trains on measures what the model memorised, not its bias (e.g.
    HMDB51's split-1 release with a split-2 or 3 run): said per set, with a count and an example (not fatal:
    the set is still evaluated). SCUBA/SCUFO keys are ``<video key>__<n>``; ConflFG's moving part counts."""
    if not spec.train_keys:
        return
    sets = {**{f"scuba_{k}": v for k, v in spec.scuba.items()}, **{f"scufo_{k}": v for k, v in spec.scufo.items()}}
    known_keys: set[str] = set()
    if spec.conflfg is not None:
        sets["conflfg"] = spec.conflfg
        known_keys = {it.key for s in known_splits for it in s.items}  # to split ConflFG names (K400: 250k keys)
    for name, split in sets.items():
        leaked = []
        for it in split.items:
            try:
                video = conflfg_parts(it.key, known_keys)[0] if name == "conflfg" else strip_instance(it.key)
            except KeyError:
                continue
            if video in spec.train_keys:
                leaked.append(it.key)
        if leaked:
            run.problems.append(DataProblem(split.name, split.origin or name, "leak", (
                f"{len(leaked)} of {len(split.items)} clips come from videos this run trains on (first: "
                f"{leaked[0]}): they measure what the model memorised, not its bias; evaluated anyway (was the set "
                "made for another split?)"), fatal=False))


def _layout_splits(cfg: DataConfig, spec: ResolvedData, run: _Collect, num_classes: int | None, train: bool,
                   known_splits: list[DatasetSplit]) -> list[str] | None:
    """A registered layout's class names, train and test splits. Each split on its own, so that check-data
    still reports (and labels through) the others when one of them is broken; Kinetics-400's training clips
    are looked for only when training."""
    name = f"data.source={cfg.source}"
    classes = run.attempt(name, lambda: official_classes(cfg))
    if classes is None:
        return None
    tr = (run.attempt(name, lambda: official_split(cfg, "train", classes))
          if train or cfg.source != "kinetics400" else None)
    spec.test = run.attempt(name, lambda: official_split(cfg, "test", classes))
    spec.train = tr if train else None
    spec.train_keys = {it.key for it in tr.items} if tr is not None else set()
    # every labelled line of the split files: only bias sets need it (they may come from another split)
    every = run.attempt(name, lambda: layout_of(cfg).labelled(cfg, classes)) if cfg.bias_root is not None else None
    known_splits += [s for s in (tr, spec.test, every) if s is not None]
    if num_classes is not None and num_classes != len(classes):
        run.fail(DataProblem("model.num_classes", str(cfg.splits), "num_classes",
                             f"model.num_classes={num_classes} but the {layout_of(cfg).files} in {cfg.splits} "
                             f"define {len(classes)} classes"))
    return classes


def _list_splits(cfg: DataConfig, spec: ResolvedData, run: _Collect, num_classes: int | None, train: bool,
                 known_splits: list[DatasetSplit]) -> list[str] | None:
    """Class names (``data.classes``) and the train, val and test lists of ``source: lists``."""
    classes = None
    names = run.attempt("data.classes", lambda: _class_names(cfg))
    if names is not None and names[0] is not None:
        classes = names[0]
        if num_classes is not None and num_classes != len(classes):
            run.fail(DataProblem("model.num_classes", str(names[1]), "num_classes",
                                 f"model.num_classes={num_classes} but the class list {names[1]} names "
                                 f"{len(classes)} classes"))
    for role in ("train", "val", "test"):
        set_cfg = getattr(cfg, role)
        if role in ("train", "val") and not train:
            continue
        if set_cfg is None:
            if role == "train" and train:
                run.fail(DataProblem("data.train", "", "usage", "training needs a training list"),
                         ValueError("data.train: training needs a training list"))
            continue
        split = run.attempt(f"data.{role}", lambda r=role, s=set_cfg: _list_set(r, s, cfg.root, classes,
                                                                                num_classes))
        setattr(spec, role, split)
        if split is not None:
            known_splits.append(split)
            if role == "train":
                spec.train_keys = {it.key for it in split.items}
    return classes


def _bias_splits(cfg: DataConfig, spec: ResolvedData, run: _Collect, num_classes: int | None,
                 known_splits: list[DatasetSplit]) -> None:
    """The release's sets under ``data.bias_root``, then the lists under ``data.bias`` (which win)."""
    classes = spec.classes
    release: dict[str, dict[str, DatasetSplit]] = {"scuba": {}, "scufo": {}, "conflfg": {}}
    if cfg.bias_root is not None:
        release = _release_sets(cfg, classes, known_splits, run, spec)
    spec.scuba.update(release["scuba"])
    spec.scufo.update(release["scufo"])
    if release["conflfg"]:
        spec.conflfg = next(iter(release["conflfg"].values()))
    for kind in ("scuba", "scufo"):
        for source, set_cfg in getattr(cfg.bias, kind).items():
            split = run.attempt(f"data.bias.{kind}.{source}", lambda k=kind, s=source, c=set_cfg: _list_set(
                f"bias.{k}.{s}", c, cfg.root, classes, num_classes))
            if split is not None:
                getattr(spec, kind)[source] = split
    if cfg.bias.conflfg is not None:
        spec.conflfg = run.attempt("data.bias.conflfg", lambda: _list_set(
            "bias.conflfg", cfg.bias.conflfg, cfg.root, classes, num_classes)) or spec.conflfg


def _no_duplicate_keys(spec: ResolvedData, run: _Collect) -> None:
    """A per-key score (and the SCUBA/SCUFO pairing) would keep one of two items with one key silently; the
    held-out validation split (no ``data.val``) assigns videos by key, so training keys must be unique then."""
    for role, split in spec.roles().items():
        if role == "train" and spec.val is not None:
            continue
        for key, count in split.duplicate_keys().items():
            run.fail(DataProblem(role, split.origin, "duplicate", f"key {key!r} appears {count} times in "
                                 f"{split.origin or split.name}"),
                     ValueError(f"data ({role}): duplicate key {key!r} ({count} times) in {split.origin or split.name}:"
                                " every evaluated item needs its own key"))


def _pair(cfg: DataConfig, spec: ResolvedData, run: _Collect) -> None:
    """SCUBA and SCUFO pair by key, for contrasted accuracy: checked now, not after training."""
    if not spec.scufo:
        return
    for source in sorted(set(spec.scuba) - set(spec.scufo)):  # SCUBA alone still measures background bias
        run.problems.append(DataProblem(f"scuba_{source}", spec.scuba[source].origin, "pairing", "no SCUFO set for "
                                        "this source: SCUBA evaluated alone, no SCUFO or contrasted accuracy for it",
                                        fatal=False))
    for source in sorted(set(spec.scufo) - set(spec.scuba)):  # no clips to contrast or to average with
        run.problems.append(DataProblem(f"scufo_{source}", spec.scufo.pop(source).origin, "pairing",
                                        "no SCUBA set for this source: SCUFO set left out", fatal=False))
    for source in sorted(set(spec.scuba) & set(spec.scufo)):
        scuba, scufo = spec.scuba[source], spec.scufo[source]
        report = check_pairing(scuba, scufo)
        for key, (a, b) in report.label_mismatch.items():
            reason = f"SCUBA label {a} != SCUFO label {b}"
            run.fail(DataProblem(f"{source}", key, "pairing", reason), ValueError(
                f"data.bias ({source}): SCUBA and SCUFO items do not pair by key ({key}: {reason}). Keys are file "
                "stems with `key: stem` in each set's config"))
        if not (report.only_scuba or report.only_scufo):
            continue
        # a release folder, or a list: then a missing still is named like the listed ones
        folders = {Path(it.source).parent for it in scufo.items}
        still_folder = Path(scufo.origin) if scufo.origin and Path(scufo.origin).is_dir() else (
            folders.pop() if len(folders) == 1 else Path(scufo.origin).parent)
        completed, notes = complete_scufo(scuba, scufo, still_folder)
        completed.items = [ClipItem(it.source, it.label, it.key, {**it.extra, NO_STILL: True})
                           if it.key in report.only_scuba else it for it in completed.items]
        spec.scufo[source] = completed
        paths = {it.key: str(it.source) for it in scuba.items}
        paths.update({it.key: str(it.source) for it in scufo.items if it.key in report.only_scufo})
        for key, note in notes.items():
            run.problems.append(DataProblem(scufo.name, paths[key], "pairing", note, fatal=False))


# ---------------------------------------------------------------------------------------------- datasets

@dataclass
class DataBundle:
    train: ClipDataset | None = None
    val: ClipDataset | None = None
    test: ClipDataset | ViewDataset | None = None
    scuba: dict[str, ClipDataset | ViewDataset] = field(default_factory=dict)
    scufo: dict[str, ClipDataset | ViewDataset] = field(default_factory=dict)
    conflfg: ClipDataset | ViewDataset | None = None
    classes: list[str] | None = None
    problems: list[DataProblem] = field(default_factory=list)  # non-fatal, already reported
    # evaluation set name as results name it (iid, scuba_<src>, scufo_<src>, conflfg) -> {path: why} of the files
    # in its folder that are not items (no label, no pair): reported with the results, no denominator counts them
    left_out: dict[str, dict[str, str]] = field(default_factory=dict)

    def eval_sets(self) -> dict[str, ClipDataset | ViewDataset]:
        """Every evaluation set by name: test, scuba_<source>, scufo_<source>, conflfg."""
        sets = {"test": self.test} if self.test is not None else {}
        sets.update({f"scuba_{k}": v for k, v in self.scuba.items()})
        sets.update({f"scufo_{k}": v for k, v in self.scufo.items()})
        if self.conflfg is not None:
            sets["conflfg"] = self.conflfg
        return sets


def warnings_of(spec: ResolvedData, train: bool = True, limit: int = 10) -> list[str]:
    """Terminal lines for what a run will work around: missing files (kept: they fail when read), unpaired
    SCUBA/SCUFO items, other datasets' sets skipped. At most ``limit`` files per set, then a count."""
    lines: list[str] = []
    by_set: dict[str, list[str]] = {}
    for p in spec.problems:
        if not p.fatal:
            by_set.setdefault(p.set, []).append(f"{p.file}: {p.reason}")
    for role, split in spec.roles().items():
        if role == "train" and not train:
            continue
        fate = ("replaced by another clip during training (failures.jsonl)" if role == "train"
                else "kept, counts as a failed item")
        paired = {it.key for it in split.items if it.extra.get(NO_STILL)}
        for key, path in split.missing.items():
            if key in paired:
                continue
            searched = split.searched.get(key)
            where = f" (searched: {', '.join(searched)})" if searched and len(searched) > 1 else ""
            by_set.setdefault(f"{role} ({split.origin or split.name})", []).append(
                f"{path}: missing{where}; {fate}")
    for name, entries in by_set.items():
        lines += [f"data: {name}: {e}" for e in entries[:limit]]
        if len(entries) > limit:
            lines.append(f"data: {name}: and {len(entries) - limit} more (albar check-data lists them all)")
    if spec.skipped:
        lines.append(f"data: bias_root: skipped {len(spec.skipped)} set(s) of other datasets")
    return lines


def train_dataset(cfg: DataConfig, items: Sequence[ClipItem], seed: int) -> ClipDataset:
    """Training clips: a random clip per video (with ``cache``, a fixed one: the test view's single clip), the
    training transform."""
    transform = build_transform(True, cfg.crop_size, cfg.resize_short, cfg.train_crop, cfg.hflip, cfg.mean, cfg.std)
    fixed = "center" if cfg.test_view not in ("center", "first") else cfg.test_view
    return ClipDataset(items, cfg.num_frames, cfg.stride, mode=fixed if cfg.cache else "random",
                       transform=transform, seed=seed, cache=cfg.cache, min_frames=cfg.min_frames)


def eval_dataset(cfg: DataConfig, items: Sequence[ClipItem], seed: int,
                 views: bool = True) -> ClipDataset | ViewDataset:
    """Test clips as ``cfg.test_view`` says: one clip per video (``center``, ``first``) or several views
    (``NxS``; ``views=False``: the centre clip instead, as validation uses)."""
    multi_view = cfg.test_view not in ("center", "first")
    if multi_view and views:
        return ViewDataset(items, cfg.num_frames, cfg.stride, cfg.test_view, cfg.crop_size, cfg.resize_short,
                           cfg.mean, cfg.std, cfg.min_frames)
    transform = build_transform(False, cfg.crop_size, cfg.resize_short, cfg.train_crop, cfg.hflip, cfg.mean, cfg.std)
    return ClipDataset(items, cfg.num_frames, cfg.stride, mode="center" if multi_view else cfg.test_view,
                       transform=transform, seed=seed, cache=cfg.cache, min_frames=cfg.min_frames)


def build_data(
    cfg: DataConfig, seed: int, num_classes: int | None = None, train: bool = True, progress: bool = True,
    warn: Callable[[str], None] | None = None,
) -> DataBundle:
    """Datasets of a run, from :func:`resolve_data` (strict): every list, label and pairing is checked before
    any work, errors name the config key or file. What is worked around is reported through ``warn``
    (default: one line each on stderr)."""
    spec = resolve_data(cfg, num_classes, train=train, strict=True, progress=progress)
    cfg = spec.config or cfg
    for line in warnings_of(spec, train):
        (warn or (lambda s: print(s, file=sys.stderr, flush=True)))(line)

    def dataset(items: list[ClipItem], training: bool, views: bool = True) -> ClipDataset | ViewDataset:
        return train_dataset(cfg, items, seed) if training else eval_dataset(cfg, items, seed, views)

    out = DataBundle(classes=spec.classes, problems=[p for p in spec.problems if not p.fatal],
                     left_out={("iid" if role == "test" else role): dict(split.left_out)  # results' set names
                               for role, split in spec.roles().items()
                               if split.left_out and role not in ("train", "val")})
    if train:
        assert spec.train is not None
        train_items = spec.train.items
        if spec.val is not None:
            val_items = spec.val.items
        else:
            train_items, val_items = holdout_split(train_items, cfg.val_fraction, seed)
        # validation picks the model on one clip per video, whatever the test view
        out.train, out.val = dataset(train_items, True), dataset(val_items, False, views=False)
    if spec.test is not None:
        out.test = dataset(spec.test.items, False)
    out.scuba = {k: dataset(v.items, False) for k, v in spec.scuba.items()}
    out.scufo = {k: dataset(v.items, False) for k, v in spec.scufo.items()}
    if spec.conflfg is not None:
        out.conflfg = dataset(spec.conflfg.items, False)
    return out


def preload(data: DataBundle, num_workers: int) -> None:
    """Decode every cached dataset of ``data`` once, in ``num_workers`` processes."""
    for ds in [data.train, data.val, *data.eval_sets().values()]:
        if isinstance(ds, ClipDataset) and ds.cache is not None:
            ds.preload(num_workers)
