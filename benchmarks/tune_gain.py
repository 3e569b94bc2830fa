"""What a small ``daer tune`` budget buys: the ``daer`` preset as shipped against the best of
a study, test mAP of both side by side in one run, the budget printed.

    python benchmarks/tune_gain.py [--trials 6] [--minutes M] [--pairs 480]
                                   [--out benchmark-results/tune-gain] [--set key=value ...]

Both rows use the same data, seed and preset; the study searches the preset's default
``tune.space`` on the validation split (its first trial is the preset's own settings, so its
validation score is the "preset" row's). The test split is read twice in all, once per row,
after the study has finished. ``--pairs`` scales the built-in ``shapes`` data (``make demo``
uses 1,200); everything else is the preset's. Finished parts are kept in ``--out`` and
skipped when the script is run again (an interrupted study resumes).
"""
from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=6)
    ap.add_argument("--minutes", type=float, default=None)
    ap.add_argument("--pairs", type=int, default=480, help="shapes pairs (make demo: 1200)")
    ap.add_argument("--preset", default="daer")
    ap.add_argument("--out", type=Path, default=Path("benchmark-results/tune-gain"))
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("daer_core.tuning").setLevel(logging.INFO)

    from daer_core.config import load_run_config
    from daer_core.training.api import train_and_evaluate
    from daer_core.tuning import tune

    overrides = [f"dataset.params.num_pairs={args.pairs}", *args.overrides]
    config = load_run_config(None, preset=args.preset, dataset="shapes", overrides=overrides)

    def trained(run_dir: Path, cfg) -> tuple[dict, float]:
        done = run_dir / "metrics.json"
        if done.is_file():
            return json.loads(done.read_text()), float("nan")
        t0 = time.time()
        metrics = train_and_evaluate(cfg, run_dir,
                                     resume=(run_dir / "checkpoints" / "LATEST").is_file())
        return metrics, time.time() - t0

    preset, preset_s = trained(args.out / "preset", config)
    t0 = time.time()
    result = tune(config, args.out / "study", trials=args.trials, minutes=args.minutes,
                  study_name="tune-gain")
    study_s = time.time() - t0
    best_cfg = load_run_config(result.best_config)
    best, best_s = trained(args.out / "tuned", best_cfg)
    start = json.loads((args.out / "study" / "trials" / "trial-0000" / "tune_result.json")
                       .read_text())

    print(f"\n`{args.preset}` on shapes ({args.pairs} pairs, seed {config.seed}); study budget"
          f" {args.trials} trials" + (f" or {args.minutes:g} min" if args.minutes else "")
          + f": {result.trials} in {study_s / 60:.1f} min this run"
          f" (the whole study: trials.csv)")
    print(f"{'':<8} {'val avg':>8} {'test i2t':>9} {'test t2i':>9} {'test avg':>9} {'train s':>8}")
    print(f"{'preset':<8} {start.get('val_avg', float('nan')):>8.3f} {preset['i2t']:>9.3f}"
          f" {preset['t2i']:>9.3f} {preset['avg']:>9.3f} {preset_s:>8.0f}")
    print(f"{'tuned':<8} {result.best_value:>8.3f} {best['i2t']:>9.3f} {best['t2i']:>9.3f}"
          f" {best['avg']:>9.3f} {best_s:>8.0f}")
    print(f"chance   {'':>8} {'':>9} {'':>9} {preset['chance']:>9.3f}")
    print(f"\ntest avg, tuned - preset: {best['avg'] - preset['avg']:+.3f}"
          f"  (one seed: the demo's seeds spread by ~0.035, README)")
    print("best settings (trial %s):" % result.best_number)
    for key, value in result.best_params.items():
        print(f"  {key} = {value!r}")


if __name__ == "__main__":
    main()
