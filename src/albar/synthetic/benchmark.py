"""The synthetic biased-motion benchmark, written to disk as real files in the published layouts.

Splits: train, val (held out, biased like train), test (IID, biased like train), SCUBA per unseen
background source (object appearance kept, as the real SCUBA keeps the actor), SCUFO (the middle frame of
each SCUBA clip, paired by key) and ConflFG (stripe background, object looking like another class).
Videos are H.264 MP4 (train, val, test); bias sets follow ALBAR's release: zips of JPEG frames and still
JPEGs, plus mmaction2 list files.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import av
import numpy as np

from albar.data.io import encode_jpeg, write_frame_zip
from albar.data.lists import ClipItem, read_list
from albar.synthetic.render import (
    COLOURS,
    MOTIONS,
    SHAPE_NAMES,
    TRAIN_BACKGROUNDS,
    UNSEEN_BACKGROUNDS,
    ClipSpec,
    render_clip,
)
from albar.utils import atomic_write_json, building_folder, parallel_map, remove_dead_leftovers

FORMAT_VERSION = 2  # bump when rendering changes: a cached benchmark of another version is not reused


@dataclass(frozen=True)
class BenchmarkSpec:
    """Sizes and bias of the benchmark; a different spec builds a different benchmark."""

    num_classes: int = 8
    num_frames: int = 8
    size: int = 32
    train: int = 4000
    val: int = 400
    test: int = 800
    bias_set: int = 400  # clips per SCUBA source, and in ConflFG
    correlation: float = 0.95  # chance that each static cue matches the class in train/val/test/SCUBA
    seed: int = 0

    def __post_init__(self) -> None:
        if not 2 <= self.num_classes <= len(MOTIONS):
            raise ValueError(f"num_classes must be in [2, {len(MOTIONS)}], got {self.num_classes}")
        if not 0.0 <= self.correlation <= 1.0:
            raise ValueError(f"correlation must be in [0, 1], got {self.correlation}")
        if self.size % 2 or self.size < 16:
            raise ValueError(f"size must be even and >= 16 (H.264 needs even sizes), got {self.size}")


@dataclass(frozen=True)
class Benchmark:
    """Where a built benchmark lies, and its lists."""

    root: Path
    spec: BenchmarkSpec
    classes: list[str]

    def list_path(self, name: str) -> Path:
        return self.root / "lists" / f"{name}.txt"

    def items(self, name: str) -> list[ClipItem]:
        """Items of a split: train, val, test, scuba_<source>, scufo_<source>, conflfg."""
        key = "path" if name in ("train", "val", "test") else "stem"
        return read_list(self.list_path(name), root=self.root, key=key)

    @property
    def sources(self) -> tuple[str, ...]:
        return UNSEEN_BACKGROUNDS


def _cue(rng: np.random.Generator, label: int, k: int, corr: float) -> int:
    return label if rng.random() < corr else int(rng.integers(k))


def _plan(spec: BenchmarkSpec) -> dict[str, list[tuple[str, int, int, ClipSpec]]]:
    """Every clip to write, per split: (key, label, conflict_label or -1, ClipSpec). Deterministic."""
    k = spec.num_classes
    root_seq = np.random.SeedSequence(spec.seed)
    plans: dict[str, list[tuple[str, int, int, ClipSpec]]] = {}
    split_sizes = {"train": spec.train, "val": spec.val, "test": spec.test}
    split_sizes.update({f"scuba_{s}": spec.bias_set for s in UNSEEN_BACKGROUNDS})
    split_sizes["conflfg"] = spec.bias_set
    for split, child in zip(split_sizes, root_seq.spawn(len(split_sizes))):
        rng = np.random.default_rng(child)
        n = split_sizes[split]
        labels = rng.permutation(np.arange(n) % k)
        rows = []
        for i, y in enumerate(labels.tolist()):
            seed = int(rng.integers(2**63))
            conflict = -1
            if split == "conflfg":
                conflict = int((y + rng.integers(1, k)) % k)
                shape, colour, bg = SHAPE_NAMES[conflict], conflict, "stripe"
            else:
                shape = SHAPE_NAMES[_cue(rng, y, k, spec.correlation)]
                colour = _cue(rng, y, k, spec.correlation)
                if split.startswith("scuba_"):
                    bg = split.removeprefix("scuba_")
                else:
                    bg = TRAIN_BACKGROUNDS[_cue(rng, y, k, spec.correlation)]
            rows.append((f"{i:05d}", y, conflict, ClipSpec(MOTIONS[y], shape, colour, bg, seed)))
        plans[split] = rows
    return plans


def _encode_mp4(frames: np.ndarray, path: Path, fps: int = 8) -> None:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "12", "threads": "1", "preset": "veryfast"}
        for f in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
        container.mux(stream.encode())


def _write_one(job: tuple[Path, str, str, ClipSpec, int, int]) -> None:
    root, split, key, clip_spec, num_frames, size = job
    frames = render_clip(clip_spec, num_frames, size)
    if split.startswith("scuba_"):
        source = split.removeprefix("scuba_")
        write_frame_zip(frames, root / f"SYN_SCUBA_{source}" / f"{key}.zip")
        (root / f"SYN_SCUFO_{source}" / f"{key}.jpg").write_bytes(encode_jpeg(frames[num_frames // 2]))
    elif split == "conflfg":
        write_frame_zip(frames, root / "SYN_ConflFG_Stripe" / f"{key}.zip")
    else:
        _encode_mp4(frames, root / "videos" / split / f"{key}.mp4")


def _lists(spec: BenchmarkSpec, plans: dict) -> dict[str, list[tuple]]:
    out: dict[str, list[tuple]] = {}
    for split, rows in plans.items():
        if split.startswith("scuba_"):
            s = split.removeprefix("scuba_")
            out[split] = [(f"SYN_SCUBA_{s}/{key}.zip", y) for key, y, _, _ in rows]
            out[f"scufo_{s}"] = [(f"SYN_SCUFO_{s}/{key}.jpg", y) for key, y, _, _ in rows]
        elif split == "conflfg":
            out[split] = [(f"SYN_ConflFG_Stripe/{key}.zip", y, c) for key, y, c, _ in rows]
        else:
            out[split] = [(f"videos/{split}/{key}.mp4", y) for key, y, _, _ in rows]
    return out


def load_benchmark(root: str | Path) -> Benchmark:
    """Open a built benchmark; raises if ``root`` holds none or an unfinished one."""
    root = Path(root)
    manifest = root / "manifest.json"
    if not manifest.is_file():
        raise FileNotFoundError(f"no synthetic benchmark at {root} (missing {manifest})")
    meta = json.loads(manifest.read_text())
    return Benchmark(root=root, spec=BenchmarkSpec(**meta["spec"]), classes=meta["classes"])


def build_benchmark(
    root: str | Path, spec: BenchmarkSpec = BenchmarkSpec(), workers: int | None = None, progress: bool = True,
) -> Benchmark:
    """Write the benchmark under ``root`` once; a finished one with the same spec is reused as it is.

    Built in a temporary sibling folder and renamed into place, so an interrupted build leaves nothing
    that looks finished. The same spec gives the same clips: byte for byte for the zips, stills and lists;
    the H.264 videos decode to the same frames up to the encoder's choices, which were seen to differ by a
    few grey levels now and then when clips are encoded in parallel (the rendered frames did not).
    """
    root = Path(root)
    if (root / "manifest.json").is_file():
        existing = load_benchmark(root)
        meta = json.loads((root / "manifest.json").read_text())
        if existing.spec == spec and meta.get("format_version") == FORMAT_VERSION:
            return existing
        raise FileExistsError(
            f"{root} holds a synthetic benchmark with another spec ({asdict(existing.spec)}); "
            "choose another folder or delete it"
        )
    if root.exists() and any(root.iterdir()):
        raise FileExistsError(f"{root} exists and is not a synthetic benchmark; choose an empty folder")
    remove_dead_leftovers(root.parent, root.name)  # builds of killed processes; a live one's is left alone
    tmp = building_folder(root)
    shutil.rmtree(tmp, ignore_errors=True)
    plans = _plan(spec)
    for d in ["lists", *(f"videos/{s}" for s in ("train", "val", "test")), "SYN_ConflFG_Stripe",
              *(f"SYN_SCUBA_{s}" for s in UNSEEN_BACKGROUNDS), *(f"SYN_SCUFO_{s}" for s in UNSEEN_BACKGROUNDS)]:
        (tmp / d).mkdir(parents=True, exist_ok=True)
    jobs = [(tmp, split, key, cs, spec.num_frames, spec.size) for split, rows in plans.items()
            for key, _, _, cs in rows]
    workers = workers if workers is not None else min(os.cpu_count() or 1, 4)
    try:
        parallel_map(_write_one, jobs, workers, "building synthetic benchmark", "clip", progress)
        for name, rows in _lists(spec, plans).items():
            (tmp / "lists" / f"{name}.txt").write_text("".join(" ".join(map(str, r)) + "\n" for r in rows))
        for split, rows in plans.items():
            with open(tmp / "lists" / f"{split}_meta.csv", "w", newline="") as fh:
                writer = csv.writer(fh)
                writer.writerow(["key", "label", "conflict_label", "motion", "shape", "colour", "background", "seed"])
                for key, y, c, cs in rows:
                    writer.writerow([key, y, c, cs.motion, cs.shape, cs.colour, cs.background, cs.seed])
        classes = list(MOTIONS[: spec.num_classes])
        (tmp / "classes.txt").write_text("".join(c + "\n" for c in classes))
        atomic_write_json(tmp / "manifest.json", {
            "format_version": FORMAT_VERSION, "spec": asdict(spec), "classes": classes,
            "shapes": list(SHAPE_NAMES[: spec.num_classes]), "colours": [list(c) for c in COLOURS[: spec.num_classes]],
            "train_backgrounds": list(TRAIN_BACKGROUNDS[: spec.num_classes]),
            "bias_sources": list(UNSEEN_BACKGROUNDS),
            "counts": {name: len(rows) for name, rows in _lists(spec, plans).items()},
        })
        root.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.replace(tmp, root)  # replaces an empty folder; fails if another process finished first
        except OSError:
            if not (root / "manifest.json").is_file():
                raise
            shutil.rmtree(tmp, ignore_errors=True)
            return build_benchmark(root, spec, workers, progress)  # checks that it is the same spec
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return load_benchmark(root)
