"""Checkpoints that a run can continue from exactly: written atomically, read with ``weights_only=True``.

Every checkpoint albar writes (``last.pt``, ``best.pt``, the weights-only ``model.pt``) carries
:func:`checkpoint_meta` at its top level, so that it describes itself: the class names, the preprocessing
and the resolved config. Only ``last.pt`` holds the training state that a run resumes from
(:data:`RESUME_KEYS`).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from albar.utils import atomic_write, torch_load

if TYPE_CHECKING:
    from albar.config import TrainConfig

# what train() needs to continue a run exactly; "scaler" and "epoch_stats" may be None
RESUME_KEYS = ("model", "optimizer", "scheduler", "step", "epoch", "batch_in_epoch", "best_score", "history", "rng")
PREPROCESSING_KEYS = ("num_frames", "stride", "crop_size", "resize_short", "mean", "std", "test_view", "train_crop",
                      "hflip")


def rng_state() -> dict[str, Any]:
    """This process's random states (torch CPU and CUDA, numpy, Python), in weights_only-loadable types."""
    keys, pos, has_gauss, cached = np.random.get_state()[1:]
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos), "has_gauss": int(has_gauss),
                  "cached": float(cached)},
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def checkpoint_meta(cfg: TrainConfig, classes: list[str] | None) -> dict[str, Any]:
    """What a checkpoint needs to be used without its config: the resolved config, the class names in label
    order, the preprocessing its inputs need, and the albar version that wrote it. Merged into the top level
    of every checkpoint, beside ``"model"``."""
    import albar

    config = cfg.model_dump(mode="json")
    return {
        "config": config,
        "classes": list(classes) if classes is not None else None,
        "preprocessing": {k: config["data"][k] for k in PREPROCESSING_KEYS},
        "albar_version": albar.__version__,
    }


def _tensors(prefix: str, obj: Any):
    """(dotted name, tensor) for every tensor in nested dicts/lists/tuples."""
    if isinstance(obj, torch.Tensor):
        yield prefix, obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from _tensors(f"{prefix}.{k}" if prefix else str(k), v)
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from _tensors(f"{prefix}.{i}" if prefix else str(i), v)


def first_non_finite(state: dict[str, Any]) -> tuple[str, int, int] | None:
    """The first floating-point tensor in ``state["model"]`` or ``state["optimizer"]`` that holds a NaN or an
    infinity: (name, non-finite count, size); None when all are finite. One device sync per device."""
    named = [(n, t) for part in ("model", "optimizer") if part in state
             for n, t in _tensors(part, state[part]) if t.is_floating_point() or t.is_complex()]
    flags: dict[torch.device, list[torch.Tensor]] = {}
    for _, t in named:
        flags.setdefault(t.device, []).append(torch.isfinite(t).all())
    if all(bool(torch.stack(f).all()) for f in flags.values()):
        return None
    for name, t in named:
        ok = torch.isfinite(t)
        if not bool(ok.all()):
            return name, int((~ok).sum()), t.numel()
    return None


def assert_finite_state(state: dict[str, Any], path: str | Path) -> None:
    """Refuse to write a checkpoint with non-finite weights or optimiser moments to ``path``: a NaN checkpoint
    would replace the last good one, and every resume would start from it. Raises ``FloatingPointError``
    naming the first bad tensor; the file at ``path`` is left as it was."""
    bad = first_non_finite(state)
    if bad is not None:
        name, count, size = bad
        raise FloatingPointError(
            f"not writing {path}: {name} has {count} non-finite values (of {size}); the training diverged. "
            f"The previous {Path(path).name}, if any, is kept"
        )


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Write ``state`` to ``path`` via a temporary file and a rename: a crash or a full disk mid-save leaves
    the previous checkpoint valid, and the error is an ``OSError`` naming ``path`` and the reason."""
    def write(tmp: Path) -> None:
        # through a Python file: a full disk is then OSError(ENOSPC), not torch's "unexpected pos N vs M"
        with open(tmp, "wb") as fh:
            torch.save(state, fh)

    atomic_write(path, write)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    return torch_load(path, "checkpoint")


def load_resume_state(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint to continue training from, and check that it is one (albar's ``last.pt``).

    Raises ``ValueError`` naming the file when it is not: weights only (``best.pt``, ``model.pt``, a plain
    ``state_dict``), another program's checkpoint, a file torch cannot read, or weights that are not finite.
    """
    path = Path(path)
    state = torch_load(path, "checkpoint to resume from")
    if not isinstance(state, dict):
        raise ValueError(f"{path} is not an albar checkpoint: it holds a {type(state).__name__}, not a dict; "
                         "resume from the last.pt of an albar run")
    missing = [k for k in RESUME_KEYS if k not in state]
    if not missing:
        bad_types = [k for k, t in (("model", dict), ("optimizer", dict), ("scheduler", dict), ("step", int),
                                    ("epoch", int), ("batch_in_epoch", int), ("history", list), ("rng", list))
                     if not isinstance(state[k], t)]
        if not bad_types and not state["rng"]:
            bad_types = ["rng"]
        if bad_types:
            raise ValueError(f"{path} is not a valid albar checkpoint: wrong type for {', '.join(bad_types)}")
        bad = first_non_finite(state)
        if bad is not None:
            raise ValueError(f"{path}: {bad[0]} holds {bad[1]} non-finite values; this checkpoint was written after "
                             "the training diverged and cannot be resumed (delete it to start over)")
        return state
    if "model" in state and isinstance(state["model"], dict) and "optimizer" not in state:
        raise ValueError(f"{path} holds weights only (best.pt/model.pt); resume from last.pt, which keeps the "
                         "optimiser, schedule and random states")
    if state and all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path} is a plain state_dict (weights only, {len(state)} tensors), not an albar "
                         "checkpoint; resume from the last.pt of an albar run (to start from these weights, set "
                         "model.weights)")
    keys = ", ".join(sorted(map(str, state))[:8]) + (", ..." if len(state) > 8 else "")
    raise ValueError(f"{path} is not an albar checkpoint to resume from: missing {', '.join(missing)} "
                     f"(it has: {keys or 'nothing'})")
