"""A whole run from a config: data, training, model selection on validation, the bias suite, result files."""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import broadcast_object_list
from torch import nn

from albar.config import TrainConfig
from albar.data.bundle import build_data, preload
from albar.data.robust import FailureLog, RobustClipDataset
from albar.evaluation.report import format_table
from albar.evaluation.suite import evaluate_suite
from albar.models import load_checkpoint_weights, model_from_state
from albar.models.registry import check_weights_source
from albar.training.checkpoint import checkpoint_meta, require_finite, save_checkpoint
from albar.training.run_folder import RunLock, clean_stale, prepare_run_config
from albar.training.trainer import make_accelerator, say, train, write_epochs_csv
from albar.utils import atomic_write_json, atomic_write_text

__all__ = ["evaluate_checkpoint", "fit", "write_epochs_csv", "write_results"]


def write_results(out: Path, name: str, results: dict, extra: dict | None = None) -> None:
    """results.json (documented keys) and results.md (the paper's table) in ``out``."""
    atomic_write_json(out / "results.json", {**(extra or {}), "methods": {name: results}})
    atomic_write_text(out / "results.md", format_table({name: results}, markdown=True))


def check_files(cfg: TrainConfig) -> None:
    """Files the config names outside the data section, checked before any work."""
    check_weights_source(cfg.model.weights)  # a file, an exported folder or hf://user/repo
    bank_path = getattr(cfg.method, "bank_path", None)
    if bank_path is not None and not bank_path.is_file():
        raise FileNotFoundError(f"method.bank_path: file not found: {bank_path}")


def claim_run_folder(accelerator: Accelerator, out: Path, cfg: TrainConfig, force: bool) -> ExitStack:
    """One run per folder: the main process locks ``out`` (held until the returned stack closes), removes the
    leftovers of dead processes and checks the saved config against ``cfg``. The other ranks wait for its
    verdict, so that a refused run stops on every rank instead of leaving them waiting in a collective."""
    stack = ExitStack()
    error: Exception | None = None
    if accelerator.is_main_process:
        try:
            stack.enter_context(RunLock(out))
            clean_stale(out)
            prepare_run_config(out, cfg, force)
        except Exception as err:  # re-raised below, after the other ranks have heard of it
            stack.close()
            error = err
    if accelerator.num_processes > 1:
        verdict = broadcast_object_list([None if error is None else str(error)])[0]
        if verdict is not None and error is None:
            raise ValueError(f"the main process refused run folder {out}: {verdict}")
    if error is not None:
        raise error
    return stack


def fit(cfg: TrainConfig, progress: bool = True, method: str = "run", force: bool = False) -> dict:
    """Train per ``cfg``, select the best epoch on validation, run the bias suite on it, write the results.

    ``out_dir`` is locked for the whole run; a folder that holds a run made with another config is refused
    unless ``force`` (recorded in the folder). See :mod:`albar.training.run_folder`.
    """
    check_files(cfg)
    out = Path(cfg.out_dir)
    accelerator = make_accelerator(cfg, out)
    with claim_run_folder(accelerator, out, cfg, force):
        return _run(cfg, out, accelerator, progress, method)


def prepare_train_set(cfg: TrainConfig, dataset: Any) -> Any:
    """The training set as the batch method and the objective need it: a registered factory with a
    ``prepare_train_set(params, config, dataset)`` attribute extends it (ActorCutMix, SDN: actor masks)."""
    for section in (cfg.method, cfg.objective):
        hook = getattr(section.registry.get(section.name).factory, "prepare_train_set", None)
        if hook is not None:
            dataset = hook(section.params, cfg, dataset)
    return dataset


def _run(cfg: TrainConfig, out: Path, accelerator: Accelerator, progress: bool, method: str) -> dict:
    main = accelerator.is_main_process
    data = build_data(cfg.data, cfg.seed, cfg.model.num_classes, progress=progress)
    data.train = prepare_train_set(cfg, data.train)  # before the preload: the cache then holds what it adds
    preload(data, cfg.data.num_workers)
    batch = cfg.eval.batch_size or 2 * cfg.optim.batch_size

    def bias(model: nn.Module, acc: Accelerator) -> dict:
        summary = evaluate_suite(model, data, acc, batch, cfg.data.num_workers)
        return {k: v for k, v in summary.items() if isinstance(v, float)}

    # Unreadable training files are replaced by other clips, logged with their reason, and stop the run
    # past data.max_failure_fraction; failures.jsonl keeps every occurrence (held-out validation items with
    # set "val"), failed_files.jsonl each file once.
    log = FailureLog(out / "failures.jsonl")
    robust = RobustClipDataset(data.train, cfg.data.max_failure_fraction, seed=cfg.seed, log=log)
    meta = checkpoint_meta(cfg, data.classes)
    result = train(cfg, robust, data.val, accelerator, out, progress=progress, evaluate_bias=bias, meta=meta)
    if main and log.records():
        log.write_manifest(out / "failed_files.jsonl")
    if (out / "best.pt").is_file():
        load_checkpoint_weights(result.model, out / "best.pt")
    best_epoch = max(result.history, key=lambda r: r.get("val_top1", -1.0))["epoch"] if result.history else None
    if main:
        say(f"evaluating the weights of epoch {best_epoch} on the test and bias sets", out)
    summary = evaluate_suite(result.model, data, accelerator, batch, cfg.data.num_workers, progress=progress)
    summary["val_top1"] = result.best_score
    # the bias metrics beside the training curves, at the last step
    accelerator.log({f"test/{k}": v for k, v in summary.items() if isinstance(v, float)}, step=result.step)
    if main:
        write_results(out, method, summary, {"checkpoint": "best.pt", "best_epoch": best_epoch,
                                             "classes": data.classes, "test_view": cfg.data.test_view})
        write_epochs_csv(out / "epochs.csv", result.history)
        weights = {"model": result.model.state_dict()}
        require_finite(weights, result.step, out / "model.pt")
        save_checkpoint(out / "model.pt", {**meta, **weights, "epoch": best_epoch, "val_top1": result.best_score})
        files = [n for n in ("results.json", "results.md", "model.pt", "best.pt", "last.pt", "epochs.csv",
                             "steps.jsonl", "train.log", "failed_files.jsonl") if (out / n).is_file()]
        say(f"\n{format_table({method: summary})}best epoch {best_epoch} (val top-1 "
            f"{_percent(result.best_score)}); in {out}: {', '.join(files)}", out)
    accelerator.end_training()  # without it, multi-process launches abort at exit
    return summary


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def evaluate_checkpoint(cfg: TrainConfig, checkpoint: Path, out: Path, progress: bool = True,
                        classes: list[str] | None = None, state: Mapping[str, Any] | None = None,
                        cpu: bool | None = None) -> dict:
    """``albar eval``: the bias suite on a saved checkpoint, results written to ``out``. ``classes``: the
    checkpoint's class names; data whose classes differ (other names, or another order) are refused. ``state``:
    the checkpoint already loaded (else read from ``checkpoint``); the architecture is built without its
    pretrained weights. ``cpu``: force the CPU (default: a GPU when there is one)."""
    data = build_data(cfg.data, cfg.seed, cfg.model.num_classes, train=False)
    if classes is not None and data.classes is not None and list(data.classes) != list(classes):
        i = next((i for i, (a, b) in enumerate(zip(classes, data.classes)) if a != b), None)
        differ = (f"class {i} is {classes[i]!r} there and {data.classes[i]!r} here" if i is not None else
                  f"{len(classes)} classes there, {len(data.classes)} here")
        raise ValueError(f"the data's classes are not those {checkpoint} was trained on ({differ}): its "
                         "predictions would be scored against the wrong labels")
    if not data.eval_sets():
        raise ValueError("data: nothing to evaluate; configure data.test and/or data.bias sets")
    use_cpu = not torch.cuda.is_available() if cpu is None else cpu
    accelerator = Accelerator(cpu=use_cpu, mixed_precision=cfg.mixed_precision)
    model = model_from_state(cfg.model.name, cfg.model.num_classes, checkpoint if state is None else state,
                             str(checkpoint), **cfg.model.kwargs)
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
