"""Bias test sets (SCUBA, SCUFO, ConflFG, ARAS) in both published layouts, paired by key.

ALBAR's release: ``<root>/<DS>_SCUBA_<Source>/<stem>.zip`` (JPEG frames), ``<DS>_SCUFO_<Source>/<stem>.jpg``
(one still per video), ``<DS>_ConflFG_Stripe/<stem>.zip``; DS in HMDB51/UCF101/K400, Source in
Places365/VQGAN/Stripe. The key of an item is its file stem: a SCUBA clip and its SCUFO still share it.
StillMix's release: frame folders ``<video_id>__<n>/frame000001.jpg`` and an mmaction2 rawframes list;
SCUFO is not distributed and is regenerated here from SCUBA (:func:`regenerate_scufo`).
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image

from albar.data.io import ClipReadError, read_clip
from albar.data.layouts import DatasetSplit, LabelError, list_split, read_csv_rows
from albar.data.lists import ClipItem
from albar.utils import atomic_write, atomic_write_json

BiasKind = Literal["SCUBA", "SCUFO", "ConflFG"]
SOURCES = ("Places365", "VQGAN", "Stripe")
# The release's datasets are HMDB51, UCF101 and K400; sets built with `albar make-bias-set --dataset NAME`
# for your own data follow the same pattern with your name.
_FOLDER = re.compile(r"^(?P<ds>[A-Za-z0-9]+)_(?P<kind>SCUBA|SCUFO|ConflFG)_(?P<source>[A-Za-z0-9]+)$")
_UCF = re.compile(r"v_(?P<cls>[A-Za-z0-9]+)_g\d+_c\d+")

LabelFn = Callable[[str], int]


def bias_dir(root: str | Path, dataset: str, kind: BiasKind, source: str) -> Path:
    """``<root>/<DS>_<KIND>_<Source>``, the release's folder name."""
    return Path(root) / f"{dataset}_{kind}_{source}"


def find_bias_sets(root: str | Path) -> dict[tuple[str, str, str], Path]:
    """Every ``<DS>_<KIND>_<Source>`` folder under ``root``, by ``(DS, KIND, Source)``."""
    found = {}
    for p in sorted(Path(root).iterdir()):
        m = _FOLDER.match(p.name)
        if m and p.is_dir():
            found[(m["ds"], m["kind"], m["source"])] = p
    return found


def strip_instance(stem: str) -> str:
    """``<video>__3`` -> ``<video>``: the HMDB51 key of a generated version of a video."""
    return re.sub(r"__\d+$", "", stem)


def ucf_class(stem: str) -> str:
    """The class in ``v_<Class>_gNN_cNN`` (first match)."""
    m = _UCF.search(stem)
    if not m:
        raise KeyError(f"{stem!r} does not look like v_<Class>_gNN_cNN")
    return m["cls"]


def csv_labeler(csv_path: str | Path, classes: Sequence[str] | None = None) -> LabelFn:
    """Labels from a ``filename,label`` CSV (ALBAR's ``hmdb51_labels.csv``, ``k400_val_labels.csv``).

    Rows are indexed by the file's stem (folders and extension dropped); a query stem is tried as is,
    then without a trailing ``__N``. ``label`` is a 0-based index or, with ``classes``, a class name.
    """
    rows = read_csv_rows(Path(csv_path), required=("filename", "label"))
    index = {c: i for i, c in enumerate(classes or [])}
    table: dict[str, int] = {}
    for r in rows:
        raw = r["label"].strip()
        table[Path(r["filename"].strip()).stem] = int(raw) if raw.lstrip("-").isdigit() else index.get(raw, -1)

    def label_of(stem: str) -> int:
        for k in (stem, strip_instance(stem)):
            if k in table:
                if table[k] < 0:
                    raise KeyError(f"{k!r}: class not in the given class names ({csv_path})")
                return table[k]
        raise KeyError(f"{strip_instance(stem)!r} not in {csv_path}")

    return label_of


def class_labeler(classes: Sequence[str], class_of: Callable[[str], str] | Mapping[str, str] = ucf_class) -> LabelFn:
    """Labels via a class name: ``class_of(stem)`` (default: UCF101's ``v_<Class>_...``) or a mapping
    ``key -> class name`` (keys tried as is, then without ``__N``). A name that matches no class exactly is
    matched case-insensitively: UCF101's ``HandstandPushups`` folder holds ``v_HandStandPushups_...`` files."""
    index = {c: i for i, c in enumerate(classes)}
    folded: dict[str, int] = {}
    for c, i in index.items():
        folded[c.casefold()] = -1 if c.casefold() in folded else i  # -1: two classes differ only in case

    def name_of(stem: str) -> str:
        if callable(class_of):
            return class_of(stem)
        for k in (stem, strip_instance(stem)):
            if k in class_of:
                return class_of[k]
        raise KeyError(f"{strip_instance(stem)!r} not in the class-name mapping")

    def label_of(stem: str) -> int:
        name = name_of(stem)
        if name in index:
            return index[name]
        if folded.get(name.casefold(), -1) >= 0:
            return folded[name.casefold()]
        raise KeyError(f"unknown class {name!r} (from {stem!r})")

    return label_of


def chain_labelers(*labelers: LabelFn) -> LabelFn:
    """The first of ``labelers`` that knows a key labels it (e.g. the dataset's split, then a labels CSV)."""

    def label_of(stem: str) -> int:
        errors = []
        for fn in labelers:
            try:
                return fn(stem)
            except KeyError as err:
                errors.append(str(err.args[0]) if err.args else "unknown")
        raise KeyError("; ".join(dict.fromkeys(errors)) or f"{stem!r}: no labels")

    return label_of


def knows(label_of: LabelFn) -> Callable[[str], bool]:
    """``label_of`` as a predicate: is this a key the dataset labels?"""

    def known(key: str) -> bool:
        try:
            label_of(key)
        except KeyError:
            return False
        return True

    return known


def conflfg_parts(stem: str, known: Callable[[str], bool] | Collection[str] | None = None) -> tuple[str, str]:
    """ConflFG name ``<moving key>__<pasted key>[__<n>]`` -> ``(moving, pasted)``.

    Keys may contain ``__`` themselves (HMDB51 names do: ``_I_ll_Just_Wave_My_Hand__sung_by_...``), so the
    name is never split on every ``__``: the trailing ``__<n>`` is dropped, then every ``__`` is tried as the
    split point and the one whose halves are both ``known`` keys (a set, or a predicate such as
    ``knows(label_of)``) wins; none or several is a ``KeyError`` naming the file stem. Without ``known``, the
    name must hold exactly one ``__`` besides the instance number. The release does not document ConflFG
    names; this is what ``albar make-bias-set`` writes. Pass your own ``parse_conflict`` (or
    ``conflict_labels``) to :func:`albar_bias_set` if your files differ.
    """
    is_known = known.__contains__ if isinstance(known, Collection) else known
    bodies = [strip_instance(stem)]
    if is_known is not None and bodies[0] != stem:
        bodies.append(stem)  # a pasted key that itself ends in __<digits>, with no instance number
    for body in bodies:
        cuts = [i for i in range(1, len(body) - 2) if body.startswith("__", i)]
        pairs = [(body[:i], body[i + 2:]) for i in cuts]
        if is_known is None:
            pairs = [(m, p) for m, p in pairs if not p.isdigit()]
            if len(pairs) > 1:
                raise KeyError(f"{stem!r}: several '__' could separate the moving and the pasted key; resolve it "
                               "against the dataset's keys (known=...)")
        else:
            pairs = [(m, p) for m, p in pairs if is_known(m) and is_known(p)]
            if len(pairs) > 1:
                raise KeyError(f"{stem!r}: ambiguous, splits into known keys as "
                               + " or ".join(f"{m!r} + {p!r}" for m, p in pairs))
        if pairs:
            return pairs[0]
    if is_known is None:
        raise KeyError(f"{stem!r} is not '<moving key>__<pasted key>[__<n>]'")
    raise KeyError(f"{stem!r} is not '<moving key>__<pasted key>[__<n>]' with two keys of the dataset")


def albar_bias_set(
    root: str | Path,
    dataset: str,
    kind: BiasKind,
    source: str,
    label_of: LabelFn,
    classes: Sequence[str],
    parse_conflict: Callable[[str], tuple[str, str]] | None = None,
    conflict_labels: Mapping[str, int] | None = None,
    leave_out_unlabelled: bool = False,
) -> DatasetSplit:
    """One set of ALBAR's release: SCUBA/ConflFG zips or SCUFO stills, keys = file stems, sorted.

    ConflFG items get ``extra['conflict_label']``, the pasted actor's label: ``conflict_labels[stem]`` if
    given, else ``label_of`` of the pasted part of ``parse_conflict(stem)`` (default: :func:`conflfg_parts`
    resolved against the keys ``label_of`` knows); the label is ``label_of`` the moving part. Every
    unlabelled file is named in one :class:`LabelError`. Files are listed, not read: an empty or corrupt zip
    or image stays an item (it fails at read time, counted against the model). ``leave_out_unlabelled``: a
    file that cannot be labelled (a stray name in a release folder) is left out and named in ``left_out``
    instead of failing the set; a set where no file can be labelled still raises.
    """
    if parse_conflict is None:
        known = knows(label_of)

        def parse_conflict(stem: str) -> tuple[str, str]:
            return conflfg_parts(stem, known)

    folder = bias_dir(root, dataset, kind, source)
    if not folder.is_dir():
        raise FileNotFoundError(f"bias set folder not found: {folder}")
    files, others = release_files(folder, kind)
    pattern = " or ".join(f"*{e}" for e in RELEASE_SUFFIXES[kind])
    items, problems = [], {}
    for f in files:
        stem = f.stem
        try:
            if kind == "ConflFG":
                if conflict_labels is not None:
                    if stem not in conflict_labels:
                        raise KeyError(f"{stem!r} not in conflict_labels")
                    label, extra = label_of(stem), {"conflict_label": int(conflict_labels[stem])}
                else:
                    moving, pasted = parse_conflict(stem)
                    label, extra = label_of(moving), {"conflict_label": label_of(pasted)}
            else:
                label, extra = label_of(stem), {}
        except KeyError as err:
            problems[str(f)] = str(err.args[0]) if err.args else "no label"
            continue
        items.append(ClipItem(f, label, stem, extra))
    if problems and (not leave_out_unlabelled or not items):
        raise LabelError(str(folder), problems)
    if not items:
        raise FileNotFoundError(f"no {pattern} files in {folder}")
    return DatasetSplit(folder.name, items, list(classes), origin=str(folder), left_out={**problems, **others})


NOT_AN_ITEM = "not an item: "  # the reason's prefix for entries of a release folder that are not its kind of file
# what a release folder's items are (case-insensitive: a renamed `.ZIP` is still a clip)
RELEASE_SUFFIXES: dict[str, tuple[str, ...]] = {"SCUBA": (".zip",), "ConflFG": (".zip",), "SCUFO": (".jpg", ".jpeg")}


def release_files(folder: Path, kind: str) -> tuple[list[Path], dict[str, str]]:
    """(the files of a release folder that are items of a ``kind`` set, sorted; every other entry -> why it is
    not read). Hidden entries (``.DS_Store``, ``._x.zip``) are OS metadata, not left-out data: skipped."""
    suffixes = RELEASE_SUFFIXES[kind]
    items, others = [], {}
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            others[str(entry)] = NOT_AN_ITEM + "a folder (the release keeps a set's files flat)"
        elif entry.suffix.lower() in suffixes:
            items.append(entry)
        else:
            others[str(entry)] = NOT_AN_ITEM + f"not a {' or '.join(suffixes)} file"
    return items, others


def stillmix_bias_set(
    list_path: str | Path, frames_root: str | Path, classes: Sequence[str] | str | Path | None = None,
    name: str | None = None,
) -> DatasetSplit:
    """StillMix's layout: rawframes list ``<video_id>__<n> <num_frames> <label> [<conflict label>]`` over
    frame folders; keys are the folder names (what pairs SCUBA with the regenerated SCUFO)."""
    return list_split(list_path, frames_root, classes, key="stem", name=name)


def aras_set(
    list_path: str | Path, root: str | Path | None = None, classes: Sequence[str] | str | Path | None = None,
) -> DatasetSplit:
    """ARAS (Kinetics-400 rare scenes): an IID-style ``path label`` list under its own name."""
    return list_split(list_path, root, classes, key="stem", name="k400_aras")


# ------------------------------------------------------------------------------------------------ SCUFO

def scufo_frame(key: str, num_frames: int, seed: int) -> int:
    """The SCUBA frame a regenerated SCUFO still takes: a function of (seed, key) only, not of order."""
    return int(np.random.default_rng([seed, zlib.crc32(key.encode())]).integers(num_frames))


def regenerate_scufo(
    scuba: DatasetSplit, out_dir: str | Path, seed: int = 0, quality: int = 95,
) -> DatasetSplit:
    """Write ``<out_dir>/<key>.jpg``, one seeded frame of each SCUBA clip (ALBAR's SCUFO layout), and
    ``<out_dir>/manifest.json`` with the seed and, per key, the frame chosen and the clip's length.

    A SCUBA clip that cannot be read gets no still: it is recorded under ``errors`` in the manifest and
    its item stays in the returned split (listed in ``missing``), so it fails, counted wrong, at test time.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    frames_chosen: dict[str, dict[str, int]] = {}
    errors: dict[str, str] = {}
    items = []
    for it in scuba.items:
        seen: list[int] = []

        def pick(n: int, key: str = it.key, seen: list[int] = seen) -> list[int]:
            seen.append(n)
            return [scufo_frame(key, n, seed)]

        target = out_dir / f"{it.key}.jpg"
        try:
            frame = read_clip(it.source, pick)[0]
        except ClipReadError as err:
            errors[it.key] = err.reason
            target.unlink(missing_ok=True)
        else:
            atomic_write(target, lambda tmp, f=frame: Image.fromarray(f).save(tmp, "JPEG", quality=quality))
            frames_chosen[it.key] = {"frame": scufo_frame(it.key, seen[-1], seed), "num_frames": seen[-1]}
        items.append(ClipItem(target, it.label, it.key, dict(it.extra)))
    atomic_write_json(out_dir / "manifest.json", {
        "seed": seed, "scuba": scuba.name, "frames": frames_chosen, "errors": errors,
    })
    missing = {k: str(out_dir / f"{k}.jpg") for k in errors}
    return DatasetSplit(out_dir.name, items, list(scuba.classes), missing)


# ---------------------------------------------------------------------------------------------- pairing

@dataclass
class PairingReport:
    """How SCUBA and SCUFO keys match: by name, never by position."""

    paired: list[str]
    only_scuba: list[str] = field(default_factory=list)
    only_scufo: list[str] = field(default_factory=list)
    label_mismatch: dict[str, tuple[int, int]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not (self.only_scuba or self.only_scufo or self.label_mismatch)

    def problems(self) -> dict[str, str]:
        out = {k: "SCUBA clip has no SCUFO partner" for k in self.only_scuba}
        out.update({k: "SCUFO still has no SCUBA partner" for k in self.only_scufo})
        out.update({k: f"SCUBA label {a} != SCUFO label {b}" for k, (a, b) in self.label_mismatch.items()})
        return out


def check_pairing(scuba: Sequence[ClipItem] | DatasetSplit, scufo: Sequence[ClipItem] | DatasetSplit) -> PairingReport:
    """Match SCUBA and SCUFO items by key; name every unpaired key and every label disagreement."""
    a = {it.key: it for it in (scuba.items if isinstance(scuba, DatasetSplit) else scuba)}
    b = {it.key: it for it in (scufo.items if isinstance(scufo, DatasetSplit) else scufo)}
    paired = sorted(a.keys() & b.keys())
    return PairingReport(
        paired=paired,
        only_scuba=sorted(a.keys() - b.keys()),
        only_scufo=sorted(b.keys() - a.keys()),
        label_mismatch={k: (a[k].label, b[k].label) for k in paired if a[k].label != b[k].label},
    )


def complete_scufo(
    scuba: Sequence[ClipItem] | DatasetSplit, scufo: DatasetSplit, still_folder: str | Path,
) -> tuple[DatasetSplit, dict[str, str]]:
    """SCUFO as contrasted accuracy needs it: exactly one item per SCUBA key, in ``scufo``'s order.

    Releases are incomplete. A SCUBA clip whose still is missing gets an item at the still's expected path
    (``<still_folder>/<key>.jpg``, absent): it fails when read and counts against the model like any
    unreadable item, so the set and its denominator stay whole. A still without a SCUBA clip has no pair to
    score and is left out. Returns the completed split and ``{key: what was done}`` for the caller to report.
    Label disagreements are not resolved here (:func:`check_pairing` reports them).
    """
    clips = scuba.items if isinstance(scuba, DatasetSplit) else list(scuba)
    clip_keys = {it.key for it in clips}
    still_keys = {it.key for it in scufo.items}
    notes: dict[str, str] = {}
    left_out = dict(scufo.left_out)
    items = []
    for it in scufo.items:
        if it.key in clip_keys:
            items.append(it)
        else:
            notes[it.key] = "SCUFO still has no SCUBA partner: left out (no clip to contrast it with)"
            left_out[str(it.source)] = notes[it.key]
    folder = Path(still_folder)
    missing = dict(scufo.missing)
    for it in clips:
        if it.key not in still_keys:
            path = folder / f"{it.key}.jpg"
            items.append(ClipItem(path, it.label, it.key, {}))
            missing[it.key] = str(path)
            notes[it.key] = f"SCUBA clip has no SCUFO partner (no {path}): kept, its still counts as a failed item"
    return DatasetSplit(scufo.name, items, list(scufo.classes), missing, scufo.origin, dict(scufo.searched),
                        left_out), notes
