"""A whole run from a config: data, training, model selection on validation, the bias suite, result files."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import torch
from accelerate import Accelerator
from torch import nn

from albar.config import TrainConfig, dump_config
from albar.data.build import build_data, preload
from albar.data.robust import FailureLog, RobustClipDataset
from albar.evaluation.report import format_table
from albar.evaluation.suite import evaluate_suite
from albar.models import build_model, load_checkpoint_weights
from albar.models.registry import looks_like_path
from albar.training.trainer import make_accelerator, train
from albar.utils import atomic_write_json, atomic_write_text


def write_results(out: Path, name: str, results: dict, extra: dict | None = None) -> None:
    """results.json (documented keys) and results.md (the paper's table) in ``out``."""
    atomic_write_json(out / "results.json", {**(extra or {}), "methods": {name: results}})
    atomic_write_text(out / "results.md", format_table({name: results}, markdown=True))


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


def check_files(cfg: TrainConfig) -> None:
    """Files the config names outside the data section, checked before any work."""
    weights = cfg.model.weights
    if weights and looks_like_path(weights) and not Path(weights).expanduser().is_file():
        raise FileNotFoundError(f"model.weights: file not found: {weights}")
    if cfg.method.bank_path is not None and not cfg.method.bank_path.is_file():
        raise FileNotFoundError(f"method.bank_path: file not found: {cfg.method.bank_path}")


def fit(cfg: TrainConfig, progress: bool = True, method: str = "run") -> dict:
    """Train per ``cfg``, select the best epoch on validation, run the bias suite on it, write the results."""
    check_files(cfg)
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    data = build_data(cfg.data, cfg.seed, cfg.model.num_classes, progress=progress)
    accelerator = make_accelerator(cfg, out)
    if accelerator.is_main_process:
        atomic_write_text(out / "config.yaml", dump_config(cfg))
    preload(data, cfg.data.num_workers)
    batch = cfg.eval.batch_size or 2 * cfg.optim.batch_size

    def bias(model: nn.Module, acc: Accelerator) -> dict:
        summary = evaluate_suite(model, data, acc, batch, cfg.data.num_workers)
        return {k: v for k, v in summary.items() if isinstance(v, float)}

    # Unreadable training files are replaced by other clips, logged with their reason, and stop the run
    # past data.max_failure_fraction; failures.jsonl keeps every occurrence, failed_files.jsonl each file once.
    log = FailureLog(out / "failures.jsonl")
    robust = RobustClipDataset(data.train, cfg.data.max_failure_fraction, seed=cfg.seed, log=log)
    result = train(cfg, robust, data.val, accelerator, out, progress=progress, evaluate_bias=bias)
    if accelerator.is_main_process and log.records():
        log.write_manifest(out / "failed_files.jsonl")
    if (out / "best.pt").is_file():
        load_checkpoint_weights(result.model, out / "best.pt")
    summary = evaluate_suite(result.model, data, accelerator, batch, cfg.data.num_workers, progress=progress)
    best_epoch = max(result.history, key=lambda r: r.get("val_top1", -1.0))["epoch"] if result.history else None
    summary["val_top1"] = result.best_score
    if accelerator.is_main_process:
        write_results(out, method, summary, {"checkpoint": "best.pt", "best_epoch": best_epoch,
                                             "classes": data.classes, "test_view": cfg.data.test_view})
        write_epochs_csv(out / "epochs.csv", result.history)
    accelerator.end_training()  # without it, multi-process launches abort at exit
    return summary


def evaluate_checkpoint(cfg: TrainConfig, checkpoint: Path, out: Path, progress: bool = True) -> dict:
    """``albar eval``: the bias suite on a saved checkpoint, results written to ``out``."""
    data = build_data(cfg.data, cfg.seed, cfg.model.num_classes, train=False)
    if not data.eval_sets():
        raise ValueError("data: nothing to evaluate; configure data.test and/or data.bias sets")
    accelerator = Accelerator(cpu=not torch.cuda.is_available(), mixed_precision=cfg.mixed_precision)
    model = build_model(cfg.model.name, cfg.model.num_classes, None, **cfg.model.kwargs)
    load_checkpoint_weights(model, checkpoint)
    model = accelerator.prepare(model)
    preload(data, cfg.data.num_workers)
    summary = evaluate_suite(model, data, accelerator, cfg.eval.batch_size or 2 * cfg.optim.batch_size,
                             cfg.data.num_workers, progress=progress)
    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        write_results(out, checkpoint.stem, summary, {"checkpoint": str(checkpoint), "classes": data.classes,
                                                       "test_view": cfg.data.test_view})
    accelerator.end_training()
    return summary
