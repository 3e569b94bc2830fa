"""KCCA fit time and peak memory at 2k, 8k and 32k training pairs (synthetic data).

Exact kernel CCA needs two N x N Gram matrices: 2 x 8 x N^2 bytes, i.e. 16 GB at 32k pairs.
The Nyström KCCA of ``plugins.baselines.kcca`` accumulates its m x m covariances in
row blocks instead, so its memory depends on the rank m and the block size, not on N, and
its time grows linearly in N. This script shows both.

    .venv/bin/python benchmarks/kcca_scaling.py                    # 2k, 8k, 32k; rank 1000
    .venv/bin/python benchmarks/kcca_scaling.py --sizes 2000 8000 --rank 500

Peak memory is the tracemalloc peak during ``fit`` (NumPy arrays included); the input
matrices themselves are allocated before measuring. The data mimic Wikipedia's published
features: 128-d image and 10-d text vectors driven by a shared 10-class latent variable.
"""
from __future__ import annotations

import argparse
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from plugins.baselines import KCCA  # noqa: E402


def synthetic_pairs(n: int, dx: int = 128, dy: int = 10, classes: int = 10, seed: int = 0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, size=n)
    latent = rng.normal(size=(classes, 8))[labels] + 0.7 * rng.normal(size=(n, 8))
    x = np.abs(latent @ rng.normal(size=(8, dx)) + 0.5 * rng.normal(size=(n, dx)))
    y = np.abs(latent @ rng.normal(size=(8, dy)) + 0.5 * rng.normal(size=(n, dy)))
    return x, y, labels


def measure_fit(n: int, rank: int, chunk: int) -> tuple[float, float, float]:
    x, y, labels = synthetic_pairs(n)
    model = KCCA(rank=rank, chunk_size=chunk, reg=0.1)
    tracemalloc.start()
    t0 = time.perf_counter()
    model.fit(x, y, labels)
    seconds = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1] / 2 ** 20
    tracemalloc.stop()
    return seconds, peak, float(model.correlations_[0])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 8000, 32000])
    parser.add_argument("--rank", type=int, default=1000, help="Nyström landmarks")
    parser.add_argument("--chunk", type=int, default=2048, help="rows per block")
    args = parser.parse_args(argv)
    print(f"Nyström KCCA, Gaussian kernel, rank {args.rank}, blocks of {args.chunk} rows")
    print(f"{'pairs':>8} {'fit s':>9} {'peak MB':>9} {'exact Gram MB':>14} {'top corr':>9}")
    for n in args.sizes:
        seconds, peak, corr = measure_fit(n, args.rank, args.chunk)
        exact = 2 * 8 * n * n / 2 ** 20
        print(f"{n:>8} {seconds:>9.2f} {peak:>9.1f} {exact:>14.0f} {corr:>9.3f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
