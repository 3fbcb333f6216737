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


def test_the_demo_recipe_is_the_shipped_synthetic_config():
    """`albar demo` and `albar train --config configs/synthetic.yaml` must train the same thing."""
    from pathlib import Path

    from albar.cli.demo import METHODS, demo_config
    from albar.config import load_config

    shipped = load_config(Path(__file__).parents[1] / "configs" / "synthetic.yaml")
    demo = demo_config(seed=0, epochs=6, objective=METHODS["ALBAR"])
    for section in ("model", "objective", "optim"):
        assert getattr(demo, section) == getattr(shipped, section), section
    skip = {"root"}  # the demo builds under --cache
    assert demo.data.model_dump(exclude=skip) == shipped.data.model_dump(exclude=skip)
    assert (demo.seed, demo.threads) == (shipped.seed, shipped.threads)
