"""Batch transformations: pure, seeded functions of (clips, labels) that return a :class:`MixedBatch`.

Conventions shared by every method:

- ``clip`` is float (B, C, T, H, W); ``labels`` is integer (B,). Outputs keep the batch ORDER: output
  ``i`` is always built from input clip ``i`` and ``target_a[i] == labels[i]``. (The official StillMix
  port in ALBAR reorders the clips and not the labels; nothing here reorders.)
- ``lam[i]`` weighs ``target_a[i]`` and ``1 - lam[i]`` weighs ``target_b[i]`` in
  :func:`mixed_cross_entropy`; label-preserving methods (none, BE, StillMix) return lam = 1 and
  ``target_b = target_a``.
- ``prob``: each sample is transformed independently with this probability (a Bernoulli draw per
  sample, as the mmaction2 blendings' ``prob_aug``); the others pass through unchanged with lam = 1.
  ``prob = 1`` transforms every sample (the official ALBAR StillMix path crashes there).
- All randomness comes from ``generator`` (a CPU ``torch.Generator``); draws are made on the CPU and
  moved to the clip's device, so a seed gives the same batch on any device.
- Mixing coefficients are drawn once per batch (one lambda, one box), as the mmaction2 / StillMix
  blendings that produced the paper's Table 1 baselines do; per-sample draws choose partners and frames.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass
class MixedBatch:
    """A transformed batch and its (possibly mixed) targets.

    ``applied[i]``: whether sample ``i`` was transformed. ``partner[i]``: the batch index whose pixels
    were mixed into sample ``i`` (``i`` itself for BE and untouched samples, -1 for a frame-bank frame).
    ``info``: per-sample details for logging and tests (``mix_weight``: weight of the clip's own pixels;
    ``frame_index``: which frame was mixed in; ``bank_index``; ``box`` as (y1, y2, x1, x2)).
    """

    clip: Tensor
    target_a: Tensor
    target_b: Tensor
    lam: Tensor
    applied: Tensor
    partner: Tensor
    info: dict[str, Tensor] = field(default_factory=dict)


def mixed_cross_entropy(logits: Tensor, batch: MixedBatch) -> Tensor:
    """Batch mean of lam * CE(logits, target_a) + (1 - lam) * CE(logits, target_b), per sample.

    Equals cross-entropy against the soft label lam * onehot(a) + (1 - lam) * onehot(b), which is what
    the mmaction2 blendings train with; with lam = 1 everywhere it is plain cross-entropy.
    """
    if logits.shape[0] != batch.lam.shape[0]:
        raise ValueError(f"logits have batch size {logits.shape[0]} but the batch has {batch.lam.shape[0]} samples")
    lam = batch.lam.to(device=logits.device, dtype=torch.promote_types(logits.dtype, torch.float32))
    ce_a = F.cross_entropy(logits, batch.target_a.to(logits.device), reduction="none")
    ce_b = F.cross_entropy(logits, batch.target_b.to(logits.device), reduction="none")
    return (lam * ce_a + (1 - lam) * ce_b).mean()


# --------------------------------------------------------------------------------------------- helpers


def _check(clip: Tensor, labels: Tensor) -> None:
    if clip.dim() != 5:
        raise ValueError(f"clip must be (B, C, T, H, W), got shape {tuple(clip.shape)}")
    if not clip.is_floating_point():
        raise ValueError(f"clip must be a float tensor, got dtype {clip.dtype}")
    if labels.dim() != 1 or labels.shape[0] != clip.shape[0]:
        raise ValueError(f"labels must be (B,) with B = {clip.shape[0]}, got shape {tuple(labels.shape)}")
    if labels.is_floating_point() or labels.is_complex():
        raise ValueError(f"labels must be integer class indices, got dtype {labels.dtype}")


def _check_prob(prob: float) -> None:
    if not 0.0 <= prob <= 1.0:
        raise ValueError(f"prob must be in [0, 1], got {prob}")


def _beta(a: float, b: float, generator: torch.Generator) -> float:
    """One Beta(a, b) draw, reproducible from ``generator`` (torch's Beta sampler takes no generator)."""
    if a <= 0 or b <= 0:
        raise ValueError(f"Beta parameters must be positive, got ({a}, {b})")
    seed = int(torch.randint(0, 2**62, (1,), generator=generator).item())
    return float(np.random.default_rng(seed).beta(a, b))


def _uniform(generator: torch.Generator) -> float:
    return float(torch.rand((), generator=generator).item())


def _select(batch_size: int, prob: float, generator: torch.Generator) -> Tensor:
    """Bernoulli(prob) per sample; prob = 1 selects all (rand is in [0, 1)), prob = 0 none."""
    _check_prob(prob)
    return torch.rand(batch_size, generator=generator) < prob


def _bcast(mask: Tensor, clip: Tensor) -> Tensor:
    return mask.to(clip.device).view(-1, *([1] * (clip.dim() - 1)))


def _kept_labels(
    clip: Tensor, labels: Tensor, out: Tensor, applied: Tensor, partner: Tensor, info: dict[str, Tensor],
) -> MixedBatch:
    """A label-preserving result: lam = 1, both targets are the clip's own label."""
    return MixedBatch(
        clip=out, target_a=labels, target_b=labels, lam=torch.ones(clip.shape[0], device=labels.device),
        applied=applied, partner=partner, info=info,
    )


def _frames(clip: Tensor, batch_index: Tensor, frame_index: Tensor) -> Tensor:
    """clip[batch_index[i], :, frame_index[i]] for every i: (B, C, H, W)."""
    return clip[batch_index.to(clip.device), :, frame_index.to(clip.device)]


# --------------------------------------------------------------------------------------------- methods


def identity(clip: Tensor, labels: Tensor, generator: torch.Generator | None = None) -> MixedBatch:
    """The "None" baseline: the batch as it is."""
    _check(clip, labels)
    b = clip.shape[0]
    return _kept_labels(clip, labels, clip, torch.zeros(b, dtype=torch.bool), torch.arange(b), {})


def mixup(
    clip: Tensor, labels: Tensor, generator: torch.Generator, alpha: float = 0.2, prob: float = 1.0,
) -> MixedBatch:
    """Mixup (Zhang et al. 2018) on whole clips: x' = lam x + (1 - lam) x[perm], lam ~ Beta(alpha, alpha).

    One lam and one random permutation per batch (mmaction2's MixupBlending, alpha 0.2). A sample that
    the permutation maps to itself is mixed with itself (both targets equal), as in mmaction2.
    """
    _check(clip, labels)
    b = clip.shape[0]
    lam = _beta(alpha, alpha, generator)
    perm = torch.randperm(b, generator=generator)
    applied = _select(b, prob, generator)
    mixed = lam * clip + (1 - lam) * clip[perm.to(clip.device)]
    out = torch.where(_bcast(applied, clip), mixed, clip)
    partner = torch.where(applied, perm, torch.arange(b))
    lam_t = torch.where(applied, torch.tensor(lam), torch.tensor(1.0)).to(labels.device)
    return MixedBatch(
        clip=out, target_a=labels, target_b=labels[partner.to(labels.device)], lam=lam_t,
        applied=applied, partner=partner, info={"mix_weight": lam_t.clone()},
    )


def videomix_box(height: int, width: int, lam: float, generator: torch.Generator) -> tuple[int, int, int, int]:
    """CutMix box (y1, y2, x1, x2) covering about 1 - lam of the frame, centre uniform, clipped to the frame."""
    cut = float(np.sqrt(1.0 - lam))
    ch, cw = int(height * cut), int(width * cut)
    cy = int(torch.randint(height, (1,), generator=generator).item())
    cx = int(torch.randint(width, (1,), generator=generator).item())
    y1, y2 = max(cy - ch // 2, 0), min(cy - ch // 2 + ch, height)
    x1, x2 = max(cx - cw // 2, 0), min(cx - cw // 2 + cw, width)
    return y1, max(y1, y2), x1, max(x1, x2)


def videomix(
    clip: Tensor, labels: Tensor, generator: torch.Generator, alpha: float = 1.0, prob: float = 1.0,
) -> MixedBatch:
    """VideoMix (Yun et al. 2020), spatial variant: CutMix with one box for every frame of the clip.

    lam ~ Beta(alpha, alpha) sets the box area (1 - lam of the frame); the box is clipped to the frame and
    lam is then CORRECTED to the area actually kept, lam = 1 - box_area / (H W), so the label weights
    equal the pixel fractions. One box and one permutation per batch (mmaction2's CutmixBlending).
    """
    _check(clip, labels)
    b, _, _, h, w = clip.shape
    lam0 = _beta(alpha, alpha, generator)
    perm = torch.randperm(b, generator=generator)
    y1, y2, x1, x2 = videomix_box(h, w, lam0, generator)
    applied = _select(b, prob, generator)
    lam = 1.0 - (y2 - y1) * (x2 - x1) / float(h * w)
    mixed = clip.clone()
    mixed[..., y1:y2, x1:x2] = clip[perm.to(clip.device)][..., y1:y2, x1:x2]
    out = torch.where(_bcast(applied, clip), mixed, clip)
    partner = torch.where(applied, perm, torch.arange(b))
    lam_t = torch.where(applied, torch.tensor(lam), torch.tensor(1.0)).to(labels.device)
    box = torch.tensor([y1, y2, x1, x2]).expand(b, 4).clone()
    return MixedBatch(
        clip=out, target_a=labels, target_b=labels[partner.to(labels.device)], lam=lam_t,
        applied=applied, partner=partner, info={"mix_weight": lam_t.clone(), "box": box},
    )


def background_erasing(
    clip: Tensor, labels: Tensor, generator: torch.Generator, max_weight: float = 0.3, prob: float = 1.0,
) -> MixedBatch:
    """Background Erasing (Wang et al., CVPR 2021): add a random frame of the SAME clip to all its frames.

    x' = (1 - a) x + a x[:, t], a ~ U(0, max_weight) once per batch, t uniform per clip; label kept. The
    formula and a ~ 0.3 * Beta(1, 1) follow the BEIntraBlending that the StillMix benchmark ran for the
    BE row of Table 1 (the static frame acts as a distracting background the model must ignore).
    """
    _check(clip, labels)
    if not 0.0 < max_weight <= 1.0:
        raise ValueError(f"max_weight must be in (0, 1], got {max_weight}")
    b, _, t = clip.shape[:3]
    a = max_weight * _uniform(generator)
    frame_index = torch.randint(t, (b,), generator=generator)
    applied = _select(b, prob, generator)
    own = torch.arange(b)
    frames = _frames(clip, own, frame_index).unsqueeze(2)
    mixed = (1 - a) * clip + a * frames
    out = torch.where(_bcast(applied, clip), mixed, clip)
    weight = torch.where(applied, torch.tensor(1.0 - a), torch.tensor(1.0))
    return _kept_labels(clip, labels, out, applied, own, {"mix_weight": weight, "frame_index": frame_index})


def _stillmix_weight(alpha: tuple[float, float], generator: torch.Generator) -> float:
    if len(alpha) != 2:
        raise ValueError(f"stillmix alpha must be two numbers (a1, a2), got {alpha!r}")
    return _beta(float(alpha[0]), float(alpha[1]), generator)


def stillmix(
    clip: Tensor, labels: Tensor, generator: torch.Generator, alpha: tuple[float, float] = (200.0, 200.0),
    prob: float = 0.5,
) -> MixedBatch:
    """StillMix (Li et al., ICCV 2023), random-frame variant: mix a frame of ANOTHER clip into every frame.

    x'_i = lam x_i + (1 - lam) x_j[:, t], with j != i uniform over the rest of the batch, t uniform over
    j's frames, lam ~ Beta(200, 200) once per batch; the LABEL IS KEPT (y_i): the still frame carries
    another clip's scene, so the model must not rely on it. This is StillMixRandomBlending of the official
    StillMix code (lihaoxin05/StillMix), without its reordering. Needs a batch of at least 2 clips.
    """
    _check(clip, labels)
    _check_prob(prob)
    b, _, t = clip.shape[:3]
    if b < 2:
        raise ValueError(
            f"stillmix (random frame) mixes in a frame of ANOTHER clip of the batch, so it needs batch size >= 2, "
            f"got {b}; use stillmix_source='bank' for batches of one"
        )
    lam = _stillmix_weight(alpha, generator)
    partner = (torch.arange(b) + 1 + torch.randint(b - 1, (b,), generator=generator)) % b
    frame_index = torch.randint(t, (b,), generator=generator)
    applied = _select(b, prob, generator)
    frames = _frames(clip, partner, frame_index).unsqueeze(2)
    mixed = lam * clip + (1 - lam) * frames
    out = torch.where(_bcast(applied, clip), mixed, clip)
    partner = torch.where(applied, partner, torch.arange(b))
    weight = torch.where(applied, torch.tensor(lam), torch.tensor(1.0))
    return _kept_labels(clip, labels, out, applied, partner, {"mix_weight": weight, "frame_index": frame_index})


def stillmix_frames(
    clip: Tensor, labels: Tensor, frames: Tensor, generator: torch.Generator,
    alpha: tuple[float, float] = (200.0, 200.0), prob: float = 0.5,
) -> MixedBatch:
    """StillMix with the still frames given, frame-bank variant: x'_i = lam x_i + (1 - lam) bank[k_i].

    ``frames``: (N, C, h, w), in the same (normalised) space as the clips, resized bilinearly to the
    clip's H x W if needed. k_i uniform over the N frames, lam ~ Beta(alpha) once per batch; label kept.
    """
    _check(clip, labels)
    _check_prob(prob)
    if frames.dim() != 4 or frames.shape[0] < 1:
        raise ValueError(f"bank frames must be (N >= 1, C, H, W), got shape {tuple(frames.shape)}")
    b, c, _, h, w = clip.shape
    if frames.shape[1] != c:
        raise ValueError(f"bank frames have {frames.shape[1]} channels but the clips have {c}")
    lam = _stillmix_weight(alpha, generator)
    bank_index = torch.randint(frames.shape[0], (b,), generator=generator)
    applied = _select(b, prob, generator)
    picked = frames[bank_index.to(frames.device)].to(device=clip.device, dtype=clip.dtype)
    if picked.shape[-2:] != (h, w):
        picked = F.interpolate(picked, size=(h, w), mode="bilinear", align_corners=False, antialias=True)
    mixed = lam * clip + (1 - lam) * picked.unsqueeze(2)
    out = torch.where(_bcast(applied, clip), mixed, clip)
    partner = torch.where(applied, torch.tensor(-1), torch.arange(b))
    weight = torch.where(applied, torch.tensor(lam), torch.tensor(1.0))
    return _kept_labels(clip, labels, out, applied, partner, {"mix_weight": weight, "bank_index": bank_index})
