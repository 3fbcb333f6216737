"""The paper's comparison over finished runs (``albar compare``, ``albar report``): runs of one method with
different training seeds are grouped, and every metric is given as mean +- std over them, with each seed's
row and the paired difference against the baseline (same seed).

``std`` is the sample standard deviation (n - 1), of the values and of the per-seed differences; a method
with one run shows its value alone.
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from albar.evaluation.report import (
    COLUMNS,
    EXTRA_COLUMNS,
    SOURCE_COLUMNS,
    chance_level,
    column_title,
    fmt,
    fmt_pm,
    markdown_table,
    plot_panels,
    plot_training_curves,
)
from albar.utils import atomic_write_json, atomic_write_text

BASELINES = ("none", "plain CE", "ce")
# Config keys that do not make two runs different methods: where they ran, how fast, what they logged, and
# the seed itself (mirrors the result-neutral keys of a run folder's config check).
SEED_NEUTRAL_KEYS = ("seed", "out_dir", "resume", "threads", "data.num_workers", "data.cache",
                     "data.max_failure_fraction", "eval.batch_size", "checkpoint", "log")
_SEED_FOLDER = re.compile(r"seed-?\d+")


@dataclass
class Run:
    """One method's results from one results.json."""

    name: str  # display name: runs sharing it are seeds of one method
    method: str  # the name the results file gives
    seed: int | None  # training seed (results.json's ``seed``, else the run's config.yaml), None if unknown
    results: dict[str, Any]
    path: Path  # the results.json
    classes: list[str] | None = None
    config: dict[str, Any] | None = None  # the run's config.yaml, when it has one
    named: bool = False  # the name came from --names

    @property
    def folder(self) -> Path:
        return self.path.parent

    @property
    def num_classes(self) -> int | None:
        if self.classes:
            return len(self.classes)
        model = (self.config or {}).get("model") or {}
        return model.get("num_classes") if isinstance(model.get("num_classes"), int) else None

    def value(self, key: str, source: str | None = None) -> float | None:
        block = self.results if source is None else (self.results.get("per_source") or {}).get(source) or {}
        v = block.get(key)
        return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


@dataclass
class Group:
    """The runs of one method, by seed."""

    name: str
    runs: list[Run] = field(default_factory=list)

    @property
    def seeds(self) -> list[int | None]:
        return [r.seed for r in self.runs]

    def values(self, key: str, source: str | None = None) -> list[float] | None:
        """One value per run, or None when some run lacks the key (a mean over a subset would mislead)."""
        vals = [r.value(key, source) for r in self.runs]
        return None if any(v is None for v in vals) else vals


def split_names(spec: str | None, count: int | None, what: str) -> list[str] | None:
    """``--names a,b,c`` -> ["a", "b", "c"], checked against ``count`` (None: checked later)."""
    if spec is None:
        return None
    names = [n.strip() for n in spec.split(",")]
    if any(not n for n in names):
        raise ValueError(f"--names: an empty name in {spec!r}")
    if count is not None and len(names) != count:
        raise ValueError(f"--names: {len(names)} names for {count} {what}")
    return names


def find_results(path: Path) -> list[Path]:
    """The results.json files of ``path``: itself, the one in the folder, or, in a folder without one (a
    ``compare --out``, a method's seed folders), those of its sub-folders (not looking inside a run)."""
    path = Path(path)
    if path.is_file():
        return [path]
    if (path / "results.json").is_file():
        return [path / "results.json"]
    if not path.is_dir():
        raise FileNotFoundError(f"no results.json in {path} (no such file or folder)")
    found = [f for d in sorted(p for p in path.iterdir() if p.is_dir()) for f in _find_below(d, 3)]
    if not found:
        raise FileNotFoundError(f"no results.json in {path} or its sub-folders (is the run finished?)")
    return found


def _find_below(folder: Path, depth: int) -> list[Path]:
    if (folder / "results.json").is_file():
        return [folder / "results.json"]
    if depth <= 1:
        return []
    return [f for d in sorted(p for p in folder.iterdir() if p.is_dir()) for f in _find_below(d, depth - 1)]


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
        methods = data["methods"]
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as err:
        raise ValueError(f"{path}: not an albar results file ({type(err).__name__}: {err})") from None
    if not isinstance(methods, dict) or not methods or not all(isinstance(b, dict) for b in methods.values()):
        raise ValueError(f"{path}: not an albar results file ('methods' must map names to result blocks)")
    return data


def _read_run_config(folder: Path) -> dict | None:
    path = folder / "config.yaml"
    if not path.is_file():
        return None
    try:
        data = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not a readable run config ({err})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: not a run config (the top level is not a mapping)")
    return data


def load_runs(paths: list[Path], names: list[str] | None = None) -> list[Run]:
    """Every method block of every results.json that ``paths`` hold (see :func:`find_results`), in order.
    ``names``: one display name per path (its runs are seeds of that method); else each block's own name."""
    if names is not None and len(names) != len(paths):
        raise ValueError(f"{len(names)} names for {len(paths)} runs")
    runs = []
    for i, arg in enumerate(paths):
        for path in find_results(Path(arg)):
            data = _read_json(path)
            config = _read_run_config(path.parent)
            seed = data.get("seed", (config or {}).get("seed"))
            bench = data.get("benchmark") if isinstance(data.get("benchmark"), dict) else {}
            classes = data.get("classes") or bench.get("classes")  # albar demo's are under "benchmark"
            if names is not None and len(data["methods"]) > 1:
                raise ValueError(f"{path} holds {len(data['methods'])} methods ({', '.join(data['methods'])}); "
                                 "--names gives one name per run")
            for method, block in data["methods"].items():
                runs.append(Run(
                    name=names[i] if names is not None else method, method=method,
                    seed=seed if isinstance(seed, int) and not isinstance(seed, bool) else None, results=block,
                    path=path, classes=classes if isinstance(classes, list) else None,
                    config=config, named=names is not None,
                ))
    return runs


def _flatten(prefix: str, node: Any, out: dict[str, Any]) -> dict[str, Any]:
    if isinstance(node, dict):
        for k, v in node.items():
            _flatten(f"{prefix}{k}.", v, out)
    else:
        out[prefix[:-1]] = node
    return out


def config_differences(a: dict | None, b: dict | None) -> dict[str, tuple[Any, Any]]:
    """Dotted key -> (a, b) for each config value that makes two runs different methods (not a seed, a
    folder, a thread count...). Unknown configs (None) are treated as equal, and so is a key only one config
    has: configs saved by another albar version list other keys for the same settings."""
    if a is None or b is None:
        return {}
    fa, fb = _flatten("", a, {}), _flatten("", b, {})
    return {k: (fa[k], fb[k]) for k in fa if k in fb and fa[k] != fb[k]
            and not any(k == n or k.startswith(n + ".") for n in SEED_NEUTRAL_KEYS)}


def _show(diff: dict[str, tuple[Any, Any]], limit: int = 4) -> str:
    items = [f"{k}: {a!r} vs {b!r}" for k, (a, b) in list(diff.items())[:limit]]
    return "; ".join(items) + (f"; and {len(diff) - limit} more" if len(diff) > limit else "")


def _label(run: Run) -> str:
    folder = run.folder
    return folder.parent.name if _SEED_FOLDER.fullmatch(folder.name) else folder.name


def group_runs(runs: list[Run]) -> tuple[list[Group], list[str]]:
    """Runs -> methods, in order of first appearance, each method's runs by seed; and notes for the reader.

    Runs sharing a name are the seeds of one method when their configs agree apart from the seed (and where
    they ran): runs whose configs differ, or whose seed is unknown, are shown apart as ``name (folder)``.
    Names from ``--names`` group as given (a config difference is then only noted). The same seed twice
    in one method is an error: the mean would count it twice.
    """
    notes: list[str] = []
    buckets: dict[str, list[list[Run]]] = {}
    for run in runs:
        subs = buckets.setdefault(run.name, [])
        if run.named:
            if subs and (diff := config_differences(subs[0][0].config, run.config)):
                notes.append(f"{run.name}: {run.path} and {subs[0][0].path} differ in config ({_show(diff)}); "
                             "grouped as seeds of one method because --names says so")
            (subs[0].append(run) if subs else subs.append([run]))
            continue
        home = next((s for s in subs if run.seed is not None and s[0].seed is not None
                     and not config_differences(s[0].config, run.config)), None)
        if home is None:
            subs.append([run])
        else:
            home.append(run)
    groups: list[Group] = []
    for name, subs in buckets.items():
        for sub in subs:
            label = name if len(subs) == 1 else f"{name} ({_label(sub[0])})"
            groups.append(Group(label, sorted(sub, key=lambda r: (r.seed is None, r.seed or 0))))
        if len(subs) > 1:
            why = _show(config_differences(subs[0][0].config, subs[1][0].config)) or "seed unknown or repeated"
            notes.append(f"runs named {name!r} are not seeds of one method ({why}): shown apart as "
                         + ", ".join(repr(g.name) for g in groups[-len(subs):]))
    used: set[str] = set()
    for g in groups:  # every method its own name (tables and figures are keyed by it)
        name, n = g.name, 2
        while g.name in used:
            g.name, n = f"{name} [{n}]", n + 1
        used.add(g.name)
    for g in groups:
        if len(g.runs) > 1 and any(s is None for s in g.seeds):
            unknown = [str(r.path) for r in g.runs if r.seed is None]
            raise ValueError(f"method {g.name!r}: the seed of {', '.join(unknown)} is unknown (no config.yaml "
                             "beside it): cannot tell it from the other runs of the method")
        seen: dict[int | None, Run] = {}
        for r in g.runs:
            if r.seed in seen:
                raise ValueError(f"method {g.name!r}: {seen[r.seed].path} and {r.path} are both seed {r.seed}; "
                                 "give each seed once (or name them apart with --names)")
            seen[r.seed] = r
    return groups, notes


def stats(values: list[float] | None) -> tuple[float | None, float | None]:
    """(mean, sample std with n - 1); std None for a single value; (None, None) when missing."""
    if not values:
        return None, None
    arr = np.asarray(values, dtype=float)
    return float(arr.mean()), (float(arr.std(ddof=1)) if len(arr) > 1 else None)


def pick_baseline(groups: list[Group], baseline: str | None) -> Group | None:
    """The group named ``baseline`` (its display name or its runs' method name); by default the first of
    :data:`BASELINES` present; None when there is none."""
    for wanted in ([baseline] if baseline else list(BASELINES)):
        for g in groups:
            if wanted == g.name or wanted == g.runs[0].method:
                return g
    if baseline:
        raise ValueError(f"--baseline {baseline!r}: no such method; methods: {', '.join(g.name for g in groups)}")
    return None


def paired(group: Group, base: Group, key: str, source: str | None = None) -> dict[str, Any] | None:
    """Per seed both methods ran: this method's value minus the baseline's. Mean and sample std of those
    differences, their count, the relative change (percent of the baseline's mean over the same seeds) and
    the seeds of this method the baseline lacks. None when no seed pairs (or a run lacks the key)."""
    base_by_seed = {r.seed: r.value(key, source) for r in base.runs}
    pairs = [(r.seed, r.value(key, source), base_by_seed[r.seed]) for r in group.runs if r.seed in base_by_seed]
    if not pairs or any(v is None or b is None for _, v, b in pairs):
        return None
    diffs = [v - b for _, v, b in pairs]
    mean, std = stats(diffs)
    base_mean = float(np.mean([b for _, _, b in pairs]))
    return {"mean": mean, "std": std, "n": len(diffs), "seeds": [s for s, _, _ in pairs],
            "per_seed": diffs, "rel_pct": 100.0 * mean / base_mean if base_mean else float("nan"),
            "unpaired": [r.seed for r in group.runs if r.seed not in base_by_seed]}


def sources_of(groups: list[Group]) -> list[str]:
    return list(dict.fromkeys(s for g in groups for r in g.runs for s in (r.results.get("per_source") or {})))


def summarize(groups: list[Group], base: Group | None) -> dict[str, Any]:
    """Everything the tables and figures show, unrounded (``comparison.json``)."""
    keys = [k for k, _, _ in COLUMNS + EXTRA_COLUMNS]
    out: dict[str, Any] = {"baseline": base.name if base else None, "std": "sample (n - 1)", "methods": {}}
    for g in groups:
        entry: dict[str, Any] = {"seeds": g.seeds, "runs": [str(r.path) for r in g.runs], "mean": {}, "std": {},
                                 "per_seed": {}, "per_source": {}}
        for k in keys:
            vals = g.values(k)
            if vals is not None:
                entry["mean"][k], entry["std"][k] = stats(vals)
                entry["per_seed"][k] = vals
        for src in sources_of([g]):
            entry["per_source"][src] = {k: dict(zip(("mean", "std"), stats(g.values(k, src))))
                                        for k, _, _ in SOURCE_COLUMNS if g.values(k, src) is not None}
        if base is not None and g is not base:
            entry["paired"] = {k: p for k in keys if (p := paired(g, base, k)) is not None}
        out["methods"][g.name] = entry
    return out


def _chance(groups: list[Group], notes: list[str]) -> float | None:
    counts = {r.num_classes for g in groups for r in g.runs}
    if len(counts) == 1 and None not in counts:
        return chance_level(counts.pop())
    known = sorted(c for c in counts if c is not None)
    notes.append("no chance line on SCUFO: " + (f"the runs have {', '.join(map(str, known))} classes"
                                                 if len(known) > 1 else "the number of classes is not known"))
    return None


def _seed_text(seeds: list[int | None]) -> str:
    return ", ".join("?" if s is None else str(s) for s in seeds)


def comparison_markdown(groups: list[Group], base: Group | None, chance: float | None = None,
                        notes: list[str] = ()) -> str:
    """The tables: mean +- std per method in the paper's column order, the paired differences against the
    baseline, per background source, further metrics, every seed's row; then the notes."""
    multi = any(len(g.runs) > 1 for g in groups)
    head = ["method", "seeds"] + [column_title(k, t, d, chance) for k, t, d in COLUMNS]
    rows = [[g.name, _seed_text(g.seeds)] + [fmt_pm(*stats(g.values(k))) for k, _, _ in COLUMNS] for g in groups]
    parts = ["## " + ("Mean ± std over seeds" if multi else "Results") + "\n\n" + markdown_table(head, rows)]
    if base is not None and len(groups) > 1:
        head = ["method", "paired seeds"] + [f"Δ {t} {'↑' if d == 'up' else '↓'}" for _, t, d in COLUMNS]
        rows = []
        for g in groups:
            if g is base:
                continue
            cells = {k: paired(g, base, k) for k, _, _ in COLUMNS}
            n = max((p["n"] for p in cells.values() if p), default=0)
            rows.append([g.name, str(n)] + [fmt_pm(p["mean"], p["std"], sign=True) if p else "-"
                                            for p in cells.values()])
        parts.append(f"## Difference against {base.name} (same seed{', mean ± std over seeds' if multi else ''})\n\n"
                     + markdown_table(head, rows))
    sources = sources_of(groups)
    if sources:
        head = ["method", "source"] + [column_title(k, t, d, chance) for k, t, d in SOURCE_COLUMNS]
        rows = [[g.name, s] + [fmt_pm(*stats(g.values(k, s))) for k, _, _ in SOURCE_COLUMNS]
                for g in groups for s in sources]
        parts.append("## Per background source\n\n" + markdown_table(head, rows))
    extra = [(k, t, d) for k, t, d in EXTRA_COLUMNS if any(g.values(k) for g in groups)]
    if extra:
        head = ["method"] + [f"{t} {'↑' if d == 'up' else '↓'}" for _, t, d in extra]
        rows = [[g.name] + [fmt_pm(*stats(g.values(k))) for k, _, _ in extra] for g in groups]
        parts.append("## Further metrics\n\n" + markdown_table(head, rows))
    if multi:
        head = ["method", "seed"] + [f"{t} {'↑' if d == 'up' else '↓'}" for _, t, d in COLUMNS] + ["run"]
        rows = [[g.name, _seed_text([r.seed])] + [fmt(r.value(k)) for k, _, _ in COLUMNS] + [str(r.folder)]
                for g in groups for r in g.runs]
        parts.append("## Per seed\n\n" + markdown_table(head, rows))
    foot = ["Percentages; ↑ higher is better, ↓ lower is better."]
    if multi:
        foot.append("± is the sample standard deviation (n - 1) over seeds; differences are taken per seed "
                    "against the baseline's run with the same seed, then averaged.")
    parts.append("\n".join(f"- {n}" for n in [*foot, *notes]) + "\n")
    return "\n".join(parts)


def _csv(header: list[str], rows: list[dict]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=header, extrasaction="ignore")
    writer.writeheader()
    writer.writerows([{k: (fmt(v) if isinstance(v, float) else v) for k, v in r.items()} for r in rows])
    return buf.getvalue()


def comparison_rows(groups: list[Group], base: Group | None) -> list[dict]:
    """comparison.csv: per method, each metric's mean and std, and against the baseline the mean paired
    difference (``_delta``), its std and the relative change in percent (``_rel_pct``)."""
    rows = []
    for g in groups:
        row: dict[str, Any] = {"method": g.name, "runs": len(g.runs), "seeds": " ".join(map(str, g.seeds))}
        for key, _, _ in COLUMNS + EXTRA_COLUMNS:
            mean, std = stats(g.values(key))
            if mean is None:
                continue
            row[key], row[f"{key}_std"] = mean, std
            if base is not None and g is not base and (p := paired(g, base, key)) is not None:
                row[f"{key}_delta"], row[f"{key}_delta_std"], row[f"{key}_rel_pct"] = p["mean"], p["std"], p["rel_pct"]
        rows.append(row)
    return rows


def _header(rows: list[dict]) -> list[str]:
    return list(dict.fromkeys(k for r in rows for k in r))


def write_comparison(out: Path, runs: list[Run], baseline: str | None = None, title: str | None = None,
                     curves: bool = True) -> list[Path]:
    """In ``out``: comparison.md (tables), comparison.csv (per method), per_seed.csv, per_source.csv,
    comparison.json (unrounded), comparison.png/.pdf (a panel per metric), per_source.png/.pdf, and
    curves/<method>[-seed<N>].png (training curves of each run that logged them; figures left there by an
    earlier report of other runs or names are removed)."""
    out = Path(out)
    groups, notes = group_runs(runs)
    base = pick_baseline(groups, baseline)
    if base is not None:  # the baseline leads the tables and figures
        groups = [base] + [g for g in groups if g is not base]
    chance = _chance(groups, notes)
    for g in groups:
        for r in g.runs:
            for set_name, counts in sorted((r.results.get("sets") or {}).items()):
                if isinstance(counts, dict) and counts.get("failed"):
                    notes.append(f"{g.name}, seed {_seed_text([r.seed])}: {counts['failed']} of {counts.get('items')} "
                                 f"items of {set_name} failed (counted against the model; see {r.path})")
                if isinstance(counts, dict) and counts.get("left_out"):
                    notes.append(f"{g.name}, seed {_seed_text([r.seed])}: {counts['left_out']} file(s) in the folder "
                                 f"of {set_name} were left out (no label or no pair; named in {r.path})")
    if base is None and len(groups) > 1:
        notes.append("no baseline (none / plain CE) among the methods: no differences (albar report --baseline NAME "
                     "picks one)")
    written: list[Path] = []
    title = title or default_title(groups)
    subtitle = (f"mean ± std over seeds {_seed_text(sorted(set(s for g in groups for s in g.seeds), key=str))}"
                "; dots: single seeds" if any(len(g.runs) > 1 for g in groups) else "")
    series = {g.name: {k: v for k, _, _ in COLUMNS if (v := g.values(k))} for g in groups}
    written += plot_panels(series, COLUMNS, out / "comparison", title, chance, subtitle)
    sources = sources_of(groups)
    if sources:
        panels = [(f"{s}/{k}", f"{s}: {t}", d) for k, t, d in SOURCE_COLUMNS for s in sources]
        src_series = {g.name: {f"{s}/{k}": v for s in sources for k, _, _ in SOURCE_COLUMNS
                               if (v := g.values(k, s))} for g in groups}
        written += plot_panels(src_series, panels, out / "per_source", f"{title}: per background source", chance,
                               subtitle, ncols=len(sources), share_rows=True)
    if curves:
        without = []
        for g in groups:
            for r in g.runs:
                stem = out / "curves" / (_slug(g.name) + ("" if r.seed is None else f"-seed{r.seed}"))
                paths, bad_lines = plot_training_curves(
                    r.folder, stem, f"{g.name}" + ("" if r.seed is None else f", seed {r.seed}") + ": training",
                    vector=False)  # PNG only: a long run's every-step curves make a heavy PDF
                written += paths
                notes += bad_lines
                if not paths:
                    without.append(str(r.folder))
        kept = set(written)
        for old in (out / "curves").glob("*.p[nd][gf]"):  # the figures of runs no longer in this comparison
            if old not in kept:
                old.unlink()
        if without:
            notes.append(f"no training curves for {len(without)} run(s) without steps.jsonl or epochs.csv: "
                         + ", ".join(without[:3]) + (", ..." if len(without) > 3 else ""))
    rows = comparison_rows(groups, base)
    seed_rows = [{"method": g.name, "seed": r.seed, **{k: r.value(k) for k, _, _ in COLUMNS + EXTRA_COLUMNS},
                  **{f"{s}/{k}": r.value(k, s) for s in sources for k, _, _ in SOURCE_COLUMNS}, "run": str(r.folder)}
                 for g in groups for r in g.runs]
    source_rows = [{"method": g.name, "source": s, **{c: v for k, _, _ in SOURCE_COLUMNS
                                                       for c, v in zip((k, f"{k}_std"), stats(g.values(k, s)))}}
                   for g in groups for s in sources]
    files = {
        "comparison.md": comparison_markdown(groups, base, chance, notes),
        "comparison.csv": _csv(_header(rows), rows),
        "per_seed.csv": _csv(_header(seed_rows), seed_rows),
    }
    if source_rows:
        files["per_source.csv"] = _csv(_header(source_rows), source_rows)
    for name, text in files.items():
        atomic_write_text(out / name, text)
        written.append(out / name)
    atomic_write_json(out / "comparison.json", {**summarize(groups, base), "chance": chance, "notes": notes,
                                                "title": title})
    written.append(out / "comparison.json")
    for note in notes:
        print(f"note: {note}")
    return written


def default_title(groups: list[Group]) -> str:
    """What the runs' config says: the dataset and the model, e.g. ``synthetic, small3d``."""
    configs = [r.config for g in groups for r in g.runs if r.config]
    if not configs:
        return "Comparison"
    data, model = configs[0].get("data") or {}, configs[0].get("model") or {}
    dataset = data.get("bias_dataset") or data.get("source") or "?"
    same = all(((c.get("model") or {}).get("name"), (c.get("data") or {}).get("source"))
               == (model.get("name"), data.get("source")) for c in configs)
    return f"{dataset}, {model.get('name', '?')}" if same else "Comparison"


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", name).strip("_") or "method"


__all__ = ["Group", "Run", "comparison_markdown", "comparison_rows", "group_runs", "load_runs", "paired",
           "pick_baseline", "split_names", "stats", "summarize", "write_comparison"]
