"""Results as people read them: tables, bar panels with error bars, training curves.

Figures are made for a paper or a talk: one panel per metric on its own axis (a 0-100 axis shared by IID and
SCUFO hides the differences that matter), the chance line on SCUFO, mean +- std error bars with each seed as
a dot, a title; written as PNG (200 dpi) and PDF (vector) side by side, atomically.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from pathlib import Path

from albar.utils import atomic_write

# (results key, title, which way is better), in the paper's column order (IID, SCUBA, SCUFO, ConflFG,
# contrasted), then ConflFG pasted: top-1 on the pasted still actor's label, i.e. how often the static
# actor wins, so lower is better (a failed item counts as such a win).
COLUMNS = (
    ("iid_top1", "IID top-1", "up"),
    ("scuba_top1", "SCUBA", "up"),
    ("scufo_top1", "SCUFO", "down"),
    ("conflfg_top1", "ConflFG", "up"),
    ("contrasted", "Contrasted", "up"),
    ("conflfg_conflict_top1", "ConflFG pasted", "down"),
)
# Per background source (``per_source`` in results.json).
SOURCE_COLUMNS = (
    ("scuba_top1", "SCUBA", "up"),
    ("scufo_top1", "SCUFO", "down"),
    ("contrasted", "Contrasted", "up"),
)
# Further keys of results.json, in tables and CSVs but not in the headline figure.
EXTRA_COLUMNS = (
    ("iid_top5", "IID top-5", "up"),
    ("iid_mean_class", "IID mean class", "up"),
    ("scuba_mean_class", "SCUBA mean class", "up"),
    ("scufo_mean_class", "SCUFO mean class", "down"),
    ("contrasted_mean_class", "Contrasted mean class", "up"),
    ("conflfg_mean_class", "ConflFG mean class", "up"),
    ("conflfg_moving_over_conflict", "ConflFG moving > pasted", "up"),
    ("val_top1", "val top-1 (selection)", "up"),
)
DPI = 200
ARROW = {"up": "↑", "down": "↓"}
# steps.jsonl keys that are not curves, and readable names of the objective's terms
_NOT_TERMS = {"step", "epoch", "lr", "time"}
_TERM_TITLES = {
    "loss": "total loss", "ce": "cross-entropy (motion clip)", "static_ce": "cross-entropy (static clip)",
    "neg_entropy": "negative entropy (static clip)", "gp": "gradient penalty", "top1": "train top-1 (%)",
}


def fmt(value: float | None, digits: int = 2, sign: bool = False) -> str:
    """A number as a table shows it: fixed decimals (never ``14.000000000000002``), ``-`` when missing."""
    if value is None:
        return "-"
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}"


def fmt_pm(mean: float | None, std: float | None, digits: int = 2, sign: bool = False) -> str:
    """``mean ± std`` (the mean alone when there is no spread to show: a single run)."""
    return fmt(mean, digits, sign) if std is None else f"{fmt(mean, digits, sign)} ± {fmt(std, digits)}"


def chance_level(num_classes: int | None) -> float | None:
    """Top-1 of a guess among ``num_classes`` classes, in percent: SCUFO's reference line."""
    return 100.0 / num_classes if num_classes else None


def column_title(key: str, title: str, direction: str, chance: float | None = None) -> str:
    text = f"{title} {ARROW[direction]}"
    return f"{text} (chance {fmt(chance, 1)})" if chance is not None and key.endswith("scufo_top1") else text


def format_table(results: dict[str, dict], markdown: bool = False) -> str:
    """One row per method, the paper's columns plus ConflFG pasted (percent). Arrows say which way is better."""
    head = ["method"] + [f"{title} {ARROW[d]}" for _, title, d in COLUMNS]
    rows = [[name] + [fmt(r[k]) if k in r else "-" for k, _, _ in COLUMNS] for name, r in results.items()]
    if markdown:
        return markdown_table(head, rows)
    widths = [max(len(str(c)) for c in col) for col in zip(head, *rows)]
    line = "  ".join(f"{{:<{w}}}" if i == 0 else f"{{:>{w}}}" for i, w in enumerate(widths))
    lines = [line.format(*head), line.format(*("-" * w for w in widths))] + [line.format(*r) for r in rows]
    return "\n".join(lines) + "\n"


def markdown_table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows]) + "\n"


def save_figure(fig, stem: Path, vector: bool = True) -> list[Path]:
    """``stem``.png (200 dpi) and, with ``vector``, ``stem``.pdf, each written atomically."""
    stem = Path(stem)
    paths = [stem.with_suffix(".png")] + ([stem.with_suffix(".pdf")] if vector else [])
    for path in paths:
        fmt_ = path.suffix[1:]
        atomic_write(path, lambda tmp, f=fmt_: fig.savefig(tmp, format=f, dpi=DPI, bbox_inches="tight"))
    return paths


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_panels(series: dict[str, dict[str, list[float]]], panels: Sequence[tuple[str, str, str]], stem: Path,
                title: str = "", chance: float | None = None, subtitle: str = "", ncols: int = 3,
                vector: bool = True, share_rows: bool = False) -> list[Path]:
    """:func:`panel_figure` written to ``stem``.png and ``stem``.pdf; returns their paths."""
    fig = panel_figure(series, panels, title, chance, subtitle, ncols, share_rows)
    try:
        return save_figure(fig, stem, vector)
    finally:
        _pyplot().close(fig)


def panel_figure(series: dict[str, dict[str, list[float]]], panels: Sequence[tuple[str, str, str]],
                 title: str = "", chance: float | None = None, subtitle: str = "", ncols: int = 3,
                 share_rows: bool = False):
    """One bar panel per metric, each on its own axis from 0: the bar is the mean over a method's runs, the
    error bar its sample std (n - 1; none for a single run), each run a dot, the mean written above.

    ``series``: method -> results key -> one value per run. ``panels``: (key, title, "up"/"down"); keys no
    method has are left out. ``chance``: a dashed line on the panels of SCUFO keys (``...scufo_top1``).
    ``share_rows``: the panels of a row share one axis (a metric per row, e.g. per background source).
    Returns the matplotlib figure.
    """
    import numpy as np

    plt = _pyplot()
    wanted, panels = panels, [p for p in panels if any(series[m].get(p[0]) for m in series)]
    if not panels:
        raise ValueError("no metric to plot: no run has any of " + ", ".join(k for k, _, _ in wanted))
    names = list(series)
    colours = plt.get_cmap("tab10").colors
    ncols = min(ncols, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    width = max(2.6, 0.55 * len(names) + 1.2)
    fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, 3.3 * nrows + 0.7), squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    x = np.arange(len(names))
    rng = np.random.default_rng(0)  # the dots' horizontal jitter, the same in every figure

    def stats(key: str):
        values = [np.asarray(series[m].get(key) or [np.nan], dtype=float) for m in names]
        means = np.array([v.mean() for v in values])
        stds = np.array([v.std(ddof=1) if len(v) > 1 else 0.0 for v in values])
        highs = [float(np.nanmax(v)) for v in values if np.isfinite(v).any()]
        highs += [float(x) for x in means + stds if np.isfinite(x)]
        if key.endswith("scufo_top1") and chance is not None:
            highs.append(chance)
        return values, means, stds, max(highs, default=0.0)

    tops = [stats(key)[3] for key, _, _ in panels]
    if share_rows:
        tops = [max(tops[i - i % ncols: i - i % ncols + ncols]) for i in range(len(tops))]
    for ax, (key, ptitle, direction), top in zip(axes.flat, panels, tops):
        values, means, stds, _ = stats(key)
        ax.bar(x, means, 0.7, color=[colours[i % len(colours)] for i in range(len(names))], alpha=0.85, zorder=2)
        if any(len(v) > 1 for v in values):
            ax.errorbar(x, means, yerr=stds, fmt="none", ecolor="black", elinewidth=1.2, capsize=5, zorder=4)
            for i, v in enumerate(values):
                if len(v) > 1:
                    ax.scatter(i + rng.uniform(-0.12, 0.12, len(v)), v, s=10, color="black", alpha=0.55,
                               zorder=5, linewidths=0)
        is_scufo = key.endswith("scufo_top1") and chance is not None
        top = max(min(top * 1.18, 112.0), 5.0)  # room for labels; ends near 100; a 1% bar does not fill it
        ax.set_ylim(0, top)
        ax.set_yticks([t for t in ax.get_yticks() if 0 <= t <= min(top, 100)])
        for i, (m, s) in enumerate(zip(means, stds)):
            if np.isfinite(m):
                ax.text(i, m + s + 0.02 * top, fmt(float(m), 1), ha="center", va="bottom", fontsize=8, zorder=6)
        if is_scufo:
            line = ax.axhline(chance, color="dimgray", linestyle="--", linewidth=1.1, zorder=3)
            # named in a legend: matplotlib puts it where it hides the fewest bars and labels
            ax.legend([line], [f"chance {fmt(chance, 1)}"], fontsize=8, loc="best", framealpha=0.9)
        ax.set_title(f"{ptitle} {ARROW[direction]}", fontsize=10)
        better = "higher is better" if direction == "up" else "lower is better"
        ax.set_ylabel(f"% ({better})", fontsize=8)
        ax.set_xticks(x, names, rotation=30 if max(map(len, names)) > 6 else 0, ha="right"
                      if max(map(len, names)) > 6 else "center", fontsize=8)
        ax.tick_params(axis="y", labelsize=8)
        ax.grid(axis="y", alpha=0.3, zorder=0)
        ax.spines[["top", "right"]].set_visible(False)
        ax.set_xlim(-0.6, len(names) - 0.4)
    if title or subtitle:
        fig.suptitle("\n".join(t for t in (title, subtitle) if t), fontsize=11)
    fig.tight_layout()
    return fig


def plot_bars(results: dict[str, dict], path: str | Path, title: str = "", num_classes: int | None = None) -> Path:
    """One run per method: :func:`plot_panels` without error bars, written as PNG to ``path``."""
    series = {name: {k: [r[k]] for k, _, _ in COLUMNS if isinstance(r.get(k), (int, float))}
              for name, r in results.items()}
    stem = Path(path).with_suffix("")
    plot_panels(series, COLUMNS, stem, title, chance_level(num_classes), vector=False)
    png = stem.with_suffix(".png")
    if png != Path(path):
        atomic_write(path, lambda tmp: tmp.write_bytes(png.read_bytes()))
        png.unlink()
    return Path(path)


# --- training curves -------------------------------------------------------------------------------------


def read_steps(path: Path) -> tuple[list[dict], list[str]]:
    """The records of ``steps.jsonl`` and a note per line that could not be read (a run killed mid-write
    leaves a cut last line); a step logged twice keeps its last record."""
    by_step: dict[int, dict] = {}
    bad: list[str] = []
    for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            by_step[int(record["step"])] = record
        except (ValueError, KeyError, TypeError):
            bad.append(f"{path}:{n}: not a step record ({line[:60]!r})")
    return [by_step[s] for s in sorted(by_step)], bad


def read_epochs(path: Path) -> list[dict[str, float]]:
    """``epochs.csv`` rows as numbers (an empty cell is left out of its row)."""
    rows = []
    with open(path, newline="") as f:
        for n, row in enumerate(csv.DictReader(f), 2):
            try:
                rows.append({k: float(v) for k, v in row.items() if k and v not in ("", None)})
            except ValueError as err:
                raise ValueError(f"{path}:{n}: not a number ({err})") from None
    return rows


def _smooth(values, window: int):
    import numpy as np

    v = np.asarray(values, dtype=float)
    if window <= 1 or len(v) < 3:
        return v
    window = min(window, len(v))
    kernel = np.ones(window)
    ok = np.isfinite(v)
    num = np.convolve(np.where(ok, v, 0.0), kernel, mode="same")
    den = np.convolve(ok.astype(float), kernel, mode="same")
    with np.errstate(invalid="ignore", divide="ignore"):
        return num / den


def _best_epoch(run_dir: Path, epochs: list[dict[str, float]]) -> int | None:
    """The epoch the run kept (results.json's ``best_epoch``), else the one with the highest val top-1."""
    try:
        best = json.loads((run_dir / "results.json").read_text()).get("best_epoch")
    except (OSError, ValueError, AttributeError):
        best = None
    if isinstance(best, int) and not isinstance(best, bool):
        return best
    scored = [r for r in epochs if "val_top1" in r and "epoch" in r]
    return int(max(scored, key=lambda r: r["val_top1"])["epoch"]) if scored else None


def plot_training_curves(run_dir: Path, stem: Path, title: str = "",
                         vector: bool = True) -> tuple[list[Path], list[str]]:
    """:func:`curves_figure` written to ``stem``.png and ``stem``.pdf. Returns the written paths (none when the
    run logged neither file) and notes on unreadable lines."""
    fig, notes = curves_figure(run_dir, title)
    if fig is None:
        return [], notes
    try:
        return save_figure(fig, stem, vector), notes
    finally:
        _pyplot().close(fig)


def curves_figure(run_dir: Path, title: str = ""):
    """One figure per run from its ``steps.jsonl`` (every optimiser step) and ``epochs.csv`` (one row per
    epoch): a panel per loss term (each step faint, a moving average over about a tenth of an epoch bold,
    each epoch's mean over the steps that logged the term as a dot at the epoch's middle), train and
    validation top-1 per epoch, and the learning rate. The x axis is in epochs. Returns the figure (None
    when the run has neither file) and notes on unreadable lines.
    """
    import numpy as np

    steps_path, epochs_path = Path(run_dir) / "steps.jsonl", Path(run_dir) / "epochs.csv"
    steps, notes = read_steps(steps_path) if steps_path.is_file() else ([], [])
    epochs = read_epochs(epochs_path) if epochs_path.is_file() else []
    if not steps and not epochs:
        return None, notes
    # x of a step: its epoch - 1 plus its place within that epoch
    per_epoch: dict[int, list[int]] = {}
    for i, r in enumerate(steps):
        per_epoch.setdefault(int(r.get("epoch", 1)), []).append(i)
    xs = np.zeros(len(steps))
    for e, idx in per_epoch.items():
        xs[idx] = (e - 1) + (np.arange(len(idx)) + 1) / len(idx)
    terms = [k for r in steps for k, v in r.items() if k not in _NOT_TERMS and isinstance(v, (int, float))]
    terms = list(dict.fromkeys(terms))
    for k in (k[len("train_"):] for r in epochs for k in r if k.startswith("train_") and k != "train_top1"):
        if k not in terms:
            terms.append(k)
    n_panels = len(terms) + 2
    plt = _pyplot()
    ncols = min(4, n_panels)
    nrows = math.ceil(n_panels / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.4 * ncols, 2.8 * nrows + 0.6), squeeze=False)
    for ax in axes.flat[n_panels:]:
        ax.set_visible(False)
    steps_per_epoch = max((len(v) for v in per_epoch.values()), default=1)
    ep_x = [r["epoch"] for r in epochs if "epoch" in r]
    for ax, term in zip(axes.flat, terms):
        ys = np.array([r.get(term, np.nan) for r in steps], dtype=float)
        if len(steps):
            ax.plot(xs, ys, color="tab:blue", alpha=0.25, linewidth=0.7, label="per step")
            ax.plot(xs, _smooth(ys, max(1, steps_per_epoch // 10)), color="tab:blue", linewidth=1.5,
                    label="moving average")
        # the mean over the steps of each epoch that logged the term, at the epoch's middle; epochs.csv's
        # train_<term> only where there is no steps.jsonl
        epoch_means = [(e - 0.5, float(np.nanmean(ys[idx]))) for e, idx in sorted(per_epoch.items())
                       if np.isfinite(ys[idx]).any()]
        if not steps:
            epoch_means = [(r["epoch"] - 0.5, r[f"train_{term}"]) for r in epochs
                           if f"train_{term}" in r and "epoch" in r]
        if epoch_means:
            ax.plot(*zip(*epoch_means), "o", color="tab:orange", markersize=4, label="epoch mean")
        ax.set_title(_TERM_TITLES.get(term, term), fontsize=9)
    ax_acc = axes.flat[len(terms)]
    for key, label, colour in (("train_top1", "train", "tab:blue"), ("val_top1", "validation", "tab:green")):
        pts = [(r["epoch"], r[key]) for r in epochs if key in r and "epoch" in r]
        if pts:
            ax_acc.plot(*zip(*pts), "o-", color=colour, markersize=4, label=label)
    best = _best_epoch(Path(run_dir), epochs)
    if best is not None:  # the epoch whose weights the results are of
        right = best > max(ep_x, default=1) / 2
        ax_acc.axvline(best, color="gray", linestyle=":", linewidth=1)
        ax_acc.text(best, 2, f"best epoch {best} " if right else f" best epoch {best}", fontsize=7, color="gray",
                    va="bottom", ha="right" if right else "left")
    ax_acc.set_ylim(0, 102)
    ax_acc.set_title("top-1 (%) per epoch", fontsize=9)
    ax_acc.legend(fontsize=7, loc="best")
    ax_lr = axes.flat[len(terms) + 1]
    if steps and any("lr" in r for r in steps):
        ax_lr.plot(xs, [r.get("lr", np.nan) for r in steps], color="tab:purple", linewidth=1.2)
    elif ep_x:
        ax_lr.plot(ep_x, [r.get("lr", np.nan) for r in epochs], "o-", color="tab:purple", markersize=4)
    ax_lr.set_title("learning rate", fontsize=9)
    ax_lr.yaxis.set_major_formatter(lambda v, _: f"{v:.2g}")  # no offset text over the title
    last = max([*ep_x, *(xs if len(steps) else [])], default=1.0)
    for ax in axes.flat[:n_panels]:
        ax.set_xlim(0, max(last, 1.0))
        ax.set_xlabel("epoch", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        ax.spines[["top", "right"]].set_visible(False)
    if terms and len(steps):
        axes.flat[0].legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return fig, notes
