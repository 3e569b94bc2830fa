"""One cell of the benchmark: a method fitted on one dataset for one run, then ranked.

Fit time is wall-clock seconds of ``fit`` (for DAER: the whole training call); peak memory
is the peak of Python-level allocations seen by :mod:`tracemalloc` during that call, which
includes NumPy arrays but not memory that native libraries (BLAS workspaces, PyTorch tensors)
allocate on their own.
"""
from __future__ import annotations

import copy
import logging
import os
import shutil
import threading
import time
import tracemalloc
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from ..errors import ConfigError, DaerError
from ..evaluation.metrics import retrieval_report
from .config import DatasetEntry, MethodEntry, ResampleConfig, TuneBudget
from .data import BenchmarkData
from .tuning import Tuned

log = logging.getLogger(__name__)


class CellError(DaerError):
    """A cell that could not be computed; the message names the method, dataset and run."""


@dataclass
class Measured:
    metrics: dict
    fit_seconds: float
    peak_memory_mb: float
    n_train: int
    n_eval: int
    tuned: "Tuned" = field(default_factory=lambda: Tuned())


@contextmanager
def measure() -> Iterator[dict]:
    """Wall time and tracemalloc peak (MB) of the block, stored in the yielded dict."""
    started_here = not tracemalloc.is_tracing()
    if started_here:
        tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    out: dict = {}
    t0 = time.perf_counter()
    try:
        yield out
    finally:
        out["seconds"] = time.perf_counter() - t0
        out["peak_mb"] = max(0, tracemalloc.get_traced_memory()[1] - base) / 2 ** 20
        if started_here:
            tracemalloc.stop()


def _resident_bytes() -> int | None:
    """The process's resident set size now (Linux ``/proc``; None elsewhere)."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


@contextmanager
def measure_process(poll_seconds: float = 0.02) -> Iterator[dict]:
    """Wall time and peak memory of the block for torch work, which tracemalloc cannot see.

    Peak is the largest growth of the process's resident set over its size when the block
    started, sampled every ``poll_seconds`` by a background thread (so an earlier cell's
    high-water mark does not hide this one's), plus the CUDA allocator's peak when a GPU is
    used. Where ``/proc`` is missing it falls back to the growth of ``ru_maxrss``, which is 0
    when the block stays below an earlier high-water mark.
    """
    import resource

    import torch
    start = _resident_bytes()
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    peak = {"bytes": start or 0}
    done = threading.Event()

    def sample() -> None:
        while not done.wait(poll_seconds):
            now = _resident_bytes()
            if now is not None and now > peak["bytes"]:
                peak["bytes"] = now
    sampler = threading.Thread(target=sample, name="daer-rss-sampler", daemon=True)
    if start is not None:
        sampler.start()
    out: dict = {}
    t0 = time.perf_counter()
    try:
        yield out
    finally:
        out["seconds"] = time.perf_counter() - t0
        done.set()
        if start is not None:
            sampler.join()
            now = _resident_bytes() or 0
            grown_mb = (max(peak["bytes"], now) - start) / 2 ** 20
        else:
            grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024
        out["peak_mb"] = max(0.0, grown_mb) + (
            torch.cuda.max_memory_allocated() / 2 ** 20 if cuda else 0.0)


def _unit_rows(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    norm = np.linalg.norm(a, axis=1, keepdims=True)
    return a / np.where(norm > 0, norm, 1.0)


def baseline_params(registry, entry: MethodEntry, seed: int) -> dict[str, Any]:
    """The method's params; a ``seed`` field the config leaves unset gets the run's seed."""
    params = dict(entry.params)
    spec = registry.get("method", entry.name)
    if "seed" in spec.params.model_fields and "seed" not in params:
        params["seed"] = seed
    return params


def fit_and_rank(registry, name: str, params: dict[str, Any], train_image, train_text,
                 train_labels, eval_image, eval_text, eval_labels) -> tuple[dict, dict]:
    """Fit method ``name`` with ``params`` and rank the evaluation rows in its common space;
    returns the retrieval report and the fit's time and traced memory."""
    method = registry.create("method", name, params)
    with measure() as m:
        method.fit(np.asarray(train_image), np.asarray(train_text), np.asarray(train_labels))
    img = np.asarray(method.transform_image(eval_image), dtype=np.float64)
    txt = np.asarray(method.transform_text(eval_text), dtype=np.float64)
    if img.shape[1] != txt.shape[1]:
        raise CellError(f"method {name!r} mapped images to {img.shape[1]} and texts to"
                        f" {txt.shape[1]} dimensions; a common space needs one width")
    similarity = getattr(method, "similarity", None)
    scores = (similarity(img, txt) if callable(similarity)
              else _unit_rows(txt) @ _unit_rows(img).T)
    return retrieval_report(scores, eval_labels, eval_labels), m


def run_baseline(registry, entry: MethodEntry, data: BenchmarkData, rows: np.ndarray,
                 seed: int, budget: TuneBudget | None = None,
                 resample: ResampleConfig | None = None) -> Measured:
    """Fit a registered method on the resampled training rows and rank the evaluation split;
    with a tuning ``budget``, its ``space`` is searched on the run's left-out rows first."""
    params = baseline_params(registry, entry, seed)
    tuned = Tuned()
    if budget is not None and entry.space:
        from .tuning import tune_baseline

        def rank(p, *arrays):
            return fit_and_rank(registry, entry.name, p, *arrays)[0]
        tuned = tune_baseline(registry, entry.model_copy(update={"params": params}), data,
                              rows, seed, budget, resample or ResampleConfig(), rank)
        params = tuned.params
    train, ev = data.train, data.evaluate
    metrics, m = fit_and_rank(registry, entry.name, params, np.asarray(train.image)[rows],
                              np.asarray(train.text)[rows], np.asarray(train.labels)[rows],
                              ev.image, ev.text, ev.labels)
    return Measured(metrics, m["seconds"], m["peak_mb"], len(rows), len(ev.labels), tuned)


def daer_run_config(entry: MethodEntry, dataset: DatasetEntry, seed: int,
                    resample: ResampleConfig | None = None) -> dict[str, Any]:
    """The run config handed to the trainer: the method's ``daer`` block, the run's seed, and
    the dataset entry's ``daer_dataset`` (else its ``dataset``) unless the block names one.

    Paired runs: with a ``subsample`` resample and a dataset that carves its validation split
    (its params set ``val_fraction``), the carve of run r uses run r's seed and
    ``val_fraction = 1 - fraction``, so the cell trains on exactly the rows the baselines of
    run r fit on (:func:`~daer_core.benchmark.data.resample_indices`) and stops early on the
    rows they leave out; Table 2's signed-rank test then pairs like with like.
    """
    cfg = copy.deepcopy(entry.daer or {})
    cfg["seed"] = seed
    if "dataset" not in cfg:
        ref = dataset.daer_dataset or dataset.dataset
        cfg["dataset"] = ref.model_dump()
        params = cfg["dataset"].setdefault("params", {})
        # (a dataset that draws a random split of everything, e.g. wikipedia's split: random,
        # is left alone: its seed would move the test split too)
        if (resample is not None and resample.mode == "subsample" and "val_fraction" in params
                and params.get("split", "standard") == "standard"):
            carved = 1.0 - resample.fraction
            if abs(float(params["val_fraction"]) - carved) > 1e-9:
                slot = "daer_dataset" if dataset.daer_dataset else "dataset"
                raise ConfigError(
                    f"{slot}.params.val_fraction is {params['val_fraction']} but"
                    f" resample.fraction {resample.fraction} leaves {carved:.6g} of the"
                    f" training split out; set val_fraction to {carved:.6g} so trained cells"
                    f" validate on exactly the rows the baselines do not fit on")
            params["val_fraction"] = carved
            params["seed"] = seed
    return cfg


def run_daer(entry: MethodEntry, dataset: DatasetEntry, seed: int, cell_dir: Path,
             train_fn: Callable[..., dict] | None = None,
             resample: ResampleConfig | None = None,
             budget: TuneBudget | None = None) -> Measured:
    """Train and evaluate DAER through the core training API (imported only when needed).

    An interrupted cell resumes from its last checkpoint; a folder left without any
    checkpoint (interrupted before the first) is cleared and the run starts over. With a
    tuning ``budget`` the cell first runs ``daer tune`` in ``cell_dir/tune`` (resumable too)
    and then trains the best config in ``cell_dir/run``.
    """
    if train_fn is None:
        from ..training.api import train_and_evaluate as train_fn
    cfg = daer_run_config(entry, dataset, seed, resample)
    tuned = Tuned()
    if budget is not None:
        from .tuning import tune_daer
        cfg, tuned = tune_daer(cfg, cell_dir / "tune", seed, budget)
        cell_dir = cell_dir / "run"
    latest = cell_dir / "checkpoints" / "LATEST"
    resume = latest.is_file()
    if not resume and cell_dir.exists():
        log.warning("%s holds an interrupted run with no checkpoint; starting it over", cell_dir)
        shutil.rmtree(cell_dir)
    with measure_process() as m:
        metrics = train_fn(cfg, cell_dir, resume=resume)
    check_daer_metrics(metrics)
    n_eval = (metrics.get("pairs") or metrics.get("i2t_detail", {}).get("queries")
              or metrics.get("instance", {}).get("texts") or 0)
    return Measured(metrics, m["seconds"], m["peak_mb"], _split_size(cell_dir, "train"),
                    int(n_eval), tuned)


def check_daer_metrics(metrics: dict) -> None:
    """A trained cell's metrics hold its protocol's figures, or the cell fails by name.

    Category runs need the mAP keys. Instance runs need the Recall@K block only: data without
    classes has no class view, so its mAP keys are rightly absent.
    """
    if metrics.get("protocol") == "instance":
        inst = metrics.get("instance")
        if not isinstance(inst, dict) or not all(k in inst for k in ("i2t", "t2i", "rsum")):
            raise CellError("the trainer's instance-level metrics lack the Recall@K block"
                            f" (`instance` with i2t, t2i and rsum; got {sorted(metrics)})")
        if metrics.get("rerank_k") and "instance_first_stage" not in metrics:
            raise CellError("the trainer's metrics re-rank (rerank_k) but lack the first"
                            " stage's figures (instance_first_stage)")
        return
    for key in ("i2t", "t2i", "avg", "chance"):
        if key not in metrics:
            raise CellError(f"the trainer's metrics lack {key!r} (got {sorted(metrics)})")


def _split_size(run_dir: Path, split: str) -> int:
    """Pairs in one split of a DAER run, from the ``split.json`` the trainer writes (0 if absent)."""
    import json
    try:
        ids = json.loads((run_dir / "split.json").read_text(encoding="utf-8")).get(split)
    except (OSError, ValueError):
        return 0
    return len(ids) if isinstance(ids, list) else 0
