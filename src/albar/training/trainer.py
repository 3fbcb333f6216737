"""The training loop on HF accelerate: the same code on one CPU process, one GPU, many GPUs or nodes.

What it guarantees: the LR schedule is computed identically on every rank and stepped per optimiser step;
data order and augmentation depend only on (seed, epoch, index), so a run resumed from ``last.pt`` (written
every N steps, every epoch, on Ctrl-C and on SIGTERM/SIGUSR1) continues exactly; a non-finite loss or
gradient stops the run before the update, and a checkpoint with non-finite weights is never written, so
``last.pt`` stays the last good state.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler
from tqdm import tqdm

from albar.config import TrainConfig
from albar.data.dataset import ClipDataset
from albar.data.robust import FailureLog, RobustClipDataset
from albar.evaluation.metrics import topk_accuracy
from albar.evaluation.predict import predict
from albar.methods import BatchMethod, build_method, method_step
from albar.models import build_model
from albar.objectives import Objective, Terms, build_objective
from albar.training.checkpoint import (
    LoopState,
    NonFiniteLossError,
    RunCheckpoint,
    bare_model,
    checkpoint_meta,
    fresh_epoch_stats,
    rng_state,
)
from albar.training.compile import check_precision, compile_for_steps
from albar.training.schedule import scaled_lr, warmup_cosine
from albar.utils import atomic_write_text, ensure_folder

# Slurm and Kubernetes send SIGTERM before killing a job; Slurm's --signal=USR1@<seconds> warns ahead of the limit
STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGUSR1") if hasattr(signal, name))


class TrainingInterrupted(KeyboardInterrupt):
    """A stop signal ended the run after ``last.pt`` was saved. A KeyboardInterrupt, so that whatever stops on
    Ctrl-C stops on it too; ``exit_code`` is the shell's 128 + signal number."""

    def __init__(self, signum: int, epoch: int, step: int, saved: Path | None) -> None:
        where = f"saved {saved}" if saved is not None else "no out_dir, nothing saved"
        super().__init__(f"stopped by {signal.Signals(signum).name} in epoch {epoch} after optimiser step {step}: "
                         f"{where}; run the same command again to resume")
        self.signum, self.exit_code = signum, 128 + signum


@dataclass
class TrainResult:
    model: nn.Module
    accelerator: Accelerator
    history: list[dict[str, float]] = field(default_factory=list)
    best_score: float | None = None
    step: int = 0  # optimiser steps done: the step of the final TensorBoard scalars


class EpochShardSampler(Sampler[int]):
    """Shuffled by (seed, epoch), sharded across ranks like DistributedSampler, and resumable mid-epoch.

    Only whole global batches are used (``drop_last``): rank r takes every world-th index of the
    permutation, so the union of the ranks' batches b is the single-process batch b of the same global size.
    """

    def __init__(self, size: int, batch_size: int, rank: int = 0, world: int = 1, seed: int = 0) -> None:
        self.size, self.batch_size, self.rank, self.world, self.seed = size, batch_size, rank, world, seed
        self.epoch, self.start_batch = 0, 0
        self.batches_per_epoch = size // (batch_size * world)

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch, self.start_batch = epoch, start_batch

    def __iter__(self) -> Iterator[int]:
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        perm = torch.randperm(self.size, generator=g)[: self.batches_per_epoch * self.batch_size * self.world]
        mine = perm[self.rank :: self.world].tolist()
        return iter(mine[self.start_batch * self.batch_size :])

    def __len__(self) -> int:
        return (self.batches_per_epoch - self.start_batch) * self.batch_size


class StopRequest:
    """SIGTERM/SIGUSR1 handlers that only note the signal. The loop acts at the next step boundary, where the
    ranks agree on it (a one-number all-reduce), so that every rank stops after the same finished step and the
    saved state is exactly resumable; a signal in the middle of an update or a collective changes nothing."""

    def __init__(self) -> None:
        self.signum = 0
        self._previous: dict[int, Any] = {}

    def install(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():  # handlers can only be set there
            for s in STOP_SIGNALS:
                self._previous[s] = signal.signal(s, self._note)
        return self

    def restore(self) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler if handler is not None else signal.SIG_DFL)
        self._previous = {}

    def _note(self, signum: int, frame: object) -> None:
        self.signum = signum

    def agreed(self, accelerator: Accelerator) -> int:
        """The signal any rank received (0: none); a collective under several processes."""
        if accelerator.num_processes == 1:
            return self.signum
        flag = torch.tensor([self.signum], device=accelerator.device)
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
        return int(flag.item())


def _ignore_stop_signals(worker_id: int) -> None:
    """DataLoader workers leave SIGTERM/SIGUSR1 to the main process (Slurm signals every process of the job):
    a worker killed by them would fail the run before it saves. They end when their loader shuts down."""
    for s in STOP_SIGNALS:
        signal.signal(s, signal.SIG_IGN)


def make_accelerator(cfg: TrainConfig, out_dir: Path | None = None) -> Accelerator:
    log_with = []
    if out_dir is not None and cfg.log.tensorboard:
        log_with.append("tensorboard")
    if out_dir is not None and cfg.log.wandb:
        log_with.append("wandb")
    return Accelerator(
        cpu=not torch.cuda.is_available(), mixed_precision=cfg.mixed_precision, log_with=log_with or None,
        project_dir=str(out_dir) if out_dir is not None else None,
    )


def _flat_hparams(cfg: TrainConfig) -> dict[str, float | int | str | bool]:
    out: dict[str, float | int | str | bool] = {}

    def walk(prefix: str, node: object) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(f"{prefix}{k}.", v)
        elif isinstance(node, (int, float, str, bool)):
            out[prefix[:-1]] = node
        elif node is not None:
            out[prefix[:-1]] = str(node)

    walk("", cfg.model_dump(mode="json"))
    return out


def write_epochs_csv(path: Path, history: list[dict]) -> None:
    """One row per epoch: lr, training terms, val_top1 and, on epochs with a bias evaluation, its metrics."""
    columns: list[str] = []
    for record in history:
        columns += [k for k, v in record.items() if k not in columns and not isinstance(v, dict)]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(history)
    atomic_write_text(path, buf.getvalue())


def say(text: str, out: Path | None, stream: TextIO | None = None) -> None:
    """Print ``text`` (stdout by default) and append it, time-stamped, to ``<out>/train.log``: the run folder
    keeps what the terminal showed."""
    print(text, file=stream or sys.stdout, flush=True)
    if out is not None:
        with open(out / "train.log", "a") as log:
            log.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {text.strip()}\n")


def _duration(seconds: float) -> str:
    s = round(seconds)
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{seconds:.1f}s"


def report_epoch(history: list[dict], epochs: int, timing: list[tuple[float, float]], out: Path | None) -> None:
    """After each epoch: epochs.csv rewritten (a run's curves are readable while it runs), and one line on the
    terminal and in train.log. ``timing``: (seconds, share of an epoch trained) of this process's epochs."""
    if out is not None:
        write_epochs_csv(out / "epochs.csv", history)
    per_epoch = sum(t for t, _ in timing) / (sum(share for _, share in timing) or 1)
    say(epoch_line(history[-1], history, epochs, per_epoch), out)


def epoch_line(record: dict, history: list[dict], epochs: int, per_epoch: float) -> str:
    """The per-epoch summary: losses, accuracies, the best epoch so far, time per epoch and the run's ETA."""
    terms = [k.removeprefix("train_") for k in record if k.startswith("train_") and k != "train_top1"]
    parts = [f"epoch {record['epoch']}/{epochs}", " ".join(f"{t} {record[f'train_{t}']:.4g}" for t in terms),
             f"train top-1 {record['train_top1']:.2f}"]
    if "val_top1" in record:
        best = max((r for r in history if "val_top1" in r), key=lambda r: r["val_top1"])
        parts += [f"val top-1 {record['val_top1']:.2f}", f"best {best['val_top1']:.2f} (epoch {best['epoch']})"]
    parts += [f"{_duration(per_epoch)}/epoch", f"ETA {_duration(per_epoch * (epochs - record['epoch']))}"]
    return "  ".join(parts)


def _batchnorm_layers(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def warn_batchnorm(cfg: TrainConfig, model: nn.Module, objective: Objective | None = None) -> None:
    """ALBAR passes motion and static clips through the model: BatchNorm in train mode mixes their statistics
    and couples the samples that the per-sample gradient penalty treats as independent (any objective with
    ``per_sample_inputs``)."""
    layers = _batchnorm_layers(model)
    per_sample = (objective or build_objective(cfg.objective)).per_sample_inputs if layers else False
    if layers and not cfg.model.freeze_bn and per_sample:
        under = "ALBAR" if cfg.objective.name == "albar" else f"objective {cfg.objective.name!r}"
        warnings.warn(
            f"model {cfg.model.name} has {len(layers)} BatchNorm layers in train mode under {under}: motion and "
            "static clips share batch statistics and the gradient penalty is no longer per sample; set "
            "model.freeze_bn=true to use their running statistics (pretrained weights), or use a model "
            "without BatchNorm (swin3d_t, small3d)", UserWarning, stacklevel=3)


def train_mode(model: nn.Module, freeze_bn: bool) -> None:
    """``model.train()``; with ``freeze_bn`` its BatchNorm layers stay in eval mode (running statistics, not
    updated); their affine weights still train."""
    model.train()
    if freeze_bn:
        for layer in _batchnorm_layers(model):
            layer.eval()


def clip_and_check(accelerator: Accelerator, model: nn.Module, max_norm: float | None, step: int, epoch: int,
                   terms: dict[str, float]) -> None:
    """Clip the gradient to ``max_norm`` (None: only measure it) and refuse a non-finite norm before the
    update that would spread it into the weights. Under fp16 the scaler skips such a step and lowers its
    scale: that is expected and left to it."""
    norm = accelerator.clip_grad_norm_(model.parameters(), max_norm or math.inf)
    if norm is None or accelerator.scaler is not None or math.isfinite(float(norm)):
        return
    raise NonFiniteLossError(f"non-finite gradient norm ({float(norm)}) at epoch {epoch + 1}, optimiser step "
                             f"{step + 1}: the update was not applied and the last checkpoint is left as it was; "
                             f"loss terms {terms}")


def open_steps_log(path: Path, resumed_step: int) -> TextIO:
    """``steps.jsonl`` for appending, without the records of steps after ``resumed_step``: a resumed run
    redoes them (and a kill may have cut the last line)."""
    if path.is_file():
        lines = path.read_text().splitlines()
        keep = []
        for line in lines:
            try:
                if json.loads(line)["step"] <= resumed_step:
                    keep.append(line)
            except (ValueError, KeyError, TypeError):
                continue
        if keep != lines:
            atomic_write_text(path, "".join(f"{line}\n" for line in keep))
    return open(path, "a")


def validate(model: nn.Module, val_set: ClipDataset, accelerator: Accelerator, cfg: TrainConfig,
             log: FailureLog | None, epoch: int, out: Path | None) -> dict[str, float]:
    """Validation top-1 (an unreadable item counts as wrong) and the number of unreadable items, which are
    logged (set ``val``) and named on the terminal like training failures."""
    preds = predict(model, val_set, accelerator, batch_size=cfg.eval.batch_size or 2 * cfg.optim.batch_size,
                    num_workers=cfg.data.num_workers)
    record = {"val_top1": topk_accuracy(preds.scores, preds.labels, 1)}
    if preds.errors:
        record["val_failed"] = len(preds.errors)
        if accelerator.is_main_process:
            _note_val_failures(val_set, preds.errors, log, epoch, out)
    return record


def _note_val_failures(val_set: ClipDataset, errors: dict[str, str], log: FailureLog | None, epoch: int,
                       out: Path | None) -> None:
    where = {item.key: (i, item) for i, item in enumerate(val_set.items)}
    for key, reason in errors.items():
        if log is not None:
            i, item = where[key]
            log.record({"key": key, "source": str(item.source), "reason": reason, "index": i, "epoch": epoch,
                        "set": "val"})
    named = "; ".join(f"{where[k][1].source}: {r}" for k, r in list(errors.items())[:3])
    more = f" and {len(errors) - 3} more" if len(errors) > 3 else ""
    listed = f" (listed in {log.path})" if log is not None and log.path is not None else ""
    say(f"epoch {epoch + 1}: {len(errors)} unreadable validation file(s), counted as wrong: {named}{more}{listed}",
        out, sys.stderr)


@dataclass
class Training:
    """Everything one run's loop works with, built once by :func:`build_training`."""

    cfg: TrainConfig
    accelerator: Accelerator
    model: nn.Module
    optimizer: Any
    scheduler: torch.optim.lr_scheduler.LambdaLR
    sampler: EpochShardSampler
    loader: DataLoader
    objective: Objective
    method: BatchMethod
    steps_per_epoch: int
    checkpoint: RunCheckpoint
    out: Path | None = None
    progress: bool = True
    desc: str = "train"
    stop: StopRequest = field(default_factory=StopRequest)
    steps_log: TextIO | None = None
    batches: Iterator[dict] | None = None  # the loader's iterator: dropped at the end, whatever the exit
    step_model: nn.Module | None = None  # what the training step calls: ``model`` compiled (compile.enabled) or None

    @property
    def main(self) -> bool:
        return self.accelerator.is_main_process


def build_training(cfg: TrainConfig, train_set: Dataset, accelerator: Accelerator, out: Path | None,
                   meta: dict) -> Training:
    """Model, objective, batch method, sampler, optimiser, per-step LR schedule and loader, in this order (the
    seeded initialisation depends on it)."""
    main = accelerator.is_main_process
    set_seed(cfg.seed)
    model = build_model(cfg.model.name, cfg.model.num_classes, cfg.model.weights, **cfg.model.kwargs)
    # the run's context, for the entries that declare it (SDN: the model's feature width, the training keys)
    context = {"config": cfg, "model": model, "train_items": getattr(train_set, "items", None)}
    objective, method = build_objective(cfg.objective, context), build_method(cfg.method, context)
    objective.to(accelerator.device)
    if main:
        warn_batchnorm(cfg, model, objective)
    if accelerator.num_processes > 1 and any(True for _ in objective.parameters()):
        raise ValueError(f"objective {cfg.objective.name!r} trains parameters of its own: several processes "
                         "would let them drift apart (not supported yet); train on one")
    o, world = cfg.optim, accelerator.num_processes
    global_batch = o.batch_size * world * o.grad_accum
    sampler = EpochShardSampler(len(train_set), o.batch_size, accelerator.process_index, world, cfg.seed)
    steps_per_epoch = sampler.batches_per_epoch // o.grad_accum
    if steps_per_epoch < 1:
        raise ValueError(f"training set has {len(train_set)} clips, fewer than one global batch ({global_batch})")
    optimizer = torch.optim.AdamW(
        [*model.parameters(), *objective.parameters()], lr=scaled_lr(o.lr, global_batch, o.lr_reference_batch),
        betas=o.betas, weight_decay=o.weight_decay,
    )
    total, warmup = steps_per_epoch * o.epochs, round(o.warmup_epochs * steps_per_epoch)
    # Not prepared: accelerate would step it once per process. Every rank steps it identically instead.
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: warmup_cosine(s, total, warmup))
    model, optimizer = accelerator.prepare(model, optimizer)
    # its own generator: starting an epoch must not draw from the global RNG (dropout, stochastic depth); pinned
    # batches on a GPU, so that the step's non_blocking copies overlap (as torchvision's references; unmeasured here)
    loader = DataLoader(train_set, batch_size=o.batch_size, sampler=sampler, num_workers=cfg.data.num_workers,
                        drop_last=True, persistent_workers=False, generator=torch.Generator().manual_seed(cfg.seed),
                        worker_init_fn=_ignore_stop_signals if cfg.data.num_workers else None,
                        pin_memory=accelerator.device.type == "cuda")
    checkpoint = RunCheckpoint(out, accelerator, model, optimizer, scheduler, meta)
    checkpoint.objective = objective  # its own weights (SDN's scene head) resume with the run
    run = Training(cfg, accelerator, model, optimizer, scheduler, sampler, loader, objective, method,
                   steps_per_epoch, checkpoint, out)
    if cfg.compile.enabled:
        check_precision(cfg.compile, accelerator.device.type, cfg.mixed_precision)
        run.step_model = compile_for_steps(model, cfg.compile)
        if main:  # the first steps are slow while it compiles: say why
            c = cfg.compile
            say(f"compile: the training step's first-order passes go through torch.compile (backend {c.backend}, "
                f"mode {c.mode or 'default'}); the first steps compile them, the exact gradient penalty runs eager",
                out)
    return run


def batch_extras(batch: dict, device: torch.device) -> dict:
    """The loader batch's entries besides clip and label (key, index, actor_mask...), tensors on ``device``."""
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()
            if k not in ("clip", "label")}


def check_finite_loss(terms: Terms, state: LoopState) -> None:
    if not torch.isfinite(terms.total):
        bad = [n for n, v in terms.scalars().items() if not math.isfinite(v)]
        raise NonFiniteLossError(f"non-finite loss at epoch {state.epoch + 1}, optimiser step {state.step + 1}: "
                                 f"terms {bad} are not finite ({terms.scalars()}); the last checkpoint is left as "
                                 "it was")


def accumulate(run: Training, state: LoopState) -> dict[str, float]:
    """The ``grad_accum`` micro-batches of one optimiser step: forward, backward, the epoch's running sums.
    Returns the last micro-batch's loss terms."""
    cfg, acc, stats = run.cfg, run.accelerator, state.stats
    accum, sums = cfg.optim.grad_accum, stats["sums"]
    assert run.batches is not None
    for k in range(accum):
        batch = next(run.batches)
        clip = batch["clip"].to(acc.device, non_blocking=True)
        label = batch["label"].to(acc.device, non_blocking=True)
        # the method's draws depend on (seed, step, rank) only: exact after a resume
        g = torch.Generator(device="cpu").manual_seed(
            cfg.seed * 1_000_003 + (state.step * accum + k) * acc.num_processes + acc.process_index)
        step_model = run.model if run.step_model is None else run.step_model
        with acc.no_sync(run.model) if k < accum - 1 else nullcontext():
            with acc.autocast():
                terms = method_step(step_model, clip, label, run.method, run.objective, g, state.step,
                                    run.steps_per_epoch, batch_extras(batch, acc.device)).terms
            check_finite_loss(terms, state)
            acc.backward(terms.total / accum)
        scalars = terms.scalars()
        counts = stats.setdefault("counts", {})  # a term may be absent from some steps (ALBAR's at ramp weight 0)
        for name, v in scalars.items():
            sums[name] = sums.get(name, 0.0) + v
            counts[name] = counts.get(name, 0) + 1
        stats["correct"] += int((terms.logits.argmax(1) == label).sum())
        stats["seen"] += len(label)
        stats["micro"] += 1
    return scalars


def log_step(run: Training, state: LoopState, lr: float, scalars: dict[str, float]) -> None:
    """steps.jsonl (main process) and the tracker's per-step scalars, after optimiser step ``state.step``."""
    state.last_rng = rng_state() if run.out is not None else None
    if run.steps_log is not None:
        run.steps_log.write(json.dumps({"step": state.step, "epoch": state.epoch + 1, "lr": lr, "time": time.time(),
                                        **scalars}) + "\n")
        run.steps_log.flush()
    if run.out is not None:
        run.accelerator.log({f"train/{k}": v for k, v in scalars.items()} | {"train/lr": lr}, step=state.step)


def stop_if_signalled(run: Training, state: LoopState, resume_epoch: int, resume_batch: int, stats: dict | None,
                      saved: bool) -> None:
    """After a step: if any rank got SIGTERM/SIGUSR1, all save ``last.pt`` (unless just ``saved``) and stop."""
    signum = run.stop.agreed(run.accelerator)
    if not signum:
        return
    if not saved:
        run.checkpoint.save(state, resume_epoch, resume_batch, stats)
    if run.main:
        say(str(TrainingInterrupted(signum, state.epoch + 1, state.step, run.checkpoint.last)), run.out, sys.stderr)
    raise TrainingInterrupted(signum, state.epoch + 1, state.step, run.checkpoint.last)  # unbound: no ref. cycle


def train_one_epoch(run: Training, state: LoopState) -> None:
    """Epoch ``state.epoch`` from optimiser step ``state.start_batch``: each step logged, ``last.pt`` every
    ``checkpoint.every_steps``, stop signals honoured at step boundaries."""
    cfg, epoch, first = run.cfg, state.epoch, state.start_batch
    run.loader.dataset.set_epoch(epoch)  # type: ignore[attr-defined]
    run.sampler.set_epoch(epoch, first * cfg.optim.grad_accum)
    train_mode(run.model, cfg.model.freeze_bn)
    # a resumed epoch's metrics cover its batches before the interruption too
    state.stats = state.resumed_stats if first and state.resumed_stats else fresh_epoch_stats()
    bar = tqdm(total=run.steps_per_epoch, initial=first, desc=f"{run.desc} {epoch + 1}/{cfg.optim.epochs}",
               leave=False, disable=not (run.progress and run.main))
    run.batches = iter(run.loader)
    for batch_in_epoch in range(first, run.steps_per_epoch):
        scalars = accumulate(run, state)
        clip_and_check(run.accelerator, run.model, cfg.optim.grad_clip, state.step, epoch, scalars)
        lr = state.last_lr = run.scheduler.get_last_lr()[0]
        run.optimizer.step()
        run.scheduler.step()
        run.optimizer.zero_grad(set_to_none=True)
        state.step += 1
        log_step(run, state, lr, scalars)
        bar.update()
        bar.set_postfix(loss=f"{state.stats['sums']['loss'] / state.stats['micro']:.3f}")
        every = cfg.checkpoint.every_steps
        due = bool(every) and state.step % every == 0 and batch_in_epoch + 1 < run.steps_per_epoch
        if due:
            run.checkpoint.save(state, epoch, batch_in_epoch + 1, state.stats)
        stop_if_signalled(run, state, epoch, batch_in_epoch + 1, state.stats, saved=due)
    bar.close()


def epoch_record(run: Training, state: LoopState) -> dict[str, float]:
    """The finished epoch's training metrics; lr is the one its last step used (steps.jsonl has every step's)."""
    stats = state.stats
    record: dict[str, float] = {"epoch": state.epoch + 1, "lr": state.last_lr,
                                "train_top1": 100.0 * stats["correct"] / max(stats["seen"], 1)}
    counts = stats.get("counts", {})  # mean over the steps that computed the term
    record.update({f"train_{k}": v / max(counts.get(k, stats["micro"]), 1) for k, v in stats["sums"].items()})
    train_set = run.loader.dataset
    if isinstance(train_set, RobustClipDataset):
        record["failed_files"] = train_set.failure_count
        if record["failed_files"] and run.main:
            say(f"epoch {state.epoch + 1}: {record['failed_files']} unreadable training files so far, replaced by "
                f"other clips (listed in {getattr(train_set.log, 'path', None)})", run.out, sys.stderr)
    return record


def evaluate(run: Training, state: LoopState, val_set: ClipDataset | None,
             evaluate_bias: Callable[[nn.Module, Accelerator], dict[str, float]] | None) -> dict[str, float]:
    """Validation top-1 every epoch; the bias suite every ``eval.bias_every_epochs`` (not the last: the run's
    own evaluation follows it)."""
    record: dict[str, float] = {}
    if val_set is not None:
        log = getattr(run.loader.dataset, "log", None)
        record.update(validate(run.model, val_set, run.accelerator, run.cfg, log, state.epoch, run.out))
    k_every, epoch = run.cfg.eval.bias_every_epochs, state.epoch + 1
    if evaluate_bias is not None and k_every and epoch % k_every == 0 and epoch < run.cfg.optim.epochs:
        record.update(evaluate_bias(run.model, run.accelerator))
    return record


def end_epoch(run: Training, state: LoopState, record: dict[str, float]) -> None:
    """Record the epoch (history, tracker), keep ``best.pt``, and save ``last.pt`` at the next epoch's start."""
    state.history.append(record)
    if run.out is not None:
        run.accelerator.log({f"epoch/{k}": v for k, v in record.items() if isinstance(v, (int, float))},
                            step=state.step)
    score = record.get("val_top1")
    if score is not None and (state.best is None or score > state.best):
        state.best = score
        run.checkpoint.save_best(state, state.epoch, score)
    state.start_batch = 0


def resume_or_start(run: Training, state: LoopState) -> None:
    path = run.checkpoint.resume_path(run.cfg.resume)
    if path is not None:
        run.checkpoint.resume(path, state)
        if run.main:
            say(f"resumed from {path}: epoch {state.epoch + 1}, step {state.step}", run.out)
    if run.out is not None:
        run.accelerator.init_trackers(run.cfg.log.project, config=_flat_hparams(run.cfg), init_kwargs={  # W&B: in
            "wandb": {"name": run.out.name, "dir": os.environ.get("WANDB_DIR") or str(run.out)}})  # the run folder
    state.last_rng, state.last_lr = rng_state(), run.scheduler.get_last_lr()[0]


def train(
    cfg: TrainConfig,
    train_set: ClipDataset | RobustClipDataset,
    val_set: ClipDataset | None = None,
    accelerator: Accelerator | None = None,
    out_dir: str | Path | None = None,
    progress: bool = True,
    desc: str = "train",
    on_epoch_end: Callable[[int, dict[str, float]], None] | None = None,
    evaluate_bias: Callable[[nn.Module, Accelerator], dict[str, float]] | None = None,
    meta: dict | None = None,
) -> TrainResult:
    """Train ``cfg.model`` on ``train_set`` with ``cfg.objective`` and ``cfg.method``.

    With ``out_dir``: checkpoints (``last.pt``, ``best.pt`` by validation top-1, each with ``meta`` merged in),
    ``steps.jsonl`` (one line per optimiser step), ``epochs.csv`` and ``train.log`` (one line per epoch),
    TensorBoard scalars, and resume from ``last.pt`` per ``cfg.resume``. SIGTERM/SIGUSR1 save ``last.pt`` and
    raise :class:`TrainingInterrupted`. ``evaluate_bias`` runs every ``cfg.eval.bias_every_epochs`` epochs;
    its metrics join the epoch record.
    """
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    out = ensure_folder(out_dir, "out_dir") if out_dir is not None else None
    accelerator = accelerator or make_accelerator(cfg, out)
    meta = meta if meta is not None else checkpoint_meta(cfg, getattr(train_set, "classes", None))
    run = build_training(cfg, train_set, accelerator, out, meta)
    run.progress, run.desc = progress, desc
    state = LoopState()
    resume_or_start(run, state)
    run.steps_log = open_steps_log(out / "steps.jsonl", state.step) if out is not None and run.main else None
    timing: list[tuple[float, float]] = []  # (seconds, share of an epoch) of the epochs run by this process
    run.stop.install()
    try:
        for epoch in range(state.epoch, cfg.optim.epochs):
            began, state.epoch, first = time.monotonic(), epoch, state.start_batch
            train_one_epoch(run, state)
            record = epoch_record(run, state) | evaluate(run, state, val_set, evaluate_bias)
            end_epoch(run, state, record)
            if on_epoch_end is not None and run.main:
                on_epoch_end(epoch, record)
            run.checkpoint.save(state, epoch + 1, 0)
            timing.append((time.monotonic() - began, (run.steps_per_epoch - first) / run.steps_per_epoch))
            if run.main:
                report_epoch(state.history, cfg.optim.epochs, timing, out)
            stop_if_signalled(run, state, epoch + 1, 0, None, saved=True)
    except TrainingInterrupted:
        raise
    except KeyboardInterrupt:
        said = run.checkpoint.save_interrupted(state, run.steps_per_epoch)
        if said is not None:
            say(said, out, sys.stderr)
        raise
    finally:
        # the loader's workers ignore stop signals: shut them down now, whatever the exit, not at interpreter exit
        # (where multiprocessing would wait for them to die of SIGTERM)
        run.batches = None
        run.stop.restore()
        if run.steps_log is not None:
            run.steps_log.close()
    return TrainResult(model=bare_model(accelerator, run.model), accelerator=accelerator,
                       history=state.history, best_score=state.best, step=state.step)
