"""StillMix's frame bank: frames that a 2D reference network, trained on single frames, finds confident.

A 2D network sees one frame and no motion, so whatever it classifies confidently is recognisable from
static appearance alone: the frames most likely to carry the scene/object bias. StillMix (Li et al.,
ICCV 2023) mixes such frames into training clips while keeping each clip's own label. Three steps:

1. :func:`train_reference_network`: a 2D classifier on single random frames of the training clips
   (official: ResNet-50 / 2D Swin on random frames of each training video, video label as target).
2. :func:`build_frame_bank`: score every frame of every clip of a dataset (official: every frame of
   the training list), keep the confident ones, store them (in the clips' normalised space).
3. :func:`albar.methods.batch.stillmix_frames` mixes frames drawn uniformly from the bank.

Selection (``selection``): ``quantile`` (default, the official HMDB51/UCF101/K400 configs'
``sorted_prop_pred`` with ``prob_thre = [0.1, 1.0]``: sort all frames by confidence, drop the least
confident 10%, draw ``size`` frames at random from the rest); ``top`` (the ``size`` most confident
frames); ``threshold`` (frames with confidence >= ``threshold``, ``size`` of them at random). Confidence
(``score``): ``pred``, the top softmax probability (official configs), or ``gt``, the probability of the
clip's own label.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, Subset

from albar.models.registry import replace_head
from albar.utils import torch_load, torch_save

BANK_FORMAT = "albar.frame_bank"
BANK_VERSION = 1
Selection = Literal["quantile", "top", "threshold"]
ScoreKind = Literal["pred", "gt"]


class TinyFrameNet(nn.Module):
    """A small 2D CNN (Conv2d + GroupNorm + ReLU, global pool, linear): a CPU-sized reference network."""

    def __init__(self, num_classes: int, widths: Sequence[int] = (16, 32, 64), in_channels: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_channels
        for out in widths:
            layers += [nn.Conv2d(channels, out, 3, stride=2, padding=1, bias=False), nn.GroupNorm(min(8, out), out),
                       nn.ReLU(inplace=True)]
            channels = out
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.features(x).mean(dim=(2, 3)))


def build_reference_model(name: str, num_classes: int, weights: str | None = None) -> nn.Module:
    """``tiny2d`` (:class:`TinyFrameNet`) or a torchvision image classifier (``resnet18``, ``resnet50``, ...).

    ``weights``: a torchvision weights name (e.g. ``IMAGENET1K_V1``, the paper's reference networks are
    ImageNet-pretrained); the classification layer is then replaced by a fresh one of ``num_classes``.
    """
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes}")
    if name == "tiny2d":
        if weights:
            raise ValueError(f"reference model 'tiny2d' has no pretrained weights, got weights={weights!r}")
        return TinyFrameNet(num_classes)
    from torchvision import models

    if name not in models.list_models(module=models):
        raise ValueError(f"unknown reference model {name!r}; use 'tiny2d' or a torchvision classifier name")
    if not weights:
        return models.get_model(name, weights=None, num_classes=num_classes)
    return replace_head(models.get_model(name, weights=weights), num_classes)


def _loader(dataset: Dataset, batch_size: int, num_workers: int, generator: torch.Generator | None = None,
            shuffle: bool = False) -> DataLoader:
    # Training drops a ragged last batch (a batch of one breaks BatchNorm in torchvision's 2D models),
    # unless the whole dataset is smaller than one batch.
    drop_last = shuffle and len(dataset) > batch_size  # type: ignore[arg-type]
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, num_workers=num_workers, generator=generator,
                      drop_last=drop_last)


def train_reference_network(
    dataset: Dataset,
    num_classes: int,
    model: str | nn.Module = "tiny2d",
    epochs: int = 3,
    batch_size: int = 32,
    lr: float = 1e-3,
    weight_decay: float = 1e-4,
    frames_per_clip: int = 1,
    seed: int = 0,
    weights: str | None = None,
    device: str | torch.device = "cpu",
    num_workers: int = 0,
) -> nn.Module:
    """Train a 2D classifier on single frames: ``frames_per_clip`` random frames of each clip per epoch.

    ``dataset`` yields ``{"clip": (C, T, H, W), "label": int}`` (a training :class:`~albar.data.ClipDataset`
    with its training transform: crops and flips then vary per epoch). AdamW, cross-entropy; frame choice,
    shuffling and initialisation come from ``seed`` without touching the global RNG. Returns the model in
    eval mode.
    """
    if epochs < 1 or batch_size < 1 or frames_per_clip < 1:
        raise ValueError(
            f"epochs, batch_size and frames_per_clip must be >= 1, got {epochs}, {batch_size}, {frames_per_clip}"
        )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = build_reference_model(model, num_classes, weights) if isinstance(model, str) else model
    net = net.to(device)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=weight_decay)
    g = torch.Generator().manual_seed(seed)
    for epoch in range(epochs):
        if hasattr(dataset, "set_epoch"):
            dataset.set_epoch(epoch)
        net.train()
        for batch in _loader(dataset, batch_size, num_workers, g, shuffle=True):
            clip, label = batch["clip"], torch.as_tensor(batch["label"])
            b, _, t = clip.shape[:3]
            idx = torch.randint(t, (b, frames_per_clip), generator=g)
            frames = clip[torch.arange(b).unsqueeze(1), :, idx].flatten(0, 1)  # (B * k, C, H, W)
            target = label.repeat_interleave(frames_per_clip)
            loss = F.cross_entropy(net(frames.to(device)), target.to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return net.eval()


@dataclass
class FrameScores:
    """Confidence of the reference network on every frame of a dataset, one row per (clip, frame)."""

    video_index: Tensor  # (N,) dataset index
    frame_index: Tensor  # (N,) frame within the clip
    label: Tensor  # (N,) the clip's label
    pred: Tensor  # (N,) argmax class
    p_pred: Tensor  # (N,) top softmax probability
    p_gt: Tensor  # (N,) probability of the clip's label

    def confidence(self, kind: ScoreKind) -> Tensor:
        if kind == "pred":
            return self.p_pred
        if kind == "gt":
            return self.p_gt
        raise ValueError(f"score must be 'pred' or 'gt', got {kind!r}")


@torch.no_grad()
def _classify_frames(net: nn.Module, clip: Tensor, device: str | torch.device) -> Tensor:
    """Softmax of ``net`` on every frame of (B, C, T, H, W): (B, T, classes)."""
    b, c, t, h, w = clip.shape
    frames = clip.transpose(1, 2).reshape(b * t, c, h, w).to(device)
    return F.softmax(net(frames).float(), dim=-1).reshape(b, t, -1).cpu()


@torch.no_grad()
def score_frames(
    net: nn.Module, dataset: Dataset, batch_size: int = 16, device: str | torch.device = "cpu", num_workers: int = 0,
) -> FrameScores:
    """Score every frame of every clip of ``dataset`` with the reference network (in eval mode).

    ``dataset`` yields ``{"clip": (C, T, H, W), "label": int, "index": int}`` (a :class:`~albar.data.ClipDataset`);
    to score every frame of a video, give it ``num_frames`` covering the video and ``stride`` 1.
    """
    net.eval()
    rows: dict[str, list[Tensor]] = {k: [] for k in ("video_index", "frame_index", "label", "pred", "p_pred", "p_gt")}
    for batch in _loader(dataset, batch_size, num_workers):
        probs = _classify_frames(net, batch["clip"], device)
        b, t, _ = probs.shape
        label = torch.as_tensor(batch["label"]).long()
        index = torch.as_tensor(batch["index"]).long()
        p_pred, pred = probs.max(dim=-1)
        rows["video_index"].append(index.repeat_interleave(t))
        rows["frame_index"].append(torch.arange(t).repeat(b))
        rows["label"].append(label.repeat_interleave(t))
        rows["pred"].append(pred.flatten())
        rows["p_pred"].append(p_pred.flatten())
        rows["p_gt"].append(probs.gather(2, label.view(b, 1, 1).expand(b, t, 1)).flatten())
    return FrameScores(**{k: torch.cat(v) for k, v in rows.items()})


def select_frames(
    confidence: Tensor, size: int, selection: Selection = "quantile", quantile: tuple[float, float] = (0.1, 1.0),
    threshold: float | None = None, generator: torch.Generator | None = None,
) -> Tensor:
    """Row indices of the bank (at most ``size``) among frames with these confidences; see the module doc."""
    n = confidence.shape[0]
    if size < 1:
        raise ValueError(f"bank size must be >= 1, got {size}")
    if selection == "top":
        return torch.argsort(confidence, descending=True, stable=True)[:size]
    if selection == "quantile":
        lo, hi = quantile
        if not 0.0 <= lo < hi <= 1.0:
            raise ValueError(f"quantile must be (lo, hi) with 0 <= lo < hi <= 1, got {quantile}")
        candidates = torch.argsort(confidence, stable=True)[int(lo * n):int(hi * n)]
    elif selection == "threshold":
        if threshold is None or not 0.0 <= threshold <= 1.0:
            raise ValueError(f"selection 'threshold' needs threshold in [0, 1], got {threshold}")
        candidates = torch.nonzero(confidence >= threshold).flatten()
    else:
        raise ValueError(f"selection must be 'quantile', 'top' or 'threshold', got {selection!r}")
    if candidates.numel() == 0:
        raise ValueError(f"no frame passes the {selection} selection (of {n} frames); lower the threshold")
    pick = torch.randperm(candidates.numel(), generator=generator)[:size]
    return candidates[pick]


@dataclass
class FrameBank:
    """Bank frames (N, C, H, W), in the same normalised space as the clips they are mixed into, plus
    where each frame came from and how confident the reference network was on it."""

    frames: Tensor
    label: Tensor
    pred: Tensor
    score: Tensor
    video_index: Tensor
    frame_index: Tensor
    keys: list[str] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return self.frames.shape[0]


def build_frame_bank(
    net: nn.Module,
    dataset: Dataset,
    size: int = 1024,
    selection: Selection = "quantile",
    quantile: tuple[float, float] = (0.1, 1.0),
    threshold: float | None = None,
    score: ScoreKind = "pred",
    seed: int = 0,
    batch_size: int = 16,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float16,
    num_workers: int = 0,
) -> FrameBank:
    """Score all frames of ``dataset``, select the bank, and collect its frames (stored as ``dtype``).

    Two passes (scores first, then only the selected clips), so memory is the bank's, not the dataset's.
    ``dataset`` must be deterministic (an evaluation transform: centre crop, no flip, clip mode
    ``center``); the second pass re-scores the collected frames and raises if they changed.
    """
    scores = score_frames(net, dataset, batch_size, device, num_workers)
    conf = scores.confidence(score)
    rows = select_frames(conf, size, selection, quantile, threshold, torch.Generator().manual_seed(seed))
    rows = rows[torch.argsort(scores.video_index[rows] * (int(scores.frame_index.max()) + 1)
                              + scores.frame_index[rows], stable=True)]
    videos = torch.unique(scores.video_index[rows]).tolist()
    gathered: dict[tuple[int, int], Tensor] = {}
    keys_of: dict[int, str] = {}
    needed = {(int(v), int(f)) for v, f in zip(scores.video_index[rows], scores.frame_index[rows])}
    with torch.no_grad():
        for batch in _loader(Subset(dataset, videos), batch_size, num_workers):
            clip = batch["clip"]
            for i, vi in enumerate(torch.as_tensor(batch["index"]).tolist()):
                keys_of[vi] = batch["key"][i] if "key" in batch else str(vi)
                for fi in range(clip.shape[2]):
                    if (vi, fi) in needed:
                        gathered[(vi, fi)] = clip[i, :, fi]
    order = [(int(v), int(f)) for v, f in zip(scores.video_index[rows], scores.frame_index[rows])]
    frames = torch.stack([gathered[k] for k in order])
    check = _classify_frames(net, frames.unsqueeze(2), device)[:, 0]
    again = check.max(-1).values if score == "pred" else check.gather(1, scores.label[rows].view(-1, 1)).flatten()
    if not torch.allclose(again, conf[rows], atol=1e-3):
        raise RuntimeError(
            "the dataset returned different frames on the second pass (random crop, flip or clip start?); "
            "build the bank from a dataset with an evaluation transform and clip mode 'center'"
        )
    meta = {
        "format": BANK_FORMAT, "version": BANK_VERSION, "selection": selection, "quantile": list(quantile),
        "threshold": threshold, "score": score, "size": size, "seed": seed, "num_scored": int(conf.numel()),
        "num_classes": int(check.shape[-1]),
    }
    return FrameBank(
        frames=frames.to(dtype), label=scores.label[rows], pred=scores.pred[rows], score=conf[rows],
        video_index=scores.video_index[rows], frame_index=scores.frame_index[rows],
        keys=[keys_of[v] for v, _ in order], meta=meta,
    )


_TENSORS = ("frames", "label", "pred", "score", "video_index", "frame_index")


def save_frame_bank(bank: FrameBank, path: str | Path) -> None:
    """Write the bank as one .pt file (tensors, keys and metadata), atomically."""
    state = {k: getattr(bank, k).contiguous() for k in _TENSORS}
    state.update(keys=list(bank.keys), meta={**bank.meta, "format": BANK_FORMAT, "version": BANK_VERSION})
    torch_save(path, state)


def load_frame_bank(path: str | Path) -> FrameBank:
    """Read a bank written by :func:`save_frame_bank` (``weights_only`` loading), validating its fields."""
    path = Path(path)
    state = torch_load(path, "frame bank")
    meta = state.get("meta") if isinstance(state, dict) else None
    if not isinstance(meta, dict) or meta.get("format") != BANK_FORMAT:
        raise ValueError(f"{path} is not an albar frame bank (meta.format != {BANK_FORMAT!r})")
    if meta.get("version") != BANK_VERSION:
        raise ValueError(f"{path}: frame bank version {meta.get('version')!r}, this code reads {BANK_VERSION}")
    missing = [k for k in (*_TENSORS, "keys") if k not in state]
    if missing:
        raise ValueError(f"{path}: frame bank lacks {missing}")
    frames = state["frames"]
    if not isinstance(frames, Tensor) or frames.dim() != 4 or frames.shape[0] < 1:
        raise ValueError(f"{path}: 'frames' must be a non-empty (N, C, H, W) tensor")
    n = frames.shape[0]
    bad = [k for k in _TENSORS[1:] if not isinstance(state[k], Tensor) or tuple(state[k].shape) != (n,)]
    if bad:
        raise ValueError(f"{path}: fields {bad} must be tensors of shape ({n},)")
    return FrameBank(**{k: state[k] for k in _TENSORS}, keys=list(state["keys"]), meta=meta)
