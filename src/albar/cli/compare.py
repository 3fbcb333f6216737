"""``albar compare``: the paper's methods on one dataset with the same config, budget and schedule, over one or
more training seeds; then the tables and figures of :mod:`albar.evaluation.compare`.

A method is a config fragment (the same nested keys as a config file) laid over the user's config with
:func:`albar.config.apply_fragment` (a section whose ``name`` changes starts from that name's defaults); the
built-in ones are :data:`PRESETS`, and ``--methods name=fragment.yaml`` adds one without touching code.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from albar.config import ConfigError, TrainConfig, apply_fragment, read_config_file
from albar.methods.registry import METHODS
from albar.objectives.registry import OBJECTIVES

PLAIN_CE: dict[str, Any] = {"name": "ce"}  # the registered plain cross-entropy objective
# ALBAR presets keep the config's own objective (its weights are the recipe); on a config whose objective is
# not ALBAR, :func:`method_config` refuses them rather than train something else under ALBAR's name.
PRESETS: dict[str, dict[str, Any]] = {
    "none": {"method": {"name": "none"}, "objective": PLAIN_CE},
    "mixup": {"method": {"name": "mixup"}, "objective": PLAIN_CE},
    "videomix": {"method": {"name": "videomix"}, "objective": PLAIN_CE},
    "be": {"method": {"name": "be"}, "objective": PLAIN_CE},
    "stillmix": {"method": {"name": "stillmix"}, "objective": PLAIN_CE},
    "albar": {"method": {"name": "none"}},
    "albar+stillmix": {"method": {"name": "stillmix"}},
}
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")


def preset(name: str) -> dict[str, Any] | None:
    """The fragment of a method name: a built-in preset; else a registered batch method X (plain CE + X),
    ``albar+X`` (the config's ALBAR objective + X) or a registered objective (no batch method); None if unknown.
    A method or objective registered in its own file is thus comparable without an entry here."""
    if name in PRESETS:
        return PRESETS[name]
    if name in METHODS:
        return {"method": {"name": name}, "objective": PLAIN_CE}
    if name.startswith("albar+") and name[len("albar+"):] in METHODS:
        return {"method": {"name": name[len("albar+"):]}}
    if name in OBJECTIVES:
        return {"method": {"name": "none"}, "objective": {"name": name}}
    return None


def known_presets() -> list[str]:
    return list(dict.fromkeys([*PRESETS, *METHODS.names(), *OBJECTIVES.names()]))


def parse_methods(spec: str) -> dict[str, dict[str, Any]]:
    """``--methods``: comma-separated preset names, ``name=fragment.yaml`` or ``fragment.yaml`` (named by its
    stem). Name -> fragment, in the order given; an unknown or repeated name is an error."""
    fragments: dict[str, dict[str, Any]] = {}
    for item in (s.strip() for s in spec.split(",")):
        if not item:
            continue
        name, _, path = item.partition("=") if "=" in item else ("", "", item)
        if not name and path.endswith((".yaml", ".yml")):
            name = Path(path).stem
        elif not name:
            name, path = item, ""
        if not _NAME.fullmatch(name):
            raise ValueError(f"--methods: {name!r} is not a usable method name (letters, digits, . _ + -)")
        if name in fragments:
            raise ValueError(f"--methods: {name!r} is given twice")
        fragment = read_config_file(path) if path else preset(name)
        if fragment is None:
            raise ValueError(f"--methods: unknown method {name!r}; known: {', '.join(known_presets())} "
                             "(or name=fragment.yaml, a config fragment of your own)")
        fragments[name] = fragment
    if not fragments:
        raise ValueError("--methods: no method given")
    return fragments


def parse_seeds(spec: str) -> list[int]:
    """``--seeds 0,1,2`` -> [0, 1, 2]; a non-integer or repeated seed is an error."""
    seeds = []
    for item in (s.strip() for s in spec.split(",")):
        if not re.fullmatch(r"-?\d+", item):
            raise ValueError(f"--seeds: {item!r} is not an integer seed (use e.g. --seeds 0,1,2)")
        if int(item) in seeds:
            raise ValueError(f"--seeds: seed {item} is given twice")
        seeds.append(int(item))
    return seeds


def method_config(base: TrainConfig, name: str, out: Path, seed: int | None = None,
                  fragment: dict[str, Any] | None = None) -> TrainConfig:
    """The config of one method (and seed): ``fragment`` (default: the preset ``name``) over ``base``, in
    ``out/<name>`` or, for a seed of a multi-seed comparison, ``out/<name>/seed<N>``."""
    fragment = preset(name) if fragment is None else fragment
    if fragment is None:
        raise ValueError(f"unknown method {name!r}; known: {', '.join(known_presets())}")
    where = out / name if seed is None else out / name / f"seed{seed}"
    placed = {**fragment, "out_dir": str(where), **({"seed": seed} if seed is not None else {})}
    try:
        cfg = apply_fragment(base, placed, source=f"method {name!r}")
    except ConfigError as err:
        raise ConfigError(f"{err} (the config with the fragment of method {name!r} laid over it)") from None
    if name.startswith("albar") and "objective" not in fragment and not _is_albar(cfg):
        raise ValueError(f"method {name!r} uses the config's ALBAR objective, but the config's objective is plain "
                         "cross-entropy (all ALBAR weights 0 or objective.name ce): set the ALBAR weights")
    return cfg


def _is_albar(cfg: TrainConfig) -> bool:
    obj = cfg.objective
    return obj.name == "albar" and any(getattr(obj, w, 0) != 0 for w in ("w_adv", "w_ent", "w_gp"))


def run_compare(base: TrainConfig, methods: str | list[str], out: Path, progress: bool = True,
                seeds: list[int] | None = None, names: list[str] | None = None, title: str | None = None) -> list:
    """Train and evaluate every method (for every seed, seed by seed) in turn, then write the comparison.

    A finished run (its results.json exists) is not rerun; an interrupted one resumes from its ``last.pt``.
    ``seeds`` None: one run per method with the config's seed, in ``out/<method>`` (the single-seed layout);
    otherwise ``out/<method>/seed<N>`` per seed. ``names``: display names, one per method.
    """
    from albar.evaluation.compare import load_runs, write_comparison
    from albar.training.run import fit

    fragments = parse_methods(methods if isinstance(methods, str) else ",".join(methods))
    if names is not None and len(names) != len(fragments):
        raise ValueError(f"--names: {len(names)} names for {len(fragments)} methods ({', '.join(fragments)})")
    plan = [(name, method_config(base, name, out, seed, fragment))  # every config validated before any work
            for seed in (seeds if seeds is not None else [None]) for name, fragment in fragments.items()]
    for name, cfg in plan:
        label = name if seeds is None else f"{name}, seed {cfg.seed}"
        if (cfg.out_dir / "results.json").is_file():
            print(f"{label}: finished earlier, not rerun ({cfg.out_dir})")
            continue
        print(f"{label}: training in {cfg.out_dir}")
        fit(cfg, progress=progress, method=name)
    display = dict(zip(fragments, names or fragments))
    runs = load_runs([cfg.out_dir for _, cfg in plan], names=[display[name] for name, _ in plan])
    written = write_comparison(out, runs, title=title)
    print("\n" + (out / "comparison.md").read_text())
    print("wrote " + ", ".join(str(p) for p in written))
    return runs
