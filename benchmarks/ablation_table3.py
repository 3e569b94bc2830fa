"""Train the five DAER presets (Table 3 of the paper) with one seed and one budget, and print
the Table 3 layout: image->text, text->image and average test mAP per variant.

    python benchmarks/ablation_table3.py [--dataset shapes] [--out benchmark-results/table3]
                                          [--set key=value ...]

Every variant gets exactly the same config apart from the preset's pipeline, so differences
come from the components alone. Finished variants are kept in the output folder and skipped
when the script is re-run, an interrupted one is resumed (delete the folder to start over).
"""
from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

VARIANTS = ("daer-c", "daer-i", "daer-t", "daer-i-t", "daer")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="shapes")
    ap.add_argument("--out", type=Path, default=Path("benchmark-results/table3"))
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)

    from daer_core.config import load_run_config
    from daer_core.training.api import resume_run, train_and_evaluate

    rows = {}
    for variant in VARIANTS:
        run_dir = args.out / variant
        metrics_file = run_dir / "metrics.json"
        if metrics_file.is_file():
            rows[variant] = json.loads(metrics_file.read_text())
            print(f"{variant}: already done ({metrics_file})")
            continue
        t0 = time.time()
        if (run_dir / "checkpoints" / "LATEST").is_file():  # interrupted earlier: continue it
            rows[variant] = resume_run(run_dir)
        else:
            cfg = load_run_config(None, preset=variant, dataset=args.dataset,
                                  overrides=args.overrides)
            rows[variant] = train_and_evaluate(cfg, run_dir)
        print(f"{variant}: trained in {time.time() - t0:.0f}s")

    print(f"\nTable 3 layout — test mAP@all on {args.dataset} (same seed and budget)")
    print(f"{'Variant':<10} {'Image→Text':>11} {'Text→Image':>11} {'Average':>8}")
    for v in VARIANTS:
        m = rows[v]
        print(f"{v.upper():<10} {m['i2t']:>11.3f} {m['t2i']:>11.3f} {m['avg']:>8.3f}")
    chance = rows[VARIANTS[0]]["chance"]
    print(f"{'chance':<10} {'':>11} {'':>11} {chance:>8.3f}")
    base = rows["daer-c"]["avg"]
    print("\naverage mAP relative to DAER-C: " + ", ".join(
        f"{v}: {rows[v]['avg'] / base:.2f}x" for v in VARIANTS if base > 0))


if __name__ == "__main__":
    main()
