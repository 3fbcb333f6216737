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
from accelerate.utils import gather_object, set_seed
from torch import nn
from torch.utils.data import DataLoader, Sampler
from tqdm import tqdm

from albar.config import TrainConfig
from albar.data.dataset import ClipDataset
from albar.data.robust import FailureLog, RobustClipDataset
from albar.evaluation.metrics import topk_accuracy
from albar.evaluation.predict import predict
from albar.methods import build_method, method_step
from albar.models import build_model
from albar.objectives import ALBARLoss
from albar.training.checkpoint import first_non_finite, load_resume_state, rng_state, save_checkpoint, set_rng_state
from albar.training.schedule import scaled_lr, warmup_cosine
from albar.utils import atomic_write_text, ensure_folder

# Slurm and Kubernetes send SIGTERM before killing a job; Slurm's --signal=USR1@<seconds> warns ahead of the limit
STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGUSR1") if hasattr(signal, name))


class NonFiniteLossError(FloatingPointError):
    """The loss, its gradient or the weights became NaN or Inf; the message names the step and the terms."""


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


def warn_batchnorm(cfg: TrainConfig, model: nn.Module) -> None:
    """ALBAR passes motion and static clips through the model: BatchNorm in train mode mixes their statistics
    and couples the samples that the per-sample gradient penalty treats as independent."""
    ob, layers = cfg.objective, _batchnorm_layers(model)
    if layers and not cfg.model.freeze_bn and (ob.w_adv or ob.w_ent or ob.w_gp):
        warnings.warn(
            f"model {cfg.model.name} has {len(layers)} BatchNorm layers in train mode under ALBAR: motion and "
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


def require_finite(state: dict[str, Any], step: int, path: Path | None) -> None:
    """Refuse to save weights (or optimiser moments) that hold NaN or Inf: the file on disk stays the last good
    state, and every resume would otherwise start from the bad one."""
    bad = first_non_finite(state)
    if bad is not None:
        kept = f"{path} is left as it was (the last good state)" if path is not None else "nothing saved"
        raise NonFiniteLossError(f"after optimiser step {step}, {bad[0]} holds {bad[1]} non-finite values (of "
                                 f"{bad[2]}): the training diverged; {kept}")


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
    """Train ``cfg.model`` on ``train_set`` with the objective of ``cfg.objective``.

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
    main = accelerator.is_main_process
    set_seed(cfg.seed)
    model = build_model(cfg.model.name, cfg.model.num_classes, cfg.model.weights, **cfg.model.kwargs)
    if main:
        warn_batchnorm(cfg, model)
    ob, o = cfg.objective, cfg.optim
    criterion = ALBARLoss(ob.w_adv, ob.w_ent, ob.w_gp, ob.frame, gp_norm=ob.gp_norm)
    method = build_method(cfg.method)
    world = accelerator.num_processes
    global_batch = o.batch_size * world * o.grad_accum
    sampler = EpochShardSampler(len(train_set), o.batch_size, accelerator.process_index, world, cfg.seed)
    steps_per_epoch = sampler.batches_per_epoch // o.grad_accum
    if steps_per_epoch < 1:
        raise ValueError(f"training set has {len(train_set)} clips, fewer than one global batch ({global_batch})")
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=scaled_lr(o.lr, global_batch, o.lr_reference_batch), betas=o.betas,
        weight_decay=o.weight_decay,
    )
    total, warmup = steps_per_epoch * o.epochs, round(o.warmup_epochs * steps_per_epoch)
    ramp = round(ob.ramp_epochs * steps_per_epoch)
    # Not prepared: accelerate would step it once per process. Every rank steps it identically instead.
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: warmup_cosine(s, total, warmup))
    model, optimizer = accelerator.prepare(model, optimizer)
    # its own generator: starting an epoch must not draw from the global RNG (dropout, stochastic depth)
    loader = DataLoader(train_set, batch_size=o.batch_size, sampler=sampler, num_workers=cfg.data.num_workers,
                        drop_last=True, persistent_workers=False, generator=torch.Generator().manual_seed(cfg.seed),
                        worker_init_fn=_ignore_stop_signals if cfg.data.num_workers else None)
    meta = meta if meta is not None else {"config": cfg.model_dump(mode="json")}
    failure_log = getattr(train_set, "log", None)

    history: list[dict[str, float]] = []
    step, start_epoch, start_batch, best = 0, 0, 0, None
    resumed_stats: dict | None = None  # the running sums of an epoch interrupted mid-way
    last_path = out / "last.pt" if out is not None else None
    resume = None if cfg.resume == "never" or out is None else (
        last_path if cfg.resume == "auto" else Path(cfg.resume)
    )
    if resume is not None and (resume.is_file() or cfg.resume != "auto"):
        state = load_resume_state(resume)
        accelerator.unwrap_model(model).load_state_dict(state["model"])
        optimizer.optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if accelerator.scaler is not None and state.get("scaler"):
            accelerator.scaler.load_state_dict(state["scaler"])
        step, start_epoch, start_batch = state["step"], state["epoch"], state["batch_in_epoch"]
        best, history = state["best_score"], state["history"]
        resumed_stats = state.get("epoch_stats")
        ranks = state["rng"]
        set_rng_state(ranks[accelerator.process_index] if accelerator.process_index < len(ranks) else ranks[0])
        if main:
            say(f"resumed from {resume}: epoch {start_epoch + 1}, step {step}", out)
    if out is not None:
        accelerator.init_trackers(cfg.log.project, config=_flat_hparams(cfg))

    def weights() -> dict[str, torch.Tensor]:
        return accelerator.unwrap_model(model).state_dict()

    def state(epoch: int, batch_in_epoch: int, rng: list, stats: dict | None) -> dict:
        return {
            **meta, "model": weights(), "optimizer": optimizer.optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "scaler": accelerator.scaler.state_dict() if accelerator.scaler is not None else None,
            "step": step, "epoch": epoch, "batch_in_epoch": batch_in_epoch, "best_score": best, "history": history,
            "rng": rng, "epoch_stats": stats if batch_in_epoch else None,
        }

    def checkpoint(epoch: int, batch_in_epoch: int, stats: dict | None = None) -> None:
        if last_path is None:
            return
        # on every rank (they hold the same weights), so that all stop together
        require_finite({"model": weights(), "optimizer": optimizer.optimizer.state_dict()}, step, last_path)
        states = gather_object([rng_state()]) if world > 1 else [rng_state()]
        if main:
            save_checkpoint(last_path, state(epoch, batch_in_epoch, states, stats))
        accelerator.wait_for_everyone()

    def stop_if_signalled(resume_epoch: int, resume_batch: int, stats: dict | None, saved: bool) -> None:
        signum = stop.agreed(accelerator)
        if not signum:
            return
        if not saved:
            checkpoint(resume_epoch, resume_batch, stats)
        if main:
            say(str(TrainingInterrupted(signum, epoch + 1, step, last_path)), out, sys.stderr)
        raise TrainingInterrupted(signum, epoch + 1, step, last_path)  # not bound to a name: no reference cycle

    steps_log = open_steps_log(out / "steps.jsonl", step) if out is not None and main else None
    epoch, last_rng, last_lr = start_epoch, rng_state(), scheduler.get_last_lr()[0]
    stats: dict = {"sums": {}, "correct": 0, "seen": 0, "micro": 0}
    timing: list[tuple[float, float]] = []  # (seconds, share of an epoch) of the epochs run by this process
    stop, batches = StopRequest().install(), None
    try:
        for epoch in range(start_epoch, o.epochs):
            began = time.monotonic()
            train_set.set_epoch(epoch)
            first = start_batch if epoch == start_epoch else 0
            sampler.set_epoch(epoch, first * o.grad_accum)
            train_mode(model, cfg.model.freeze_bn)
            if epoch == start_epoch and first and resumed_stats:
                stats = resumed_stats  # the epoch's metrics cover its batches before the interruption too
            else:
                stats = {"sums": {}, "correct": 0, "seen": 0, "micro": 0}
            sums = stats["sums"]
            bar = tqdm(total=steps_per_epoch, initial=first, desc=f"{desc} {epoch + 1}/{o.epochs}", leave=False,
                       disable=not (progress and main))
            batches = iter(loader)
            for batch_in_epoch in range(first, steps_per_epoch):
                for k in range(o.grad_accum):
                    batch = next(batches)
                    clip = batch["clip"].to(accelerator.device, non_blocking=True)
                    label = batch["label"].to(accelerator.device, non_blocking=True)
                    scale = min(1.0, step / ramp) if ramp else 1.0
                    sync = k == o.grad_accum - 1
                    g = torch.Generator(device="cpu").manual_seed(
                        cfg.seed * 1_000_003 + (step * o.grad_accum + k) * world + accelerator.process_index
                    )  # the method's draws depend on (seed, step, rank) only: exact after a resume
                    with accelerator.no_sync(model) if not sync else nullcontext():
                        with accelerator.autocast():
                            terms = method_step(model, clip, label, method, criterion, g, scale).terms
                        if not torch.isfinite(terms.total):
                            bad = [n for n, v in terms.scalars().items() if not math.isfinite(v)]
                            raise NonFiniteLossError(
                                f"non-finite loss at epoch {epoch + 1}, optimiser step {step + 1}: terms {bad} "
                                f"are not finite ({terms.scalars()}); the last checkpoint is left as it was"
                            )
                        accelerator.backward(terms.total / o.grad_accum)
                    scalars = terms.scalars()
                    for name, v in scalars.items():
                        sums[name] = sums.get(name, 0.0) + v
                    stats["correct"] += int((terms.logits.argmax(1) == label).sum())
                    stats["seen"] += len(label)
                    stats["micro"] += 1
                clip_and_check(accelerator, model, o.grad_clip, step, epoch, scalars)
                lr = last_lr = scheduler.get_last_lr()[0]
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                step += 1
                last_rng = rng_state() if out is not None else None
                if steps_log is not None:
                    steps_log.write(json.dumps({"step": step, "epoch": epoch + 1, "lr": lr, "time": time.time(),
                                                **scalars}) + "\n")
                    steps_log.flush()
                if out is not None:
                    accelerator.log({f"train/{k}": v for k, v in scalars.items()} | {"train/lr": lr}, step=step)
                bar.update()
                bar.set_postfix(loss=f"{sums['loss'] / stats['micro']:.3f}")
                every = cfg.checkpoint.every_steps
                due = bool(every) and step % every == 0 and batch_in_epoch + 1 < steps_per_epoch
                if due:
                    checkpoint(epoch, batch_in_epoch + 1, stats)
                stop_if_signalled(epoch, batch_in_epoch + 1, stats, saved=due)
            bar.close()
            # lr: the one the epoch's last step used (steps.jsonl has every step's)
            record: dict[str, float] = {"epoch": epoch + 1, "lr": last_lr,
                                        "train_top1": 100.0 * stats["correct"] / max(stats["seen"], 1)}
            record.update({f"train_{k}": v / max(stats["micro"], 1) for k, v in sums.items()})
            if hasattr(train_set, "failure_count"):
                record["failed_files"] = train_set.failure_count
                if record["failed_files"] and main:
                    say(f"epoch {epoch + 1}: {record['failed_files']} unreadable training files so far, "
                        f"replaced by other clips (listed in {getattr(failure_log, 'path', None)})", out,
                        sys.stderr)
            if val_set is not None:
                record.update(validate(model, val_set, accelerator, cfg, failure_log, epoch, out))
            k_every = cfg.eval.bias_every_epochs
            if evaluate_bias is not None and k_every and (epoch + 1) % k_every == 0 and epoch + 1 < o.epochs:
                record.update(evaluate_bias(model, accelerator))
            history.append(record)
            if out is not None:
                accelerator.log({f"epoch/{k}": v for k, v in record.items() if isinstance(v, (int, float))},
                                step=step)
            score = record.get("val_top1")
            if score is not None and (best is None or score > best):
                best = score
                if main and out is not None:
                    require_finite({"model": weights()}, step, out / "best.pt")
                    save_checkpoint(out / "best.pt", {**meta, "model": weights(), "epoch": epoch + 1,
                                                      "val_top1": score})
            if on_epoch_end is not None and main:
                on_epoch_end(epoch, record)
            start_batch = 0
            checkpoint(epoch + 1, 0)
            timing.append((time.monotonic() - began, (steps_per_epoch - first) / steps_per_epoch))
            if main:
                report_epoch(history, o.epochs, timing, out)
            stop_if_signalled(epoch + 1, 0, None, saved=True)
    except TrainingInterrupted:
        raise
    except KeyboardInterrupt:
        if last_path is not None and main:
            # the state after the last finished optimiser step: resumable exactly (one process; under several
            # processes every rank restarts from rank 0's random state)
            done = step - epoch * steps_per_epoch
            if history and history[-1]["epoch"] == epoch + 1:  # the epoch was recorded: resume at the next
                epoch, done = epoch + 1, 0
            if first_non_finite({"model": weights()}) is not None:
                say(f"\ninterrupted: the weights are not finite; {last_path} is left as it was", out, sys.stderr)
            else:
                save_checkpoint(last_path, state(epoch, done, [last_rng] * world, stats))
                say(f"\ninterrupted: saved {last_path} (epoch {epoch + 1}, step {step}); run again to resume", out,
                    sys.stderr)
        raise
    finally:
        # the loader's workers ignore stop signals: shut them down now, whatever the exit, not at interpreter exit
        # (where multiprocessing would wait for them to die of SIGTERM)
        batches = None  # noqa: F841
        stop.restore()
        if steps_log is not None:
            steps_log.close()
    return TrainResult(model=accelerator.unwrap_model(model), accelerator=accelerator, history=history,
                       best_score=best, step=step)
