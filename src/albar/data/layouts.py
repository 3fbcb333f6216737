"""Dataset layouts as distributed (HMDB51, UCF101, Kinetics-400), read into ``ClipItem`` lists with class names,
and the registry that ``data.source`` picks a layout from.

A new layout is one class (see docs/extending.md)::

    @register_layout("myset")
    class MySet(DatasetLayout):
        release_name = "MYSET"                    # its folders' prefix in a bias release, if any

        def classes(self, cfg) -> list[str]:      # class names, from cfg.splits / cfg.root
            ...

        def split(self, cfg, subset, classes) -> DatasetSplit:   # subset: "train" or "test"
            ...

Every adapter returns a :class:`DatasetSplit`. A listed video that is not on disk stays in ``items`` (so
evaluation denominators stay intact: it fails at read time, counted wrong) and is also named in
``missing``. A line whose class cannot be resolved raises :class:`LabelError` naming every such line.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Literal, Protocol, TypeVar

from albar.data.lists import ClipItem, read_list, read_text_lines
from albar.registry import Entry, NoParams, Registry


class DataConfig(Protocol):
    """What a layout reads of the ``data`` section (:class:`albar.data.spec.DataConfig`, which imports this
    module to check ``data.source``)."""

    source: str
    root: Path | None
    splits: Path | None
    split: int



Subset = Literal["train", "test"]


class DatasetLayout:
    """A dataset as distributed: how its class names and its train/test splits are read (``data.splits``,
    ``data.root``). A listed video that is not on disk stays in the split (it fails when read, counted wrong)
    and is named in ``missing``; a label that cannot be resolved raises ``LabelError``."""

    release_name: ClassVar[str | None] = None  # the prefix of its folders in ALBAR's bias release
    files: ClassVar[str] = "split files"  # what data.splits holds, for messages

    def classes(self, cfg: DataConfig) -> list[str]:
        raise NotImplementedError(f"layout {type(self).__name__} must implement classes(cfg)")

    def split(self, cfg: DataConfig, subset: Subset, classes: Sequence[str]) -> DatasetSplit:
        raise NotImplementedError(f"layout {type(self).__name__} must implement split(cfg, subset, classes)")

    def labelled(self, cfg: DataConfig, classes: Sequence[str]) -> DatasetSplit | None:
        """Every video the split files label, beyond the chosen split's train and test (default: none). Bias
        sets are named after the videos they come from, built on any split: they are labelled through these too."""
        return None

    def check(self, cfg: DataConfig) -> None:
        """Raise, naming the key, when the config lacks what the layout reads (default: splits and root)."""
        if cfg.splits is None or cfg.root is None:
            raise ValueError(f"data.splits and data.root: source {cfg.source!r} needs its {self.files} and videos")
        if not cfg.splits.exists():
            raise FileNotFoundError(f"data.splits: not found: {cfg.splits}")
        if not cfg.root.is_dir():
            raise FileNotFoundError(f"data.root: not a folder: {cfg.root}")


LAYOUTS: Registry[Entry] = Registry("dataset layout")
SOURCES_BUILT_IN = ("lists", "synthetic")
L = TypeVar("L", bound=type[DatasetLayout])


class _Sources:
    """``data.source`` values: lists, synthetic and every registered layout (looked up when validating)."""

    def __contains__(self, name: object) -> bool:
        return name in SOURCES_BUILT_IN or name in LAYOUTS

    def __iter__(self) -> Iterator[str]:
        return iter([*SOURCES_BUILT_IN, *LAYOUTS.names()])


SOURCES = _Sources()


def register_layout(name: str, replace: bool = False) -> Callable[[L], L]:
    """Class decorator: file a :class:`DatasetLayout` under ``name`` (the value of ``data.source``)."""

    def add(cls: L) -> L:
        if name in SOURCES_BUILT_IN:
            raise ValueError(f"data.source {name!r} is built in; pick another name")
        LAYOUTS.add(Entry(name, cls, NoParams), replace=replace)
        return cls

    return add


class LabelError(ValueError):
    """Entries whose label cannot be resolved; ``problems`` maps each entry (file:line or key) to why."""

    def __init__(self, what: str, problems: dict[str, str], partial: DatasetSplit | None = None) -> None:
        shown = "; ".join(f"{k}: {v}" for k, v in list(problems.items())[:5])
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        super().__init__(f"{what}: {len(problems)} label problem(s): {shown}{more}")
        self.problems = problems
        self.partial = partial  # the entries that could be labelled: check-data still checks their files


@dataclass
class DatasetSplit:
    """Items of one split with the class names their labels index (``classes[item.label]``)."""

    name: str
    items: list[ClipItem]
    classes: list[str]
    missing: dict[str, str] = field(default_factory=dict)  # key -> path of a listed file not on disk
    origin: str = ""  # the file or folder the items were read from (named in errors)
    searched: dict[str, list[str]] = field(default_factory=dict)  # key -> every path tried, for missing keys
    left_out: dict[str, str] = field(default_factory=dict)  # path -> why a file on disk is not an item (no label)

    def duplicate_keys(self) -> dict[str, int]:
        """Keys listed more than once, with their counts: a per-key metric (and SCUBA/SCUFO pairing) would
        silently keep one of them."""
        counts: dict[str, int] = {}
        for it in self.items:
            counts[it.key] = counts.get(it.key, 0) + 1
        return {k: n for k, n in counts.items() if n > 1}

    def class_name(self, label: int) -> str:
        return self.classes[label] if 0 <= label < len(self.classes) else f"<label {label}>"

    def class_counts(self) -> dict[str, int]:
        counts = {c: 0 for c in self.classes}
        for it in self.items:
            name = self.class_name(it.label)
            counts[name] = counts.get(name, 0) + 1
        return counts


def _with_missing(name: str, items: list[ClipItem], classes: list[str], origin: str | Path = "") -> DatasetSplit:
    missing = {it.key: str(it.source) for it in items if not it.source.exists()}
    return DatasetSplit(name, items, classes, missing, str(origin))


def _content_lines(path: Path) -> list[tuple[int, str]]:
    """``(line number, line)`` of the non-blank lines of a text file (any of UTF-8 with or without BOM, CRLF);
    a file with none is an error naming it (an empty split would otherwise train or score on nothing)."""
    lines = [(n, line) for n, line in enumerate(read_text_lines(path), 1) if line.strip()]
    if not lines:
        raise ValueError(f"{path}: no entries (the file is empty)")
    return lines


def read_classes(path: str | Path) -> list[str]:
    """Class names, one per line (``name``) or UCF101 ``classInd`` style (``1 name``, 1-based, any order)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"class list not found: {path}")
    rows = [line.split() for _, line in _content_lines(path)]
    if rows and all(len(r) == 2 and r[0].isdigit() for r in rows):
        by_index = {int(i): name for i, name in rows}
        if sorted(by_index) != list(range(1, len(rows) + 1)):
            raise ValueError(f"{path}: class indices must be 1..{len(rows)}, got {sorted(by_index)[:5]}...")
        return [by_index[i] for i in range(1, len(rows) + 1)]
    return [" ".join(r) for r in rows]


# ----------------------------------------------------------------------------------------------- HMDB51

_HMDB_SPLIT = re.compile(r"^(?P<cls>.+)_test_split(?P<split>[123])\.txt$")


def _hmdb51_split_files(split_dir: Path, split: int) -> list[Path]:
    files = sorted(p for p in Path(split_dir).glob(f"*_test_split{split}.txt") if _HMDB_SPLIT.match(p.name))
    if not files:
        raise FileNotFoundError(f"no HMDB51 split files '*_test_split{split}.txt' in {split_dir}")
    return files


def hmdb51_classes(split_dir: str | Path, split: int = 1) -> list[str]:
    """HMDB51's class names (sorted, mmaction2's order) from the split files' names alone."""
    return [_HMDB_SPLIT.match(p.name)["cls"] for p in _hmdb51_split_files(Path(split_dir), split)]


def hmdb51_split(
    split_dir: str | Path, video_root: str | Path, split: int = 1, subset: Literal["train", "test", "all"] = "train",
) -> DatasetSplit:
    """HMDB51 from the official ``<class>_test_split<N>.txt`` files (``<video>.avi <0|1|2>``, 1 train,
    2 test, 0 unused; subset "all" takes every line, to label bias sets built on another split) over
    ``<video_root>/<class>/<video>.avi``. Classes sorted by name (mmaction2 order);
    keys are the video stems."""
    split_dir, video_root = Path(split_dir), Path(video_root)
    files = _hmdb51_split_files(split_dir, split)
    classes = [_HMDB_SPLIT.match(p.name)["cls"] for p in files]
    want = {"train": {1}, "test": {2}, "all": {0, 1, 2}}[subset]
    items, problems = [], {}
    for label, (cls, path) in enumerate(zip(classes, files)):
        for lineno, line in _content_lines(path):  # lines carry a trailing space in the release
            parts = line.split()
            if len(parts) != 2 or parts[1] not in {"0", "1", "2"}:
                problems[f"{path}:{lineno}"] = f"expected '<video>.avi <0|1|2>', got {line!r}"
                continue
            if int(parts[1]) in want:
                items.append(ClipItem(video_root / cls / parts[0], label, Path(parts[0]).stem))
    found = _with_missing(f"hmdb51_split{split}_{subset}", items, classes, split_dir)
    if problems:
        raise LabelError(f"HMDB51 split {split} in {split_dir}", problems, found)
    return found


def hmdb51_csv(
    csv_path: str | Path, video_root: str | Path, classes: Sequence[str] | None = None,
) -> DatasetSplit:
    """HMDB51 from ALBAR's ``hmdb51_{train,test}_labels.csv``.

    Columns: ``filename`` and ``label`` (required), ``class`` (optional). ``label`` is a 0-based index or a
    class name. The video is ``<video_root>/<class>/<filename>`` when a class is known (the release's
    ``Videos/<class>/<file>`` tree), else ``<video_root>/<filename>``. Class names: ``classes`` if given;
    else from the ``class`` column (name of each index, which must agree); else sorted label names.
    """
    csv_path, video_root = Path(csv_path), Path(video_root)
    rows = read_csv_rows(csv_path, required=("filename", "label"))
    names = list(classes) if classes is not None else None
    if names is None:
        if all(not r["label"].strip().lstrip("-").isdigit() for r in rows):
            names = sorted({r["label"].strip() for r in rows})
        elif all(r.get("class") for r in rows):
            by_label: dict[int, str] = {}
            for r in rows:
                if by_label.setdefault(int(r["label"]), r["class"]) != r["class"]:
                    raise LabelError(str(csv_path), {r["filename"]: f"label {r['label']} is both "
                                                     f"{by_label[int(r['label'])]!r} and {r['class']!r}"})
            if sorted(by_label) != list(range(len(by_label))):
                raise ValueError(f"{csv_path}: labels are not 0..{len(by_label) - 1}")
            names = [by_label[i] for i in range(len(by_label))]
    index = {n: i for i, n in enumerate(names or [])}
    items, problems = [], {}
    for lineno, r in enumerate(rows, 2):
        raw = r["label"].strip()
        if raw.lstrip("-").isdigit():
            label = int(raw)
            if label < 0 or (names is not None and label >= len(names)):
                problems[f"{csv_path}:{lineno}"] = f"label {label} out of range for {len(names or [])} classes"
                continue
        elif raw in index:
            label = index[raw]
        else:
            problems[f"{csv_path}:{lineno}"] = f"unknown class {raw!r}"
            continue
        cls = r.get("class") or (names[label] if names else None)
        filename = r["filename"].strip()
        rel = Path(filename)
        source = video_root / rel if (len(rel.parts) > 1 or not cls) else video_root / cls / rel
        items.append(ClipItem(source, label, rel.stem))
    if problems:
        raise LabelError(str(csv_path), problems)
    if names is None:
        names = [str(i) for i in range(max(it.label for it in items) + 1)]
    return _with_missing(csv_path.stem, items, names, csv_path)


def read_csv_rows(path: Path, required: Sequence[str]) -> list[dict[str, str]]:
    """Rows of a CSV with a header (UTF-8 with or without BOM, CRLF or LF; header names stripped).
    A missing file, a missing column or a file without rows is an error naming the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"annotation CSV not found: {path}")
    reader = csv.DictReader(io.StringIO("\n".join(read_text_lines(path))))
    reader.fieldnames = [f.strip() for f in (reader.fieldnames or [])]
    missing = [c for c in required if c not in reader.fieldnames]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}; has {reader.fieldnames}")
    rows = [r for r in reader if any((v or "").strip() for v in r.values())]
    if not rows:
        raise ValueError(f"{path}: no rows under the header (the file is empty)")
    return rows


# ----------------------------------------------------------------------------------------------- UCF101

def ucf101_split(
    list_dir: str | Path, video_root: str | Path, split: int = 1, subset: Subset = "train",
) -> DatasetSplit:
    """UCF101 from ``ucfTrainTestlist/``: ``classInd.txt`` (1-based), ``trainlist0N.txt`` lines
    ``Class/v_Class_gGG_cCC.avi <1-based label>`` and ``testlist0N.txt`` lines without label (class from the
    folder). A train label that disagrees with its folder is a label problem."""
    list_dir, video_root = Path(list_dir), Path(video_root)
    classes = read_classes(list_dir / "classInd.txt")
    index = {c: i for i, c in enumerate(classes)}
    path = list_dir / f"{subset}list{split:02d}.txt"
    if not path.is_file():
        raise FileNotFoundError(f"UCF101 list not found: {path}")
    items, problems = [], {}
    for lineno, line in _content_lines(path):  # CRLF in the release
        parts = line.split()
        rel = Path(parts[0])
        where = f"{path}:{lineno}"
        folder = rel.parts[0] if len(rel.parts) > 1 else None
        if folder is not None and folder not in index:
            problems[where] = f"unknown class folder {folder!r}"
            continue
        if len(parts) > 1:
            if not parts[1].isdigit() or not 1 <= int(parts[1]) <= len(classes):
                problems[where] = f"label {parts[1]!r} out of range 1..{len(classes)}"
                continue
            label = int(parts[1]) - 1
            if folder is not None and index[folder] != label:
                problems[where] = f"label {parts[1]} is {classes[label]!r} but the folder is {folder!r}"
                continue
        elif folder is None:
            problems[where] = f"no label and no class folder in {line!r}"
            continue
        else:
            label = index[folder]
        items.append(ClipItem(video_root / rel, label, rel.stem))
    found = _with_missing(f"ucf101_split{split}_{subset}", items, classes, path)
    if problems:
        raise LabelError(str(path), problems, found)
    return found


# ------------------------------------------------------------------------------------------ Kinetics-400

K400Layout = Literal["auto", "flat", "split", "split_label", "videos_split_label", "label"]
K400_LAYOUTS: tuple[str, ...] = ("flat", "split", "split_label", "videos_split_label", "label")

# The CSV's split column (train, val or validate, test) and the folder names the downloaders give it.
_SPLIT_DIRS = {"train": ("train",), "val": ("val", "validate"), "validate": ("val", "validate"),
               "valid": ("val", "validate"), "test": ("test",)}


def kinetics_clip_name(youtube_id: str, time_start: str | float, time_end: str | float) -> str:
    """``<youtube_id>_<start:06d>_<end:06d>.mp4``, the trimmed-clip name of the official downloader."""
    return f"{youtube_id}_{int(float(time_start)):06d}_{int(float(time_end)):06d}.mp4"


def _label_dirs(label: str) -> list[str]:
    """Spellings of a class folder: as in the CSV, ``_`` for spaces, and also without quotes/parentheses."""
    spelled = [label, label.replace(" ", "_"), re.sub(r"[\"'()]", "", label).replace(" ", "_")]
    return list(dict.fromkeys(spelled))


def kinetics_candidates(root: Path, name: str, label: str, split: str) -> dict[str, list[Path]]:
    """Where each known layout keeps clip ``name`` of class ``label`` in CSV split ``split``."""
    splits = _SPLIT_DIRS.get(split.strip().lower(), (split.strip(),)) if split.strip() else ()
    labels = _label_dirs(label)
    return {
        "flat": [root / name],
        "split": [root / s / name for s in splits],  # cvdfoundation/kinetics-dataset
        "split_label": [root / s / lab / name for s in splits for lab in labels],  # its arrange_by_classes.py
        "videos_split_label": [root / f"videos_{s}" / lab / name for s in splits for lab in labels],  # mmaction2
        "label": [root / lab / name for lab in labels],
    }


def _csv_split(csv_path: Path) -> str:
    stem = csv_path.stem.lower()
    return next((s for s in ("train", "validate", "val", "test") if s in stem), "")


def kinetics400_classes(csv_path: str | Path) -> list[str]:
    """The class names of a Kinetics-400 annotation CSV (sorted labels), without looking for any clip."""
    rows = read_csv_rows(Path(csv_path), required=("label",))
    return sorted({r["label"].strip() for r in rows})


def kinetics400_csv(
    csv_path: str | Path,
    video_root: str | Path,
    classes: Sequence[str] | None = None,
    layout: K400Layout = "auto",
) -> DatasetSplit:
    """Kinetics-400 from an official annotation CSV (``label,youtube_id,time_start,time_end,split``).

    ``layout``: ``flat`` (``<root>/<clip>``), ``split`` (``<root>/<split>/<clip>``, the official
    downloader), ``split_label`` (``<root>/<split>/<label>/<clip>``, its ``arrange_by_classes.py``),
    ``videos_split_label`` (mmaction2's ``<root>/videos_<split>/<label>/<clip>``), ``label``
    (``<root>/<label>/<clip>``), or ``auto``: each clip is looked for in every layout, the one that found the
    previous clip first (so a whole copy costs about one look-up per clip). ``<split>`` is the CSV's split
    column (``train``; ``val``/``validate``: folder ``val`` or ``validate``; ``test``), or the CSV's name when
    it has no such column; a label folder is spelled as in the CSV or with ``_`` for spaces. Class names:
    ``classes`` (pass the train CSV's for the val CSV) or the CSV's sorted labels. A clip found nowhere keeps
    its first path in layout order (flat for ``auto``), is listed in ``missing`` and, with every path tried,
    in ``searched``. Keys are the clip stems.
    """
    csv_path, video_root = Path(csv_path), Path(video_root)
    rows = read_csv_rows(csv_path, required=("label", "youtube_id", "time_start", "time_end"))
    names = list(classes) if classes is not None else sorted({r["label"].strip() for r in rows})
    index = {n: i for i, n in enumerate(names)}
    default_split = _csv_split(csv_path)
    order = list(K400_LAYOUTS) if layout == "auto" else [layout]
    items, problems = [], {}
    searched: dict[str, list[str]] = {}
    for lineno, r in enumerate(rows, 2):
        label = r["label"].strip()
        if label not in index:
            problems[f"{csv_path}:{lineno}"] = f"unknown class {label!r}"
            continue
        try:
            name = kinetics_clip_name(r["youtube_id"].strip(), r["time_start"], r["time_end"])
        except (TypeError, ValueError):
            problems[f"{csv_path}:{lineno}"] = (f"time_start/time_end must be numbers, got "
                                                f"{r['time_start']!r}, {r['time_end']!r}")
            continue
        candidates = kinetics_candidates(video_root, name, label, r.get("split") or default_split)
        source = None
        for i, kind in enumerate(order):
            source = next((c for c in candidates[kind] if c.exists()), None)
            if source is not None:
                order.insert(0, order.pop(i))  # most clips of a copy share its layout
                break
        key = Path(name).stem
        if source is None:  # kept at its first path in layout order (flat for auto): it fails at read time
            tried = [c for kind in K400_LAYOUTS if layout in ("auto", kind) for c in candidates[kind]]
            searched[key] = [str(c) for c in tried]
            source = tried[0] if tried else video_root / name
        items.append(ClipItem(source, index[label], key, {"youtube_id": r["youtube_id"].strip()}))
    split = _with_missing(csv_path.stem, items, names, csv_path)
    split.searched = {k: v for k, v in searched.items() if k in split.missing}
    if problems:
        raise LabelError(str(csv_path), problems, split)
    return split


def list_split(
    list_path: str | Path,
    root: str | Path | None = None,
    classes: Sequence[str] | str | Path | None = None,
    key: Literal["path", "stem"] = "path",
    name: str | None = None,
    strict: bool = True,
) -> DatasetSplit:
    """An mmaction2 list (``path label`` or ``dir num_frames label``, 0-based) with class names from a
    sequence, a class file (see :func:`read_classes`) or, if none, ``'0'..'K-1'``. Labels out of range of
    the given classes raise :class:`LabelError` unless ``strict`` is off (``check-data`` reports them)."""
    items = read_list(list_path, root, key=key)
    if isinstance(classes, (str, Path)):
        names = read_classes(classes)
    elif classes is not None:
        names = list(classes)
    else:
        names = [str(i) for i in range(max(it.label for it in items) + 1)] if items else []
    bad = {it.key: f"label {it.label} out of range for {len(names)} classes" for it in items
           if it.label >= len(names)}
    if bad and strict:
        raise LabelError(str(list_path), bad)
    return _with_missing(name or Path(list_path).stem, items, names, list_path)


# ------------------------------------------------------------------------------ registered layouts


@register_layout("hmdb51")
class HMDB51(DatasetLayout):
    """``data.splits``: the folder of ``<class>_test_split<N>.txt``; ``data.root``: ``<class>/<video>.avi``."""

    release_name = "HMDB51"
    files = "HMDB51 split files"

    def classes(self, cfg: DataConfig) -> list[str]:
        self.check(cfg)
        assert cfg.splits is not None
        return hmdb51_classes(cfg.splits, cfg.split)

    def split(self, cfg: DataConfig, subset: Subset, classes: Sequence[str]) -> DatasetSplit:
        self.check(cfg)
        assert cfg.splits is not None and cfg.root is not None
        return hmdb51_split(cfg.splits, cfg.root, cfg.split, subset)

    def labelled(self, cfg: DataConfig, classes: Sequence[str]) -> DatasetSplit | None:
        """A video marked 0 (unused) in this split still has its class (the file's name): the release was built
        on split 1, so a run on split 2 or 3 labels its bias sets through these lines too."""
        self.check(cfg)
        assert cfg.splits is not None and cfg.root is not None
        return hmdb51_split(cfg.splits, cfg.root, cfg.split, "all")


@register_layout("ucf101")
class UCF101(DatasetLayout):
    """``data.splits``: ``ucfTrainTestlist/`` (``classInd.txt``, ``trainlist0N.txt``, ``testlist0N.txt``)."""

    release_name = "UCF101"
    files = "UCF101 classInd.txt"

    def classes(self, cfg: DataConfig) -> list[str]:
        self.check(cfg)
        assert cfg.splits is not None
        return read_classes(cfg.splits / "classInd.txt")

    def split(self, cfg: DataConfig, subset: Subset, classes: Sequence[str]) -> DatasetSplit:
        self.check(cfg)
        assert cfg.splits is not None and cfg.root is not None
        return ucf101_split(cfg.splits, cfg.root, cfg.split, subset)


@register_layout("kinetics400")
class Kinetics400(DatasetLayout):
    """``data.splits``: the folder of ``train.csv`` and ``validate.csv`` (or ``val.csv``, the test split)."""

    release_name = "K400"
    files = "Kinetics-400 annotation CSVs"

    def check(self, cfg: DataConfig) -> None:
        super().check(cfg)
        assert cfg.splits is not None
        if not cfg.splits.is_dir():
            raise ValueError(f"data.splits: Kinetics-400 needs the folder of its annotation CSVs, got {cfg.splits}")

    def csv(self, cfg: DataConfig, subset: str) -> Path:
        assert cfg.splits is not None
        if subset == "train":
            return cfg.splits / "train.csv"
        found = next((cfg.splits / n for n in ("validate.csv", "val.csv") if (cfg.splits / n).is_file()), None)
        if found is None:
            raise FileNotFoundError(f"data.splits: no validate.csv or val.csv in {cfg.splits}")
        return found

    def classes(self, cfg: DataConfig) -> list[str]:
        """The labels of ``train.csv``, or of the validation CSV without it."""
        self.check(cfg)
        assert cfg.splits is not None
        train_csv = cfg.splits / "train.csv"
        return kinetics400_classes(train_csv if train_csv.is_file() else self.csv(cfg, "test"))

    def split(self, cfg: DataConfig, subset: Subset, classes: Sequence[str]) -> DatasetSplit:
        self.check(cfg)
        assert cfg.root is not None
        return kinetics400_csv(self.csv(cfg, subset), cfg.root, classes=classes)
