"""Does stage 2 (image classification) of `make demo` learn for every seed?

Trains only the image stage of the `daer` preset on the built-in `shapes` data (the demo's
960/120/120 pairs at 64 px, MobileNetV3-Large from random weights, SGD lr 0.05, 8 epochs)
for several seeds, under four settings of the two things that decide whether it learns:

* batch-norm momentum of the encoder (`pipeline.image.encoder.params.bn_momentum`):
  torchvision's 0.01, or the encoder's default 0.1;
* learning-rate warmup (`train.stages.image.warmup_steps`): none, or the preset's 30 steps.

    .venv/bin/python benchmarks/image_stage_seeds.py [--seeds 0 1 2] [--epochs 8]

Prints one row per (setting, seed) as it finishes: the training loss of the first and last
epoch, and the validation accuracy of every epoch (chance is 0.1), then a summary per
setting. A run "learned" when its best validation accuracy reached 0.3. The text and
relation stages are switched off, so a seed's random stream is not the full demo's.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from daer_core.config import load_run_config
from daer_core.training.api import train_and_evaluate

SETTINGS = {  # name: (bn_momentum, warmup_steps)
    "before: momentum 0.01, no warmup": (0.01, 0),
    "momentum 0.1, no warmup": (0.1, 0),
    "momentum 0.01, warmup 30": (0.01, 30),
    "now: momentum 0.1, warmup 30": (0.1, 30),
}
LEARNED = 0.3


def image_epochs(run_dir: Path) -> list[dict]:
    events = (json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines())
    return [e for e in events if e.get("event") == "epoch" and e.get("stage") == "image"]


def run(momentum: float, warmup: int, seed: int, epochs: int, out: Path) -> list[dict]:
    cfg = load_run_config(None, preset="daer", dataset="shapes", overrides=[
        f"seed={seed}", f"pipeline.image.encoder.params.bn_momentum={momentum}",
        f"train.stages.image.warmup_steps={warmup}", f"train.stages.image.epochs={epochs}",
        "train.stages.text.enabled=false", "train.stages.relation.enabled=false",
        "evaluate.examples=0"])
    train_and_evaluate(cfg, out)
    return image_epochs(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--settings", nargs="+", choices=range(len(SETTINGS)), type=int,
                    default=list(range(len(SETTINGS))),
                    help="indices into: " + "; ".join(SETTINGS))
    args = ap.parse_args()
    names = [list(SETTINGS)[i] for i in args.settings]
    best: dict[str, list[float]] = {name: [] for name in names}
    with tempfile.TemporaryDirectory() as tmp:
        for index, name in zip(args.settings, names):
            momentum, warmup = SETTINGS[name]
            for seed in args.seeds:
                t0 = time.time()
                epochs = run(momentum, warmup, seed, args.epochs, Path(tmp) / f"{index}-{seed}")
                accs = [e["val_accuracy"] for e in epochs]
                best[name].append(max(accs))
                print(f"{name:<34} seed {seed}: loss {epochs[0]['train_loss']:.2f} -> "
                      f"{epochs[-1]['train_loss']:.2f}, val accuracy by epoch "
                      + " ".join(f"{a:.2f}" for a in accs)
                      + f"  ({time.time() - t0:.0f} s)", flush=True)
    print(f"\nsummary ({len(args.seeds)} seeds, {args.epochs} epochs; learned = best val "
          f"accuracy >= {LEARNED}; chance 0.10)")
    for name in names:
        values = best[name]
        learned = sum(v >= LEARNED for v in values)
        print(f"  {name:<34} learned {learned}/{len(values)}, best val accuracy mean "
              f"{sum(values) / len(values):.3f} (" + ", ".join(f"{v:.2f}" for v in values) + ")")


if __name__ == "__main__":
    main()
