"""FAME (Ding et al., CVPR 2022) as a supervised batch method: a clip's moving foreground on another clip's
background, the foreground clip's label kept.

The foreground mask needs no external model. Per clip:

1. motion map: |x_t - x_{t+1}| summed over channels, averaged over time, Gaussian-blurred, min-max normalised;
2. colour refinement: the pixels of the time-averaged clip are binned in HSV (10 x 10 x 10 bins over
   (s cos 2 pi h, s sin 2 pi h, v)); a foreground histogram from the 50% most moving pixels and a background
   histogram (+1 per bin) from the 10% least moving ones give p_fg / (p_fg + p_bg) per pixel, blurred and
   min-max normalised;
3. the top ``beta`` (0.5) of the pixels of that map are the foreground: one binary (H, W) mask per clip,
   shared by all its frames.

Then ``x'_i = m_i * x_i + (1 - m_i) * x_j`` with j != i; the label stays ``y_i``. This is the FameBlending
the StillMix benchmark ran for the FAME row of the paper's Table 1 (lihaoxin05/StillMix, itself the
blending of the FAME release, Mark12Ding/FAME), read, not copied. Differences, and why:

- Hue is taken as a fraction of a turn. Both releases feed kornia's hue (radians, 0..2 pi) into cos(2 pi h),
  which winds the colour wheel 2 pi times round and puts unrelated hues into one bin; the binning is
  evidently meant over one turn.
- The partner j is uniform over the OTHER clips (as StillMix's own random-frame blending draws it); the
  releases use a permutation, which leaves a clip on its own background (unchanged) now and then.
- Transformed clips keep their batch position (the StillMix port concatenates the transformed clips first);
  ``prob`` is a Bernoulli draw per clip, as everywhere in :mod:`albar.methods.batch`.
- Colours are recovered from the normalised clip with the data's ``mean``/``std`` (0..1 scale; the releases
  use 0..255) and clamped to [0, 1] before the HSV binning.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor

from albar.methods.batch import MixedBatch, _bcast, _check, _check_prob, _kept_labels, _select
from albar.methods.registry import Transform, register_method

BINS = 10  # per HSV axis, as in FAME
FG_SHARE = 0.5  # share of pixels (most moving) that sample the foreground colours
BG_SHARE = 0.1  # share of pixels (least moving) that sample the background colours
EPS = 1e-8


def blur_size(height: int, width: int) -> int:
    """FAME's Gaussian kernel: the odd size nearest below 10% of the frame (1, no blur, under 20 px)."""
    return int(0.1 * min(height, width)) // 2 * 2 + 1


def gaussian_blur(maps: Tensor, size: int) -> Tensor:
    """(N, H, W) maps blurred with a ``size`` x ``size`` Gaussian of sigma size / 3, reflected borders."""
    if size <= 1:
        return maps
    x = torch.arange(size, dtype=maps.dtype, device=maps.device) - (size - 1) / 2
    kernel = torch.exp(-(x**2) / (2 * (size / 3) ** 2))
    kernel = kernel / kernel.sum()
    pad = size // 2
    h, w = maps.shape[-2:]
    mode = "reflect" if pad < min(h, w) else "replicate"
    out = F.pad(maps.unsqueeze(1), (pad, pad, pad, pad), mode=mode)
    out = F.conv2d(out, kernel.view(1, 1, 1, size))
    out = F.conv2d(out, kernel.view(1, 1, size, 1))
    return out.squeeze(1)


def minmax(maps: Tensor) -> Tensor:
    """Each (H, W) map of (N, H, W) scaled to [0, 1] (a constant map becomes 0)."""
    flat = maps.flatten(1)
    flat = flat - flat.min(dim=1, keepdim=True).values
    flat = flat / (flat.max(dim=1, keepdim=True).values + EPS)
    return flat.view_as(maps)


def rgb_to_hsv(rgb: Tensor) -> Tensor:
    """(N, 3, H, W) RGB in [0, 1] -> HSV, each in [0, 1] (hue as a fraction of a turn)."""
    r, g, b = rgb.unbind(1)
    v, _ = rgb.max(dim=1)
    delta = v - rgb.min(dim=1).values
    s = delta / (v + EPS)
    d = torch.where(delta > 0, delta, torch.ones_like(delta))
    h = torch.where(v == r, (g - b) / d, torch.where(v == g, 2 + (b - r) / d, 4 + (r - g) / d))
    h = torch.where(delta > 0, (h / 6) % 1.0, torch.zeros_like(h))
    return torch.stack([h, s, v], dim=1)


def motion_map(rgb: Tensor) -> Tensor:
    """(B, H, W) in [0, 1]: where the clip (B, 3, T, H, W) changes between consecutive frames, blurred."""
    if rgb.shape[2] < 2:
        raise ValueError(f"FAME needs clips of at least 2 frames (its mask comes from frame differences), "
                         f"got {rgb.shape[2]}")
    diff = (rgb[:, :, 1:] - rgb[:, :, :-1]).abs().sum(dim=1).mean(dim=1)
    return minmax(gaussian_blur(diff, blur_size(*rgb.shape[-2:])))


def colour_bins(rgb: Tensor) -> Tensor:
    """(N, H*W) bin index in [0, BINS**3) of each pixel of (N, 3, H, W) RGB images, in FAME's HSV binning."""
    h, s, v = rgb_to_hsv(rgb.clamp(0, 1)).unbind(1)
    hx = (s * torch.cos(2 * math.pi * h) + 1) / 2
    hy = (s * torch.sin(2 * math.pi * h) + 1) / 2
    idx = [torch.round(c * (BINS - 1)).long().clamp(0, BINS - 1) for c in (hx, hy, v)]
    return (idx[0] + BINS * idx[1] + BINS * BINS * idx[2]).flatten(1)


def colour_refine(motion: Tensor, rgb_mean: Tensor, beta: float) -> Tensor:
    """Binary (B, H, W) foreground: the top ``beta`` of the pixels by colour likelihood of foreground.

    ``motion``: (B, H, W) motion map; ``rgb_mean``: (B, 3, H, W) time-averaged colours in [0, 1].
    """
    b, h, w = motion.shape
    n = h * w
    bins = colour_bins(rgb_mean)
    order = motion.reshape(b, n)
    fg_idx = torch.topk(order, k=max(1, int(FG_SHARE * n)), dim=1).indices
    bg_idx = torch.topk(order, k=max(1, int(BG_SHARE * n)), dim=1, largest=False).indices
    total = BINS**3
    hist_fg = torch.zeros(b, total, device=motion.device).scatter_add_(
        1, bins.gather(1, fg_idx), torch.ones(fg_idx.shape, device=motion.device))
    hist_bg = torch.ones(b, total, device=motion.device).scatter_add_(
        1, bins.gather(1, bg_idx), torch.ones(bg_idx.shape, device=motion.device))
    p_fg = (hist_fg / (hist_fg.sum(1, keepdim=True) + EPS)).gather(1, bins)
    p_bg = (hist_bg / hist_bg.sum(1, keepdim=True)).gather(1, bins)
    refined = minmax(gaussian_blur((p_fg / (p_fg + p_bg)).view(b, h, w), blur_size(h, w)))
    k = int(beta * n)
    mask = torch.zeros(b, n, dtype=torch.bool, device=motion.device)
    if k > 0:
        mask.scatter_(1, torch.topk(refined.reshape(b, n), k=k, dim=1).indices, True)
    return mask.view(b, h, w)


def unnormalise(clip: Tensor, mean: Sequence[float], std: Sequence[float]) -> Tensor:
    """A normalised (B, 3, T, H, W) clip back to colours in [0, 1] (float32)."""
    if clip.shape[1] != 3 or len(mean) != 3 or len(std) != 3:
        raise ValueError(f"FAME works on RGB clips with a 3-value mean and std; got {clip.shape[1]} channels, "
                         f"mean {list(mean)}, std {list(std)}")
    m = torch.tensor(mean, dtype=torch.float32, device=clip.device).view(1, 3, 1, 1, 1)
    s = torch.tensor(std, dtype=torch.float32, device=clip.device).view(1, 3, 1, 1, 1)
    return clip.float() * s + m


def fame_masks(clip: Tensor, beta: float = 0.5, mean: Sequence[float] = (0.485, 0.456, 0.406),
               std: Sequence[float] = (0.229, 0.224, 0.225)) -> Tensor:
    """FAME's binary foreground masks, (B, H, W), for a normalised (B, 3, T, H, W) clip."""
    if not 0.0 < beta < 1.0:
        raise ValueError(f"FAME beta (share of foreground pixels) must be in (0, 1), got {beta}")
    # float32 whatever the training's autocast: the mask is a top-k of blurred maps, half precision would tie it
    with torch.no_grad(), torch.autocast(clip.device.type, enabled=False):
        rgb = unnormalise(clip, mean, std)
        return colour_refine(motion_map(rgb), rgb.mean(dim=2).clamp(0, 1), beta)


def fame(
    clip: Tensor, labels: Tensor, generator: torch.Generator, beta: float = 0.5, prob: float = 0.5,
    mean: Sequence[float] = (0.485, 0.456, 0.406), std: Sequence[float] = (0.229, 0.224, 0.225),
) -> MixedBatch:
    """FAME: x'_i = m_i x_i + (1 - m_i) x_j, m_i the foreground of clip i, j != i uniform; label y_i kept.

    ``info``: ``mask`` (B, H, W) bool, every clip's foreground (also those left unchanged); ``mix_weight``, the
    share of clip i's own pixels (beta when transformed, 1 otherwise). Needs a batch of at least 2 clips.
    """
    _check(clip, labels)
    _check_prob(prob)
    b = clip.shape[0]
    if b < 2:
        raise ValueError(f"FAME pastes a clip's foreground on ANOTHER clip of the batch: it needs batch size >= 2, "
                         f"got {b}")
    masks = fame_masks(clip, beta, mean, std)
    partner = (torch.arange(b) + 1 + torch.randint(b - 1, (b,), generator=generator)) % b
    applied = _select(b, prob, generator)
    m = masks.to(clip.dtype)[:, None, None]
    mixed = m * clip + (1 - m) * clip[partner.to(clip.device)]
    out = torch.where(_bcast(applied, clip), mixed, clip)
    partner = torch.where(applied, partner, torch.arange(b))
    share = masks.flatten(1).float().mean(1).cpu()
    weight = torch.where(applied, share, torch.ones(b))
    return _kept_labels(clip, labels, out, applied, partner, {"mask": masks, "mix_weight": weight})


# ------------------------------------------------------------------------------------------ registration


class FAMEParams(BaseModel):
    """``method: {name: fame, beta: 0.5}``; ``mean``/``std``: the clips' normalisation (default: the run's
    ``data.mean``/``data.std``, which the colour statistics must undo)."""

    model_config = ConfigDict(extra="forbid")
    beta: float = Field(default=0.5, gt=0, lt=1)  # share of each frame kept as foreground
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None


@register_method("fame", params=FAMEParams, default_prob=0.5)  # StillMix's FAME config: prob_aug 0.5
def _fame(p: FAMEParams, config: Any = None) -> Transform:
    data = getattr(config, "data", None)
    mean = p.mean if p.mean is not None else getattr(data, "mean", None)
    std = p.std if p.std is not None else getattr(data, "std", None)
    if mean is None or std is None:
        raise ValueError("method fame: the clips' normalisation is unknown (FAME un-normalises them to colours); "
                         "set method.mean and method.std, or build it with config= the run's TrainConfig")
    return lambda clip, labels, generator, prob: fame(clip, labels, generator, beta=p.beta, prob=prob, mean=mean,
                                                      std=std)
