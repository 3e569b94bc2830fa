"""``daer train``: run Algorithm 1 from a preset or config file, or resume a run."""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from .exit_codes import EXIT_OK

log = logging.getLogger("daer")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a pipeline (its recipe, by default the paper's "
                                     "Algorithm 1) and evaluate it",
                       description="Train from a preset and/or config file; prints the paper's "
                                   "Table 1 layout and writes the run directory.")
    p.add_argument("config", nargs="?", help="YAML/TOML run config (optional with --preset)")
    p.add_argument("--preset", help="start from a named preset (see `daer plugins list --kind preset`)")
    p.add_argument("--dataset", help="dataset component name (shortcut for dataset.name)")
    p.add_argument("--out", type=Path, help="run directory (default runs/<name>/)")
    p.add_argument("--resume", type=Path, metavar="RUN_DIR",
                   help="continue an interrupted run from its last checkpoint")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override any config key, e.g. train.stages.relation.epochs=3")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..training import distributed
    try:
        return _run(args)
    finally:
        distributed.shutdown()


def _run(args: argparse.Namespace) -> int:
    from ..config import load_run_config
    from ..errors import ConfigError
    from ..evaluation.plots import format_metrics
    from ..training import distributed
    from ..training.api import default_run_dir, resume_run, train_and_evaluate

    if args.resume:
        if args.config or args.preset or args.dataset or args.overrides or args.out:
            raise ConfigError("--resume RUN_DIR continues a run with its saved config; "
                              "do not combine it with a config, --preset, --dataset, --set or --out")
        metrics = resume_run(args.resume)
        run_dir = args.resume
    else:
        if not args.config and not args.preset:
            raise ConfigError("give a config file or --preset NAME")
        config = load_run_config(args.config, preset=args.preset, dataset=args.dataset,
                                 overrides=args.overrides)
        ctx = distributed.context(config.train.device)
        # under torchrun every process must use the directory rank 0 chose
        run_dir = ctx.broadcast(args.out or default_run_dir(config))
        log.info("run directory: %s", run_dir)
        try:
            metrics = train_and_evaluate(config, run_dir)
        except KeyboardInterrupt:
            if (run_dir / "checkpoints" / "LATEST").is_file():
                print(f"\ninterrupted; continue with: daer train --resume {run_dir}",
                      file=sys.stderr)
            raise
    if not distributed.context().is_main:  # one process reports
        return EXIT_OK
    print()
    print(format_metrics(metrics, f"({metrics.get('preset') or 'run'} on "
                                  f"{metrics.get('dataset')}, {metrics['pairs']} pairs)"))
    print(f"\nrun directory: {run_dir}")
    return EXIT_OK
