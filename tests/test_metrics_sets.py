"""Per-set counts, mean class accuracy, ConflFG's lower-is-better pasted-label top-1, and failed items named
once on the terminal: hand-computed numbers on tiny arrays, and one evaluation over real files."""

import io

import numpy as np
import pytest
import torch
from accelerate import Accelerator
from helpers import write_zip
from PIL import Image
from torch import nn

from albar.data.bundle import DataBundle
from albar.data.dataset import ClipDataset
from albar.data.lists import ClipItem
from albar.evaluation import Predictions, bias_summary, conflfg_metrics
from albar.evaluation.metrics import mean_class_accuracy
from albar.evaluation.report import format_table
from albar.evaluation.suite import evaluate_suite, failure_report

HIGHER = ("iid_top1", "iid_top5", "iid_mean_class", "scuba_top1", "scuba_mean_class", "contrasted",
          "contrasted_mean_class", "conflfg_top1", "conflfg_mean_class", "conflfg_moving_over_conflict")
LOWER = ("scufo_top1", "scufo_mean_class", "conflfg_conflict_top1")


def preds(keys, labels, predicted, k=4, conflict=None, errors=None):
    """Scores with 0.9 on the predicted class and 0.1 elsewhere; None = a failed item (NaN row)."""
    scores = np.full((len(keys), k), 0.1)
    for i, p in enumerate(predicted):
        if p is None:
            scores[i] = np.nan
        else:
            scores[i, p] = 0.9
    return Predictions(list(keys), np.array(labels), scores, None if conflict is None else np.array(conflict),
                       errors or {})


def test_mean_class_accuracy_weighs_classes_present_equally():
    # class 0: 3 of 3 right, class 1: 0 of 1; classes 2 and 3 of the 4 outputs have no item and are left out
    p = preds("abcd", [0, 0, 0, 1], [0, 0, 0, 0])
    out = bias_summary(iid=p)
    assert out["iid_top1"] == 75.0
    assert out["iid_mean_class"] == 50.0  # (100 + 0) / 2, not (100 + 0 + 0 + 0) / 4
    # a failed item counts wrong: class 0 1 of 2, class 1 2 of 2
    q = preds("abcd", [0, 0, 1, 1], [0, None, 1, 1])
    assert bias_summary(iid=q)["iid_mean_class"] == 75.0
    assert mean_class_accuracy(np.array([True, False, True]), np.array([5, 5, 9])) == 75.0
    with pytest.raises(ValueError, match="empty"):
        mean_class_accuracy(np.array([], bool), np.array([], np.int64))


def test_mean_class_per_source_scufo_failed_counts_right_and_contrasted():
    # source x: SCUBA right on a, b; wrong on c. SCUFO right on a, failed on b (counts right), wrong on c.
    scuba = {"x": preds("abc", [0, 0, 1], [0, 0, 3]), "y": preds("abc", [0, 0, 1], [0, 0, 1])}
    scufo = {"x": preds("abc", [0, 0, 1], [0, None, 3]), "y": preds("abc", [0, 0, 1], [3, 3, 3])}
    out = bias_summary(scuba=scuba, scufo=scufo)
    x, y = out["per_source"]["x"], out["per_source"]["y"]
    assert x["scuba_mean_class"] == 50.0 and y["scuba_mean_class"] == 100.0
    assert x["scufo_top1"] == pytest.approx(200 / 3) and x["scufo_mean_class"] == 50.0  # class 0 2/2, class 1 0/1
    assert y["scufo_mean_class"] == 0.0
    # contrasted right: x none (a's SCUFO right, b's failed, c's SCUBA wrong); y all three
    assert x["contrasted_mean_class"] == 0.0 and y["contrasted_mean_class"] == 100.0
    assert out["scuba_mean_class"] == 75.0 and out["scufo_mean_class"] == 25.0
    assert out["contrasted_mean_class"] == 50.0


def test_conflfg_pasted_label_top1_counts_a_failure_as_the_pasted_label():
    # moving labels, pasted labels, top-1 (None: failed)
    p = preds("abcde", [0, 1, 2, 3, 0], [0, 1, 2, None, 1], conflict=[1, 2, 0, 0, 2])
    p.scores[1] = [0.1, 0.1, 0.9, 0.1]  # b predicts 2, its pasted label
    p.scores[4] = [0.1, 0.9, 0.1, 0.1]  # e predicts 1: neither; p(moving 0) == p(pasted 2): not "over"
    m = conflfg_metrics(p)
    assert m["conflfg_top1"] == 40.0  # a, c
    assert m["conflfg_conflict_top1"] == 40.0  # b, and the failed d (worst case); was 20 when d counted as not
    assert m["conflfg_moving_over_conflict"] == 40.0  # a, c; the failed d is not moving-over
    assert m["conflfg_mean_class"] == 37.5  # class 0: a of a, e = 50; 1: 0; 2: 100; 3: 0
    assert "ConflFG pasted ↓" in format_table({"m": m})


def test_a_failure_never_improves_any_score():
    """Fail each item of each set in turn: no higher-is-better key rises, no lower-is-better key falls."""
    base = {
        "iid": preds("abcd", [0, 1, 2, 3], [0, 1, 3, 3]),
        "scuba": {"s": preds("abcd", [0, 1, 2, 3], [0, 1, 2, 0])},
        "scufo": {"s": preds("abcd", [0, 1, 2, 3], [1, 1, 0, 3])},
        "conflfg": preds("abcd", [0, 1, 2, 3], [1, 1, 0, 2], conflict=[2, 0, 1, 1]),
    }
    before = bias_summary(**base)

    def failing(p: Predictions, i: int) -> Predictions:
        scores = p.scores.copy()
        scores[i] = np.nan
        return Predictions(p.keys, p.labels, scores, p.conflict_labels, {p.keys[i]: "corrupt zip"})

    tried = 0
    for name in base:
        for i in range(4):
            args = dict(base)
            if isinstance(base[name], dict):
                args[name] = {s: failing(v, i) for s, v in base[name].items()}
            else:
                args[name] = failing(base[name], i)
            after = bias_summary(**args)
            for key in HIGHER:
                assert after[key] <= before[key], (name, i, key)
            for key in LOWER:
                assert after[key] >= before[key], (name, i, key)
            tried += 1
    assert tried == 16


def test_sets_block_counts_items_failed_and_denominator():
    iid = preds("abcde", [0, 0, 1, 1, 2], [0, None, 1, None, 2], errors={"b": "empty file"})
    scuba = {"stripe": preds(["v1", "v2"], [0, 1], [0, 1])}
    scufo = {"stripe": preds(["v1", "v2"], [0, 1], [None, 1], errors={"v1": "missing SCUFO still"})}
    out = bias_summary(iid, scuba, scufo)
    assert out["sets"] == {
        "iid": {"items": 5, "failed": 2, "denominator": 5, "classes": 3},
        "scuba_stripe": {"items": 2, "failed": 0, "denominator": 2, "classes": 2},
        "scufo_stripe": {"items": 2, "failed": 1, "denominator": 2, "classes": 2},
    }
    # d failed without a recorded reason (the model gave NaN): named anyway, never dropped
    assert out["failed_items"] == {"iid": {"b": "empty file", "d": "no finite scores (model output NaN or inf)"},
                                   "scufo_stripe": {"v1": "missing SCUFO still"}}
    assert out["iid_top1"] == 60.0  # 3 of all 5: the denominator
    text = failure_report(out)
    assert "3 item(s) failed" in text and "iid 2 of 5" in text and "scufo_stripe 1 of 2" in text
    assert "  scufo_stripe: v1: missing SCUFO still" in text.splitlines()
    assert failure_report(bias_summary(iid=preds("a", [0], [0]))) == ""


class _AlwaysZero(nn.Module):
    """Predicts class 0 of 3 for every clip (what it sees does not matter here)."""

    def __init__(self) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.tensor([2.0, 0.0, 0.0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bias.expand(x.shape[0], 3) + 0 * x.mean()


def test_evaluation_over_files_counts_and_prints_each_failed_item_once(tmp_path, capsys):
    frames = np.full((4, 16, 16, 3), 120, np.uint8)
    for name in ("a", "b", "c", "x"):
        write_zip(tmp_path / f"{name}.zip", frames)
    (tmp_path / "y.zip").write_bytes(b"PK\x03\x04 not really a zip")  # corrupt SCUBA clip
    Image.fromarray(frames[0]).save(tmp_path / "x.jpg")  # y's SCUFO still is missing

    def ds(items):
        return ClipDataset([ClipItem(tmp_path / f, label, key) for f, label, key in items], num_frames=2)

    data = DataBundle(
        test=ds([("a.zip", 0, "a"), ("b.zip", 0, "b"), ("c.zip", 0, "c"), ("gone.zip", 1, "gone")]),
        scuba={"stripe": ds([("x.zip", 0, "x"), ("y.zip", 1, "y")])},
        scufo={"stripe": ds([("x.jpg", 0, "x"), ("y.jpg", 1, "y")])},
    )
    out = evaluate_suite(_AlwaysZero(), data, Accelerator(cpu=True), batch_size=2)
    assert out["sets"]["iid"] == {"items": 4, "failed": 1, "denominator": 4, "classes": 2}
    assert out["sets"]["scuba_stripe"]["failed"] == 1 and out["sets"]["scufo_stripe"]["failed"] == 1
    assert out["iid_top1"] == 75.0 and out["iid_mean_class"] == 50.0  # class 0: 3 of 3, class 1: 0 of 1
    assert out["scufo_top1"] == 100.0  # x right, y's missing still counts right (lower is better)
    assert out["contrasted"] == 0.0
    captured = capsys.readouterr()
    assert captured.out == ""  # stdout may carry JSON: failures go to stderr
    for set_name, key in (("iid", "gone"), ("scuba_stripe", "y"), ("scufo_stripe", "y")):
        lines = [ln for ln in captured.err.splitlines() if ln.startswith(f"  {set_name}: {key}: ")]
        assert len(lines) == 1, captured.err
        assert key in out["failed_items"][set_name]
    assert captured.err.count("\n") == 4  # the summary line and three items, nothing repeated
    quiet = io.StringIO()
    evaluate_suite(_AlwaysZero(), data, Accelerator(cpu=True), batch_size=2, announce=False, stream=quiet)
    assert quiet.getvalue() == "" and capsys.readouterr().err == ""
