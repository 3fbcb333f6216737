import csv
import json

import pytest
import torch
import yaml
from helpers import write_config

from albar.cli import main
from albar.evaluation.compare import comparison_markdown, comparison_rows, load_runs


def write_run(path, name, **metrics):
    path.mkdir(parents=True)
    (path / "results.json").write_text(json.dumps({"methods": {name: metrics}}))
    return path


def test_report_numbers_from_hand_made_result_files(tmp_path, capsys):
    ce = write_run(tmp_path / "ce", "none", iid_top1=73.92, scuba_top1=43.93, scufo_top1=20.46, conflfg_top1=36.58,
                   contrasted=27.84, per_source={"places365": {"contrasted": 30.0}})
    albar = write_run(tmp_path / "albar", "albar", iid_top1=72.81, scuba_top1=53.53, scufo_top1=1.50,
                      conflfg_top1=48.13, contrasted=53.22, per_source={"places365": {"contrasted": 55.0}})
    rows = comparison_rows(load_runs([ce, albar]))
    assert rows[1]["contrasted_delta"] == pytest.approx(25.38)
    assert rows[1]["contrasted_rel_pct"] == pytest.approx(100 * 25.38 / 27.84)
    assert rows[1]["scufo_top1_delta"] == pytest.approx(-18.96)
    assert "53.22 (+25.38)" in comparison_markdown(load_runs([ce, albar]))
    assert main(["report", str(ce), str(albar), "--out", str(tmp_path / "cmp")]) == 0
    table = list(csv.DictReader((tmp_path / "cmp" / "comparison.csv").open()))
    assert [r["method"] for r in table] == ["none", "albar"]
    assert float(table[1]["iid_top1_delta"]) == pytest.approx(-1.11)
    for png in ("comparison.png", "contrasted_by_source.png"):
        assert (tmp_path / "cmp" / png).read_bytes()[:4] == b"\x89PNG"
    assert main(["report", str(tmp_path / "nothing"), "--out", str(tmp_path / "x")]) == 2
    assert "no results.json" in capsys.readouterr().err


def test_compare_runs_each_method_once_and_resumes(tiny_benchmark, tmp_path, capsys):
    cfg = write_config(tmp_path, tiny_benchmark, "base", **{"optim.epochs": 1, "checkpoint.every_steps": 0})
    args = ["compare", "--config", str(cfg), "--out", str(tmp_path / "cmp"), "--methods", "none,stillmix,albar",
            "--no-progress"]
    assert main(args) == 0
    first = (tmp_path / "cmp" / "comparison.md").read_text()
    assert all(f"| {m} |" in first for m in ("none", "stillmix", "albar"))
    stillmix = yaml.safe_load((tmp_path / "cmp" / "stillmix" / "config.yaml").read_text())
    albar = yaml.safe_load((tmp_path / "cmp" / "albar" / "config.yaml").read_text())
    assert stillmix["method"]["name"] == "stillmix" and stillmix["objective"]["w_adv"] == 0.0
    assert albar["method"]["name"] == "none" and albar["objective"]["w_adv"] == 0.5
    capsys.readouterr()
    assert main(args) == 0
    assert capsys.readouterr().out.count("finished earlier, not rerun") == 3
    assert (tmp_path / "cmp" / "comparison.md").read_text() == first
    assert main(["compare", "--config", str(cfg), "--out", str(tmp_path / "c2"), "--methods", "none,fame"]) == 2


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
