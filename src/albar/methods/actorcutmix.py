"""ActorCutMix (Zou et al., CVIU 2023): the actor of clip A on the background of clip B, soft label
w * y_A + (1 - w) * y_B with w = 1 - (1 - r)^4, r the share of A's pixels (over T x H x W) that are actor.

    x'_A = m_A * x_A + (1 - m_A) * (1 - m_B) * x_B

B's own actor is cut out of its background (left at 0, the normalised mean colour), so that what A gets from B
is scene, not B's motion. A clip whose actor mask is empty or covers every pixel is left unchanged (weight
1): there is no actor to move, or no background to replace.

This follows the ActorCutmixBlending the StillMix benchmark ran for the ActorCutMix row of the paper's
Table 1 (lihaoxin05/StillMix; read, not copied). Differences, and why:

- The partner B is uniform over the OTHER clips; the release pairs clip i with clip B-1-i (the batch
  flipped), which ties partners in fixed pairs and always leaves the middle clip of an odd batch unchanged.
- Transformed clips keep their batch position (the release concatenates them first); ``prob`` is a Bernoulli
  draw per clip. The release's Swin-T/Kinetics-pretrained HMDB51 config uses prob 0.25 (its class default is
  0.5): 0.25 is the default here.

Actor masks come from files in the formats ``albar make-bias-set`` reads (:mod:`albar.biasgen.masks`: per-frame
PNG masks, or boxes filled as rectangles), looked up by the training item's key, and go through the same
frame sampling, crop and flip as the clip: :class:`ActorMaskDataset`. ``albar detect-actors`` writes them with a
torchvision person detector or segmenter; the synthetic benchmark writes its exact masks.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor
from torchvision import tv_tensors

from albar.biasgen.masks import BoxTable, MaskFolder, MaskMismatch, MaskSource, video_masks
from albar.data.dataset import ClipDataset
from albar.data.io import ClipReadError, at_least, read_clip, still_frame
from albar.data.sampling import clip_indices
from albar.methods.batch import MixedBatch, _bcast, _check, _check_prob, _select
from albar.methods.registry import register_method

DEFAULT_PROB = 0.25  # StillMix's Swin-T (Kinetics-pretrained) HMDB51 config


def actorcutmix_weight(area_ratio: Tensor) -> Tensor:
    """Label weight of the actor clip: 1 - (1 - r)^4 (an actor of a quarter of the pixels keeps 68%)."""
    return 1 - (1 - area_ratio) ** 4


def actorcutmix(
    clip: Tensor, labels: Tensor, masks: Tensor, generator: torch.Generator, prob: float = DEFAULT_PROB,
) -> MixedBatch:
    """ActorCutMix on a batch: ``masks`` (B, T, H, W) in [0, 1] (1 = actor), aligned with ``clip`` (B, C, T, H, W).

    Clip i (if drawn, with probability ``prob``, and if its mask is neither empty nor full) keeps its actor and
    takes the background of clip j != i (uniform), j's actor cut out. Targets: ``target_a = y_i``,
    ``target_b = y_j``, ``lam = 1 - (1 - r_i)^4``. ``info``: ``area_ratio`` r_i of every clip, ``valid`` (mask
    neither empty nor full), ``mix_weight`` (share of the output's pixels that are clip i's own).
    """
    _check(clip, labels)
    _check_prob(prob)
    b, _, t, h, w = clip.shape
    if masks.shape != (b, t, h, w):
        raise ValueError(f"actor masks must be (B, T, H, W) = {(b, t, h, w)} like the clips, got {tuple(masks.shape)}")
    if b < 2:
        raise ValueError(f"ActorCutMix puts a clip's actor on ANOTHER clip's background: it needs batch size >= 2, "
                         f"got {b}")
    m = masks.to(device=clip.device, dtype=clip.dtype).clamp(0, 1)
    ratio = m.flatten(1).mean(1).float().cpu()
    valid = (ratio > 0) & (ratio < 1)
    partner = (torch.arange(b) + 1 + torch.randint(b - 1, (b,), generator=generator)) % b
    applied = _select(b, prob, generator) & valid
    pd = partner.to(clip.device)
    mi = m[:, None]
    mixed = mi * clip + (1 - mi) * (1 - mi[pd]) * clip[pd]
    out = torch.where(_bcast(applied, clip), mixed, clip)
    partner = torch.where(applied, partner, torch.arange(b))
    lam = torch.where(applied, actorcutmix_weight(ratio), torch.ones(b)).to(labels.device)
    own = torch.where(applied, ratio, torch.ones(b))
    return MixedBatch(
        clip=out, target_a=labels, target_b=labels[partner.to(labels.device)], lam=lam, applied=applied,
        partner=partner, info={"area_ratio": ratio, "valid": valid, "mix_weight": own},
    )


# ------------------------------------------------------------------------------------------- mask files


def open_mask_source(path: str | Path, first_index: int = 1) -> MaskSource:
    """A folder of per-frame PNG masks (``<root>/<key>/<NNNNN>.png``) or a boxes file (CSV ``key,frame,x1,y1,
    x2,y2`` or JSON), as ``albar make-bias-set`` reads them."""
    path = Path(path).expanduser()
    if path.is_dir():
        return MaskFolder(path, first_index)
    if path.is_file():
        return BoxTable(path, first_index)
    raise FileNotFoundError(f"actor masks not found: {path} (a folder of per-frame PNG masks, or a boxes CSV/JSON)")


def mask_key(source: MaskSource, key: str) -> str | None:
    """The name ``source`` files the masks of item ``key`` under: the key itself, or its last path component
    (``make-bias-set`` and most mask folders use the video's file stem; list items are keyed by relative path).
    None: no masks for this item."""
    if source.frame_numbers(key):
        return key
    stem = PurePosixPath(key).name
    return stem if stem != key and source.frame_numbers(stem) else None


def check_mask_coverage(source: MaskSource, keys: Sequence[str], warn: Callable[[str], None] | None = None,
                        limit: int = 3) -> list[str]:
    """The keys without any mask in ``source``. None of them covered is an error (wrong folder, or keys that do
    not match); some missing is reported through ``warn`` (default: stderr): those clips count as having no
    actor (ActorCutMix leaves them unchanged, SDN's mask term skips them)."""
    missing = [k for k in keys if mask_key(source, k) is None]
    if keys and len(missing) == len(keys):
        raise ValueError(f"no actor masks for any of the {len(keys)} training items in {source.describe()}; "
                         f"e.g. key {keys[0]!r} (masks are looked up by the item key: <folder>/<key>/00001.png, "
                         "or the key column of a boxes file)")
    if missing:
        shown = ", ".join(repr(k) for k in missing[:limit]) + (f" and {len(missing) - limit} more"
                                                              if len(missing) > limit else "")
        (warn or (lambda s: print(s, file=sys.stderr, flush=True)))(
            f"actor masks: {len(missing)} of {len(keys)} training items have none in {source.describe()} ({shown}): "
            "treated as clips without an actor")
    return missing


class ActorMaskDataset(ClipDataset):
    """A :class:`ClipDataset` whose samples also carry ``actor_mask``: float (T, H, W) in {0, 1}, the actor
    masks of the same frames, through the same crop and flip as the clip.

    The masks of a video are read for every decoded frame (:func:`albar.biasgen.masks.video_masks`: gaps are
    empty, a few masks past the end are dropped) and stored with the frames as a fourth channel, so that the
    frame cache and the preload keep them. A video without masks gets empty ones (see
    :func:`check_mask_coverage`); masks that do not fit the video (:class:`MaskMismatch`) make the item
    unreadable (``ClipReadError``: replaced and logged in training, as a bad video file is).
    """

    def __init__(self, base: ClipDataset, source: MaskSource) -> None:
        super().__init__(base.items, base.num_frames, base.stride, base.mode, base.transform, base.seed,
                         base.cache is not None, base.min_frames)
        self.epoch = base.epoch
        self.source = source

    @classmethod
    def wrap(cls, dataset: ClipDataset, masks: str | Path | MaskSource, first_index: int = 1,
             warn: Callable[[str], None] | None = None) -> ActorMaskDataset:
        """``dataset`` with the masks of ``masks`` (a path for :func:`open_mask_source`, or a source); coverage
        checked first (:func:`check_mask_coverage`)."""
        source = masks if not isinstance(masks, (str, Path)) else open_mask_source(masks, first_index)
        check_mask_coverage(source, [it.key for it in dataset.items], warn)
        return cls(dataset, source)

    def frames(self, index: int) -> np.ndarray:
        """uint8 (T, H, W, 4): RGB and the actor mask (0 or 255) of the sampled frames."""
        if self.cache is not None:
            if index in self.cache:
                return self.cache[index]
            if index in self.failed:
                raise ClipReadError(*self.failed[index])
        item = self.items[index]
        rng = np.random.default_rng([self.seed, self.epoch, index])
        seen: dict[str, Any] = {}

        def sample(n: int) -> Sequence[int]:
            seen["n"] = n
            seen["idx"] = clip_indices(n, self.num_frames, self.stride, self.mode, rng)
            return seen["idx"]

        try:
            rgb = read_clip(item.source, at_least(self.min_frames, sample, item.source))
            masks = self._masks(item.key, item.source, seen["n"], seen["idx"], rgb.shape[1:3])
        except ClipReadError as err:
            if self.cache is not None:
                self.failed[index] = (err.source, err.reason)
            raise
        frames = np.concatenate([rgb, masks[..., None].astype(np.uint8) * 255], axis=-1)
        if self.cache is not None:
            self.cache[index] = frames
        return frames

    def _masks(self, key: str, source: Path, n: int, idx: Sequence[int], size: tuple[int, int]) -> np.ndarray:
        name = mask_key(self.source, key)
        if name is None:
            return np.zeros((len(idx), *size), dtype=bool)
        try:
            every = video_masks(self.source, name, n, size)
        except (MaskMismatch, ValueError) as err:
            raise ClipReadError(source, f"actor masks: {err}") from None
        return every[np.asarray(idx, dtype=int)]

    def __getitem__(self, index: int) -> dict[str, Any]:
        frames = self.frames(index)
        rgb, mask = frames[..., :3], frames[..., 3]
        still = still_frame(np.ascontiguousarray(rgb))
        num_frames = len(rgb)
        if still is not None and (mask == mask[:1]).all():
            rgb, mask = still[None].copy(), mask[:1].copy()
        video = torch.from_numpy(np.ascontiguousarray(rgb))
        masks = torch.from_numpy(np.ascontiguousarray(mask))
        if self.transform is None:
            clip = video.permute(3, 0, 1, 2).float() / 255.0
            actor = masks.float() / 255.0
        else:  # the same draw as ClipDataset's, shared by the clip and its masks
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(int(np.random.SeedSequence([self.seed, self.epoch, index]).generate_state(1)[0]))
                out_v, out_m = self.transform(tv_tensors.Video(video.permute(0, 3, 1, 2)),
                                              tv_tensors.Mask(masks[:, None]))
            clip = out_v.as_subclass(Tensor).permute(1, 0, 2, 3).contiguous()
            actor = (out_m.as_subclass(Tensor)[:, 0] > 127).float()
        if clip.shape[1] != num_frames:
            clip = clip.expand(-1, num_frames, -1, -1).contiguous()
            actor = actor.expand(num_frames, -1, -1).contiguous()
        item = self.items[index]
        return {"clip": clip, "label": item.label, "key": item.key, "index": index, "actor_mask": actor}



# ------------------------------------------------------------------------------------------ registration


def resolve_mask_path(masks: Path | None, cfg: Any, section: str) -> Path:
    """The actor masks a run uses: ``masks`` as given, or, on the synthetic benchmark, the renderer's exact masks
    (written beside the clips on first use); otherwise a ValueError naming the key to set."""
    if masks is not None:
        return Path(masks).expanduser()
    data = getattr(cfg, "data", None)
    if data is not None and data.source == "synthetic" and data.root is not None:
        from albar.synthetic.annotations import ensure_annotations

        return ensure_annotations(data.root, progress=False)[0]
    raise ValueError(f"{section}.masks: actor masks are needed (a folder of per-frame PNG masks <dir>/<key>/00001.png, "
                     "or a boxes CSV key,frame,x1,y1,x2,y2; `albar detect-actors` writes them); only the synthetic "
                     "benchmark supplies its own")


class ActorMasks:
    """The actor masks of a run's training items, from files: wraps the training set so that its samples carry
    ``actor_mask``. Shared by ActorCutMix and SDN; a second wrap with the same files is a no-op, with other files
    an error (one run, one set of masks)."""

    def __init__(self, path: Path, first_index: int = 1, section: str = "method") -> None:
        self.path, self.first_index, self.section = path, first_index, section
        self.source = open_mask_source(path, first_index)

    def wrap_train_set(self, dataset: ClipDataset) -> ClipDataset:
        if isinstance(dataset, ActorMaskDataset):
            if getattr(dataset.source, "root", getattr(dataset.source, "path", None)) != self.source_path:
                raise ValueError(f"{self.section}.masks: the training set already carries actor masks from "
                                 f"{dataset.source.describe()}; one run uses one set of masks")
            return dataset
        if not isinstance(dataset, ClipDataset):
            raise TypeError(f"actor masks wrap the training ClipDataset, got {type(dataset).__name__}")
        return ActorMaskDataset.wrap(dataset, self.source)

    @property
    def source_path(self) -> Path | None:
        return getattr(self.source, "root", getattr(self.source, "path", None))


def masks_for_training(masks: Path | None, first_index: int, config: Any, section: str,
                       dataset: ClipDataset) -> ClipDataset:
    """The training set with the actor masks of ``masks`` (or the synthetic benchmark's), for a run's
    ``prepare_train_set`` hook."""
    return ActorMasks(resolve_mask_path(masks, config, section), first_index, section).wrap_train_set(dataset)


def batch_masks(extras: dict[str, Any] | None, clip: Tensor, who: str) -> Tensor:
    """``extras['actor_mask']`` of a batch, checked against the clip; a clear error when the batch has none."""
    mask = (extras or {}).get("actor_mask")
    if mask is None:
        raise ValueError(f"{who} needs the batch's actor masks (batch['actor_mask']): the training set must be "
                         "extended by the entry's prepare_train_set hook (ActorMaskDataset)")
    return mask.to(clip.device)


class ActorCutMixParams(BaseModel):
    """``method: {name: actorcutmix, masks: <folder or boxes CSV>, first_index: 1}``; ``masks`` unset on the
    synthetic benchmark: its exact masks."""

    model_config = ConfigDict(extra="forbid")
    masks: Path | None = None
    first_index: int = Field(default=1, ge=0)  # number of a video's first frame in mask names / box rows


def _actorcutmix_transform(clip: Tensor, labels: Tensor, generator: torch.Generator, prob: float,
                           extras: dict[str, Any] | None = None) -> MixedBatch:
    return actorcutmix(clip, labels, batch_masks(extras, clip, "method actorcutmix"), generator, prob)


@register_method("actorcutmix", params=ActorCutMixParams, default_prob=DEFAULT_PROB, mixes_labels=True)
def _actorcutmix(p: ActorCutMixParams) -> Callable[..., MixedBatch]:
    return _actorcutmix_transform


def _prepare_train_set(p: ActorCutMixParams, config: Any, dataset: ClipDataset) -> ClipDataset:
    return masks_for_training(p.masks, p.first_index, config, "method", dataset)


_actorcutmix.prepare_train_set = _prepare_train_set  # type: ignore[attr-defined]  (the run's hook: actor masks)
