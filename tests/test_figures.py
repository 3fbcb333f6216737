"""What the figures show: read back from the matplotlib figure (values, error bars, the chance line, titles) and
from the written files (PNG resolution, PDF), for results written by hand."""

import json
import statistics

import numpy as np
import pytest
from PIL import Image

from albar.evaluation.report import (
    COLUMNS,
    curves_figure,
    fmt,
    fmt_pm,
    panel_figure,
    plot_panels,
    plot_training_curves,
    read_steps,
)


def bars(ax):
    """(heights, error half-lengths) of a panel, left to right."""
    heights = [p.get_height() for p in ax.patches]
    errs = []
    for container in ax.containers:
        if hasattr(container, "has_yerr") and container.has_yerr:
            segments = container.lines[2][0].get_segments()
            errs = [(s[1][1] - s[0][1]) / 2 for s in segments]
    return heights, errs


def horizontal_lines(ax):
    return [line.get_ydata()[0] for line in ax.get_lines() if len(set(np.ravel(line.get_ydata()))) == 1]


SERIES = {  # method -> key -> one value per seed (the synthetic benchmark's scale: 8 classes)
    "plain CE": {"iid_top1": [96.5, 96.1, 96.4], "scufo_top1": [43.2, 45.2, 46.3], "contrasted": [2.2, 3.5, 1.7]},
    "ALBAR": {"iid_top1": [99.1, 98.2, 98.8], "scufo_top1": [13.8, 13.8, 12.2], "contrasted": [60.2, 53.7, 59.2]},
}


def test_one_panel_per_metric_with_its_own_axis_error_bars_and_the_chance_line_on_scufo():
    fig = panel_figure(SERIES, COLUMNS, "synthetic, small3d", chance=100 / 8, subtitle="3 seeds")
    axes = [ax for ax in fig.axes if ax.get_visible()]
    titles = [ax.get_title() for ax in axes]
    assert titles == ["IID top-1 ↑", "SCUFO ↓", "Contrasted ↑"]  # metrics no run has are left out
    for ax, (key, _, _) in zip(axes, [c for c in COLUMNS if c[0] in SERIES["ALBAR"]]):
        heights, errs = bars(ax)
        for i, name in enumerate(SERIES):
            values = SERIES[name][key]
            assert heights[i] == pytest.approx(statistics.mean(values))
            assert errs[i] == pytest.approx(statistics.stdev(values))  # sample std, n - 1
        assert [t.get_text() for t in ax.get_xticklabels()] == ["plain CE", "ALBAR"]
    iid, scufo, contrasted = axes
    assert horizontal_lines(scufo) == [pytest.approx(12.5)]  # chance: 100 / 8 classes, on SCUFO only
    assert [t.get_text() for t in scufo.get_legend().get_texts()] == ["chance 12.5"]
    assert horizontal_lines(iid) == [] and horizontal_lines(contrasted) == []
    assert scufo.get_ylim()[1] < 60 and iid.get_ylim()[1] > 100  # each panel its own scale
    assert fig.get_suptitle() == "synthetic, small3d\n3 seeds"


def test_figure_files_are_a_200_dpi_png_and_a_vector_pdf(tmp_path):
    paths = plot_panels(SERIES, COLUMNS, tmp_path / "fig", "t", chance=12.5)
    assert [p.name for p in paths] == ["fig.png", "fig.pdf"]
    with Image.open(paths[0]) as img:
        assert img.info["dpi"][0] == pytest.approx(200, abs=1) and img.width >= 1200
    assert paths[1].read_bytes()[:5] == b"%PDF-"
    with pytest.raises(ValueError, match="no metric to plot"):
        plot_panels({"a": {"val_top1": [1.0]}}, COLUMNS, tmp_path / "empty")


def test_numbers_are_rounded_for_people():
    assert fmt(14.000000000000002) == "14.00" and fmt(72.81 - 73.92, sign=True) == "-1.11"
    assert fmt(None) == "-" and fmt_pm(43.0, None) == "43.00" and fmt_pm(8.5, 2.1213, sign=True) == "+8.50 ± 2.12"


def write_log(run, steps, epochs):
    run.mkdir()
    (run / "steps.jsonl").write_text("".join(json.dumps(r) + "\n" for r in steps) + '{"step": 9, "ep')  # cut line
    (run / "epochs.csv").write_text("epoch,lr,train_top1,train_loss,val_top1\n"
                                    + "".join(f"{e},{lr},{t},{loss},{v}\n" for e, lr, t, loss, v in epochs))


def test_training_curves_show_each_loss_term_accuracy_and_learning_rate(tmp_path):
    steps = []
    for step in range(1, 9):  # 2 epochs of 4 steps; ALBAR's static terms start at step 2 (ramp)
        record = {"step": step, "epoch": 1 + (step - 1) // 4, "lr": 1e-3 * step, "time": 0.0,
                  "loss": 2.0 / step, "ce": 1.0 / step}
        if step > 1:
            record.update(static_ce=3.0 + step, gp=0.1)
        steps.append(record)
    write_log(tmp_path / "run", steps, [(1, 4e-3, 50.0, 1.0, 62.5), (2, 8e-3, 75.0, 0.5, 70.0)])
    fig, notes = curves_figure(tmp_path / "run", "albar, seed 0")
    axes = {ax.get_title(): ax for ax in fig.axes if ax.get_visible()}
    assert set(axes) == {"total loss", "cross-entropy (motion clip)", "cross-entropy (static clip)",
                         "gradient penalty", "top-1 (%) per epoch", "learning rate"}
    assert len(notes) == 1 and "steps.jsonl:9" in notes[0]  # the cut last line is named, not dropped silently
    static = axes["cross-entropy (static clip)"]
    dots = [line for line in static.get_lines() if line.get_marker() == "o"][0]
    # epoch means over the steps that logged the term, at the middle of each epoch
    assert list(dots.get_xdata()) == [0.5, 1.5]
    assert list(dots.get_ydata()) == pytest.approx([np.mean([5, 6, 7]), np.mean([8, 9, 10, 11])])
    acc = axes["top-1 (%) per epoch"]
    val = [line for line in acc.get_lines() if line.get_label() == "validation"][0]
    assert list(val.get_ydata()) == [62.5, 70.0]
    lr = axes["learning rate"].get_lines()[0]
    assert lr.get_ydata()[-1] == pytest.approx(8e-3) and lr.get_xdata()[-1] == pytest.approx(2.0)
    paths, _ = plot_training_curves(tmp_path / "run", tmp_path / "curves" / "albar-seed0")
    assert paths[0].read_bytes()[:4] == b"\x89PNG" and paths[1].read_bytes()[:5] == b"%PDF-"
    assert plot_training_curves(tmp_path / "nothing", tmp_path / "x") == ([], [])


def test_a_step_logged_twice_keeps_its_last_record(tmp_path):
    (tmp_path / "steps.jsonl").write_text('{"step": 1, "loss": 5}\n{"step": 2, "loss": 4}\n{"step": 2, "loss": 3}\n')
    records, bad = read_steps(tmp_path / "steps.jsonl")
    assert [r["loss"] for r in records] == [5, 3] and bad == []
