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
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from albar.config import ConfigError, TrainConfig, config_from_data, load_config
from albar.data.bundle import eval_dataset, official_classes
from albar.data.dataset import ClipDataset
from albar.data.layouts import read_classes
from albar.data.lists import ClipItem
from albar.data.views import ViewDataset
from albar.evaluation.predict import NothingReadable, evaluating, probabilities, run_model
from albar.models.registry import _head_path
from albar.objectives import static_clip
from albar.utils import atomic_write, torch_load

# data.* values recorded in a checkpoint that change what the model sees at test time
# what changes a test clip (train_crop and hflip, also recorded, only change training)
TEST_PREPROCESSING_KEYS = ("num_frames", "stride", "crop_size", "resize_short", "mean", "std", "test_view")


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

    @classmethod
    def from_state(cls, path: Path, state: dict[str, Any]) -> CheckpointInfo:
        """What ``state`` (a checkpoint or an exported model, read from ``path``) records; errors name the file."""
        config = state.get("config") if isinstance(state.get("config"), dict) else None
        classes = state.get("classes")
        if classes is not None and not (isinstance(classes, (list, tuple))
                                        and all(isinstance(c, str) for c in classes)):
            raise ValueError(f"{path}: 'classes' is not a list of class names")
        twice = sorted(c for c, n in Counter(classes or ()).items() if n > 1)
        if twice:
            raise ValueError(f"{path}: 'classes' names {', '.join(map(repr, twice))} more than once")
        pre = state.get("preprocessing") if isinstance(state.get("preprocessing"), dict) else None
        return cls(path, state, config, list(classes) if classes else None, pre)


def read_checkpoint(path: str | Path) -> CheckpointInfo:
    """Load ``path`` (weights only, onto the CPU) and its metadata; errors name the file."""
    path = Path(path)
    state = torch_load(path, "checkpoint")
    if not isinstance(state, dict):
        raise ValueError(f"{path} is not a checkpoint (a {type(state).__name__}, not a dict)")
    return CheckpointInfo.from_state(path, state)


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
    if info.classes is not None and len(info.classes) != cfg.model.num_classes:
        raise ValueError(f"{info.path} records {len(info.classes)} class names for model.num_classes="
                         f"{cfg.model.num_classes}: its predictions could not be named")
    return cfg, mismatches(info, cfg)


def _plain(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))  # tuples -> lists, Paths -> str: comparable with the record


def mismatches(info: CheckpointInfo, cfg: TrainConfig) -> list[str]:
    """One line per preprocessing value or model.num_classes/name in ``cfg`` that differs from the record."""
    recorded_cfg = info.config or {}
    recorded = {**(recorded_cfg.get("data") or {}), **(info.preprocessing or {})}
    out = []
    for key in TEST_PREPROCESSING_KEYS:
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
            if d.layout is not None and d.splits is not None:
                classes = official_classes(d)  # from the layout's files (HMDB51's splits, K400's CSV, ...)
            elif names_file is not None and (names_file.is_file() or getattr(d, "classes", None) is not None):
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
    """How ``predict``/``extract-features`` read videos: as ``cfg`` evaluates (test view, preprocessing), in
    batches of the evaluation batch size."""
    return {"data": cfg.data, "seed": cfg.seed, "batch_size": cfg.eval.batch_size or 2 * cfg.optim.batch_size}


def _videos(paths: Sequence[Path], dataset_kwargs: dict) -> ClipDataset | ViewDataset:
    items = [ClipItem(source=Path(p), label=0, key=str(i)) for i, p in enumerate(paths)]  # keys: one per input
    return eval_dataset(dataset_kwargs["data"], items, dataset_kwargs["seed"])


def _over_videos(fn: Callable[[Tensor], Tensor], then: Callable[[Tensor], Tensor] | None, paths: Sequence[Path],
                 dataset_kwargs: dict, device: torch.device | str) -> tuple[np.ndarray | None, dict[int, str]]:
    """(rows or None when no video can be read, reason by input index) through the one inference loop."""
    ds = _videos(paths, dataset_kwargs)
    try:
        out = run_model(fn, ds, None, dataset_kwargs["batch_size"], device=device, then=then)
    except NothingReadable as err:
        return None, err.reasons
    return out.rows, {int(k): reason for k, reason in out.errors.items()}


def _motion_and_static(model: nn.Module, frame: str | int) -> Callable[[Tensor], Tensor]:
    """(N, 2K): the logits of each clip beside those of its static version (one frame repeated), one forward."""
    def fn(clips: Tensor) -> Tensor:
        both = model(torch.cat([clips, static_clip(clips, frame)]))
        return torch.cat([both[: len(clips)], both[len(clips):]], dim=1)
    return fn


def _two_softmaxes(logits: Tensor) -> Tensor:
    k = logits.shape[1] // 2
    return torch.cat([probabilities(logits[:, :k]), probabilities(logits[:, k:])], dim=1)


@torch.no_grad()
def predict_videos(
    model: nn.Module, paths: Sequence[Path], dataset_kwargs: dict, classes: list[str] | None = None, k: int = 5,
    frame: str | int = "middle", device: torch.device | str = "cpu",
) -> list[dict]:
    """Top-k classes per video, and the same for the static version of its clip (one frame repeated); with a
    multi-view test view, each averaged over the views.

    A video that cannot be read gets ``{"video": ..., "error": reason}`` in its place (never dropped)."""
    model = model.to(device)
    with evaluating(model):
        rows, errors = _over_videos(_motion_and_static(model, frame), _two_softmaxes, paths, dataset_kwargs, device)
    out = []
    for i, path in enumerate(paths):
        if i in errors or rows is None:
            out.append({"video": str(path), "error": errors.get(i, "not read")})
            continue
        half = rows.shape[1] // 2
        entry: dict = {"video": str(path)}
        for name, probs in (("motion", torch.from_numpy(rows[i, :half])), ("static", torch.from_numpy(rows[i, half:]))):
            p, idx = probs.topk(min(k, probs.numel()))
            entry[name] = [{"class": classes[j] if classes else int(j), "index": int(j), "prob": float(q)}
                           for q, j in zip(p.tolist(), idx.tolist())]
        out.append(entry)
    return out


def feature_targets(paths: Sequence[Path], out_dir: Path, overwrite: bool = False) -> list[Path]:
    """``out_dir/<path relative to the working folder>.npy`` per video (relative to the inputs' common folder
    when some lie outside it): ``a/clip.mp4`` and ``b/clip.mp4`` keep apart, and a video lands in the same
    place whether it is extracted alone or with others. ValueError naming the inputs when two map to one file
    (the same video twice, or ``clip.mp4`` beside ``clip.avi``), or, without ``overwrite``, when a target
    exists already."""
    absolute = [Path(os.path.abspath(p)) for p in paths]  # abspath: symlinked videos keep their own names
    cwd = Path(os.path.abspath(os.getcwd()))
    inside = all(p.is_relative_to(cwd) for p in absolute)
    common = cwd if inside else Path(os.path.commonpath([p.parent for p in absolute]))
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
    """Pooled features (float32 ``.npy``; with a multi-view test view, the mean over the views) per video, at
    :func:`feature_targets`; written atomically.

    Returns ((video, file) per file written, (video, reason) per video that could not be read)."""
    targets = feature_targets(paths, out_dir, overwrite)
    net = feature_extractor(model).to(device).eval()
    rows, errors = _over_videos(lambda clips: net(clips).flatten(1), None, paths, dataset_kwargs, device)
    written, failed = [], []
    for i, (path, target) in enumerate(zip(paths, targets)):
        if i in errors or rows is None:
            failed.append((Path(path), errors.get(i, "not read")))
            continue
        feats = rows[i].astype(np.float32)

        def save(tmp: Path, f: np.ndarray = feats) -> None:
            with open(tmp, "wb") as fh:
                np.save(fh, f)

        atomic_write(target, save)
        written.append((Path(path), target))
    return written, failed
