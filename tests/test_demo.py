import json

from albar.cli import main
from albar.cli.demo import run_demo
from albar.synthetic import BenchmarkSpec


def test_demo_end_to_end_on_a_tiny_benchmark(tmp_path, capsys):
    tiny = BenchmarkSpec(num_classes=4, num_frames=4, size=16, train=64, val=8, test=16, bias_set=8, seed=5)
    run_demo(tmp_path / "out", tmp_path / "cache", seed=0, epochs=1, progress=False, spec=tiny)
    printed = capsys.readouterr().out
    assert "plain CE" in printed and "ALBAR" in printed and "Contrasted" in printed
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    for method in ("plain CE", "ALBAR"):
        block = results["methods"][method]
        assert {"iid_top1", "iid_top5", "scuba_top1", "scufo_top1", "contrasted", "conflfg_top1", "per_source"} <= set(
            block
        )
        assert set(block["per_source"]) == {"noise", "gradient", "stripe"}
    assert results["methods"]["ALBAR"]["objective"]["w_gp"] == 10.0
    assert (tmp_path / "out" / "results.png").read_bytes()[:4] == b"\x89PNG"
    assert main(["demo", "--epochs", "0"]) == 2
