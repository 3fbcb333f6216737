"""Bias metrics as pure functions of predictions. Every value is a percentage in [0, 100].

SCUBA and SCUFO items are paired by key, never by position. A failed item (no scores) counts against the
model: wrong where higher is better, right on SCUFO where lower is better. Denominators and pairs stay
intact, and a failure never improves a score.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Predictions:
    """Scores (N, K) of N items with their keys and labels. Rows of NaN mark items that failed."""

    keys: list[str]
    labels: np.ndarray
    scores: np.ndarray
    conflict_labels: np.ndarray | None = None
    errors: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.labels = np.asarray(self.labels, dtype=np.int64)
        self.scores = np.asarray(self.scores, dtype=np.float64)
        n = len(self.keys)
        if self.labels.shape != (n,) or self.scores.ndim != 2 or self.scores.shape[0] != n:
            raise ValueError(
                f"predictions need keys (N,), labels (N,), scores (N, K); got {n}, {self.labels.shape}, "
                f"{self.scores.shape}"
            )
        if len(set(self.keys)) != n:
            dup = next(k for k in self.keys if self.keys.count(k) > 1)
            raise ValueError(f"duplicate key {dup!r} in predictions: pairing by key needs unique keys")

    @classmethod
    def for_items(cls, items: Sequence, scores: np.ndarray, errors: dict[str, str] | None = None) -> Predictions:
        """Predictions of a dataset's ``ClipItem``s (keys, labels, ConflFG's ``conflict_label`` if all have one)."""
        conflict = [it.extra.get("conflict_label") for it in items]
        return cls(
            keys=[it.key for it in items], labels=np.array([it.label for it in items], dtype=np.int64),
            scores=scores, conflict_labels=np.array(conflict) if all(c is not None for c in conflict) else None,
            errors=errors or {},
        )

    @property
    def failed(self) -> np.ndarray:
        return ~np.isfinite(self.scores).all(axis=1)

    def predicted(self) -> np.ndarray:
        """Top-1 class per item; -1 where the item failed."""
        pred = np.where(self.failed[:, None], -np.inf, self.scores).argmax(axis=1)
        return np.where(self.failed, -1, pred)


def topk_correct(scores: np.ndarray, labels: np.ndarray, k: int = 1) -> np.ndarray:
    """Boolean per item: is the label among the k highest scores? Failed rows (non-finite) are False."""
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels)
    k = min(k, scores.shape[1])
    ok = np.isfinite(scores).all(axis=1)
    top = np.argsort(-np.where(ok[:, None], scores, 0), axis=1, kind="stable")[:, :k]
    return ok & (top == labels[:, None]).any(axis=1)


def topk_accuracy(scores: np.ndarray, labels: np.ndarray, k: int = 1) -> float:
    """Top-k accuracy in percent."""
    if len(labels) == 0:
        raise ValueError("accuracy of an empty set is undefined")
    return float(100.0 * topk_correct(scores, labels, k).mean())


def contrasted_accuracy(scuba: Predictions, scufo: Predictions) -> float:
    """Share of SCUBA items predicted right whose paired SCUFO clip is predicted wrong.

    Denominator: every SCUBA item. A SCUBA key with no SCUFO partner is an error, not a skip. A SCUFO still
    that could not be read never counts as "predicted wrong": a failure must not improve a score.
    """
    index = {k: i for i, k in enumerate(scufo.keys)}
    missing = [k for k in scuba.keys if k not in index]
    if missing:
        raise KeyError(f"{len(missing)} SCUBA keys have no SCUFO partner, e.g. {missing[0]!r}")
    order = np.array([index[k] for k in scuba.keys], dtype=np.int64)
    scuba_right = topk_correct(scuba.scores, scuba.labels, 1)
    scufo_wrong = ~topk_correct(scufo.scores[order], scuba.labels, 1) & ~scufo.failed[order]
    return float(100.0 * (scuba_right & scufo_wrong).mean())


def scufo_accuracy(scufo: Predictions) -> float:
    """SCUFO top-1 in percent, lower is better; an unreadable still counts as predicted right (worst case)."""
    return float(100.0 * (topk_correct(scufo.scores, scufo.labels, 1) | scufo.failed).mean())


def conflfg_metrics(preds: Predictions) -> dict[str, float]:
    """ConflFG: accuracy on the moving actor's label (headline), on the pasted actor's label, and how
    often p(moving label) > p(pasted label)."""
    if preds.conflict_labels is None:
        raise ValueError("ConflFG predictions need conflict_labels (the pasted actor's class)")
    conflict = np.asarray(preds.conflict_labels, dtype=np.int64)
    rows = np.arange(len(preds.keys))
    ok = ~preds.failed
    moving_over = ok & (preds.scores[rows, preds.labels] > np.where(ok, preds.scores[rows, conflict], np.inf))
    return {
        "conflfg_top1": topk_accuracy(preds.scores, preds.labels, 1),
        "conflfg_conflict_top1": topk_accuracy(preds.scores, conflict, 1),
        "conflfg_moving_over_conflict": float(100.0 * moving_over.mean()),
    }


def bias_summary(
    iid: Predictions | None = None,
    scuba: dict[str, Predictions] | None = None,
    scufo: dict[str, Predictions] | None = None,
    conflfg: Predictions | None = None,
) -> dict:
    """The results block of one method, with the documented keys (README, "Results format").

    Averages over background sources are plain means of the per-source values, as the paper's Avg.
    """
    out: dict = {}
    if iid is not None:
        out["iid_top1"] = topk_accuracy(iid.scores, iid.labels, 1)
        out["iid_top5"] = topk_accuracy(iid.scores, iid.labels, 5)
    per_source: dict[str, dict[str, float]] = {}
    for source, preds in (scuba or {}).items():
        entry = {"scuba_top1": topk_accuracy(preds.scores, preds.labels, 1)}
        if scufo and source in scufo:
            entry["scufo_top1"] = scufo_accuracy(scufo[source])
            entry["contrasted"] = contrasted_accuracy(preds, scufo[source])
        per_source[source] = entry
    for name in ("scuba_top1", "scufo_top1", "contrasted"):
        values = [v[name] for v in per_source.values() if name in v]
        if values:
            out[name] = float(np.mean(values))
    if conflfg is not None:
        out.update(conflfg_metrics(conflfg))
    if per_source:
        out["per_source"] = per_source
    failed = {name: p.errors for name, p in _named(iid, scuba, scufo, conflfg) if p.errors}
    if failed:
        out["failed_items"] = failed
    return out


def _named(iid, scuba, scufo, conflfg) -> Sequence[tuple[str, Predictions]]:
    named = [("iid", iid)] if iid is not None else []
    named += [(f"scuba_{s}", p) for s, p in (scuba or {}).items()]
    named += [(f"scufo_{s}", p) for s, p in (scufo or {}).items()]
    named += [("conflfg", conflfg)] if conflfg is not None else []
    return named
