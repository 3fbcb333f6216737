"""The training loop on HF accelerate: the same code on one CPU process, one GPU, many GPUs or nodes.

What it guarantees: the LR schedule is computed identically on every rank and stepped per optimiser step;
data order and augmentation depend only on (seed, epoch, index), so a run resumed from ``last.pt`` (written
every N steps, every epoch and on Ctrl-C) continues exactly; a non-finite loss stops the run before it
touches the last good checkpoint.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import gather_object, set_seed
from torch import nn
from torch.utils.data import DataLoader, Sampler
from tqdm import tqdm

from albar.config import TrainConfig
from albar.data.dataset import ClipDataset
from albar.data.robust import RobustClipDataset
from albar.evaluation.metrics import topk_accuracy
from albar.evaluation.predict import predict
from albar.methods import build_method, method_step
from albar.models import build_model
from albar.objectives import ALBARLoss
from albar.training.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from albar.training.schedule import scaled_lr, warmup_cosine


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or Inf; the message names the step and the terms."""


@dataclass
class TrainResult:
    model: nn.Module
    accelerator: Accelerator
    history: list[dict[str, float]] = field(default_factory=list)
    best_score: float | None = None


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
) -> TrainResult:
    """Train ``cfg.model`` on ``train_set`` with the objective of ``cfg.objective``.

    With ``out_dir``: checkpoints (``last.pt``, ``best.pt`` by validation top-1), ``steps.jsonl`` (one line
    per optimiser step), TensorBoard scalars, and resume from ``last.pt`` per ``cfg.resume``.
    ``evaluate_bias`` runs every ``cfg.eval.bias_every_epochs`` epochs; its metrics join the epoch record.
    """
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    out = Path(out_dir) if out_dir is not None else None
    accelerator = accelerator or make_accelerator(cfg, out)
    set_seed(cfg.seed)
    model = build_model(cfg.model.name, cfg.model.num_classes, cfg.model.weights, **cfg.model.kwargs)
    ob, o = cfg.objective, cfg.optim
    criterion = ALBARLoss(ob.w_adv, ob.w_ent, ob.w_gp, ob.frame)
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
                        drop_last=True, persistent_workers=False, generator=torch.Generator().manual_seed(cfg.seed))

    history: list[dict[str, float]] = []
    step, start_epoch, start_batch, best = 0, 0, 0, None
    resumed_stats: dict | None = None  # the running sums of an epoch interrupted mid-way
    last_path = out / "last.pt" if out is not None else None
    resume = None if cfg.resume == "never" or out is None else (
        last_path if cfg.resume == "auto" else Path(cfg.resume)
    )
    if resume is not None and (resume.is_file() or cfg.resume != "auto"):
        state = load_checkpoint(resume)
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
        if accelerator.is_main_process:
            print(f"resumed from {resume}: epoch {start_epoch + 1}, step {step}")
    if out is not None:
        accelerator.init_trackers(cfg.log.project, config=_flat_hparams(cfg))

    def state(epoch: int, batch_in_epoch: int, rng: list, stats: dict | None) -> dict:
        return {
            "model": accelerator.unwrap_model(model).state_dict(), "optimizer": optimizer.optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "scaler": accelerator.scaler.state_dict() if accelerator.scaler is not None else None,
            "step": step, "epoch": epoch, "batch_in_epoch": batch_in_epoch, "best_score": best, "history": history,
            "rng": rng, "epoch_stats": stats if batch_in_epoch else None, "config": cfg.model_dump(mode="json"),
        }

    def checkpoint(epoch: int, batch_in_epoch: int, stats: dict | None = None) -> None:
        states = gather_object([rng_state()]) if world > 1 else [rng_state()]
        if accelerator.is_main_process and last_path is not None:
            save_checkpoint(last_path, state(epoch, batch_in_epoch, states, stats))
        accelerator.wait_for_everyone()

    steps_log = open(out / "steps.jsonl", "a") if out is not None and accelerator.is_main_process else None
    epoch, last_rng, last_lr = start_epoch, rng_state(), scheduler.get_last_lr()[0]
    stats: dict = {"sums": {}, "correct": 0, "seen": 0, "micro": 0}
    try:
        for epoch in range(start_epoch, o.epochs):
            train_set.set_epoch(epoch)
            first = start_batch if epoch == start_epoch else 0
            sampler.set_epoch(epoch, first * o.grad_accum)
            model.train()
            if epoch == start_epoch and first and resumed_stats:
                stats = resumed_stats  # the epoch's metrics cover its batches before the interruption too
            else:
                stats = {"sums": {}, "correct": 0, "seen": 0, "micro": 0}
            sums = stats["sums"]
            bar = tqdm(total=steps_per_epoch, initial=first, desc=f"{desc} {epoch + 1}/{o.epochs}", leave=False,
                       disable=not (progress and accelerator.is_main_process))
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
                                f"non-finite loss at epoch {epoch + 1}, step {step}: terms {bad} are not finite "
                                f"({terms.scalars()}); the last good checkpoint is left as it was"
                            )
                        accelerator.backward(terms.total / o.grad_accum)
                    scalars = terms.scalars()
                    for name, v in scalars.items():
                        sums[name] = sums.get(name, 0.0) + v
                    stats["correct"] += int((terms.logits.argmax(1) == label).sum())
                    stats["seen"] += len(label)
                    stats["micro"] += 1
                if o.grad_clip:
                    accelerator.clip_grad_norm_(model.parameters(), o.grad_clip)
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
                if every and step % every == 0 and batch_in_epoch + 1 < steps_per_epoch:
                    checkpoint(epoch, batch_in_epoch + 1, stats)
            bar.close()
            # lr: the one the epoch's last step used (steps.jsonl has every step's)
            record: dict[str, float] = {"epoch": epoch + 1, "lr": last_lr,
                                        "train_top1": 100.0 * stats["correct"] / max(stats["seen"], 1)}
            record.update({f"train_{k}": v / max(stats["micro"], 1) for k, v in sums.items()})
            if hasattr(train_set, "failure_count"):
                record["failed_files"] = train_set.failure_count
                if record["failed_files"] and accelerator.is_main_process:
                    print(f"epoch {epoch + 1}: {record['failed_files']} unreadable training files so far, replaced "
                          f"by other clips (listed in {getattr(train_set.log, 'path', None)})", file=sys.stderr)
            if val_set is not None:
                preds = predict(model, val_set, accelerator, batch_size=cfg.eval.batch_size or 2 * o.batch_size,
                                num_workers=cfg.data.num_workers)
                record["val_top1"] = topk_accuracy(preds.scores, preds.labels, 1)
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
                if accelerator.is_main_process and out is not None:
                    save_checkpoint(out / "best.pt", {
                        "model": accelerator.unwrap_model(model).state_dict(), "epoch": epoch + 1,
                        "val_top1": score, "config": cfg.model_dump(mode="json"),
                    })
            if on_epoch_end is not None and accelerator.is_main_process:
                on_epoch_end(epoch, record)
            start_batch = 0
            checkpoint(epoch + 1, 0)
    except KeyboardInterrupt:
        if last_path is not None and accelerator.is_main_process:
            # the state after the last finished optimiser step: resumable exactly (one process; under several
            # processes every rank restarts from rank 0's random state)
            done = step - epoch * steps_per_epoch
            if history and history[-1]["epoch"] == epoch + 1:  # the epoch was recorded: resume at the next
                epoch, done = epoch + 1, 0
            save_checkpoint(last_path, state(epoch, done, [last_rng] * world, stats))
            print(f"\ninterrupted: saved {last_path} (epoch {epoch + 1}, step {step}); run again to resume",
                  file=sys.stderr)
        raise
    finally:
        if steps_log is not None:
            steps_log.close()
    return TrainResult(model=accelerator.unwrap_model(model), accelerator=accelerator, history=history,
                       best_score=best)
