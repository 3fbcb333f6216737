"""Build SCUBA, SCUFO and ConflFG from your own videos, actor masks and backgrounds (ALBAR.md section 3).

SCUBA: ``out = frame * mask + resize(bg) * (1 - mask)``, one background per composite held for all its
frames, keys ``<video key>__<n>``. SCUFO: one frame of each composite, same key. ConflFG: a still actor
(one masked frame of a video of another class) pasted into a stripe-background composite of the moving
video, named ``<moving key>__<pasted key>__<n>`` (what :func:`albar.data.bias_sets.conflfg_parts` reads).
Layers, bottom to top: stripes, the pasted still actor, the moving actor (whose motion must stay whole).
The still actor is moved (:func:`place_pasted`) to where the moving actor covers it least over the clip,
so it stays visible; a pairing where no place keeps ``min_visible`` of it visible is skipped and counted.

Everything is a function of the inputs and the seed: each composite draws from its own RNG seeded by
(seed, key), videos are visited in sorted order, JPEG settings are fixed, zip entries carry a fixed
timestamp, and the manifest holds no time or output path. The same inputs and seed give the same bytes.
"""

from __future__ import annotations

import os
import shutil
import zlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image, UnidentifiedImageError

from albar.biasgen.masks import MaskMismatch, MaskSource, video_masks
from albar.data.bias_sets import conflfg_parts, scufo_frame
from albar.data.io import IMAGE_EXTENSIONS, ClipReadError, encode_jpeg, read_clip, write_frame_zip
from albar.data.lists import ClipItem, read_list, write_list
from albar.synthetic.render import draw_stripes, stripe_params
from albar.utils import atomic_write_json, atomic_write_text, building_folder, parallel_map, remove_dead_leftovers

Layout = Literal["albar", "stillmix"]
FORMAT = "albar-bias-set/1"


def rng_for(seed: int, *parts: str) -> np.random.Generator:
    """An RNG that depends on ``seed`` and the named parts only (never on visiting order or workers)."""
    return np.random.default_rng([seed, *(zlib.crc32(p.encode()) for p in parts)])


# ---------------------------------------------------------------------------------------------- backgrounds

class StripeBackgrounds:
    """The StillMix sinusoidal-stripe generator (:func:`albar.synthetic.render.stripe_params`)."""

    name = "stripes"

    def describe(self) -> str:
        return "stripes"

    def draw(self, rng: np.random.Generator, size: tuple[int, int]) -> tuple[np.ndarray, dict[str, Any]]:
        """A (H, W, 3) uint8 background for a frame of ``size`` = (H, W), and what was drawn."""
        params = stripe_params(rng)
        img = draw_stripes(params, (size[1], size[0]))
        return np.clip(img.round(), 0, 255).astype(np.uint8), {"stripes": params.to_dict()}


class ImageBackgrounds:
    """A folder (searched recursively) of background images: Places365, VQGAN-CLIP outputs, your own."""

    name = "images"

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise FileNotFoundError(f"background folder not found: {self.folder}")
        self.files = sorted(p.relative_to(self.folder).as_posix() for p in self.folder.rglob("*")
                            if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
        if not self.files:
            raise FileNotFoundError(f"no images ({', '.join(sorted(IMAGE_EXTENSIONS))}) under {self.folder}")

    def describe(self) -> str:
        return str(self.folder)

    def draw(self, rng: np.random.Generator, size: tuple[int, int]) -> tuple[np.ndarray, dict[str, Any]]:
        name = self.files[int(rng.integers(len(self.files)))]
        path = self.folder / name
        try:
            with Image.open(path) as img:
                rgb = img.convert("RGB").resize((size[1], size[0]), Image.BILINEAR)
        except (UnidentifiedImageError, OSError) as err:
            raise ValueError(f"{path}: cannot read background image ({err})") from err
        return np.asarray(rgb), {"file": name}


Backgrounds = StripeBackgrounds | ImageBackgrounds


# ---------------------------------------------------------------------------------------------- compositing

def composite(frames: np.ndarray, masks: np.ndarray, background: np.ndarray) -> np.ndarray:
    """``frames * mask + background * (1 - mask)`` for uint8 (T, H, W, 3) frames, boolean (T, H, W) masks
    and one (H, W, 3) background held for every frame."""
    if frames.shape[:3] != masks.shape or background.shape != frames.shape[1:]:
        raise ValueError(f"shapes differ: frames {frames.shape}, masks {masks.shape}, background {background.shape}")
    return np.where(masks[..., None], frames, background[None]).astype(np.uint8)


def video_leakage(coarse: np.ndarray, fine: np.ndarray) -> dict[str, float | int]:
    """How much original background a coarse protocol mask (a filled box) lets through, given a finer mask.

    ``fraction``: leaked pixels (in ``coarse``, not in ``fine``) over all pixels of the composite;
    ``fraction_of_kept``: leaked pixels over the pixels the coarse mask keeps from the original video.
    """
    if coarse.shape != fine.shape:
        raise ValueError(f"mask shapes differ: {coarse.shape} vs {fine.shape}")
    leaked, kept = int((coarse & ~fine).sum()), int(coarse.sum())
    return {"leaked_pixels": leaked, "kept_pixels": kept, "pixels": int(coarse.size),
            "fraction": leaked / coarse.size, "fraction_of_kept": leaked / kept if kept else 0.0}


def summarize_leakage(per_video: dict[str, dict[str, float | int]]) -> dict[str, float | int]:
    """Overall leakage: pixel-weighted over all videos, and the mean of the per-video fractions."""
    leaked = sum(int(v["leaked_pixels"]) for v in per_video.values())
    kept = sum(int(v["kept_pixels"]) for v in per_video.values())
    pixels = sum(int(v["pixels"]) for v in per_video.values())
    fr = [float(v["fraction"]) for v in per_video.values()]
    return {"videos": len(per_video), "leaked_pixels": leaked, "kept_pixels": kept, "pixels": pixels,
            "fraction": leaked / pixels if pixels else 0.0, "fraction_of_kept": leaked / kept if kept else 0.0,
            "mean_video_fraction": float(np.mean(fr)) if fr else 0.0}


def measure_leakage(
    videos: str | Path, coarse: MaskSource, fine: MaskSource, root: str | Path | None = None,
) -> dict[str, Any]:
    """Leakage of ``coarse`` masks (a box protocol) against ``fine`` ones over the videos of a list, without
    building anything: per video (:func:`video_leakage`), ``overall`` (:func:`summarize_leakage`), and the
    videos that could not be measured with the reason. Videos are decoded for their frame count and size."""
    per: dict[str, dict[str, float | int]] = {}
    errors: dict[str, str] = {}
    for it in sorted(read_list(Path(videos), root=root, key="stem"), key=lambda it: it.key):
        try:
            frames = read_clip(it.source, _all)
            size = frames.shape[1:3]
            per[it.key] = video_leakage(video_masks(coarse, it.key, len(frames), size),
                                        video_masks(fine, it.key, len(frames), size))
        except (ClipReadError, MaskMismatch) as err:
            errors[it.key] = str(err)
    return {"coarse": coarse.describe(), "fine": fine.describe(), "overall": summarize_leakage(per),
            "videos": per, "errors": errors}


def place_pasted(moving: np.ndarray, pasted: np.ndarray, rng: np.random.Generator) -> dict[str, Any]:
    """Where to paste a still actor so the moving actor covers it least over the clip.

    ``moving``: boolean (T, H, W) masks of the moving actor; ``pasted``: boolean (H, W) mask of the still
    actor at its own place. Every translation that keeps the still actor's bounding box inside the frame is
    tried (exactly, by FFT cross-correlation); the winner has the least mean covered share over frames, then
    the least covered share in its worst frame, then the smallest move, then a draw from ``rng`` (so ties
    follow the seed). Returns ``offset`` = [dy, dx] in pixels (down, right), ``visible_share`` = mean over
    frames of (still-actor pixels not under the moving actor) / (still-actor pixels), ``visible_share_min``
    (its worst frame), and ``visible_share_at_origin`` (the same mean had it stayed in place).
    """
    if moving.ndim != 3 or pasted.shape != moving.shape[1:]:
        raise ValueError(f"shapes differ: moving masks {moving.shape}, pasted mask {pasted.shape}")
    area = int(pasted.sum())
    if area == 0:
        raise ValueError("the pasted actor's mask is empty")
    t, h, w = moving.shape
    rows, cols = np.flatnonzero(pasted.any(axis=1)), np.flatnonzero(pasted.any(axis=0))
    y0, x0 = int(rows[0]), int(cols[0])
    crop = pasted[y0:rows[-1] + 1, x0:cols[-1] + 1].astype(np.float64)
    ny, nx = h - crop.shape[0] + 1, w - crop.shape[1] + 1  # top-left corners that keep the box in the frame
    kernel = np.conj(np.fft.rfft2(crop, s=(h, w)))
    total = np.zeros((ny, nx), dtype=np.int64)
    worst = np.zeros((ny, nx), dtype=np.int64)
    for start in range(0, t, 16):  # overlap[y, x] = sum_ij crop[i, j] * moving[y + i, x + j], per frame
        spectra = np.fft.rfft2(moving[start:start + 16].astype(np.float64), s=(h, w))
        over = np.rint(np.fft.irfft2(spectra * kernel, s=(h, w))[:, :ny, :nx]).astype(np.int64)
        total += over.sum(axis=0)
        worst = np.maximum(worst, over.max(axis=0))
    yy, xx = np.mgrid[:ny, :nx]
    distance = (yy - y0) ** 2 + (xx - x0) ** 2
    tiebreak = rng.permutation(ny * nx)
    best = int(np.lexsort((tiebreak, distance.ravel(), worst.ravel(), total.ravel()))[0])
    by, bx = divmod(best, nx)
    return {"offset": [by - y0, bx - x0],
            "visible_share": 1.0 - int(total[by, bx]) / (t * area),
            "visible_share_min": 1.0 - int(worst[by, bx]) / area,
            "visible_share_at_origin": 1.0 - int(total[y0, x0]) / (t * area)}


def paste_layer(background: np.ndarray, still: np.ndarray, mask: np.ndarray, offset: Sequence[int]) -> np.ndarray:
    """``background`` with the ``mask``ed pixels of ``still`` moved by ``offset`` = (dy, dx); the moved mask
    must stay inside the frame (what :func:`place_pasted` guarantees)."""
    ys, xs = np.nonzero(mask)
    dy, dx = int(offset[0]), int(offset[1])
    h, w = mask.shape
    if len(ys) and (ys.min() + dy < 0 or xs.min() + dx < 0 or ys.max() + dy >= h or xs.max() + dx >= w):
        raise ValueError(f"offset {offset} moves the pasted actor out of the {h}x{w} frame")
    layer = background.copy()
    layer[ys + dy, xs + dx] = still[ys, xs]
    return layer


def _write_clip(frames: np.ndarray, path: Path, layout: Layout, quality: int) -> None:
    """ALBAR: ``path.zip`` of ``img_00001.jpg``...; StillMix: folder ``path/frame000001.jpg``..."""
    if layout == "albar":
        write_frame_zip(frames, path.with_suffix(".zip"), quality)
    else:
        path.mkdir()
        for t, f in enumerate(frames):
            (path / f"frame{t + 1:06d}.jpg").write_bytes(encode_jpeg(f, quality))


# ---------------------------------------------------------------------------------------------- the build

@dataclass(frozen=True)
class BiasSetSpec:
    """What to build; recorded in the manifest. ``dataset`` and ``source`` name the folders
    ``<dataset>_SCUBA_<source>`` (the readers of :mod:`albar.data.bias_sets` find HMDB51, UCF101, K400)."""

    dataset: str
    source: str
    per_video: int = 1  # SCUBA composites per video
    conflfg: int = 0  # ConflFG videos per moving video (0: no ConflFG)
    layout: Layout = "albar"
    seed: int = 0
    min_area: float = 0.01  # a frame whose mask covers less than this share of the frame is "small"
    max_small_fraction: float = 0.5  # a video with more small frames than this share is skipped
    quality: int = 95
    min_visible: float = 0.5  # ConflFG: skip a pairing whose pasted actor is less visible (mean over frames)

    def __post_init__(self) -> None:
        for name in ("dataset", "source"):
            v = getattr(self, name)
            if not v or not v.isalnum():
                raise ValueError(f"{name} must be letters and digits (it names folders), got {v!r}")
        if self.per_video < 1 or self.conflfg < 0:
            raise ValueError(f"per_video must be >= 1 and conflfg >= 0, got {self.per_video}, {self.conflfg}")
        if not 0 <= self.min_area < 1 or not 0 <= self.max_small_fraction <= 1:
            raise ValueError(f"min_area must be in [0, 1) and max_small_fraction in [0, 1], got "
                             f"{self.min_area}, {self.max_small_fraction}")
        if self.layout not in ("albar", "stillmix"):
            raise ValueError(f"layout must be 'albar' or 'stillmix', got {self.layout!r}")
        if not 1 <= self.quality <= 100:
            raise ValueError(f"quality must be in 1..100, got {self.quality}")
        if not 0 <= self.min_visible <= 1:
            raise ValueError(f"min_visible must be in [0, 1], got {self.min_visible}")

    def folder(self, kind: str) -> str:
        return f"{self.dataset}_{kind}_{'Stripe' if kind == 'ConflFG' else self.source}"


@dataclass
class BuildResult:
    """Where the set was written and what it holds (also in ``<out>/manifest.json``)."""

    out: Path
    manifest: dict[str, Any]
    lists: dict[str, Path] = field(default_factory=dict)

    @property
    def counts(self) -> dict[str, Any]:
        return self.manifest["counts"]


@dataclass
class _Context:
    tmp: Path
    spec: BiasSetSpec
    items: dict[str, ClipItem]
    masks: MaskSource
    backgrounds: Backgrounds
    fine: MaskSource | None


_CTX: _Context | None = None  # set before the worker pool forks; workers read it


def _all(n: int) -> Sequence[int]:
    return range(n)


def _load(ctx: _Context, key: str) -> tuple[np.ndarray, np.ndarray]:
    frames = read_clip(ctx.items[key].source, _all)
    return frames, video_masks(ctx.masks, key, len(frames), frames.shape[1:3])


def _scuba_job(key: str) -> dict[str, Any]:
    ctx = _CTX
    assert ctx is not None
    spec, item = ctx.spec, ctx.items[key]
    try:
        frames, masks = _load(ctx, key)
    except ClipReadError as err:
        return {"key": key, "skip": "unreadable", "reason": str(err)}
    except MaskMismatch as err:
        rule = "no_masks" if str(err).startswith("no masks") else "mask_mismatch"
        return {"key": key, "skip": rule, "reason": str(err)}
    t, h, w = masks.shape
    area = masks.mean(axis=(1, 2))
    small = area < spec.min_area
    if small.sum() > spec.max_small_fraction * t or small.all():
        return {"key": key, "skip": "mask_too_small", "reason": f"{key!r}: mask below {spec.min_area:g} of the "
                f"frame in {int(small.sum())} of {t} frames (allowed: {spec.max_small_fraction:g})"}
    valid = np.flatnonzero(~small)
    out: dict[str, Any] = {"key": key, "label": item.label, "source": str(item.source), "num_frames": t,
                           "size": [h, w], "mask_area_mean": round(float(area.mean()), 6),
                           "small_frames": int(small.sum()), "valid_frames": valid.tolist(), "composites": {}}
    if ctx.fine is not None:
        try:
            out["leakage"] = video_leakage(masks, video_masks(ctx.fine, key, t, (h, w)))
        except MaskMismatch as err:
            out["leakage_error"] = str(err)
    scuba, scufo = ctx.tmp / spec.folder("SCUBA"), ctx.tmp / spec.folder("SCUFO")
    for n in range(spec.per_video):
        ckey = f"{key}__{n}"
        bg, record = ctx.backgrounds.draw(rng_for(spec.seed, ckey, "background"), (h, w))
        clip = composite(frames, masks, bg)
        _write_clip(clip, scuba / ckey, spec.layout, spec.quality)
        still = int(valid[scufo_frame(ckey, len(valid), spec.seed)])
        (scufo / f"{ckey}.jpg").write_bytes(encode_jpeg(clip[still], spec.quality))
        out["composites"][ckey] = {"background": record, "scufo_frame": still}
    return out


def _fit_frame(img: np.ndarray, size: tuple[int, int], resample: int) -> np.ndarray:
    if img.shape[:2] == tuple(size):
        return img
    return np.asarray(Image.fromarray(img).resize((size[1], size[0]), resample))


def _conflfg_job(job: tuple[str, str, str, int]) -> dict[str, Any]:
    ctx = _CTX
    assert ctx is not None
    name, moving, pasted, pasted_frame = job
    spec = ctx.spec
    frames, masks = _load(ctx, moving)
    t, h, w = masks.shape
    still = read_clip(ctx.items[pasted].source, lambda n: [pasted_frame])[0]
    pmask = ctx.masks.mask(pasted, pasted_frame, still.shape[:2])
    still = _fit_frame(still, (h, w), Image.BILINEAR)
    pmask = _fit_frame(pmask.astype(np.uint8) * 255, (h, w), Image.NEAREST) > 127
    if not pmask.any():
        return {"name": name, "skip": f"pasted actor {pasted!r} frame {pasted_frame}: mask empty at {h}x{w}"}
    place = place_pasted(masks, pmask, rng_for(spec.seed, name, "placement"))
    if place["visible_share"] < spec.min_visible:
        return {"name": name, "skip": f"pasted actor {pasted!r} at most {place['visible_share']:.1%} visible "
                f"over the clip wherever it is placed (min_visible {spec.min_visible:g})"}
    bg, record = StripeBackgrounds().draw(rng_for(spec.seed, name, "conflfg"), (h, w))
    layer = paste_layer(bg, still, pmask, place["offset"])  # the still actor over the stripes, every frame
    _write_clip(composite(frames, masks, layer), ctx.tmp / spec.folder("ConflFG") / name, spec.layout, spec.quality)
    return {"name": name, "background": record, "pasted_area": round(float(pmask.mean()), 6),
            **{k: v if k == "offset" else round(v, 6) for k, v in place.items()}}


def _check_keys(items: list[ClipItem], list_path: Path, conflfg: bool) -> dict[str, ClipItem]:
    by_key: dict[str, ClipItem] = {}
    for it in items:
        if it.key in by_key:
            raise ValueError(f"{list_path}: two videos have the key {it.key!r} ({by_key[it.key].source}, {it.source})")
        if conflfg and it.key.isdigit():
            raise ValueError(f"{list_path}: key {it.key!r} is all digits; ConflFG names "
                             "'<moving>__<pasted>__<n>' would read it as an instance number")
        by_key[it.key] = it
    return by_key


def build_bias_set(
    videos: str | Path,
    masks: MaskSource,
    out: str | Path,
    spec: BiasSetSpec,
    backgrounds: Backgrounds | None = None,
    root: str | Path | None = None,
    leakage_masks: MaskSource | None = None,
    classes: Sequence[str] | None = None,
    workers: int = 1,
    progress: bool = True,
) -> BuildResult:
    """Build SCUBA + SCUFO (+ ConflFG if ``spec.conflfg``) under ``out``, which must not exist yet.

    ``videos``: an mmaction2 list (``path label`` or rawframes), paths relative to ``root`` (default: the
    list's folder), any source :func:`albar.data.io.read_clip` reads; a video's key is its file stem and
    names its masks. ``backgrounds``: None for the stripe generator. ``leakage_masks``: finer masks of the
    same videos; the leakage of ``masks`` is measured against them (``leakage.json``). Built in a temporary
    sibling folder renamed into place. Videos that cannot be used are skipped, counted per rule and named
    in the manifest with the reason.
    """
    global _CTX
    out, list_path = Path(out), Path(videos)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"{out} exists and is not empty; choose a new folder for the bias set")
    backgrounds = backgrounds or StripeBackgrounds()
    items = _check_keys(read_list(list_path, root=root, key="stem"), list_path, spec.conflfg > 0)
    if not items:
        raise ValueError(f"{list_path}: no videos")
    if classes is not None:
        bad = sorted(k for k, it in items.items() if it.label >= len(classes))
        if bad:
            raise ValueError(f"{list_path}: label of {bad[0]!r} is out of range for {len(classes)} classes")
    remove_dead_leftovers(out.parent, out.name)  # builds of killed processes; a live one's is left alone
    tmp = building_folder(out)
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        for kind in ("SCUBA", "SCUFO", *(("ConflFG",) if spec.conflfg else ())):
            (tmp / spec.folder(kind)).mkdir(parents=True)
        (tmp / "lists").mkdir()
        _CTX = _Context(tmp, spec, items, masks, backgrounds, leakage_masks)
        keys = sorted(items)
        # forked workers inherit _CTX (mask tables, item lists): nothing is pickled but the keys
        results = parallel_map(_scuba_job, keys, workers, f"SCUBA/SCUFO {spec.source}", "video", progress)
        used = {r["key"]: r for r in results if "skip" not in r}
        skipped = {r["key"]: {"rule": r["skip"], "reason": r["reason"]} for r in results if "skip" in r}
        conf_jobs, conf_records, conf_skipped = _plan_conflfg(spec, used)
        conf_results = parallel_map(_conflfg_job, conf_jobs, workers, "ConflFG", "video", progress)
        for r in conf_results:
            if "skip" in r:  # no place keeps the pasted actor visible: the pairing is counted, not written
                rec = conf_records.pop(r["name"])
                conf_skipped[f"{rec['moving']}__{r['name'].rsplit('__', 1)[1]}"] = r["skip"]
            else:
                conf_records[r["name"]].update({k: v for k, v in r.items() if k != "name"})
        manifest = _manifest(spec, list_path, root, masks, backgrounds, leakage_masks, items, used, skipped,
                             conf_records, conf_skipped)
        lists = _write_lists(tmp, spec, used, conf_records, classes)
        if leakage_masks is not None:
            atomic_write_json(tmp / "leakage.json", manifest["leakage"])
        atomic_write_json(tmp / "manifest.json", manifest)
        out.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, out)  # replaces an empty folder; fails if something appeared there meanwhile
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        _CTX = None
    return BuildResult(out, manifest, {k: out / v for k, v in lists.items()})


def _plan_conflfg(
    spec: BiasSetSpec, used: dict[str, dict[str, Any]],
) -> tuple[list[tuple[str, str, str, int]], dict[str, dict[str, Any]], dict[str, str]]:
    """Who is pasted into whom: per moving video and n, a video of another class and one of its frames
    whose mask is large enough, drawn from (seed, moving key, n) among the usable videos in sorted order."""
    jobs, records, skipped = [], {}, {}
    keys = sorted(used)
    for moving in keys if spec.conflfg else []:
        label = used[moving]["label"]
        others = [k for k in keys if used[k]["label"] != label]
        for n in range(spec.conflfg):
            if not others:
                skipped[f"{moving}__{n}"] = "no usable video of another class to paste"
                continue
            rng = rng_for(spec.seed, moving, str(n), "conflfg-pick")
            pasted = others[int(rng.integers(len(others)))]
            valid = used[pasted]["valid_frames"]
            frame = int(valid[int(rng.integers(len(valid)))])
            name = f"{moving}__{pasted}__{n}"
            try:  # keys may hold '__' themselves (HMDB51): the name must read back as exactly this pair
                ok = conflfg_parts(name, used.keys()) == (moving, pasted)
            except KeyError:
                ok = False
            if not ok:
                skipped[name] = f"the name {name!r} does not read back unambiguously as {moving!r} + {pasted!r}"
                continue
            jobs.append((name, moving, pasted, frame))
            records[name] = {"moving": moving, "pasted": pasted, "label": label,
                             "conflict_label": used[pasted]["label"], "pasted_frame": frame}
    return jobs, records, skipped


def _manifest(spec, list_path, root, masks, backgrounds, leakage_masks, items, used, skipped, conf_records,
              conf_skipped) -> dict[str, Any]:
    rules = ("unreadable", "no_masks", "mask_mismatch", "mask_too_small")
    videos = {k: {f: v for f, v in r.items() if f not in ("key", "valid_frames")} for k, r in used.items()}
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "spec": asdict(spec),
        "inputs": {"videos": str(list_path), "root": None if root is None else str(root),
                   "masks": masks.describe(), "mask_kind": masks.kind, "backgrounds": backgrounds.describe(),
                   "background_files": getattr(backgrounds, "files", None),
                   "leakage_masks": None if leakage_masks is None else leakage_masks.describe()},
        "folders": {k: spec.folder(k) for k in ("SCUBA", "SCUFO", *(("ConflFG",) if spec.conflfg else ()))},
        "counts": {
            "videos": len(items), "used": len(used),
            "skipped": {rule: sum(1 for s in skipped.values() if s["rule"] == rule) for rule in rules},
            "scuba": spec.per_video * len(used), "scufo": spec.per_video * len(used),
            "conflfg": len(conf_records), "conflfg_skipped": len(conf_skipped),
        },
        "skipped": dict(sorted(skipped.items())),
        "videos": videos,
        "conflfg": conf_records,
        "conflfg_skipped": dict(sorted(conf_skipped.items())),
    }
    shares = [r["visible_share"] for r in conf_records.values() if "visible_share" in r]
    if shares:  # of the pasted still actors, over the ConflFG clips written
        manifest["conflfg_visible_share"] = {"mean": round(float(np.mean(shares)), 6), "min": min(shares)}
    if leakage_masks is not None:
        per = {k: r["leakage"] for k, r in used.items() if "leakage" in r}
        manifest["leakage"] = {"coarse": masks.describe(), "fine": leakage_masks.describe(),
                               "overall": summarize_leakage(per), "videos": per,
                               "errors": {k: r["leakage_error"] for k, r in used.items() if "leakage_error" in r}}
    return manifest


def _write_lists(tmp: Path, spec: BiasSetSpec, used: dict[str, dict[str, Any]],
                 conf: dict[str, dict[str, Any]], classes: Sequence[str] | None) -> dict[str, str]:
    """mmaction2 lists under ``lists/``, paths relative to the output folder, and ``labels.csv``
    (``filename,label`` per source video) so :func:`albar.data.bias_sets.csv_labeler` labels the set."""
    scuba_dir, scufo_dir, conf_dir = spec.folder("SCUBA"), spec.folder("SCUFO"), spec.folder("ConflFG")
    scuba, scufo, conflfg = [], [], []
    for key in sorted(used):
        r = used[key]
        for ckey in r["composites"]:
            if spec.layout == "albar":
                scuba.append((f"{scuba_dir}/{ckey}.zip", r["label"]))
            else:
                scuba.append((f"{scuba_dir}/{ckey}", r["num_frames"], r["label"]))
            scufo.append((f"{scufo_dir}/{ckey}.jpg", r["label"]))
    for name, c in conf.items():
        t = used[c["moving"]]["num_frames"]
        path = f"{conf_dir}/{name}.zip" if spec.layout == "albar" else f"{conf_dir}/{name}"
        conflfg.append((path, c["label"], c["conflict_label"]) if spec.layout == "albar"
                       else (path, t, c["label"], c["conflict_label"]))
    lists = {"scuba": f"lists/scuba_{spec.source}.txt", "scufo": f"lists/scufo_{spec.source}.txt"}
    write_list(tmp / lists["scuba"], scuba)
    write_list(tmp / lists["scufo"], scufo)
    if spec.conflfg:
        lists["conflfg"] = "lists/conflfg.txt"
        write_list(tmp / lists["conflfg"], conflfg)
    rows = "".join(f"{k},{used[k]['label']}\n" for k in sorted(used))
    atomic_write_text(tmp / "labels.csv", "filename,label\n" + rows)
    if classes is not None:
        atomic_write_text(tmp / "classes.txt", "".join(f"{c}\n" for c in classes))
    return lists
