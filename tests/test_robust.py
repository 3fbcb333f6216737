import json
from pathlib import Path

import numpy as np
import pytest
import torch
from data_fixtures import corrupt, empty, truncate, write_faststart_mp4
from helpers import numbered_frames, write_video
from torch import nn
from torch.utils.data import DataLoader

from albar.data import ClipDataset, ClipReadError
from albar.data.lists import ClipItem
from albar.data.robust import FailureLog, RobustClipDataset, TooManyFailures
from albar.data.views import ViewDataset
from albar.evaluation.metrics import topk_accuracy
from albar.evaluation.predict import predict, probabilities


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    """Six good videos (H.264 MP4 and MPEG-4 AVI) and one of each kind of bad file."""
    d = tmp_path_factory.mktemp("mixed")
    items = []
    for i in range(6):
        codec, ext = ("libx264", "mp4") if i % 2 else ("mpeg4", "avi")
        items.append(ClipItem(write_video(d / f"good{i}.{ext}", numbered_frames(24), codec), i % 3, f"good{i}"))
    full = write_faststart_mp4(d / "full.mp4", numbered_frames(24))
    bad = {
        "corrupt": corrupt(d / "corrupt.avi"),
        "truncated": truncate(full, d / "truncated.mp4", 0.7),  # opens, declares 24 frames, decodes 1
        "empty": empty(d / "empty.mp4"),
        "missing": d / "missing.mp4",
        "short": write_video(d / "short.mp4", numbered_frames(5)),
    }
    items += [ClipItem(p, 0, k) for k, p in bad.items()]
    return items, bad


def test_bad_files_raise_clip_read_error_with_reason(mixed):
    items, bad = mixed
    ds = ClipDataset(items, 4, 2, min_frames=20)
    reasons = {}
    for i in range(6, len(items)):
        with pytest.raises(ClipReadError) as err:
            ds[i]
        assert err.value.source == str(items[i].source)
        reasons[items[i].key] = err.value.reason
    assert reasons["missing"] == "no such file or folder"
    assert reasons["short"] == "too short: 5 frames, need at least 20"
    assert reasons["truncated"] == "truncated: stream ended after 1 of 24 declared frames"
    assert reasons["empty"] == "empty file"  # not "[Errno 1094995529] Invalid data"
    assert reasons["corrupt"].startswith("cannot open video")


def test_robust_dataset_replaces_records_and_writes_manifest(mixed, tmp_path):
    items, bad = mixed
    log = tmp_path / "failures.jsonl"
    ds = RobustClipDataset(ClipDataset(items, 4, 2, min_frames=20), max_failure_fraction=0.5, seed=3, log=log)
    samples = [ds[i] for i in range(len(ds))]
    assert len(samples) == len(items) and all(s["clip"].shape == (3, 4, 32, 48) for s in samples)
    for i, s in enumerate(samples):
        if i < 6:
            assert s["replaced"] == "" and s["index"] == i
        else:  # a bad item is replaced by a good one, and says so
            assert s["replaced"] == items[i].key and s["index"] < 6
    assert ds.failure_count == 5
    ds.log.write_manifest(tmp_path / "manifest.jsonl")
    rows = [json.loads(line) for line in (tmp_path / "manifest.jsonl").read_text().splitlines()]
    assert {r["source"] for r in rows} == {str(p) for p in bad.values()}
    reasons = {r["key"]: r["reason"] for r in rows}
    assert reasons["short"] == "too short: 5 frames, need at least 20" and reasons["truncated"].startswith("trunc")
    # the replacement is a function of (seed, epoch, index): reproducible
    again = RobustClipDataset(ClipDataset(items, 4, 2, min_frames=20), max_failure_fraction=0.5, seed=3)
    assert [again[i]["index"] for i in range(6, 11)] == [s["index"] for s in samples[6:]]


def test_failure_log_collects_records_from_loader_workers(mixed, tmp_path):
    items, bad = mixed
    ds = RobustClipDataset(ClipDataset(items, 4, 2, min_frames=20), 0.5, seed=0, log=tmp_path / "f.jsonl")
    batches = list(DataLoader(ds, batch_size=4, num_workers=2))
    assert sum(len(b["key"]) for b in batches) == len(items)
    assert sorted(ds.log.failed_sources()) == sorted(str(p) for p in bad.values())


def test_too_many_failures_stops_the_run_naming_files(mixed):
    items, bad = mixed
    one_bad = RobustClipDataset(ClipDataset(items[:7], 4, 2), max_failure_fraction=0.15)
    assert one_bad[6]["replaced"] == "corrupt" and one_bad.failure_count == 1  # 1 of 7 files: 14% allowed
    two_bad = RobustClipDataset(ClipDataset(items[:8], 4, 2), max_failure_fraction=0.15)
    with pytest.raises(TooManyFailures, match=r"2 of 8 files failed \(25.0% > 15.0% allowed\)") as err:
        for i in range(8):
            two_bad[i]
    assert str(bad["corrupt"]) in str(err.value) and str(bad["truncated"]) in str(err.value)
    no_retry = RobustClipDataset(ClipDataset(items[:7], 4, 2), max_failure_fraction=0.5, max_retries=0)
    with pytest.raises(TooManyFailures, match=r"item 6 \(.*corrupt.avi\) and 0 replacements all failed"):
        no_retry[6]
    assert FailureLog().records() == []


class MeanColour(nn.Module):
    """A real (untrained) video classifier: linear in the mean colour of the clip."""

    def __init__(self, k: int = 3) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.head = nn.Sequential(nn.AdaptiveAvgPool3d(1), nn.Flatten(), nn.Linear(3, k))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x) * 10


def test_predict_views_averages_softmax_and_keeps_failed_items_as_wrong(mixed):
    items, bad = mixed
    ds = ViewDataset(items, 4, 2, "2x3", crop_size=32, resize_short=None, min_frames=20)
    model = MeanColour()
    preds = predict(model, ds, batch_size=4 * ds.num_views)  # here, without an accelerator
    assert preds.keys == [it.key for it in items] and preds.scores.shape == (11, 3)
    assert sorted(preds.errors) == sorted(bad) and preds.errors["missing"] == "no such file or folder"
    assert preds.failed.tolist() == [False] * 6 + [True] * 5
    with torch.no_grad():
        want = model(ds.views(0)).softmax(-1).mean(0).numpy()  # mean of the 6 per-view softmaxes
    np.testing.assert_allclose(preds.scores[0], want, rtol=1e-5)
    assert np.isclose(preds.scores[:6].sum(1), 1).all()
    # denominators: every item counts; a failed one is wrong even when its label would win
    right = (preds.predicted()[:6] == preds.labels[:6]).sum()
    assert topk_accuracy(preds.scores, preds.labels, 1) == pytest.approx(100 * right / 11)
    assert topk_accuracy(preds.scores, preds.labels, 3) == pytest.approx(100 * 6 / 11)


class Logits(nn.Module):
    """Fixed logits per view: the clip's first value picks the row."""

    def __init__(self, rows: list[list[float]]) -> None:
        super().__init__()
        self.rows = torch.tensor(rows)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rows[x.flatten(1)[:, 0].long()]


class Views(torch.utils.data.Dataset):
    """Two items of two views each; view v of item i is a constant clip holding 2 * i + v."""

    items = [ClipItem(Path("a"), 0, "a"), ClipItem(Path("b"), 1, "b")]
    num_views = 2

    def __len__(self) -> int:
        return 2

    def __getitem__(self, i: int) -> dict:
        clip = torch.stack([torch.full((3, 2, 4, 4), 2.0 * i + v) for v in range(2)])
        return {"clip": clip, "label": i, "key": self.items[i].key, "index": i}


def test_multi_view_scores_are_the_mean_of_the_views_softmaxes():
    model = Logits([[0.0, 10.0], [10.0, 0.0], [1.0, 1.0], [1.0, 1.0]])
    preds = predict(model, Views(), batch_size=2)
    np.testing.assert_allclose(preds.scores, [[0.5, 0.5], [0.5, 0.5]], atol=1e-4)
    np.testing.assert_allclose(probabilities(torch.tensor([[0.0, 0.0]])).numpy(), [[0.5, 0.5]])
