"""``albar scene-labels``: per-video scene pseudo-labels for SDN, from any torchvision image classifier.

SDN's scene-adversarial head learns the scene each training video shows, as a scene classifier sees it (the
paper: a Places365 ResNet). This runs a torchvision image classifier on a few frames of every training video
(the ``data`` section of a config: the same items, and keys, a run trains on) and writes the mean softmax::

    key,<class 0>,<class 1>,...        (soft, the default; --hard writes key,scene with the argmax)

Weights: a torchvision weights name (``DEFAULT``, ``IMAGENET1K_V1``...; downloaded where the internet is), a
local file (a state dict, or a checkpoint with ``state_dict``/``model``: e.g. the Places365 ResNet-18, with
``--num-classes 365 --classes categories_places365.txt``), or none (random weights: for tests only).
Frames: resized (short side), centre-cropped, normalised with ImageNet's mean and std.
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, help="YAML config whose data section names the training videos")
    p.add_argument("overrides", nargs="*", metavar="key.sub=value", help="config overrides")
    p.add_argument("--device", default="auto", help="auto (default: the GPU when there is one), cpu, cuda or cuda:N")
    p.add_argument("--no-progress", action="store_true")


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``scene-labels``; ``run`` is stored as ``handler``."""
    p = subparsers.add_parser("scene-labels", help="SDN's per-video scene pseudo-labels from an image classifier",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_args(p)
    p.add_argument("--model", required=True, help="torchvision image classifier, e.g. resnet18, resnet50")
    p.add_argument("--weights", default="DEFAULT",
                   help="torchvision weights name, a local weights file, or 'none' (random: tests only)")
    p.add_argument("--num-classes", type=int, help="classes of a local weights file (e.g. 365 for Places365)")
    p.add_argument("--classes", type=Path, help="class names, one per line (default: the weights' categories)")
    p.add_argument("--out", type=Path, required=True, help="CSV to write (objective.scene_labels)")
    p.add_argument("--frames", type=int, default=3, help="frames per video, evenly spaced (default 3)")
    p.add_argument("--resize", type=int, default=256, help="short side before the centre crop")
    p.add_argument("--crop", type=int, default=224, help="centre crop")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--hard", action="store_true", help="write key,scene (argmax of the mean) instead of the soft form")
    p.set_defaults(handler=run)
    return p


def training_items(config: Path | None, overrides: Sequence[str], progress: bool = True) -> list:
    """Every item of the training split (held-out validation included) and of a listed val split, as a run of
    ``config`` reads them: their keys are the keys SDN and ActorCutMix look labels and masks up by."""
    from albar.config import load_config
    from albar.data.bundle import resolve_data

    cfg = load_config(config, list(overrides))
    spec = resolve_data(cfg.data, cfg.model.num_classes, train=True, strict=True, progress=progress)
    if spec.train is None:
        raise ValueError("data.train: the config names no training videos")
    items = list(spec.train.items) + (list(spec.val.items) if spec.val is not None else [])
    seen: set[str] = set()
    return [it for it in items if not (it.key in seen or seen.add(it.key))]


def load_torchvision(name: str, weights: str | None, num_classes: int | None = None,
                     **kwargs: Any) -> tuple[Any, list[str] | None]:
    """(model in eval mode, category names or None) for a torchvision model by name; ``weights``: a weights name,
    a local file or None. Errors name the model, the weights and the known choices."""
    import torch
    from torchvision.models import get_model, get_model_weights, list_models

    from albar.models.registry import looks_like_path
    from albar.utils import torch_load

    if name not in list_models():
        raise ValueError(f"--model {name!r}: not a torchvision model (see torchvision.models.list_models())")
    if weights is not None and not looks_like_path(weights):
        enum = get_model_weights(name)
        member = weights.split(".")[-1]
        if member not in enum.__members__:
            raise ValueError(f"--weights {weights!r}: not a weights name of {name}; known: "
                             f"{', '.join(enum.__members__)}, or a file path, or none")
        w = enum[member]
        if num_classes is not None and num_classes != len(w.meta["categories"]):
            raise ValueError(f"--num-classes {num_classes}: weights {weights} have {len(w.meta['categories'])}")
        return get_model(name, weights=w, **kwargs).eval(), list(w.meta["categories"])
    extra = {"num_classes": num_classes} if num_classes is not None else {}
    if weights is None:
        torch.manual_seed(0)  # random weights (tests): the same ones on every run
    model = get_model(name, weights=None, **extra, **kwargs)
    if weights is not None:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"--weights: file not found: {path}")
        state = torch_load(path, "weights file")
        for k in ("state_dict", "model"):
            if isinstance(state, dict) and isinstance(state.get(k), dict):
                state = state[k]
        if not isinstance(state, dict):
            raise ValueError(f"{path}: not a state dict (nor a checkpoint with state_dict/model)")
        state = {k.removeprefix("module."): v for k, v in state.items()}
        try:
            model.load_state_dict(state)
        except RuntimeError as err:
            given = f" with --num-classes {num_classes}" if num_classes else ""
            raise ValueError(f"{path}: does not fit {name}{given} ({str(err).splitlines()[0]}...)") from None
    return model.eval(), None


def read_names(path: Path) -> list[str]:
    """Class names, one per line; Places365's ``/a/abbey 0`` style gives ``abbey``."""
    from albar.data.lists import read_text_lines

    names = []
    for line in read_text_lines(path):
        if not line.strip():
            continue
        first = line.split()[0]
        names.append(first.split("/", 2)[-1] if first.startswith("/") else first)
    return names


def spaced(n: int, k: int) -> list[int]:
    """``k`` frame indices evenly spaced over ``n`` frames (the centres of k equal segments)."""
    return [min(n - 1, int((i + 0.5) * n / k)) for i in range(k)]


def frame_tensor(frames, resize: int, crop: int):
    """uint8 (K, H, W, 3) frames -> normalised (K, 3, crop, crop) float."""
    import torch
    from torchvision.transforms import v2

    tf = v2.Compose([v2.Resize(resize, antialias=True), v2.CenterCrop(crop), v2.ToDtype(torch.float32, scale=True),
                     v2.Normalize(list(IMAGENET_MEAN), list(IMAGENET_STD))])
    return tf(torch.from_numpy(frames).permute(0, 3, 1, 2))


def scene_probabilities(model, items: Sequence, frames: int, resize: int, crop: int, device, batch_size: int,
                        progress: bool = True) -> tuple[dict[str, list[float]], dict[str, str]]:
    """Mean softmax over ``frames`` frames of every item; (key -> probabilities, key -> failure reason)."""
    import torch
    from tqdm import tqdm

    from albar.data.io import ClipReadError, read_clip

    out: dict[str, list[float]] = {}
    failed: dict[str, str] = {}
    pending: list[tuple[str, Any]] = []

    def flush() -> None:
        if not pending:
            return
        x = torch.cat([t for _, t in pending]).to(device)
        with torch.no_grad():
            p = torch.softmax(model(x).float(), dim=-1).cpu()
        start = 0
        for key, t in pending:
            out[key] = p[start:start + len(t)].mean(0).tolist()
            start += len(t)
        pending.clear()

    for item in tqdm(items, desc="scene labels", unit="video", disable=not progress):
        try:
            rgb = read_clip(item.source, lambda n: spaced(n, frames))
        except ClipReadError as err:
            failed[item.key] = f"{err.source}: {err.reason}"
            continue
        pending.append((item.key, frame_tensor(rgb, resize, crop)))
        if sum(len(t) for _, t in pending) >= batch_size:
            flush()
    flush()
    return out, failed


def scene_table(probs: dict[str, list[float]], names: Sequence[str], hard: bool) -> str:
    """The CSV text :func:`albar.objectives.sdn.read_scene_labels` reads."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["key", "scene"] if hard else ["key", *names])
    for key, p in probs.items():
        if hard:
            writer.writerow([key, max(range(len(p)), key=p.__getitem__)])
        else:
            writer.writerow([key, *(f"{v:.6g}" for v in p)])
    return buf.getvalue()


def run(args: argparse.Namespace) -> int:
    import torch

    from albar.evaluation.inference import resolve_device
    from albar.utils import atomic_write_text

    if args.frames < 1 or args.batch_size < 1 or args.crop < 1 or args.resize < args.crop:
        raise ValueError("--frames and --batch-size must be >= 1, and --resize >= --crop")
    device = resolve_device(args.device)
    items = training_items(args.config, args.overrides, progress=not args.no_progress)
    weights = None if args.weights.lower() == "none" else args.weights
    model, categories = load_torchvision(args.model, weights, args.num_classes)
    model = model.to(device)
    with torch.no_grad():
        k = int(model(torch.zeros(1, 3, args.crop, args.crop, device=device)).shape[-1])
    names = read_names(args.classes) if args.classes else (categories or [str(i) for i in range(k)])
    if len(names) != k:
        raise ValueError(f"--classes: {len(names)} names for a model with {k} outputs")
    if len(set(names)) != len(names) or "key" in names:
        raise ValueError("class names must be unique and not 'key' (they are the CSV's columns)")
    probs, failed = scene_probabilities(model, items, args.frames, args.resize, args.crop, device, args.batch_size,
                                        progress=not args.no_progress)
    atomic_write_text(args.out, scene_table(probs, names, args.hard))
    print(f"wrote {args.out}: scene labels of {len(probs)} of {len(items)} videos ({k} scene classes, "
          f"{'hard' if args.hard else 'soft'}); train with objective.name=sdn objective.scene_labels={args.out}")
    if failed:
        for key, reason in list(failed.items())[:20]:
            print(f"  failed {key}: {reason}", file=sys.stderr)
        more = f" ({len(failed) - 20} more not shown)" if len(failed) > 20 else ""
        print(f"albar scene-labels: {len(failed)} video(s) could not be read and have no label{more}; an SDN run "
              "refuses to start until every training video has one", file=sys.stderr)
        return 1
    return 0
