"""``albar compare``: the paper's methods on one dataset, same budget, seed and schedule; then the table."""

from __future__ import annotations

from pathlib import Path

from albar.config import TrainConfig
from albar.methods import MethodConfig

# Each preset: the batch method and whether the config's ALBAR weights apply (otherwise plain CE).
PRESETS: dict[str, tuple[str, bool]] = {
    "none": ("none", False),
    "mixup": ("mixup", False),
    "videomix": ("videomix", False),
    "be": ("be", False),
    "stillmix": ("stillmix", False),
    "albar": ("none", True),
    "albar+stillmix": ("stillmix", True),
}


def method_config(base: TrainConfig, name: str, out: Path) -> TrainConfig:
    if name not in PRESETS:
        raise ValueError(f"unknown method {name!r}; known: {', '.join(PRESETS)}")
    batch_method, uses_albar = PRESETS[name]
    cfg = base.model_copy(deep=True)
    cfg.out_dir = out / name
    keep_bank = {} if batch_method == "stillmix" else {"stillmix_source": "random", "bank_path": None}
    cfg.method = MethodConfig.model_validate({**cfg.method.model_dump(), "name": batch_method, **keep_bank})
    if not uses_albar:
        cfg.objective = cfg.objective.model_copy(update={"w_adv": 0.0, "w_ent": 0.0, "w_gp": 0.0, "ramp_epochs": 0})
    return cfg


def run_compare(base: TrainConfig, methods: list[str], out: Path, progress: bool = True) -> dict[str, dict]:
    """Train and evaluate every method in turn; a finished method (its results.json exists) is not rerun, an
    interrupted one resumes from its ``last.pt``."""
    from albar.evaluation.compare import load_runs, write_comparison
    from albar.training.run import fit

    configs = [method_config(base, m, out) for m in methods]  # validate every name before any work
    for name, cfg in zip(methods, configs):
        if (cfg.out_dir / "results.json").is_file():
            print(f"{name}: finished earlier, not rerun ({cfg.out_dir})")
            continue
        print(f"{name}: training in {cfg.out_dir}")
        fit(cfg, progress=progress, method=name)
    results = load_runs([c.out_dir for c in configs])
    written = write_comparison(out, results, title=f"{len(methods)} methods, seed {base.seed}")
    print("\n" + (out / "comparison.md").read_text())
    print("wrote " + ", ".join(str(p) for p in written))
    return results
