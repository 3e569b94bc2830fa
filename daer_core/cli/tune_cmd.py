"""``daer tune``: search settings on the validation split (Optuna), write ``best.yaml``."""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from .exit_codes import EXIT_OK

log = logging.getLogger("daer")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "tune", help="search a run config's tune.space on the validation split (Optuna)",
        description="Run trials of a study: each trial trains the config with settings drawn "
                    "from tune.space and is scored on the validation split (the test split "
                    "is never read). Writes best.yaml (a run config), trials.csv/.md and "
                    "plots into the study folder. Run the same command again to continue an "
                    "interrupted study; run it in several processes on one --study to share "
                    "the trials.")
    p.add_argument("config", nargs="?", help="YAML/TOML run config (optional with --preset)")
    p.add_argument("--preset", help="start from a named preset (its default tune.space)")
    p.add_argument("--dataset", help="dataset component name (shortcut for dataset.name)")
    p.add_argument("--trials", type=int, help="trials of the study in all (default tune.trials)")
    p.add_argument("--minutes", type=float, help="start no new trial after M minutes")
    p.add_argument("--study", metavar="PATH_OR_URL",
                   help="study folder (its study.journal holds the trials), or an Optuna "
                        "storage URL (sqlite:///…, postgresql://…) shared by several machines")
    p.add_argument("--study-name", help="study name inside the storage (default: run name)")
    p.add_argument("--out", type=Path, help="folder for trials, best.yaml and plots (default:"
                                            " the --study folder, or runs/tune-<name>)")
    p.add_argument("--train-best", action="store_true",
                   help="then train best.yaml into <out>/best-run and report its test mAP "
                        "(the only time the test split is read)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override any config key, e.g. tune.seed=1")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import re

    from ..config import load_run_config
    from ..errors import ConfigError
    from ..evaluation.plots import format_metrics
    from ..training.api import train_and_evaluate
    from ..tuning import tune
    from ..tuning.study import is_url

    if not args.config and not args.preset:
        raise ConfigError("give a config file or --preset NAME")
    config = load_run_config(args.config, preset=args.preset, dataset=args.dataset,
                             overrides=args.overrides)
    name = args.study_name or config.name or \
        f"{config.preset or 'custom'}-{config.dataset.name if config.dataset else 'nodata'}"
    if config.dataset is None:
        raise ConfigError("dataset: a study needs a dataset (config key `dataset`, or"
                          " --dataset NAME)")
    storage = None
    out = args.out
    if args.study:
        if is_url(args.study):
            storage = args.study
        elif out is None:
            out = Path(args.study)
        else:
            storage = str(Path(args.study))
    out = out or Path("runs") / f"tune-{re.sub(r'[^A-Za-z0-9_.-]+', '-', name)}"
    log.info("study %r in %s", name, out)
    result = tune(config, out, trials=args.trials, minutes=args.minutes, storage=storage,
                  study_name=name)
    print(f"\nstudy {result.study_name!r}: " + ", ".join(f"{n} {s}" for s, n in
                                                        sorted(result.trials.items()))
          + f" ({result.seconds / 60:.1f} min in this process; storage {result.storage})")
    if result.best_config is None:
        print("no trial completed; nothing to write as best.yaml")
        return EXIT_OK
    print(f"best: trial {result.best_number}, validation mAP {result.best_value:.4f}")
    for key, value in result.best_params.items():
        print(f"  {key} = {value!r}")
    print(f"\nbest config: {result.best_config}\ntrials:      {out / 'trials.md'}")
    if args.train_best:
        best = load_run_config(result.best_config)
        run_dir = out / "best-run"
        metrics = train_and_evaluate(best, run_dir)
        print()
        print(format_metrics(metrics, f"of best.yaml ({metrics['pairs']} pairs)"))
        print(f"\nrun directory: {run_dir}")
    return EXIT_OK
