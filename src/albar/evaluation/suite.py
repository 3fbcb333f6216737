"""The bias evaluation suite: IID test plus every configured bias set, summarised with the documented keys."""

from __future__ import annotations

import sys
from typing import TextIO

from accelerate import Accelerator
from torch import nn

from albar.data.bundle import DataBundle
from albar.evaluation.metrics import Predictions, bias_summary
from albar.evaluation.predict import predict


def predict_all(
    model: nn.Module, data: DataBundle, accelerator: Accelerator, batch_size: int = 32, num_workers: int = 0,
    progress: bool = False,
) -> dict[str, Predictions]:
    """Every evaluation set, sharded across the accelerator's processes (multi-view sets too: softmax averaged
    over the views of each video)."""
    return {name: predict(model, ds, accelerator, batch_size, num_workers, progress=progress, desc=name)
            for name, ds in data.eval_sets().items()}


def summarise(preds: dict[str, Predictions]) -> dict:
    """Predictions by set name (test, scuba_<src>, scufo_<src>, conflfg) -> the results block of a method."""
    scuba = {k.removeprefix("scuba_"): v for k, v in preds.items() if k.startswith("scuba_")}
    scufo = {k.removeprefix("scufo_"): v for k, v in preds.items() if k.startswith("scufo_")}
    return bias_summary(iid=preds.get("test"), scuba=scuba or None, scufo=scufo or None, conflfg=preds.get("conflfg"))


def failure_report(summary: dict) -> str:
    """The failed items of a results block, one line each (set, key, reason), after a count per set;
    empty when nothing failed. Printing it is the caller's: metrics stay pure."""
    failed = summary.get("failed_items") or {}
    if not failed:
        return ""
    sets = summary.get("sets", {})
    total = sum(len(v) for v in failed.values())
    counts = ", ".join(f"{name} {len(items)} of {sets.get(name, {}).get('items', '?')}"
                       for name, items in failed.items())
    lines = [f"evaluation: {total} item(s) failed and count against the model ({counts}):"]
    lines += [f"  {name}: {key}: {reason}" for name, items in failed.items() for key, reason in items.items()]
    return "\n".join(lines) + "\n"


def with_left_out(summary: dict, left_out: dict[str, dict[str, str]]) -> dict:
    """``summary`` with the files of its sets' folders that are not items (a release file without a label):
    ``sets.<name>.left_out`` counts them and ``left_out_files`` names them with the reason. They are in no
    denominator, so the results say so rather than the terminal alone."""
    named = {name: files for name, files in left_out.items() if files and name in summary.get("sets", {})}
    for name, files in named.items():
        summary["sets"][name]["left_out"] = len(files)
    if named:
        summary["left_out_files"] = named
    return summary


def evaluate_suite(
    model: nn.Module, data: DataBundle, accelerator: Accelerator, batch_size: int = 32, num_workers: int = 0,
    progress: bool = False, announce: bool = True, stream: TextIO | None = None,
) -> dict:
    """Predict every evaluation set and summarise. With ``announce``, the main process prints each failed
    item once, with its set and reason, to ``stream`` (stderr by default: stdout may carry JSON)."""
    summary = with_left_out(summarise(predict_all(model, data, accelerator, batch_size, num_workers, progress)),
                            data.left_out)
    text = failure_report(summary)
    if announce and text and accelerator.is_main_process:
        print(text, end="", file=stream or sys.stderr, flush=True)
    return summary
