import json

import numpy as np
import pytest

from albar.evaluation import Predictions, bias_summary, conflfg_metrics, contrasted_accuracy, topk_accuracy
from albar.evaluation.report import format_table, plot_bars


def preds(keys, labels, predicted, k=4, conflict=None):
    scores = np.full((len(keys), k), 0.1)
    for i, p in enumerate(predicted):
        if p is None:
            scores[i] = np.nan  # a failed item
        else:
            scores[i, p] = 0.9
    return Predictions(list(keys), np.array(labels), scores, None if conflict is None else np.array(conflict))


def test_topk_accuracy_and_failed_items_count_as_wrong():
    p = preds("abcd", [0, 1, 2, 3], [0, 1, 0, None])
    assert topk_accuracy(p.scores, p.labels, 1) == 50.0
    assert topk_accuracy(p.scores, p.labels, 4) == 75.0  # the failed item is wrong even at top-4
    assert p.predicted().tolist() == [0, 1, 0, -1]


def test_contrasted_pairs_by_key_not_position():
    scuba = preds(["v1", "v2", "v3", "v4"], [0, 1, 2, 3], [0, 1, 2, 0])  # v1-v3 right
    # SCUFO in another order: v1 right (static shortcut), v2 and v3 wrong
    scufo = preds(["v3", "v1", "v2", "v4"], [2, 0, 1, 3], [1, 0, 3, 3])
    assert contrasted_accuracy(scuba, scufo) == 50.0  # v2 and v3 of 4
    with pytest.raises(KeyError, match="no SCUFO partner"):
        contrasted_accuracy(scuba, preds(["v1"], [0], [0]))
    with pytest.raises(ValueError, match="duplicate key"):
        preds(["v1", "v1"], [0, 0], [0, 0])


def test_conflfg_metrics():
    p = preds("abcd", [0, 1, 2, 3], [0, 2, 2, None], conflict=[1, 2, 0, 0])
    m = conflfg_metrics(p)
    # pasted-label top-1 (lower is better): b, and the failed d counted as predicting its pasted label
    assert m["conflfg_top1"] == 50.0 and m["conflfg_conflict_top1"] == 50.0
    assert m["conflfg_moving_over_conflict"] == 50.0  # a and c; the failed d counts as not


def test_bias_summary_keys_and_source_averages(tmp_path):
    iid = preds("ab", [0, 1], [0, 1])
    scuba = {"x": preds("ab", [0, 1], [0, 1]), "y": preds("ab", [0, 1], [0, 0])}
    scufo = {"x": preds("ab", [0, 1], [0, 0]), "y": preds("ab", [0, 1], [3, 3])}
    out = bias_summary(iid, scuba, scufo, preds("ab", [0, 1], [0, 1], conflict=[1, 0]))
    assert out["iid_top1"] == 100.0 and out["scuba_top1"] == 75.0 and out["scufo_top1"] == 25.0
    assert out["per_source"]["x"]["contrasted"] == 50.0 and out["per_source"]["y"]["contrasted"] == 50.0
    assert out["contrasted"] == 50.0 and out["conflfg_top1"] == 100.0
    json.dumps(out)
    table = format_table({"plain CE": out})
    assert "Contrasted" in table and "50.00" in table and "75.00" in table
    png = plot_bars({"plain CE": out, "ALBAR": out}, tmp_path / "c.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_an_unreadable_scufo_still_never_improves_a_score():
    scuba = preds(["a", "b"], [0, 1], [0, 1])  # both right
    scufo = preds(["a", "b"], [0, 1], [None, None])  # both stills unreadable
    out = bias_summary(scuba={"s": scuba}, scufo={"s": scufo})
    assert out["per_source"]["s"]["contrasted"] == 0.0  # not 100: no static prediction was shown to be wrong
    assert out["per_source"]["s"]["scufo_top1"] == 100.0  # worst case where lower is better
