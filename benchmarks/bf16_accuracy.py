"""What training in bf16 does to a full DAER run: `make demo` with ``train.bf16`` on and off.

Trains the ``daer`` preset on the built-in ``shapes`` data (all three stages, the demo's
budget) once per seed in each precision, and prints side by side the test mAP of both
directions, the best validation accuracy of stages 1 and 2, and the wall time. Scoring is
float32 in both (``evaluate.bf16=false``), so only training differs.

    .venv/bin/python benchmarks/bf16_accuracy.py [--seeds 0 1] [--out benchmark-results/bf16]

``train.bf16: true`` is meant for devices with native bf16 matrix products (CUDA Ampere and
newer, CPUs with AMX/AVX512-BF16); elsewhere torch emulates them and the bf16 runs are far
slower (the wall times show it).
"""
from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

from daer_core.config import load_run_config
from daer_core.training.api import train_and_evaluate


def best_val_accuracy(run_dir: Path, stage: str) -> float:
    events = (json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines())
    accs = [e["val_accuracy"] for e in events
            if e.get("event") == "epoch" and e.get("stage") == stage and "val_accuracy" in e]
    return max(accs) if accs else float("nan")


def run(seed: int, bf16: bool, out: Path) -> dict:
    cfg = load_run_config(None, preset="daer", dataset="shapes", overrides=[
        f"seed={seed}", f"train.bf16={'true' if bf16 else 'false'}", "evaluate.bf16=false",
        "evaluate.examples=0"])
    if out.exists():
        shutil.rmtree(out)
    t0 = time.perf_counter()
    metrics = train_and_evaluate(cfg, out)
    return {"seed": seed, "bf16": bf16, "i2t": metrics["i2t"], "t2i": metrics["t2i"],
            "text_val_acc": best_val_accuracy(out, "text"),
            "image_val_acc": best_val_accuracy(out, "image"),
            "wall_s": time.perf_counter() - t0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--out", type=Path, default=Path("benchmark-results/bf16_accuracy"))
    args = ap.parse_args()
    rows = []
    print(f"{'seed':>4} {'train':5} {'i2t mAP':>8} {'t2i mAP':>8} {'text val':>9} "
          f"{'image val':>9} {'wall s':>7}")
    for seed in args.seeds:
        for bf16 in (False, True):
            r = run(seed, bf16, args.out / f"seed{seed}-{'bf16' if bf16 else 'fp32'}")
            rows.append(r)
            print(f"{seed:4d} {'bf16' if bf16 else 'fp32':5} {r['i2t']:8.3f} {r['t2i']:8.3f} "
                  f"{r['text_val_acc']:9.3f} {r['image_val_acc']:9.3f} {r['wall_s']:7.0f}",
                  flush=True)
    for bf16 in (False, True):
        sel = [r for r in rows if r["bf16"] == bf16]
        print(f"mean {'bf16' if bf16 else 'fp32'}: i2t {sum(r['i2t'] for r in sel) / len(sel):.3f}"
              f", t2i {sum(r['t2i'] for r in sel) / len(sel):.3f}, wall "
              f"{sum(r['wall_s'] for r in sel) / len(sel):.0f} s")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
