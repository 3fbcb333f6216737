"""Checkpoints that a run can continue from exactly: written atomically, read with ``weights_only=True``.

Every checkpoint albar writes (``last.pt``, ``best.pt``, the weights-only ``model.pt``) carries
:func:`checkpoint_meta` at its top level, so that it describes itself: the class names, the preprocessing
and the resolved config. Only ``last.pt`` holds the training state that a run resumes from
(:data:`RESUME_KEYS`).
"""

from __future__ import annotations

import inspect
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import gather_object

from albar import __version__
from albar.config import TrainConfig
from albar.utils import torch_load, torch_save

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
    config = cfg.model_dump(mode="json")
    return {
        "config": config,
        "classes": list(classes) if classes is not None else None,
        "preprocessing": {k: config["data"][k] for k in PREPROCESSING_KEYS},
        "albar_version": __version__,
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


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Write ``state`` to ``path`` via a temporary file and a rename: a crash or a full disk mid-save leaves
    the previous checkpoint valid, and the error is an ``OSError`` naming ``path`` and the reason."""
    torch_save(path, state)


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


class NonFiniteLossError(FloatingPointError):
    """The loss, its gradient or the weights became NaN or Inf; the message names the step and the terms."""


def require_finite(state: dict[str, Any], step: int, path: Path | None) -> None:
    """Refuse to save weights (or optimiser moments) that hold NaN or Inf: the file on disk stays the last good
    state, and every resume would otherwise start from the bad one."""
    bad = first_non_finite(state)
    if bad is not None:
        kept = f"{path} is left as it was (the last good state)" if path is not None else "nothing saved"
        raise NonFiniteLossError(f"after optimiser step {step}, {bad[0]} holds {bad[1]} non-finite values (of "
                                 f"{bad[2]}): the training diverged; {kept}")


def fresh_epoch_stats() -> dict[str, Any]:
    """Running sums of an epoch: loss terms, correct and seen clips, micro-batches."""
    return {"sums": {}, "counts": {}, "correct": 0, "seen": 0, "micro": 0}


@dataclass
class LoopState:
    """Where a training loop is: what ``last.pt`` saves and a resume restores (with the weights, optimiser,
    schedule and random states). ``epoch`` is the epoch in progress (0-based), ``start_batch`` the first
    optimiser step of it still to run; ``stats`` the running sums of the epoch in progress."""

    step: int = 0
    epoch: int = 0
    start_batch: int = 0
    best: float | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=fresh_epoch_stats)
    resumed_stats: dict[str, Any] | None = None  # the sums of an epoch interrupted mid-way, restored
    last_rng: dict[str, Any] | None = None  # this process's random state after the last optimiser step
    last_lr: float = 0.0  # the learning rate the last optimiser step used


def bare_model(accelerator: Accelerator, model: torch.nn.Module) -> torch.nn.Module:
    """``model`` without DDP and without torch.compile's wrapper (``accelerate launch --dynamo_backend``
    compiles it; recent accelerate keeps that wrapper by default, its keys starting ``_orig_mod.``): the
    module whose weights every checkpoint, export and evaluation reads and writes."""
    if "keep_torch_compile" in inspect.signature(accelerator.unwrap_model).parameters:
        return accelerator.unwrap_model(model, keep_torch_compile=False)
    return accelerator.unwrap_model(model)


class RunCheckpoint:
    """The checkpoints of one run: ``last.pt`` (resumable: weights, optimiser, schedule, scaler, loop position,
    every rank's random state, the running sums of a part-done epoch) and ``best.pt`` (weights), each with
    ``meta`` merged in. Without ``out`` nothing is saved or resumed.

    Not accelerate's ``save_state``: one atomic file (a kill mid-save leaves the previous one), every rank's RNG
    in it, the position inside an epoch, and the self-describing metadata that ``albar predict`` reads.
    """

    def __init__(self, out: Path | None, accelerator: Accelerator, model: torch.nn.Module, optimizer: Any,
                 scheduler: Any, meta: dict[str, Any]) -> None:
        self.out, self.accelerator, self.meta = out, accelerator, meta
        self.model, self.optimizer, self.scheduler = model, optimizer, scheduler
        self.last = out / "last.pt" if out is not None else None
        self.objective: torch.nn.Module | None = None  # an objective with weights of its own (SDN's head)

    def weights(self) -> dict[str, torch.Tensor]:
        return bare_model(self.accelerator, self.model).state_dict()

    def resume_path(self, resume: str | Path) -> Path | None:
        """The checkpoint ``cfg.resume`` asks for: ``auto`` -> last.pt when it exists, ``never`` -> None."""
        if resume == "never" or self.last is None:
            return None
        path = self.last if resume == "auto" else Path(resume)
        return path if path.is_file() or resume != "auto" else None

    def resume(self, path: Path, state: LoopState) -> None:
        """Restore the run saved in ``path`` (validated) into the model, optimiser, schedule and ``state``."""
        saved = load_resume_state(path)
        acc = self.accelerator
        try:
            bare_model(acc, self.model).load_state_dict(saved["model"])
        except RuntimeError as err:  # another architecture or number of classes
            detail = str(err).strip().splitlines()
            raise ValueError(f"{path}: its weights do not fit this run's model ({'; '.join(detail[1:4]) or detail[0]})"
                             "; resume a checkpoint of this run, or start a new out_dir") from None
        optimizer = self.optimizer.optimizer
        # The config decides the hyper-parameters: the same as the saved ones, unless `--force` changed them
        # (then the change must take effect, not be overwritten by the saved optimiser state).
        wanted = [{k: g[k] for k in ("weight_decay", "betas", "eps") if k in g} for g in optimizer.param_groups]
        base_lrs = list(self.scheduler.base_lrs)
        optimizer.load_state_dict(saved["optimizer"])
        self.scheduler.load_state_dict(saved["scheduler"])
        self.scheduler.base_lrs = base_lrs
        for group, hyper, base, fn in zip(optimizer.param_groups, wanted, base_lrs, self.scheduler.lr_lambdas):
            group.update(hyper, initial_lr=base, lr=base * fn(self.scheduler.last_epoch))
        self.scheduler._last_lr = [g["lr"] for g in optimizer.param_groups]
        if self.objective is not None and self.objective.state_dict():
            if not saved.get("objective"):
                raise ValueError(f"{path}: holds no weights for the objective's own parameters; it was not "
                                 "written by a run of this objective")
            self.objective.load_state_dict(saved["objective"])
        if acc.scaler is not None and saved.get("scaler"):
            acc.scaler.load_state_dict(saved["scaler"])
        state.step, state.epoch, state.start_batch = saved["step"], saved["epoch"], saved["batch_in_epoch"]
        state.best, state.history = saved["best_score"], saved["history"]
        state.resumed_stats = saved.get("epoch_stats")
        ranks = saved["rng"]
        set_rng_state(ranks[acc.process_index] if acc.process_index < len(ranks) else ranks[0])

    def _state(self, state: LoopState, epoch: int, batch_in_epoch: int, rng: list, stats: dict | None) -> dict:
        acc = self.accelerator
        return {
            **self.meta, "model": self.weights(), "optimizer": self.optimizer.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": acc.scaler.state_dict() if acc.scaler is not None else None,
            "step": state.step, "epoch": epoch, "batch_in_epoch": batch_in_epoch, "best_score": state.best,
            "history": state.history, "rng": rng, "epoch_stats": stats if batch_in_epoch else None,
            **({"objective": self.objective.state_dict()}
               if self.objective is not None and self.objective.state_dict() else {}),
        }

    def save(self, state: LoopState, epoch: int, batch_in_epoch: int, stats: dict | None = None) -> None:
        """``last.pt`` at a step boundary, to resume at (``epoch``, ``batch_in_epoch``). Call it on every rank:
        each checks its weights are finite and gives its random state; they leave together."""
        if self.last is None:
            return
        acc = self.accelerator
        require_finite({"model": self.weights(), "optimizer": self.optimizer.optimizer.state_dict()}, state.step,
                       self.last)
        states = gather_object([rng_state()]) if acc.num_processes > 1 else [rng_state()]
        if acc.is_main_process:
            save_checkpoint(self.last, self._state(state, epoch, batch_in_epoch, states, stats))
        acc.wait_for_everyone()

    def save_best(self, state: LoopState, epoch: int, score: float) -> None:
        """``best.pt``: the weights of the epoch with the best validation score (main process)."""
        if self.out is None or not self.accelerator.is_main_process:
            return
        require_finite({"model": self.weights()}, state.step, self.out / "best.pt")
        save_checkpoint(self.out / "best.pt", {**self.meta, "model": self.weights(), "epoch": epoch + 1,
                                               "val_top1": score})

    def save_interrupted(self, state: LoopState, steps_per_epoch: int) -> str | None:
        """On Ctrl-C (main process): the state after the last finished optimiser step, resumable exactly (one
        process; under several, every rank restarts from rank 0's random state). Returns what to tell the user
        (None: nothing to save)."""
        if self.last is None or not self.accelerator.is_main_process:
            return None
        epoch, done = state.epoch, state.step - state.epoch * steps_per_epoch
        if state.history and state.history[-1]["epoch"] == epoch + 1:  # the epoch was recorded: resume at the next
            epoch, done = epoch + 1, 0
        if first_non_finite({"model": self.weights()}) is not None:
            return f"\ninterrupted: the weights are not finite; {self.last} is left as it was"
        rng = [state.last_rng] * self.accelerator.num_processes
        save_checkpoint(self.last, self._state(state, epoch, done, rng, state.stats))
        return f"\ninterrupted: saved {self.last} (epoch {epoch + 1}, step {state.step}); run again to resume"
