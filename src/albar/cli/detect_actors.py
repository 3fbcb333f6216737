"""``albar detect-actors``: actor (person) masks of every training video, for ActorCutMix and SDN.

Runs a torchvision person detector or segmenter on every frame of every training video (the ``data`` section of
a config: the same items, and keys, a run trains on) and writes what ``albar make-bias-set``, ActorCutMix and
SDN read:

- an instance segmenter (``maskrcnn_resnet50_fpn``, ``maskrcnn_resnet50_fpn_v2``) or a semantic one
  (``deeplabv3_*``, ``fcn_*``, ``lraspp_*``): per-frame PNG masks ``<out>/<key>/00001.png`` (255 = person), one
  for every decoded frame, empty where nobody was found;
- a box detector (``fasterrcnn_*``, ``retinanet_*``, ``fcos_*``, ``ssd*``, ``keypointrcnn_*``): one CSV ``<out>``
  with ``key,frame,x1,y1,x2,y2,score`` rows (frames from 1), filled as rectangles by the readers.

Weights: a torchvision weights name (``DEFAULT``; downloaded where the internet is), a local file (state dict, or
a checkpoint with ``state_dict``/``model``), or ``none`` (random weights: for tests only). The person class is
found in the weights' categories (COCO ``person`` = 1, VOC ``person`` = 15), or given with ``--person-class``.
A video already done (its mask folder exists) is skipped, so an interrupted run continues where it stopped.
"""

from __future__ import annotations

import argparse
import csv
import io
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from albar.cli.scene_labels import IMAGENET_MEAN, IMAGENET_STD, add_config_args

if TYPE_CHECKING:
    import numpy as np

DEFAULT_PERSON = {"detection": 1, "segmentation": 15}  # COCO (torchvision detection), VOC (segmentation)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``detect-actors``; ``run`` is stored as ``handler``."""
    p = subparsers.add_parser("detect-actors", help="person masks or boxes of the training videos (ActorCutMix, SDN)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_args(p)
    p.add_argument("--model", default="maskrcnn_resnet50_fpn",
                   help="torchvision detection or segmentation model (default maskrcnn_resnet50_fpn)")
    p.add_argument("--weights", default="DEFAULT",
                   help="torchvision weights name, a local weights file, or 'none' (random: tests only)")
    p.add_argument("--num-classes", type=int, help="classes of a local weights file (default: the model's)")
    p.add_argument("--person-class", type=int, help="the person's class index (default: from the weights)")
    p.add_argument("--out", type=Path, required=True, help="mask folder (segmenters) or boxes CSV (detectors)")
    p.add_argument("--threshold", type=float, default=0.5, help="detection score to keep a person (default 0.5)")
    p.add_argument("--min-size", type=int, help="detectors: resize frames to this short side (torchvision: 800)")
    p.add_argument("--batch-size", type=int, default=4, help="frames per forward")
    p.set_defaults(handler=run)
    return p


def model_kind(name: str) -> str:
    """``instance`` (Mask R-CNN), ``boxes`` (other detectors) or ``semantic`` (segmentation models)."""
    from torchvision import models

    if name in models.list_models(module=models.segmentation):
        return "semantic"
    if name in models.list_models(module=models.detection):
        return "instance" if name.startswith("maskrcnn") else "boxes"
    raise ValueError(f"--model {name!r}: not a torchvision detection or segmentation model; e.g. "
                     "maskrcnn_resnet50_fpn, fasterrcnn_resnet50_fpn, deeplabv3_resnet50")


def person_index(categories: Sequence[str] | None, kind: str, given: int | None) -> int:
    """The person's class: ``given``, else ``person`` in the weights' categories, else COCO's/VOC's index."""
    if given is not None:
        return given
    if categories is not None:
        if "person" not in categories:
            raise ValueError("the weights' categories have no 'person': give --person-class")
        return list(categories).index("person")
    return DEFAULT_PERSON["segmentation" if kind == "semantic" else "detection"]


def person_boxes(output: dict[str, Any], person: int, threshold: float) -> list[tuple[float, ...]]:
    """(x1, y1, x2, y2, score) of the detections of class ``person`` scoring at least ``threshold``."""
    keep = (output["labels"] == person) & (output["scores"] >= threshold)
    boxes, scores = output["boxes"][keep].tolist(), output["scores"][keep].tolist()
    return [(*b, s) for b, s in zip(boxes, scores) if b[2] > b[0] and b[3] > b[1]]


def person_instances(output: dict[str, Any], person: int, threshold: float, size: tuple[int, int]) -> np.ndarray:
    """Boolean (H, W): the union of the instance masks (> 0.5) of the persons scoring at least ``threshold``."""
    import numpy as np

    keep = (output["labels"] == person) & (output["scores"] >= threshold)
    masks = output["masks"][keep]
    if len(masks) == 0:
        return np.zeros(size, dtype=bool)
    return (masks[:, 0] > 0.5).any(0).cpu().numpy()


def person_pixels(logits: Any, person: int) -> np.ndarray:
    """Boolean (H, W): the pixels whose most likely class (of (K, H, W) logits) is ``person``."""
    if not 0 <= person < logits.shape[0]:
        raise ValueError(f"--person-class {person}: the model has {logits.shape[0]} classes")
    return (logits.argmax(0) == person).cpu().numpy()


def mask_png(mask: np.ndarray) -> bytes:
    import numpy as np
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.where(mask, 255, 0).astype(np.uint8), mode="L").save(buf, format="PNG")
    return buf.getvalue()


class Detector:
    """A loaded model and how to turn a batch of uint8 frames into per-frame masks or boxes."""

    def __init__(self, name: str, weights: str | None, num_classes: int | None, person: int | None,
                 threshold: float, min_size: int | None, device: Any) -> None:
        from albar.cli.scene_labels import load_torchvision

        self.kind = model_kind(name)
        kwargs: dict[str, Any] = {"weights_backbone": None}
        if self.kind != "semantic":
            kwargs["box_score_thresh"] = threshold  # nothing below it is kept: spare the mask head the work
            if min_size is not None:
                kwargs.update(min_size=min_size, max_size=max(min_size, round(min_size * 1333 / 800)))
        model, categories = load_torchvision(name, weights, num_classes, **kwargs)
        self.model = model.to(device).eval()
        self.person = person_index(categories, self.kind, person)
        self.threshold, self.device = threshold, device

    def __call__(self, frames: np.ndarray) -> list[Any]:
        """Per frame of (N, H, W, 3) uint8: a boolean (H, W) mask, or a list of boxes."""
        import torch

        x = torch.from_numpy(frames).permute(0, 3, 1, 2).float().div(255).to(self.device)
        size = tuple(frames.shape[1:3])
        with torch.no_grad():
            if self.kind == "semantic":
                mean = torch.tensor(IMAGENET_MEAN, device=self.device).view(1, 3, 1, 1)
                std = torch.tensor(IMAGENET_STD, device=self.device).view(1, 3, 1, 1)
                logits = self.model((x - mean) / std)["out"]
                return [person_pixels(o, self.person) for o in logits]
            outputs = self.model(list(x))
        if self.kind == "instance":
            return [person_instances(o, self.person, self.threshold, size) for o in outputs]
        return [person_boxes(o, self.person, self.threshold) for o in outputs]


def detect_video(detector: Detector, source: Path, batch_size: int) -> list[Any]:
    """Masks or boxes of every decoded frame of ``source``."""
    import numpy as np

    from albar.data.io import read_clip

    frames = read_clip(source, lambda n: range(n))
    out: list[Any] = []
    for start in range(0, len(frames), batch_size):
        out += detector(np.ascontiguousarray(frames[start:start + batch_size]))
    return out


def write_masks(folder: Path, key: str, masks: list[np.ndarray]) -> None:
    """``<folder>/<key>/00001.png``...: built beside and renamed into place (a folder that exists is complete)."""
    from albar.utils import building_folder

    target = folder / key
    tmp = building_folder(target)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for i, mask in enumerate(masks, 1):
        (tmp / f"{i:05d}.png").write_bytes(mask_png(mask))
    tmp.replace(target)


def boxes_csv(rows: dict[str, list[list[tuple[float, ...]]]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["key", "frame", "x1", "y1", "x2", "y2", "score"])
    for key, frames in rows.items():
        for i, boxes in enumerate(frames, 1):
            for x1, y1, x2, y2, s in boxes:
                writer.writerow([key, i, f"{x1:.2f}", f"{y1:.2f}", f"{x2:.2f}", f"{y2:.2f}", f"{s:.4f}"])
    return buf.getvalue()


def run(args: argparse.Namespace) -> int:
    import numpy as np
    from tqdm import tqdm

    from albar.cli.scene_labels import training_items
    from albar.data.io import ClipReadError
    from albar.evaluation.inference import resolve_device
    from albar.utils import atomic_write_text

    if not 0.0 <= args.threshold <= 1.0 or args.batch_size < 1:
        raise ValueError("--threshold must be in [0, 1] and --batch-size >= 1")
    kind = model_kind(args.model)
    if kind == "boxes" and args.out.suffix.lower() != ".csv":
        raise ValueError(f"--out {args.out}: {args.model} gives boxes: name a .csv file")
    if kind != "boxes" and args.out.suffix:
        raise ValueError(f"--out {args.out}: {args.model} gives masks: name a folder (no extension)")
    device = resolve_device(args.device)
    items = training_items(args.config, args.overrides, progress=not args.no_progress)
    weights = None if args.weights.lower() == "none" else args.weights
    detector = Detector(args.model, weights, args.num_classes, args.person_class, args.threshold, args.min_size,
                        device)
    failed: dict[str, str] = {}
    boxes: dict[str, list[list[tuple[float, ...]]]] = {}
    done = with_actor = 0
    for item in tqdm(items, desc="detect actors", unit="video", disable=args.no_progress):
        if kind != "boxes" and (args.out / item.key).is_dir():
            done += 1
            continue
        try:
            found = detect_video(detector, item.source, args.batch_size)
        except ClipReadError as err:
            failed[item.key] = f"{err.source}: {err.reason}"
            continue
        with_actor += any(bool(np.any(f)) if kind != "boxes" else bool(f) for f in found)
        if kind == "boxes":
            boxes[item.key] = found
        else:
            write_masks(args.out, item.key, found)
    if kind == "boxes":
        atomic_write_text(args.out, boxes_csv(boxes))
    processed = len(items) - len(failed) - done
    print(f"wrote {'boxes' if kind == 'boxes' else 'masks'} of {processed} videos to {args.out} ({with_actor} with a "
          f"person at score >= {args.threshold}; {done} done earlier); train with method.masks={args.out} "
          f"(actorcutmix) or objective.masks={args.out} (sdn)")
    if failed:
        for key, reason in list(failed.items())[:20]:
            print(f"  failed {key}: {reason}", file=sys.stderr)
        print(f"albar detect-actors: {len(failed)} video(s) could not be read and have no masks (treated as clips "
              "without an actor in training)", file=sys.stderr)
        return 1
    return 0
