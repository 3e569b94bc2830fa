"""``daer evaluate RUN_DIR``: re-score a finished run on its test split."""
from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

from .exit_codes import EXIT_OK

log = logging.getLogger("daer")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="evaluate a finished run on its test split")
    p.add_argument("run_dir", type=Path)
    p.add_argument("--json", action="store_true", help="print metrics.json to stdout")
    p.add_argument("--out", type=Path, metavar="DIR",
                   help="where to write metrics.json and the plots (default: RUN_DIR/"
                        "evaluations/<time>/; training's metrics.json is never replaced)")
    p.add_argument("--no-write", action="store_true",
                   help="print the figures only (what happens anyway where RUN_DIR is "
                        "read-only and no --out is given)")
    p.add_argument("--device", default="auto",
                   help="where to run: auto (CUDA when present), cpu, cuda, cuda:N")
    p.set_defaults(func=run)


def _output_folder(args: argparse.Namespace) -> tuple[Path, bool]:
    """A new folder for this evaluation's files, or (run dir, False) when nothing can be
    written: re-scoring needs read access only."""
    if args.no_write:
        return args.run_dir, False
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)  # an explicit --out must be writable
        return args.out, True
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = args.run_dir / "evaluations"
    out = base / stamp
    n = 1
    while out.exists():
        n += 1
        out = base / f"{stamp}-{n}"
    try:
        out.mkdir(parents=True)
    except OSError as exc:
        log.warning("cannot write into %s (%s); printing the figures only (give --out DIR to"
                    " keep them)", base, exc.strerror or exc)
        return args.run_dir, False
    return out, True


def run(args: argparse.Namespace) -> int:
    from ..evaluation.plots import format_metrics
    from ..training.report import write_evaluation
    from ..training.run_loading import load_run
    from ..training.runtime import pick_device

    device = pick_device(args.device, key="--device")  # a bad value fails before loading
    loaded = load_run(args.run_dir)
    loaded.model.to(device)
    out, write = _output_folder(args)
    metrics = write_evaluation(loaded.model, loaded.preprocess, loaded.test, loaded.classes,
                               loaded.config, out, device=device, write=write)
    if write:
        log.info("figures written to %s (training's metrics.json is untouched)", out)
    if args.json:
        print(json.dumps(metrics, indent=2))
    else:
        print(format_metrics(metrics, f"({args.run_dir})"))
    return EXIT_OK
