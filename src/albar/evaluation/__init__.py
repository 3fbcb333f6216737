"""Evaluation: predictions over datasets, and the bias metrics as pure functions of them."""

from albar.evaluation.metrics import (
    Predictions,
    bias_summary,
    conflfg_metrics,
    contrasted_accuracy,
    topk_accuracy,
    topk_correct,
)
from albar.evaluation.predict import predict
from albar.evaluation.suite import evaluate_suite

__all__ = [
    "Predictions", "bias_summary", "conflfg_metrics", "contrasted_accuracy", "evaluate_suite", "predict",
    "topk_accuracy", "topk_correct",
]
