"""The synthetic biased-motion benchmark: motion defines the class, static cues are shortcuts."""

from albar.synthetic.benchmark import Benchmark, BenchmarkSpec, build_benchmark, load_benchmark
from albar.synthetic.render import MOTIONS, ClipSpec, render_clip, stripe_background

__all__ = [
    "MOTIONS", "Benchmark", "BenchmarkSpec", "ClipSpec", "build_benchmark", "load_benchmark",
    "render_clip", "stripe_background",
]
