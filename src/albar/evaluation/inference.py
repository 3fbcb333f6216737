"""Per-video inference: top-5 with the static-bias probe, and pooled backbone features."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import torch
from torch import nn

from albar.data.dataset import ClipDataset
from albar.data.lists import ClipItem
from albar.models.registry import _head_path
from albar.objectives import static_clip


def feature_extractor(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose classification layer is the identity: it returns pooled features."""
    model = copy.deepcopy(model)
    parent, attr = _head_path(model)
    setattr(parent, attr, nn.Identity())
    return model


def _videos(paths: list[Path], dataset_kwargs: dict) -> ClipDataset:
    items = [ClipItem(source=Path(p), label=0, key=Path(p).stem) for p in paths]
    return ClipDataset(items, **dataset_kwargs)


@torch.no_grad()
def predict_videos(
    model: nn.Module, paths: list[Path], dataset_kwargs: dict, classes: list[str] | None = None, k: int = 5,
    frame: str | int = "middle",
) -> list[dict]:
    """Top-k classes per video, and the same for the static version of its clip (one frame repeated)."""
    ds = _videos(paths, dataset_kwargs)
    model.eval()
    rows = []
    for i, path in enumerate(paths):
        clip = ds[i]["clip"][None]
        both = model(torch.cat([clip, static_clip(clip, frame)])).float().softmax(-1)
        entry: dict = {"video": str(path)}
        for name, probs in (("motion", both[0]), ("static", both[1])):
            p, idx = probs.topk(min(k, probs.numel()))
            entry[name] = [{"class": classes[j] if classes else int(j), "index": int(j), "prob": float(q)}
                           for q, j in zip(p.tolist(), idx.tolist())]
        rows.append(entry)
    return rows


@torch.no_grad()
def extract_features(model: nn.Module, paths: list[Path], dataset_kwargs: dict, out_dir: Path) -> list[Path]:
    """One ``<stem>.npy`` of pooled features (float32) per video in ``out_dir``."""
    from albar.utils import atomic_write

    net = feature_extractor(model).eval()
    ds = _videos(paths, dataset_kwargs)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for i, path in enumerate(paths):
        feats = net(ds[i]["clip"][None]).float().flatten(1)[0].numpy().astype(np.float32)
        target = out_dir / f"{Path(path).stem}.npy"
        atomic_write(target, lambda tmp, f=feats: np.save(open(tmp, "wb"), f))
        written.append(target)
    return written
