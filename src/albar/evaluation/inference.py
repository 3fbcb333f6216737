"""Per-video inference from a self-describing checkpoint: top-5 with the static-bias probe, pooled features.

A checkpoint written by ``albar train`` records its resolved config, class names and preprocessing
(``albar.training.checkpoint.checkpoint_meta``), so ``predict``, ``eval`` and ``extract-features`` need only
``--checkpoint``. ``--config`` replaces the recorded config (a config file is read as a whole config, its
defaults filling what it omits), ``key=value`` overrides apply on top of either; a change to what the model
was trained with (frames, stride, sizes, mean/std, test view, number of classes) is warned about, since it
changes the results. Checkpoints from before (bare state dicts, or no ``config`` entry) need ``--config``.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from albar.config import ConfigError, TrainConfig, config_from_data, load_config
from albar.data.dataset import ClipDataset
from albar.data.io import ClipReadError
from albar.data.lists import ClipItem
from albar.models.registry import _head_path
from albar.objectives import static_clip
from albar.utils import torch_load

# data.* values recorded in a checkpoint that change what the model sees at test time
PREPROCESSING_KEYS = ("num_frames", "stride", "crop_size", "resize_short", "mean", "std", "test_view")
_OFFICIAL = ("hmdb51", "ucf101", "kinetics400")


def feature_extractor(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose classification layer is the identity: it returns pooled features."""
    model = copy.deepcopy(model)
    parent, attr = _head_path(model)
    setattr(parent, attr, nn.Identity())
    return model


def resolve_device(name: str = "auto") -> torch.device:
    """``auto``: the GPU when there is one, else the CPU; ``cpu``, ``cuda`` or ``cuda:N`` as asked, checked."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"--device {name}: not a device (auto, cpu, cuda or cuda:N)") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"--device {name}: no CUDA device is available here")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) here")
    elif device.type != "cpu":
        raise ValueError(f"--device {name}: use auto, cpu, cuda or cuda:N")
    return device


@dataclass
class CheckpointInfo:
    """A checkpoint file read once: its weights and what it records about itself (None when it does not)."""

    path: Path
    state: dict[str, Any]  # the loaded dict (a bare state dict for old weights files)
    config: dict[str, Any] | None
    classes: list[str] | None
    preprocessing: dict[str, Any] | None


def read_checkpoint(path: str | Path) -> CheckpointInfo:
    """Load ``path`` (weights only, onto the CPU) and its metadata; errors name the file."""
    path = Path(path)
    state = torch_load(path, "checkpoint")
    if not isinstance(state, dict):
        raise ValueError(f"{path} is not a checkpoint (a {type(state).__name__}, not a dict)")
    config = state.get("config") if isinstance(state.get("config"), dict) else None
    classes = state.get("classes")
    if classes is not None and not (isinstance(classes, (list, tuple)) and all(isinstance(c, str) for c in classes)):
        raise ValueError(f"{path}: 'classes' is not a list of class names")
    pre = state.get("preprocessing") if isinstance(state.get("preprocessing"), dict) else None
    return CheckpointInfo(path, state, config, list(classes) if classes else None, pre)


def resolve_config(
    info: CheckpointInfo, config_path: Path | None, overrides: Sequence[str] = ()
) -> tuple[TrainConfig, list[str]]:
    """The config to run ``info`` with, and warnings for every value that differs from what it recorded.

    ``config_path`` replaces the recorded config; ``overrides`` apply on top. A checkpoint without a record
    needs ``config_path`` (ConfigError otherwise)."""
    if config_path is not None:
        cfg = load_config(config_path, list(overrides))
    elif info.config is not None:
        cfg = config_from_data(info.config, list(overrides), source=f"{info.path} (its recorded config)")
    else:
        raise ConfigError(f"{info.path} does not record its config (written by an older albar, or a bare state "
                          "dict): pass --config with the config it was trained with")
    return cfg, mismatches(info, cfg)


def _plain(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))  # tuples -> lists, Paths -> str: comparable with the record


def mismatches(info: CheckpointInfo, cfg: TrainConfig) -> list[str]:
    """One line per preprocessing value or model.num_classes/name in ``cfg`` that differs from the record."""
    recorded_cfg = info.config or {}
    recorded = {**(recorded_cfg.get("data") or {}), **(info.preprocessing or {})}
    out = []
    for key in PREPROCESSING_KEYS:
        if key in recorded and _plain(getattr(cfg.data, key)) != _plain(recorded[key]):
            out.append(f"data.{key}={_plain(getattr(cfg.data, key))} but {info.path} was trained with "
                       f"{_plain(recorded[key])}: results will differ")
    model = recorded_cfg.get("model") or {}
    for key in ("name", "num_classes"):
        if key in model and getattr(cfg.model, key) != model[key]:
            out.append(f"model.{key}={getattr(cfg.model, key)} but {info.path} records {model[key]}")
    return out


def class_names(info: CheckpointInfo, cfg: TrainConfig) -> tuple[list[str] | None, str | None]:
    """(class names or None, a warning or None): the checkpoint's; for old checkpoints, the dataset's."""
    classes, note = info.classes, None
    if classes is None:
        d = cfg.data
        names_file = getattr(d, "classes", None) or (d.root / "classes.txt" if d.root is not None else None)
        try:
            if d.source in _OFFICIAL and d.splits is not None:
                from albar.data.build import official_classes

                classes = official_classes(d)  # from the split files (HMDB51, UCF101) or the CSV (K400)
            elif names_file is not None and (names_file.is_file() or getattr(d, "classes", None) is not None):
                from albar.data.datasets import read_classes

                classes = read_classes(names_file)
        except (OSError, ValueError) as err:  # names are a convenience here: say why they are missing
            note = f"class names unavailable ({err}); printing class indices"
            classes = None
    if classes is not None and len(classes) != cfg.model.num_classes:
        note = (f"{len(classes)} class names for model.num_classes={cfg.model.num_classes}; "
                "printing class indices")
        classes = None
    return classes, note


def clip_kwargs(cfg: TrainConfig) -> dict[str, Any]:
    """ClipDataset arguments for one deterministic test clip per video, as ``cfg`` preprocesses."""
    from albar.data.transforms import build_transform

    d = cfg.data
    mode = d.test_view if d.test_view in ("center", "first") else "center"  # one clip per video here
    return {"num_frames": d.num_frames, "stride": d.stride, "mode": mode, "seed": cfg.seed,
            "min_frames": d.min_frames,
            "transform": build_transform(False, d.crop_size, d.resize_short, d.train_crop, d.hflip, d.mean, d.std)}


def _videos(paths: Sequence[Path], dataset_kwargs: dict) -> ClipDataset:
    items = [ClipItem(source=Path(p), label=0, key=Path(p).stem) for p in paths]
    return ClipDataset(items, **dataset_kwargs)


@torch.no_grad()
def predict_videos(
    model: nn.Module, paths: Sequence[Path], dataset_kwargs: dict, classes: list[str] | None = None, k: int = 5,
    frame: str | int = "middle", device: torch.device | str = "cpu",
) -> list[dict]:
    """Top-k classes per video, and the same for the static version of its clip (one frame repeated).

    A video that cannot be read gets ``{"video": ..., "error": reason}`` in its place (never dropped)."""
    ds = _videos(paths, dataset_kwargs)
    model = model.to(device).eval()
    rows = []
    for i, path in enumerate(paths):
        try:
            clip = ds[i]["clip"][None].to(device)
        except ClipReadError as err:
            rows.append({"video": str(path), "error": err.reason})
            continue
        both = model(torch.cat([clip, static_clip(clip, frame)])).float().softmax(-1).cpu()
        entry: dict = {"video": str(path)}
        for name, probs in (("motion", both[0]), ("static", both[1])):
            p, idx = probs.topk(min(k, probs.numel()))
            entry[name] = [{"class": classes[j] if classes else int(j), "index": int(j), "prob": float(q)}
                           for q, j in zip(p.tolist(), idx.tolist())]
        rows.append(entry)
    return rows


def feature_targets(paths: Sequence[Path], out_dir: Path, overwrite: bool = False) -> list[Path]:
    """``out_dir/<path relative to the inputs' common folder>.npy`` per video: ``a/clip.mp4`` and
    ``b/clip.mp4`` keep apart. ValueError naming the inputs when two map to one file (the same video twice,
    or ``clip.mp4`` beside ``clip.avi``), or, without ``overwrite``, when a target exists already."""
    absolute = [Path(os.path.abspath(p)) for p in paths]  # abspath: symlinked videos keep their own names
    common = Path(os.path.commonpath([p.parent for p in absolute]))
    targets = [out_dir / p.relative_to(common).with_suffix(".npy") for p in absolute]
    first: dict[Path, Path] = {}
    for path, target in zip(paths, targets):
        if target in first:
            raise ValueError(f"{first[target]} and {path} would both write {target}; rename one, or run them "
                             "into different --out folders")
        first[target] = Path(path)
    existing = [t for t in targets if t.exists()]
    if existing and not overwrite:
        more = f" and {len(existing) - 1} more" if len(existing) > 1 else ""
        raise ValueError(f"{existing[0]}{more} exist already; pass --overwrite to replace them")
    return targets


@torch.no_grad()
def extract_features(
    model: nn.Module, paths: Sequence[Path], dataset_kwargs: dict, out_dir: Path,
    device: torch.device | str = "cpu", overwrite: bool = False,
) -> tuple[list[tuple[Path, Path]], list[tuple[Path, str]]]:
    """Pooled features (float32 ``.npy``) per video, at :func:`feature_targets`; written atomically.

    Returns ((video, file) per file written, (video, reason) per video that could not be read)."""
    from albar.utils import atomic_write

    targets = feature_targets(paths, out_dir, overwrite)
    net = feature_extractor(model).to(device).eval()
    ds = _videos(paths, dataset_kwargs)
    written, failed = [], []
    for i, (path, target) in enumerate(zip(paths, targets)):
        try:
            clip = ds[i]["clip"][None].to(device)
        except ClipReadError as err:
            failed.append((Path(path), err.reason))
            continue
        feats = net(clip).float().flatten(1)[0].cpu().numpy().astype(np.float32)

        def save(tmp: Path, f: np.ndarray = feats) -> None:
            with open(tmp, "wb") as fh:
                np.save(fh, f)

        atomic_write(target, save)
        written.append((Path(path), target))
    return written, failed
