import pytest
import torch

from albar.synthetic import BenchmarkSpec, build_benchmark

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_benchmark(tmp_path_factory):
    """A small synthetic benchmark written to disk once per test session (real MP4s, zips, JPEGs)."""
    spec = BenchmarkSpec(num_classes=4, num_frames=4, size=16, train=32, val=8, test=8, bias_set=8, seed=3)
    return build_benchmark(tmp_path_factory.mktemp("bench") / "synthetic", spec, workers=1, progress=False)
