"""``daer benchmark CONFIG``: run methods x datasets x runs and write the paper's tables.

Writes ``results.csv`` (one row per finished cell, rewritten atomically after each), and
``results.md`` (Tables 1-3 layouts, costs; Recall@K tables for instance-level cells) with bar
plots. Interrupted benchmarks resume:
the same command skips every cell already in ``results.csv``. See docs/baselines.md.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from .exit_codes import EXIT_OK, EXIT_RUNTIME

log = logging.getLogger("daer")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "benchmark", help="compare baselines and DAER presets over datasets and runs",
        description="Run every (method, dataset, run) cell of a benchmark config and write "
                    "results.csv, results.md (Table 1/2/3 layouts; Recall@K tables for "
                    "instance-level cells) and bar plots. Finished "
                    "cells are kept: re-running the same command resumes. Relative data paths "
                    "in the config resolve against its project root (the folder above it that "
                    "holds pyproject.toml).")
    p.add_argument("config", type=Path, metavar="CONFIG", help="benchmark YAML/TOML/JSON file")
    p.add_argument("--out", type=Path, metavar="DIR",
                   help="output folder (default: <project root>/runs/benchmarks/<name>)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. runs=3 or "
                        "datasets.wikipedia.dataset.params.root=/data/wikipedia (repeatable)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--report-only", action="store_true",
                   help="compute nothing: write results.md from the cells already finished "
                        "(methods with fewer runs show n=...)")
    p.add_argument("--method", dest="methods", action="append", default=None, metavar="NAME",
                   help="compute only this method's cells (repeatable); the report still "
                        "shows every finished cell of the config")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..benchmark import load_benchmark_config, run_benchmark

    config, project_root = load_benchmark_config(args.config, args.overrides)
    out = args.out or project_root / "runs" / "benchmarks" / (config.name or "benchmark")
    log.info("benchmark %s -> %s", config.name, out)
    outcome = run_benchmark(config, out, progress=not args.no_progress,
                            report_only=args.report_only, methods=args.methods)
    print(outcome.markdown)
    print(f"computed {len(outcome.computed)} cells, reused {len(outcome.skipped)}"
          + (f", {len(outcome.missing)} not computed (--report-only)" if outcome.missing
             else ""))
    print(f"results: {outcome.results_csv}\nreport:  {outcome.results_md}")
    for figure in outcome.figures:
        print(f"figure:  {figure}")
    if outcome.failures:
        print(f"{len(outcome.failures)} cells failed (listed in the report)", file=sys.stderr)
        return EXIT_RUNTIME
    return EXIT_OK
