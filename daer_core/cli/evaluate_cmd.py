"""``daer evaluate RUN_DIR``: re-score a finished run on its test split."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from .exit_codes import EXIT_OK


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="evaluate a finished run on its test split")
    p.add_argument("run_dir", type=Path)
    p.add_argument("--json", action="store_true", help="print metrics.json to stdout")
    p.add_argument("--device", default="auto",
                   help="where to run: auto (CUDA when present), cpu, cuda, cuda:N")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..evaluation.plots import format_table1
    from ..training.report import write_evaluation
    from ..training.run_loading import load_run
    from ..training.runtime import pick_device

    device = pick_device(args.device, key="--device")  # a bad value fails before loading
    loaded = load_run(args.run_dir)
    loaded.model.to(device)
    metrics = write_evaluation(loaded.model, loaded.preprocess, loaded.test, loaded.classes,
                               loaded.config, loaded.run_dir, device=device)
    if args.json:
        print(json.dumps(metrics, indent=2))
    else:
        print(format_table1(metrics, title=f"Test mAP@all ({args.run_dir})"))
    return EXIT_OK
