"""Bias metrics as pure functions of predictions. Every value is a percentage in [0, 100].

SCUBA and SCUFO items are paired by key, never by position. A failed item (no scores) counts against the
model: wrong where higher is better, right where lower is better (SCUFO top-1, ConflFG's pasted-label
top-1). Denominators and pairs stay intact, and a failure never improves a score.

Mean class accuracy (``*_mean_class``): the accuracy over the items of each class PRESENT in the set's
labels, then the plain mean over those classes (a class with no item in the set is left out, not counted
as 0). It weighs every class equally where a set is imbalanced; failed items count as above.
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


def mean_class_accuracy(correct: np.ndarray, labels: np.ndarray) -> float:
    """Per class present in ``labels``: the share of its items marked ``correct``; then the mean over those
    classes, in percent. ``correct`` is already decided per item (a failed item is False where higher is
    better, True on SCUFO), so this only changes the weighting: each class counts once, whatever its size."""
    correct = np.asarray(correct, dtype=bool)
    labels = np.asarray(labels)
    if len(labels) == 0:
        raise ValueError("accuracy of an empty set is undefined")
    if correct.shape != labels.shape:
        raise ValueError(f"correct {correct.shape} and labels {labels.shape} differ in shape")
    classes = np.unique(labels)
    return float(100.0 * np.mean([correct[labels == c].mean() for c in classes]))


def contrasted_correct(scuba: Predictions, scufo: Predictions) -> np.ndarray:
    """Per SCUBA item: predicted right, and its SCUFO partner (found by key) predicted wrong.

    A SCUBA key with no SCUFO partner is an error, not a skip. A SCUFO still that could not be read never
    counts as "predicted wrong": a failure must not improve a score.
    """
    index = {k: i for i, k in enumerate(scufo.keys)}
    missing = [k for k in scuba.keys if k not in index]
    if missing:
        raise KeyError(f"{len(missing)} SCUBA keys have no SCUFO partner, e.g. {missing[0]!r}")
    order = np.array([index[k] for k in scuba.keys], dtype=np.int64)
    scuba_right = topk_correct(scuba.scores, scuba.labels, 1)
    scufo_wrong = ~topk_correct(scufo.scores[order], scuba.labels, 1) & ~scufo.failed[order]
    return scuba_right & scufo_wrong


def contrasted_accuracy(scuba: Predictions, scufo: Predictions) -> float:
    """Share of SCUBA items predicted right whose paired SCUFO clip is predicted wrong
    (:func:`contrasted_correct`). Denominator: every SCUBA item."""
    return float(100.0 * contrasted_correct(scuba, scufo).mean())


def scufo_correct(scufo: Predictions) -> np.ndarray:
    """Per SCUFO item: top-1 right, or unreadable (lower is better, so a failure counts as right)."""
    return topk_correct(scufo.scores, scufo.labels, 1) | scufo.failed


def scufo_accuracy(scufo: Predictions) -> float:
    """SCUFO top-1 in percent, lower is better; an unreadable still counts as predicted right (worst case)."""
    return float(100.0 * scufo_correct(scufo).mean())


def conflfg_metrics(preds: Predictions) -> dict[str, float]:
    """ConflFG, over every item (failed ones included):

    - ``conflfg_top1`` (higher is better, the headline): top-1 on the moving actor's label; a failed item
      is wrong. ``conflfg_mean_class``: the same per moving class, then averaged.
    - ``conflfg_conflict_top1`` (LOWER is better): top-1 on the pasted still actor's label, i.e. how often
      the static actor wins. A failed item counts as predicting the pasted label (worst case), so a failure
      never lowers it.
    - ``conflfg_moving_over_conflict`` (higher is better): how often p(moving label) > p(pasted label); a
      failed item counts as not.
    """
    if preds.conflict_labels is None:
        raise ValueError("ConflFG predictions need conflict_labels (the pasted actor's class)")
    conflict = np.asarray(preds.conflict_labels, dtype=np.int64)
    rows = np.arange(len(preds.keys))
    ok = ~preds.failed
    moving_over = ok & (preds.scores[rows, preds.labels] > np.where(ok, preds.scores[rows, conflict], np.inf))
    moving_right = topk_correct(preds.scores, preds.labels, 1)
    return {
        "conflfg_top1": float(100.0 * moving_right.mean()),
        "conflfg_mean_class": mean_class_accuracy(moving_right, preds.labels),
        "conflfg_conflict_top1": float(100.0 * (topk_correct(preds.scores, conflict, 1) | preds.failed).mean()),
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
    ``sets`` says per evaluated set how many items it has, how many failed and the denominator every
    per-item score of that set divides by (all items: failures count, never drop), plus how many classes
    its mean class accuracy averages over. ``failed_items`` names every failed item with its reason.
    """
    out: dict = {}
    if iid is not None:
        iid_right = topk_correct(iid.scores, iid.labels, 1)
        out["iid_top1"] = topk_accuracy(iid.scores, iid.labels, 1)
        out["iid_top5"] = topk_accuracy(iid.scores, iid.labels, 5)
        out["iid_mean_class"] = mean_class_accuracy(iid_right, iid.labels)
    per_source: dict[str, dict[str, float]] = {}
    for source, preds in (scuba or {}).items():
        right = topk_correct(preds.scores, preds.labels, 1)
        entry = {"scuba_top1": float(100.0 * right.mean()),
                 "scuba_mean_class": mean_class_accuracy(right, preds.labels)}
        if scufo and source in scufo:
            still = scufo[source]
            entry["scufo_top1"] = scufo_accuracy(still)
            entry["scufo_mean_class"] = mean_class_accuracy(scufo_correct(still), still.labels)
            both = contrasted_correct(preds, still)
            entry["contrasted"] = float(100.0 * both.mean())
            entry["contrasted_mean_class"] = mean_class_accuracy(both, preds.labels)
        per_source[source] = entry
    for name in ("scuba_top1", "scufo_top1", "contrasted", "scuba_mean_class", "scufo_mean_class",
                 "contrasted_mean_class"):
        values = [v[name] for v in per_source.values() if name in v]
        if values:
            out[name] = float(np.mean(values))
    if conflfg is not None:
        out.update(conflfg_metrics(conflfg))
    if per_source:
        out["per_source"] = per_source
    named = _named(iid, scuba, scufo, conflfg)
    out["sets"] = {name: set_counts(p) for name, p in named}
    failed = {name: items for name, p in named if (items := failed_items(p))}
    if failed:
        out["failed_items"] = failed
    return out


def set_counts(preds: Predictions) -> dict[str, int]:
    """Items, failed items, the denominator of the set's per-item scores (every item) and the number of
    classes its mean class accuracy averages over."""
    n = len(preds.keys)
    return {"items": n, "failed": int(preds.failed.sum()), "denominator": n,
            "classes": int(len(np.unique(preds.labels)))}


def failed_items(preds: Predictions) -> dict[str, str]:
    """Every failed item of a set with its reason, in set order; a row that failed without a recorded
    reason (non-finite model output) is named too, never dropped."""
    return {k: preds.errors.get(k, "no finite scores (model output NaN or inf)")
            for k, bad in zip(preds.keys, preds.failed) if bad}


def _named(iid, scuba, scufo, conflfg) -> Sequence[tuple[str, Predictions]]:
    named = [("iid", iid)] if iid is not None else []
    named += [(f"scuba_{s}", p) for s, p in (scuba or {}).items()]
    named += [(f"scufo_{s}", p) for s, p in (scufo or {}).items()]
    named += [("conflfg", conflfg)] if conflfg is not None else []
    return named
