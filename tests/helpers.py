"""Real test fixtures: encoded videos, frame zips and folders whose frame i has grey level 10 * i + 8 (i < 25)."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import av
import numpy as np
import yaml
from PIL import Image


def numbered_frames(n: int, h: int = 32, w: int = 48) -> np.ndarray:
    frames = np.empty((n, h, w, 3), dtype=np.uint8)
    for i in range(n):
        frames[i] = 10 * i + 8
    return frames


def frame_number(frame: np.ndarray) -> int:
    """Inverse of numbered_frames, robust to lossy coding."""
    return int(round((float(np.asarray(frame, dtype=np.float64).mean()) - 8) / 10))


def write_video(path: Path, frames: np.ndarray, codec: str = "libx264", fps: int = 25) -> Path:
    with av.open(str(path), "w") as c:
        s = c.add_stream(codec, rate=fps)
        s.width, s.height, s.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        s.options = {"qscale": "2"} if codec == "mpeg4" else {"crf": "10"}
        for f in frames:
            c.mux(s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
        c.mux(s.encode())
    return path


def write_zip(path: Path, frames: np.ndarray) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for i, f in enumerate(frames):
            buf = io.BytesIO()
            Image.fromarray(f).save(buf, "JPEG", quality=95)
            zf.writestr(f"img_{i + 1:05d}.jpg", buf.getvalue())
    return path


def write_folder(path: Path, frames: np.ndarray) -> Path:
    path.mkdir(parents=True)
    for i, f in enumerate(frames):
        Image.fromarray(f).save(path / f"frame{i + 1:06d}.jpg", quality=95)
    return path


def write_config(tmp_path: Path, bench, name: str, **overrides) -> Path:
    """A training config over the synthetic ``bench``: small model, tiny clips, a checkpoint every step."""
    spec = bench.spec
    cfg = {
        "out_dir": str(tmp_path / name), "seed": 0, "threads": 1,
        "model": {"name": "small3d", "num_classes": spec.num_classes},
        "objective": {"w_adv": 0.5, "w_ent": 10.0, "w_gp": 10.0, "ramp_epochs": 1},
        "data": {"source": "synthetic", "root": str(bench.root), "synthetic": dict(spec.__dict__),
                 "num_frames": spec.num_frames, "stride": 1, "crop_size": spec.size, "resize_short": None,
                 "train_crop": "none", "hflip": False, "num_workers": 0},
        "optim": {"lr": 3e-3, "lr_reference_batch": None, "batch_size": 8, "epochs": 4, "warmup_epochs": 1},
        "checkpoint": {"every_steps": 1},
        "log": {"tensorboard": False},
    }
    for key, value in overrides.items():
        node = cfg
        *parents, last = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = value
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def relative_weight_gap(a: dict, b: dict, init: dict) -> float:
    """||a - b|| / ||a - init|| over all parameters: how far two trainings ended apart, relative to how far
    they moved. Float rounding in another summation order flips AdamW's step on near-zero gradients, so
    element-wise tolerances are the wrong yardstick."""
    import torch

    keys = [k for k in a if a[k].is_floating_point()]
    gap = torch.cat([(a[k] - b[k]).flatten() for k in keys]).norm()
    moved = torch.cat([(a[k] - init[k]).flatten() for k in keys]).norm()
    return float(gap / moved)


def assert_same_training(one: Path, other: Path, bench) -> None:
    """Two runs of the same global batch (one process vs several ranks or nodes) trained alike: the same optimiser
    steps, every rank's RNG saved, weights less than 2% of the distance travelled apart (the same sums in another
    order), and every metric within one item of its set."""
    import json

    import torch
    from accelerate.utils import set_seed

    from albar.models import build_model

    a = torch.load(one / "last.pt", weights_only=True)
    b = torch.load(other / "last.pt", weights_only=True)
    assert a["step"] == b["step"] == 8 and len(b["rng"]) == 2
    set_seed(0)
    init = build_model("small3d", bench.spec.num_classes).state_dict()
    assert relative_weight_gap(a["model"], b["model"], init) < 0.02
    ra = json.loads((one / "results.json").read_text())["methods"]["run"]
    rb = json.loads((other / "results.json").read_text())["methods"]["run"]
    one_item = 100.0 / bench.spec.bias_set
    for key in ("iid_top1", "scuba_top1", "scufo_top1", "contrasted", "conflfg_top1"):
        assert abs(ra[key] - rb[key]) <= one_item + 1e-6, key

