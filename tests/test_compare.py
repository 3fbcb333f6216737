import csv
import json
import re
import statistics

import pytest
import torch
import yaml
from helpers import write_config

from albar.cli import main
from albar.cli.compare import PRESETS, method_config, parse_methods
from albar.config import load_config
from albar.evaluation.compare import comparison_markdown, comparison_rows, group_runs, load_runs, pick_baseline

PAPER = ("iid_top1", "scuba_top1", "scufo_top1", "conflfg_top1", "contrasted")


def write_run(path, name, seed=None, config=None, **metrics):
    """A finished run as albar writes it: results.json, and config.yaml when the run had a config."""
    path.mkdir(parents=True)
    (path / "results.json").write_text(json.dumps({"methods": {name: metrics}}))
    if seed is not None or config is not None:
        (path / "config.yaml").write_text(yaml.safe_dump({"seed": seed, "out_dir": str(path), **(config or {})}))
    return path


def test_report_numbers_from_hand_made_result_files(tmp_path, capsys):
    # the paper's HMDB51 rows (ALBAR.md, Table 1), one run each
    ce = write_run(tmp_path / "ce", "none", iid_top1=73.92, scuba_top1=43.93, scufo_top1=20.46, conflfg_top1=36.58,
                   contrasted=27.84, per_source={"places365": {"contrasted": 30.0}})
    albar = write_run(tmp_path / "albar", "albar", iid_top1=72.81, scuba_top1=53.53, scufo_top1=1.50,
                      conflfg_top1=48.13, contrasted=53.22, per_source={"places365": {"contrasted": 55.0}},
                      sets={"scufo_places365": {"items": 10, "failed": 1, "denominator": 10, "left_out": 2}})
    groups, _ = group_runs(load_runs([ce, albar]))
    base = pick_baseline(groups, None)
    rows = comparison_rows(groups, base)
    assert rows[1]["contrasted_delta"] == pytest.approx(25.38)
    assert rows[1]["contrasted_rel_pct"] == pytest.approx(100 * 25.38 / 27.84)
    assert rows[1]["scufo_top1_delta"] == pytest.approx(-18.96)
    md = comparison_markdown(groups, base)
    assert "| albar | 1 | -1.11 | +9.60 | -18.96 | +11.55 | +25.38 |" in md  # paired differences, no ± for one seed
    assert main(["report", str(ce), str(albar), "--out", str(tmp_path / "cmp")]) == 0
    table = list(csv.DictReader((tmp_path / "cmp" / "comparison.csv").open()))
    assert [r["method"] for r in table] == ["none", "albar"]
    assert table[1]["iid_top1_delta"] == "-1.11"  # rounded: 72.81 - 73.92 is -1.1100000000000136 in floats
    assert table[1]["contrasted_rel_pct"] == "91.16"
    notes = json.loads((tmp_path / "cmp" / "comparison.json").read_text())["notes"]
    assert any("1 of 10 items of scufo_places365 failed" in n for n in notes)
    assert any("2 file(s) in the folder of scufo_places365 were left out" in n for n in notes)
    for png in ("comparison.png", "per_source.png"):
        assert (tmp_path / "cmp" / png).read_bytes()[:4] == b"\x89PNG"
    assert main(["report", str(tmp_path / "nothing"), "--out", str(tmp_path / "x")]) == 2
    assert "no results.json" in capsys.readouterr().err


def test_report_groups_the_seeds_of_a_method_and_pairs_differences_by_seed(tmp_path):
    cfg = {"model": {"name": "small3d", "num_classes": 8}, "data": {"source": "synthetic"}, "objective": {"name": "ce"}}
    albar_cfg = {**cfg, "objective": {"name": "albar", "w_adv": 0.5}}
    ce = {0: 40.0, 1: 44.0, 2: 45.0}
    al = {0: 50.0, 1: 51.0, 3: 60.0}  # seed 3 has no baseline run; seed 2 no ALBAR run
    runs = [write_run(tmp_path / "runs" / f"ce{s}", "none", s, cfg, scuba_top1=v) for s, v in ce.items()]
    runs += [write_run(tmp_path / "runs" / f"al{s}", "albar", s, albar_cfg, scuba_top1=v) for s, v in al.items()]
    assert main(["report", str(tmp_path / "runs"), "--out", str(tmp_path / "rep")]) == 0  # found below the folder
    summary = json.loads((tmp_path / "rep" / "comparison.json").read_text())
    albar = summary["methods"]["albar"]
    assert albar["seeds"] == [0, 1, 3]
    assert albar["mean"]["scuba_top1"] == pytest.approx(statistics.mean(al.values()))
    assert albar["std"]["scuba_top1"] == pytest.approx(statistics.stdev(al.values()))  # n - 1
    diff = albar["paired"]["scuba_top1"]
    assert diff["seeds"] == [0, 1] and diff["unpaired"] == [3]
    assert diff["mean"] == pytest.approx(((50 - 40) + (51 - 44)) / 2)
    assert diff["std"] == pytest.approx(statistics.stdev([10.0, 7.0]))
    md = (tmp_path / "rep" / "comparison.md").read_text()
    assert "| none | 0, 1, 2 | - | 43.00 ± 2.65 |" in md and "| albar | 2 | - | +8.50 ± 2.12 |" in md
    assert "chance 12.5" in md  # from model.num_classes of the runs

    # two single runs both named "run" (albar train's default) with different objectives are not one method
    ce_run = write_run(tmp_path / "ce", "run", 0, cfg, scuba_top1=40.0)
    al_run = write_run(tmp_path / "albar", "run", 1, albar_cfg, scuba_top1=50.0)
    groups, notes = group_runs(load_runs([ce_run, al_run]))
    assert [g.name for g in groups] == ["run (ce)", "run (albar)"]
    assert "objective.name: 'ce' vs 'albar'" in notes[0]
    # --names groups as told; the same seed twice in one method is refused
    groups, notes = group_runs(load_runs([ce_run, al_run], names=["x", "x"]))
    assert [g.seeds for g in groups] == [[0, 1]] and "differ in config" in notes[0]
    with pytest.raises(ValueError, match="both seed 0"):
        group_runs(load_runs([runs[0], runs[0]]))
    assert main(["report", str(ce_run), "--out", str(tmp_path / "r2"), "--baseline", "nope"]) == 2


def test_compare_runs_each_method_once_and_resumes(tiny_benchmark, tmp_path, capsys):
    cfg = write_config(tmp_path, tiny_benchmark, "base", **{"optim.epochs": 1, "checkpoint.every_steps": 0})
    args = ["compare", "--config", str(cfg), "--out", str(tmp_path / "cmp"), "--methods", "none,stillmix,albar",
            "--no-progress"]
    assert main(args) == 0
    first = (tmp_path / "cmp" / "comparison.md").read_text()
    assert all(f"| {m} |" in first for m in ("none", "stillmix", "albar"))
    stillmix = yaml.safe_load((tmp_path / "cmp" / "stillmix" / "config.yaml").read_text())
    albar = yaml.safe_load((tmp_path / "cmp" / "albar" / "config.yaml").read_text())
    assert stillmix["method"]["name"] == "stillmix" and stillmix["objective"] == {"name": "ce"}
    assert albar["method"]["name"] == "none" and albar["objective"]["w_adv"] == 0.5
    capsys.readouterr()
    assert main(args) == 0
    assert capsys.readouterr().out.count("finished earlier, not rerun") == 3
    assert (tmp_path / "cmp" / "comparison.md").read_text() == first
    assert main(["compare", "--config", str(cfg), "--out", str(tmp_path / "c2"), "--methods", "none,nope"]) == 2


def test_compare_over_seeds_gives_mean_std_and_paired_differences_of_the_per_seed_results(
        tiny_benchmark, tmp_path, capsys):
    cfg = write_config(tmp_path, tiny_benchmark, "base", **{"optim.epochs": 1, "checkpoint.every_steps": 0})
    out = tmp_path / "cmp"
    args = ["compare", "--config", str(cfg), "--out", str(out), "--methods", "none,albar", "--seeds", "0,1,2",
            "--names", "plain CE,ALBAR", "--no-progress"]
    assert main(args) == 0
    per_seed = {(m, s): json.loads((out / m / f"seed{s}" / "results.json").read_text())["methods"][m]
                for m in ("none", "albar") for s in (0, 1, 2)}
    for s in (0, 1, 2):
        assert yaml.safe_load((out / "albar" / f"seed{s}" / "config.yaml").read_text())["seed"] == s
    table = {r["method"]: r for r in csv.DictReader((out / "comparison.csv").open())}
    md = (out / "comparison.md").read_text()
    for method, name in (("none", "plain CE"), ("albar", "ALBAR")):
        mean_cells = []
        for key in PAPER:
            values = [per_seed[method, s][key] for s in (0, 1, 2)]
            mean, std = statistics.mean(values), statistics.stdev(values)
            assert table[name][key] == f"{mean:.2f}" and table[name][f"{key}_std"] == f"{std:.2f}"
            mean_cells.append(f"{mean:.2f} ± {std:.2f}")
        assert f"| {name} | 0, 1, 2 | " + " | ".join(mean_cells) + " |" in md
    for key in PAPER:
        diffs = [per_seed["albar", s][key] - per_seed["none", s][key] for s in (0, 1, 2)]
        assert table["ALBAR"][f"{key}_delta"] == f"{statistics.mean(diffs):.2f}"
        assert table["ALBAR"][f"{key}_delta_std"] == f"{statistics.stdev(diffs):.2f}"
    rows = list(csv.DictReader((out / "per_seed.csv").open()))
    assert [(r["method"], r["seed"]) for r in rows] == [(n, str(s)) for n in ("plain CE", "ALBAR") for s in (0, 1, 2)]
    assert rows[4]["scuba_top1"] == f"{per_seed['albar', 1]['scuba_top1']:.2f}"
    number = re.compile(r"-?\d+\.\d\d")  # every number rounded to 2 decimals, none like 14.000000000000002
    for name in ("comparison.csv", "per_seed.csv", "per_source.csv"):
        for row in csv.DictReader((out / name).open()):
            for col, cell in row.items():
                if col not in ("method", "seed", "seeds", "runs", "run", "source") and cell:
                    assert number.fullmatch(cell), (name, col, cell)
    for stem in ("comparison", "per_source"):
        assert (out / f"{stem}.png").read_bytes()[:4] == b"\x89PNG"
        assert (out / f"{stem}.pdf").read_bytes()[:5] == b"%PDF-"
    curves = sorted(p.name for p in (out / "curves").iterdir())  # training curves of every run
    assert curves == sorted(f"{n}-seed{s}.png" for n in ("plain_CE", "ALBAR") for s in (0, 1, 2))
    capsys.readouterr()
    assert main(args) == 0  # resumable: nothing is trained again
    assert capsys.readouterr().out.count("finished earlier, not rerun") == 6
    assert main([*args[:-3], "--seeds", "0,x", "--no-progress"]) == 2


def test_presets_are_config_fragments_and_a_fragment_file_adds_a_method(tmp_path):
    base = load_config(None, ["method.name=stillmix", "method.stillmix_alpha=[2, 2]", "objective.w_adv=0.5"])
    mixup = method_config(base, "mixup", tmp_path, seed=3)
    assert mixup.method.name == "mixup" and not hasattr(mixup.method, "stillmix_alpha")  # StillMix's own settings
    assert mixup.objective.name == "ce" and mixup.seed == 3 and mixup.out_dir == tmp_path / "mixup" / "seed3"
    both = method_config(base, "albar+stillmix", tmp_path)
    assert both.method.stillmix_alpha == (2, 2) and both.objective.w_adv == 0.5  # the config's own, kept
    assert PRESETS["albar"] == {"method": {"name": "none"}}  # ALBAR = the config's objective, no batch method
    frag = tmp_path / "mix04.yaml"
    frag.write_text("method: {name: mixup, mixup_alpha: 0.4}\nobjective: {name: ce}\n")
    fragments = parse_methods(f"none,{frag}")
    cfg = method_config(base, "mix04", tmp_path, fragment=fragments["mix04"])
    assert cfg.method.mixup_alpha == 0.4 and cfg.objective.name == "ce"
    with pytest.raises(ValueError, match="plain cross-entropy"):
        method_config(load_config(None, ["objective={name: ce}"]), "albar", tmp_path)
    with pytest.raises(ValueError, match="unknown method"):
        parse_methods("none,fame2")


def test_frame_bank_built_from_the_training_list_drives_stillmix(tiny_benchmark, tmp_path, capsys):
    cfg = write_config(tmp_path, tiny_benchmark, "bank", **{"optim.epochs": 1, "checkpoint.every_steps": 0})
    bank = tmp_path / "bank.pt"
    assert main(["build-frame-bank", "--config", str(cfg), "--out", str(bank), "--epochs", "1", "--size", "16",
                 "--no-progress"]) == 0
    saved = torch.load(bank, weights_only=True)
    assert saved["frames"].shape[0] == 16 and saved["frames"].shape[1:] == (3, 16, 16)
    assert "method.bank_path" in capsys.readouterr().out
    assert main(["train", "--config", str(cfg), "method.name=stillmix", "method.stillmix_source=bank",
                 f"method.bank_path={bank}", "--no-progress"]) == 0
    assert (tmp_path / "bank" / "results.json").is_file()


def test_report_over_albar_demo_outputs_of_several_seeds(tmp_path):
    """`albar demo --seed N` writes both methods into one results.json, with its seed and the classes."""
    folders = []
    for seed, (ce, albar) in enumerate([(44.5, 72.9), (48.1, 66.5)]):
        folders.append(tmp_path / f"demo{seed}")
        folders[-1].mkdir()
        (folders[-1] / "results.json").write_text(json.dumps({
            "benchmark": {"classes": [f"c{i}" for i in range(8)]}, "seed": seed,
            "methods": {"plain CE": {"scuba_top1": ce}, "ALBAR": {"scuba_top1": albar}}}))
    assert main(["report", *map(str, folders), "--out", str(tmp_path / "rep")]) == 0
    md = (tmp_path / "rep" / "comparison.md").read_text()
    assert "| plain CE | 0, 1 | - | 46.30 ± 2.55 |" in md and "| ALBAR | 0, 1 | - | 69.70 ± 4.53 |" in md
    assert "| ALBAR | 2 | - | +23.40 ± 7.07 |" in md  # (72.9 - 44.5, 66.5 - 48.1)
    assert "SCUFO ↓ (chance 12.5)" in md
