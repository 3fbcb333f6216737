"""What ActorCutMix and SDN need from the synthetic benchmark, written beside its clips on demand.

- ``actor_masks/<key>/<NNNNN>.png``: the renderer's exact object mask of every frame of every training clip
  (``<key>`` is the training list's item key, ``videos/train/00000``; frames numbered from 1; 255 where the
  antialiased mask is > 0.5), the per-frame PNG layout ``albar make-bias-set`` and ActorCutMix read.
- ``scene_labels.csv``: the scene of every train, val and test clip, its background style, one-hot over the
  training styles (header ``key,<style 0>,...``), the soft form SDN reads.

Written by :func:`ensure_annotations` the first time a run asks for them, not by ``build_benchmark``: the
benchmark's files (and its format version) stay as they were, a benchmark built before this existed gains
them, and a run of the other methods never writes the 8 PNGs per training clip. Deterministic: the clips are
re-rendered from the benchmark's spec; the frames are those the videos were encoded from.
"""

from __future__ import annotations

import io
import json
import os
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from albar.synthetic.benchmark import Benchmark, _plan, load_benchmark
from albar.synthetic.render import TRAIN_BACKGROUNDS, ClipSpec, render_clip_with_masks
from albar.utils import atomic_write_json, atomic_write_text, building_folder, parallel_map, remove_dead_leftovers

ANNOTATIONS_VERSION = 1
MASK_FOLDER = "actor_masks"
SCENE_FILE = "scene_labels.csv"
MARKER = "annotations.json"
MASKED_SPLITS = ("train",)  # the clips a training run masks; val/test are only evaluated
SCENE_SPLITS = ("train", "val", "test")


def item_key(split: str, key: str) -> str:
    """The key of a train/val/test clip in the benchmark's lists (``videos/<split>/<key>``)."""
    return f"videos/{split}/{key}"


def mask_pngs(masks: np.ndarray) -> list[bytes]:
    """One 8-bit PNG per frame of (T, H, W) antialiased masks: 255 where the mask is > 0.5, else 0."""
    out = []
    for m in masks:
        buf = io.BytesIO()
        Image.fromarray(np.where(m > 0.5, 255, 0).astype(np.uint8), mode="L").save(buf, format="PNG")
        out.append(buf.getvalue())
    return out


def _write_masks(job: tuple[Path, str, str, ClipSpec, int, int]) -> None:
    folder, split, key, spec, num_frames, size = job
    _, masks = render_clip_with_masks(spec, num_frames, size)
    target = folder / item_key(split, key)
    target.mkdir(parents=True, exist_ok=True)
    for i, png in enumerate(mask_pngs(masks), 1):
        (target / f"{i:05d}.png").write_bytes(png)


def scene_csv(bench: Benchmark) -> str:
    """``scene_labels.csv``: every train/val/test key, one-hot over the training background styles."""
    styles = list(TRAIN_BACKGROUNDS[: bench.spec.num_classes])
    plans = _plan(bench.spec)
    lines = [",".join(["key", *styles])]
    for split in SCENE_SPLITS:
        for key, _, _, cs in plans[split]:
            onehot = ["1" if s == cs.background else "0" for s in styles]
            if "1" not in onehot:
                raise ValueError(f"clip {split}/{key}: background {cs.background!r} is not a training style")
            lines.append(",".join([item_key(split, key), *onehot]))
    return "\n".join(lines) + "\n"


def annotation_paths(root: str | Path) -> tuple[Path, Path]:
    """(actor mask folder, scene labels CSV) of the benchmark at ``root``."""
    root = Path(root)
    return root / MASK_FOLDER, root / SCENE_FILE


def ensure_annotations(root: str | Path, workers: int | None = None, progress: bool = True) -> tuple[Path, Path]:
    """Write the actor masks and scene labels of the benchmark at ``root`` unless they are there; return their
    paths. The masks are built in a temporary sibling folder and renamed into place, and a marker is written
    last, so that an interrupted or concurrent call leaves nothing that looks finished."""
    bench = load_benchmark(root)
    masks, scenes = annotation_paths(bench.root)
    marker = bench.root / MARKER
    if marker.is_file() and json.loads(marker.read_text()).get("version") == ANNOTATIONS_VERSION \
            and masks.is_dir() and scenes.is_file():
        return masks, scenes
    atomic_write_text(scenes, scene_csv(bench))
    if not masks.is_dir():
        remove_dead_leftovers(bench.root, MASK_FOLDER)
        tmp = building_folder(masks)
        shutil.rmtree(tmp, ignore_errors=True)
        plans = _plan(bench.spec)
        jobs = [(tmp, split, key, cs, bench.spec.num_frames, bench.spec.size)
                for split in MASKED_SPLITS for key, _, _, cs in plans[split]]
        workers = workers if workers is not None else min(os.cpu_count() or 1, 4)
        try:
            parallel_map(_write_masks, jobs, workers, "writing synthetic actor masks", "clip", progress)
            try:
                os.replace(tmp, masks)
            except OSError:
                if not masks.is_dir():
                    raise
                shutil.rmtree(tmp, ignore_errors=True)  # another process finished first: same content
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    atomic_write_json(marker, {"version": ANNOTATIONS_VERSION, "masks": MASK_FOLDER, "scene_labels": SCENE_FILE,
                               "masked_splits": list(MASKED_SPLITS), "scene_splits": list(SCENE_SPLITS),
                               "scenes": list(TRAIN_BACKGROUNDS[: bench.spec.num_classes])})
    return masks, scenes
