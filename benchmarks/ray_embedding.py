"""Embedding a gallery in one process vs on Ray Data with 2 local workers, in one run.

    .venv/bin/python benchmarks/ray_embedding.py [--run RUN_DIR] [--gallery-size 2000]
        [--shard-size 256] [--workers 2]

Both engines embed the same freshly drawn `shapes` gallery (the run's dataset params with
another seed) into two new indexes (first stage ``halves`` or ``embedding``: nothing fitted,
so the timings are the embedding and the FAISS fill); the script prints items/s of each, how
the Ray figure splits into start-up and embedding, and the largest difference between the
two indexes' shard arrays (they must be equal to float tolerance). Without ``--run`` it first
trains the small model of the search tests (tests/search/conftest.py) into a temporary folder.

On a machine with 2 cores the 2 Ray workers share those cores with each other and with the
driver, so Ray cannot be faster here: the point is equality and the mechanics (actors, shards,
resume), not speed. Needs the ``ray`` and ``search`` extras.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "search"))
sys.path.insert(0, str(ROOT / "tests" / "support"))


def tiny_run(folder: Path) -> Path:
    from conftest import search_run_config  # the search tests' model

    from daer_core.training.api import train_and_evaluate
    out = folder / "run"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train_and_evaluate(search_run_config(), out)
    finally:
        torch.set_num_threads(threads)
    return out


def max_shard_difference(a: Path, b: Path) -> float:
    names = sorted(p.name for p in (a / "shards").glob("*.npz"))
    if names != sorted(p.name for p in (b / "shards").glob("*.npz")):
        raise SystemExit("the two indexes hold different shard files")
    worst = 0.0
    for name in names:
        with np.load(a / "shards" / name) as za, np.load(b / "shards" / name) as zb:
            if sorted(za.files) != sorted(zb.files):
                raise SystemExit(f"{name}: different arrays")
            for key in za.files:
                x, y = za[key], zb[key]
                if x.shape != y.shape:
                    raise SystemExit(f"{name} {key}: shapes {x.shape} vs {y.shape}")
                if x.dtype.kind == "f":
                    worst = max(worst, float(np.abs(x - y).max()) if x.size else 0.0)
                elif not np.array_equal(x, y):
                    raise SystemExit(f"{name} {key}: differ")
    return worst


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", type=Path, default=None)
    ap.add_argument("--gallery-size", type=int, default=2000)
    ap.add_argument("--shard-size", type=int, default=256)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=64)
    args = ap.parse_args()

    import logging
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from daer_core.search import PairScorer, index_gallery, resolve_gallery
    from daer_core.search.ray_embedding import RayEngine, connect
    from daer_core.training.run_loading import load_run

    work = Path(tempfile.mkdtemp(prefix="ray-embedding-bench-"))
    try:
        run_dir = args.run or tiny_run(work)
        loaded = load_run(run_dir)
        first_stage = "halves" if PairScorer(loaded.model).splits else "embedding"
        source = resolve_gallery("dataset:shapes:all", loaded.config,
                                 params=[f"num_pairs={args.gallery_size}", "seed=97"])
        n = len(source.items)
        cores = os.cpu_count()
        print(f"gallery: {n} shapes items (drawn at the run's image size), shards of"
              f" {args.shard_size}, batch {args.batch_size}; first stage {first_stage}")
        default_threads = torch.get_num_threads()
        print(f"machine: {cores} CPU cores, load average {os.getloadavg()[0]:.1f} at the"
              f" start (other processes share the cores)")

        process = {}   # torch threads -> (seconds, add_source seconds)
        for threads in sorted({1, default_threads}):
            torch.set_num_threads(threads)
            t0 = time.perf_counter()
            _, rep = index_gallery(loaded, source, work / f"process-{threads}",
                                   shard_size=args.shard_size, batch_size=args.batch_size,
                                   first_stage=first_stage, show_progress=False)
            process[threads] = (time.perf_counter() - t0, rep.seconds)
        torch.set_num_threads(default_threads)

        t0 = time.perf_counter()
        where = connect(address=None, num_cpus=args.workers, num_gpus=0)
        ray_start = time.perf_counter() - t0
        engine = RayEngine(workers=args.workers)
        t0 = time.perf_counter()
        index_gallery(loaded, source, work / "ray", shard_size=args.shard_size,
                      batch_size=args.batch_size, first_stage=first_stage, show_progress=False,
                      engine=engine)
        ray_s = time.perf_counter() - t0
        r = engine.report
        diff = max(max_shard_difference(work / f"process-{t}", work / "ray") for t in process)

        print()
        print(f"{'engine':<38}{'seconds':>9}{'items/s':>10}")
        for threads, (secs, _) in process.items():
            name = f"process, {threads} torch thread{'s' if threads > 1 else ''}"
            if threads == default_threads:
                name += " (default)"
            print(f"{name:<38}{secs:>9.1f}{n / secs:>10.1f}")
        print(f"{f'ray, {args.workers} local workers x 1 thread':<38}{ray_s:>9.1f}"
              f"{n / ray_s:>10.1f}   (Ray started before; starting it took {ray_start:.1f} s)")
        print(f"  of which: first shard back after {r.first_shard_s:.1f} s (actors load the run"
              f" and the gallery), then {r.seconds - r.first_shard_s:.1f} s for the rest")
        print(f"  one actor while embedding: {r.actor_items_per_s:.1f} items/s"
              f" ({r.actor_seconds:.1f} actor-seconds over {r.embedded_shards} shards)")
        print(f"largest |difference| between the process and Ray shard arrays: {diff:.3g}"
              f" ({'equal' if diff <= 1e-5 else 'NOT equal'} to float tolerance 1e-5)")
        print(f"note: this machine has {cores} cores; the {args.workers} Ray workers compete"
              f" with each other and the driver for them, so Ray is not expected to be faster"
              f" here — the run shows equality and the mechanics. Ray ({where}) scales by"
              f" adding workers on more cores, GPUs or nodes (docs/search.md).")
        if len(process) > 1:
            print(f"      torch threads matter as much as the engine on busy cores: here 1 thread"
                  f" ran {process[default_threads][0] / process[1][0]:.1f}x faster than"
                  f" {default_threads} (each Ray actor runs --ray-cpus-per-worker threads).")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
