"""Results as people read them: a side-by-side table and a bar chart."""

from __future__ import annotations

from pathlib import Path

from albar.utils import atomic_write

# (results key, title, which way is better). ConflFG pasted = top-1 on the pasted still actor's label: how
# often the static actor wins, so lower is better (a failed item counts as such a win).
COLUMNS = (
    ("iid_top1", "IID top-1", "up"),
    ("scuba_top1", "SCUBA", "up"),
    ("scufo_top1", "SCUFO", "down"),
    ("conflfg_top1", "ConflFG", "up"),
    ("conflfg_conflict_top1", "ConflFG pasted", "down"),
    ("contrasted", "Contrasted", "up"),
)


def format_table(results: dict[str, dict], markdown: bool = False) -> str:
    """One row per method, the paper's columns plus ConflFG pasted (percent). Arrows say which way is better."""
    head = ["method"] + [f"{title} {'↑' if d == 'up' else '↓'}" for _, title, d in COLUMNS]
    rows = [[name] + [f"{r[k]:.2f}" if k in r else "-" for k, _, _ in COLUMNS] for name, r in results.items()]
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
        return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows]) + "\n"
    widths = [max(len(str(c)) for c in col) for col in zip(head, *rows)]
    fmt = "  ".join(f"{{:<{w}}}" if i == 0 else f"{{:>{w}}}" for i, w in enumerate(widths))
    lines = [fmt.format(*head), fmt.format(*("-" * w for w in widths))] + [fmt.format(*r) for r in rows]
    return "\n".join(lines) + "\n"


def plot_bars(results: dict[str, dict], path: str | Path, title: str = "") -> Path:
    """Grouped bars: one group per metric, one bar per method. Written atomically as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    metrics = [(k, f"{t} ({'higher' if d == 'up' else 'lower'} is better)") for k, t, d in COLUMNS]
    metrics = [(k, t) for k, t in metrics if any(k in r for r in results.values())]
    x = np.arange(len(metrics))
    width = 0.8 / max(len(results), 1)
    fig, ax = plt.subplots(figsize=(2.2 * len(metrics) + 1, 4))
    for i, (name, r) in enumerate(results.items()):
        vals = [r.get(k, np.nan) for k, _ in metrics]
        bars = ax.bar(x + (i - (len(results) - 1) / 2) * width, vals, width, label=name)
        ax.bar_label(bars, fmt="%.1f", fontsize=7)
    ax.set_xticks(x, [t.replace(" (", "\n(") for _, t in metrics], fontsize=8)
    ax.set_ylabel("%")
    ax.set_ylim(0, 105)
    ax.legend()
    if title:
        ax.set_title(title)
    fig.tight_layout()
    path = Path(path)
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120))
    plt.close(fig)
    return path
