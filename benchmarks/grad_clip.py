"""Does `train.grad_clip` help? Gradient norms per stage and test mAP with and without it.

Trains the `daer` preset on the built-in `shapes` data (reduced budget, same seed for every
variant) and records the total gradient norm of every optimizer step. A variant "without"
clipping uses a clip of 1e12, which never clips but lets the norm be recorded the same way.

    .venv/bin/python benchmarks/grad_clip.py [--pairs 480] [--image-size 64] [--seed 0]

Prints, per variant: the median / 90th-percentile norm per stage, the share of steps the
clip changed, and test mAP@all (i2t, t2i, avg) against chance.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import torch

from daer_core.config import load_run_config
from daer_core.training import trainer as trainer_mod
from daer_core.training.api import train_and_evaluate

VARIANTS = {  # name: (grad_clip, relation lr)
    "clip 5.0 (old default), lr 0.01": (5.0, 0.01),
    "no clip, lr 0.01": (1e12, 0.01),
    "no clip, lr 0.001": (1e12, 0.001),
}


def run(name: str, clip: float, lr: float, pairs: int, size: int, seed: int, out: Path
        ) -> dict:
    norms: dict[str, list[float]] = {}
    real = torch.nn.utils.clip_grad_norm_
    current = {"stage": "?"}
    real_epoch = trainer_mod.Trainer._train_epoch

    def epoch(self, stage, *args, **kwargs):
        current["stage"] = stage
        return real_epoch(self, stage, *args, **kwargs)

    def recording(params, max_norm, *a, **kw):
        total = real(params, max_norm, *a, **kw)
        norms.setdefault(current["stage"], []).append(float(total))
        return total

    torch.nn.utils.clip_grad_norm_ = recording
    trainer_mod.Trainer._train_epoch = epoch
    try:
        cfg = load_run_config(None, preset="daer", dataset="shapes", overrides=[
            f"dataset.params.num_pairs={pairs}", f"dataset.params.image_size={size}",
            f"seed={seed}", f"train.grad_clip={clip}", "train.threads=1",
            f"train.stages.relation.optimizer.lr={lr}", "train.stages.text.epochs=3",
            "train.stages.image.epochs=4", "train.stages.relation.epochs=4",
            "evaluate.examples=0"])
        try:
            metrics = train_and_evaluate(cfg, out / name.replace(" ", "_").replace(",", ""))
        except Exception as exc:  # noqa: BLE001 - a diverging variant is a result too
            metrics = {"error": f"{type(exc).__name__}: {exc}"}
    finally:
        torch.nn.utils.clip_grad_norm_ = real
        trainer_mod.Trainer._train_epoch = real_epoch
    return {"norms": norms, "metrics": metrics, "clip": clip}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=480)
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for name, (clip, lr) in VARIANTS.items():
            res = run(name, clip, lr, args.pairs, args.image_size, args.seed, Path(tmp))
            print(f"\n{name}")
            for stage, ns in res["norms"].items():
                q90 = sorted(ns)[int(0.9 * (len(ns) - 1))]
                clipped = sum(n > res["clip"] for n in ns) / len(ns)
                print(f"  {stage:<9} steps {len(ns):>4}  median norm {statistics.median(ns):9.2f}"
                      f"  p90 {q90:9.2f}  clipped {100 * clipped:5.1f}%")
            m = res["metrics"]
            if "error" in m:
                print(f"  FAILED: {m['error']}")
            else:
                print(f"  test mAP@all i2t {m['i2t']:.3f}  t2i {m['t2i']:.3f}  avg {m['avg']:.3f}"
                      f"  (chance {m['chance']:.3f})", flush=True)


if __name__ == "__main__":
    main()
