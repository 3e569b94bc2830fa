"""``daer benchmark``: baselines and DAER presets x datasets x runs, into the paper's tables.

Python API::

    from daer_core.benchmark import load_benchmark_config, run_benchmark
    config, project_root = load_benchmark_config("configs/benchmarks/wikipedia-features.yaml")
    outcome = run_benchmark(config, "runs/benchmarks/wikipedia-features")
"""
from .config import BenchmarkConfig, find_project_root, load_benchmark_config
from .runner import BenchmarkOutcome, cell_hash, run_benchmark

__all__ = ["BenchmarkConfig", "BenchmarkOutcome", "cell_hash", "find_project_root",
           "load_benchmark_config", "run_benchmark"]
