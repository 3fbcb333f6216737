"""The training loop on HF accelerate: the same code on one CPU process, one GPU or many."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from albar.config import TrainConfig
from albar.data.dataset import ClipDataset
from albar.evaluation.metrics import topk_accuracy
from albar.evaluation.predict import predict
from albar.models import build_model
from albar.objectives import ALBARLoss
from albar.training.schedule import scaled_lr, warmup_cosine
from albar.utils import atomic_write


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or Inf; the message names the step and the terms."""


@dataclass
class TrainResult:
    model: nn.Module
    accelerator: Accelerator
    history: list[dict[str, float]] = field(default_factory=list)


def make_accelerator(cfg: TrainConfig) -> Accelerator:
    return Accelerator(cpu=not torch.cuda.is_available(), mixed_precision=cfg.mixed_precision)


def train(
    cfg: TrainConfig,
    train_set: ClipDataset,
    val_set: ClipDataset | None = None,
    accelerator: Accelerator | None = None,
    out_dir: str | Path | None = None,
    progress: bool = True,
    desc: str = "train",
    on_epoch_end: Callable[[int, dict[str, float]], None] | None = None,
) -> TrainResult:
    """Train ``cfg.model`` on ``train_set`` with the ALBAR objective of ``cfg.objective``."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    accelerator = accelerator or make_accelerator(cfg)
    set_seed(cfg.seed)
    model = build_model(cfg.model.name, cfg.model.num_classes, cfg.model.weights, **cfg.model.kwargs)
    ob = cfg.objective
    criterion = ALBARLoss(ob.w_adv, ob.w_ent, ob.w_gp, ob.frame)
    o = cfg.optim
    global_batch = o.batch_size * accelerator.num_processes
    if len(train_set) < global_batch:
        raise ValueError(f"training set has {len(train_set)} clips, fewer than one global batch ({global_batch})")
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=scaled_lr(o.lr, global_batch, o.lr_reference_batch),
        betas=o.betas, weight_decay=o.weight_decay,
    )
    loader = DataLoader(
        train_set, batch_size=o.batch_size, shuffle=True, drop_last=True, num_workers=cfg.data.num_workers,
        generator=torch.Generator().manual_seed(cfg.seed), persistent_workers=False,
    )
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    steps_per_epoch = len(loader)
    total = steps_per_epoch * o.epochs
    warmup = round(o.warmup_epochs * steps_per_epoch)
    ramp = round(cfg.objective.ramp_epochs * steps_per_epoch)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: warmup_cosine(s, total, warmup))
    # Not prepared: accelerate would step it once per process. Every rank steps it identically here.

    history: list[dict[str, float]] = []
    step = 0
    for epoch in range(o.epochs):
        train_set.set_epoch(epoch)
        if hasattr(loader, "set_epoch"):
            loader.set_epoch(epoch)
        model.train()
        sums: dict[str, float] = {}
        correct = seen = 0
        bar = tqdm(loader, desc=f"{desc} {epoch + 1}/{o.epochs}", leave=False,
                   disable=not (progress and accelerator.is_main_process))
        for batch in bar:
            with accelerator.autocast():
                scale = min(1.0, step / ramp) if ramp else 1.0
                terms = criterion(model, batch["clip"], batch["label"], weight_scale=scale)
            if not torch.isfinite(terms.total):
                bad = [k for k, v in terms.scalars().items() if not math.isfinite(v)]
                raise NonFiniteLossError(
                    f"non-finite loss at epoch {epoch + 1}, step {step}: terms {bad} are not finite "
                    f"({terms.scalars()})"
                )
            accelerator.backward(terms.total)
            if o.grad_clip:
                accelerator.clip_grad_norm_(model.parameters(), o.grad_clip)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            for k, v in terms.scalars().items():
                sums[k] = sums.get(k, 0.0) + v
            correct += int((terms.logits.argmax(1) == batch["label"]).sum())
            seen += len(batch["label"])
            bar.set_postfix(loss=f"{sums['loss'] / (bar.n + 1):.3f}")
        record = {"epoch": epoch + 1, "lr": scheduler.get_last_lr()[0], "train_top1": 100.0 * correct / max(seen, 1)}
        record.update({f"train_{k}": v / steps_per_epoch for k, v in sums.items()})
        if val_set is not None:
            preds = predict(model, val_set, accelerator, batch_size=o.batch_size * 2, num_workers=cfg.data.num_workers)
            record["val_top1"] = topk_accuracy(preds.scores, preds.labels, 1)
        history.append(record)
        if on_epoch_end is not None and accelerator.is_main_process:
            on_epoch_end(epoch, record)

    unwrapped = accelerator.unwrap_model(model)
    if out_dir is not None and accelerator.is_main_process:
        path = Path(out_dir) / "model.pt"
        state = {"model": unwrapped.state_dict(), "config": cfg.model_dump(mode="json")}
        atomic_write(path, lambda tmp: torch.save(state, tmp))
    return TrainResult(model=unwrapped, accelerator=accelerator, history=history)
