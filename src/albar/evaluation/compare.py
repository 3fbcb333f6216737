"""The paper's comparison table and charts from finished runs (``albar compare``, ``albar report``)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from albar.evaluation.report import COLUMNS, format_table, plot_bars
from albar.utils import atomic_write, atomic_write_text

BASELINES = ("none", "plain CE")


def load_runs(run_dirs: list[Path]) -> dict[str, dict]:
    """Method name -> results block, from each run's ``results.json`` (a run may hold several methods)."""
    results: dict[str, dict] = {}
    for d in run_dirs:
        path = d / "results.json" if d.is_dir() else d
        if not path.is_file():
            raise FileNotFoundError(f"no results.json in {d} (is the run finished?)")
        try:
            methods = json.loads(path.read_text())["methods"]
        except (json.JSONDecodeError, KeyError) as err:
            raise ValueError(f"{path}: not an albar results file ({err})") from None
        for name, block in methods.items():
            key = name if name not in results else f"{name} ({d.name})"
            results[key] = block
    return results


def comparison_rows(results: dict[str, dict], baseline: str | None = None) -> list[dict]:
    """One row per method: each metric, its change against the baseline in points and in percent."""
    base_name = baseline or next((b for b in BASELINES if b in results), None)
    base = results.get(base_name) if base_name else None
    rows = []
    for name, r in results.items():
        row: dict = {"method": name}
        for key, _, _ in COLUMNS:
            if key not in r:
                continue
            row[key] = r[key]
            if base is not None and key in base and name != base_name:
                row[f"{key}_delta"] = r[key] - base[key]
                row[f"{key}_rel_pct"] = 100.0 * (r[key] - base[key]) / base[key] if base[key] else float("nan")
        rows.append(row)
    return rows


def comparison_markdown(results: dict[str, dict], baseline: str | None = None) -> str:
    """The paper's table: value, and in brackets the change in points against plain CE."""
    head = ["method"] + [f"{t} {'↑' if d == 'up' else '↓'}" for _, t, d in COLUMNS]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for row in comparison_rows(results, baseline):
        cells = [row["method"]]
        for key, _, _ in COLUMNS:
            if key not in row:
                cells.append("-")
            elif f"{key}_delta" in row:
                cells.append(f"{row[key]:.2f} ({row[f'{key}_delta']:+.2f})")
            else:
                cells.append(f"{row[key]:.2f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_contrasted_by_source(results: dict[str, dict], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    sources = sorted({s for r in results.values() for s in r.get("per_source", {})})
    fig, ax = plt.subplots(figsize=(1.8 * max(len(sources), 1) + 2, 4))
    width = 0.8 / max(len(results), 1)
    x = np.arange(len(sources))
    for i, (name, r) in enumerate(results.items()):
        vals = [r.get("per_source", {}).get(s, {}).get("contrasted", np.nan) for s in sources]
        bars = ax.bar(x + (i - (len(results) - 1) / 2) * width, vals, width, label=name)
        ax.bar_label(bars, fmt="%.1f", fontsize=7)
    ax.set_xticks(x, sources)
    ax.set_ylabel("contrasted accuracy (%)")
    ax.set_ylim(0, 105)
    ax.legend(fontsize=8)
    ax.set_title("Contrasted accuracy per background source")
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120))
    plt.close(fig)
    return path


def write_comparison(out: Path, results: dict[str, dict], baseline: str | None = None, title: str = "") -> list[Path]:
    """comparison.md, comparison.csv, comparison.png and contrasted_by_source.png in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    rows = comparison_rows(results, baseline)
    present = {k for r in rows for k in r}
    columns = ["method"] + [c for key, _, _ in COLUMNS for c in (key, f"{key}_delta", f"{key}_rel_pct") if c in present]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    written = [out / "comparison.md", out / "comparison.csv"]
    atomic_write_text(written[0], comparison_markdown(results, baseline))
    atomic_write_text(written[1], buf.getvalue())
    written.append(plot_bars(results, out / "comparison.png", title=title))
    if any("per_source" in r for r in results.values()):
        written.append(plot_contrasted_by_source(results, out / "contrasted_by_source.png"))
    return written


__all__ = ["comparison_markdown", "comparison_rows", "format_table", "load_runs", "write_comparison"]
