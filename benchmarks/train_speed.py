"""Training throughput per stage, the share of step time spent waiting for data, and the
trainer's overhead over a bare model step — on synthetic long texts and 224 px images.

    python benchmarks/train_speed.py [--pairs 256] [--chars 1200] [--device auto]
                                     [--out benchmark-results/train_speed]

A manifest dataset is written once into ``--out`` (``--pairs`` training pairs, texts of about
``--chars`` characters, 224 x 224 JPEGs). For each stage of the ``daer`` preset the trainer
runs two epochs with the stage alone enabled and the second is timed (the first pays for
first-call kernel set-up); the progress bar is replaced by a timer that splits the epoch into
time waiting for the next batch and time in the step. Printed side by side in the same run:

* stage 1 now (texts prepared once; a forward-only LSTM on the padded batch; the dual-region
  attention's W applied once to avg + max; ``train.bf16: auto``) vs the path the trainer took
  before (texts prepared in every step, still used for encoders with ``prepare_once = False``;
  the LSTM on a packed sequence; W applied to the avg and the max maps separately; float32,
  the old default), re-enacted here by patching those two spots back for the "before" run;
* where ``auto`` resolves to bf16 (CUDA with bf16, a CPU with AMX/AVX512-BF16), every stage
  also in float32 (``train.bf16=false``), so the effect of bf16 alone is printed too;
* each stage against a bare model step on batches already on the device, in the same
  precision (trainer overhead);
* images decoded in the main process vs by worker processes.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import logging
import random
import time
from pathlib import Path

import torch

WORDS = ("river city war album football election species church school film team music "
         "island battle player season county history village royal bridge station coast "
         "mountain railway painting novel league temple province empire dynasty").split()


def make_dataset(root: Path, pairs: int, chars: int, classes: int = 10, seed: int = 0) -> Path:
    """A manifest with long texts and 224 px images; reused when it exists."""
    manifest = root / "manifest.jsonl"
    if manifest.is_file():
        return root
    from PIL import Image, ImageDraw
    rng = random.Random(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    total = pairs + 2 * max(16, pairs // 8)
    for k in range(total):
        label = k % classes
        img = Image.new("RGB", (224, 224), (rng.randrange(60), rng.randrange(60), 40))
        draw = ImageDraw.Draw(img)
        for _ in range(6):
            x, y = rng.randrange(200), rng.randrange(200)
            draw.ellipse((x, y, x + 24 + 8 * label, y + 24), fill=(25 * label, 200, rng.randrange(255)))
        path = root / "images" / f"{k:05d}.jpg"
        img.save(path, quality=90)
        words = []
        while sum(len(w) + 1 for w in words) < chars:
            words.append(WORDS[(label * 3 + rng.randrange(8)) % len(WORDS)]
                         if rng.random() < 0.3 else rng.choice(WORDS))
        split = "train" if k < pairs else ("val" if k < pairs + (total - pairs) // 2 else "test")
        rows.append({"id": f"p{k:05d}", "image": f"images/{k:05d}.jpg", "text": " ".join(words),
                     "labels": [f"class_{label}"], "split": split})
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


class Timer:
    """Stands in for the trainer's progress bar: times waiting for batches vs the step."""

    def __init__(self, iterable, **_kw):
        self.iterable = iterable
        self.wait = self.step = 0.0
        self.batches = 0
        Timer.last = self

    def __iter__(self):
        it = iter(self.iterable)
        while True:
            t0 = time.perf_counter()
            try:
                batch = next(it)
            except StopIteration:
                return
            t1 = time.perf_counter()
            self.wait += t1 - t0
            yield batch
            self.step += time.perf_counter() - t1
            self.batches += 1

    def set_postfix(self, **_kw):
        pass


@contextlib.contextmanager
def text_path_before():
    """The text encoder's arithmetic as it was before: packed LSTM on CPU, W0/W1 applied to
    the avg and max maps one at a time (same values up to rounding, more work)."""
    from plugins.text import dual_region, word2vec_lstm
    packs, shared_sum = word2vec_lstm.Word2VecLSTMEncoder.packs, dual_region._shared_sum
    word2vec_lstm.Word2VecLSTMEncoder.packs = lambda self, ids: True
    dual_region._shared_sum = lambda w, a, b: w(a) + w(b)
    try:
        yield
    finally:
        word2vec_lstm.Word2VecLSTMEncoder.packs = packs
        dual_region._shared_sum = shared_sum


def stage_run(data: Path, out: Path, stage: str, device: str, batch: int, *,
              prepare_once: bool = True, workers: int | str = "auto",
              bf16: str = "auto", epochs: int = 2) -> dict:
    """``epochs`` epochs of ``stage`` through the trainer, the last one timed (the first
    also pays for first-call kernel set-up and allocations, which the bare step's untimed
    warm-up step leaves out); the trainer object is returned for reuse."""
    from daer_core.config import load_run_config
    from daer_core.training import stage_loop
    from daer_core.training import trainer as trainer_mod

    sets = [f"dataset.params.root={data}", f"train.device={device}",
            f"train.num_workers={workers}", "pipeline.image.encoder.params.size=224",
            f"train.bf16={bf16}"]
    for s in ("text", "image", "relation"):
        sets += [f"train.stages.{s}.enabled={'true' if s == stage else 'false'}",
                 f"train.stages.{s}.epochs={epochs}", f"train.stages.{s}.batch_size={batch}"]
    cfg = load_run_config(None, preset="daer", dataset="manifest", overrides=sets)
    run_dir = out / (f"run-{stage}-{'once' if prepare_once else 'per-step'}-{workers}-"
                     f"bf16_{bf16}-{time.time_ns()}")
    trainer = trainer_mod.Trainer(cfg, run_dir)
    trainer.model.text_encoder.prepare_once = prepare_once
    trainer._validate = lambda stage: {}  # time the training epoch only
    real_tqdm = stage_loop.tqdm  # the stage loop's progress bar times the epoch
    stage_loop.tqdm = Timer
    try:
        t0 = time.perf_counter()
        trainer.train()
        total = time.perf_counter() - t0
    finally:
        stage_loop.tqdm = real_tqdm
    timer = Timer.last  # the last epoch's
    pairs = timer.batches * batch
    return {"stage": stage, "prepare_once": prepare_once, "workers": trainer.num_workers,
            "bf16": trainer.bf16, "pairs_per_s": pairs / (timer.wait + timer.step),
            "data_wait_share": timer.wait / (timer.wait + timer.step),
            "epoch_s": timer.wait + timer.step, "run_s": total, "trainer": trainer}


def bare_rate(trainer, stage: str, batch: int, steps: int = 4) -> float:
    """Pairs/s of forward + backward + SGD step on batches already on the device, in the
    trainer's precision (its bf16 autocast)."""
    from daer_core.data.loader import Collate, PairTorchDataset
    spec = trainer.recipe.stage(stage)
    ds = PairTorchDataset(trainer.splits["train"][:batch], trainer.preprocess.image_train,
                          with_images=spec.images)  # texts prepared once, below, untimed
    tb = trainer._on_device(Collate(len(trainer.classes))([ds[i] for i in range(len(ds))]), spec)
    opt = trainer._optimizers(stage)["main"]
    trainer.model.train()
    trainer.heads.train()

    def one() -> None:
        with trainer._autocast():
            loss = trainer.recipe.losses(stage, "main", trainer.model, trainer.heads,
                                         tb)["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    one()
    if trainer.device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        one()
    if trainer.device.type == "cuda":
        torch.cuda.synchronize()
    return steps * batch / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=256)
    ap.add_argument("--chars", type=int, default=1200)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--stages", default="text,image,relation")
    ap.add_argument("--project", type=int, default=40000,
                    help="print the epoch time this many training pairs would take")
    ap.add_argument("--out", type=Path, default=Path("benchmark-results/train_speed"))
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    args.out.mkdir(parents=True, exist_ok=True)
    data = make_dataset(args.out / "data", args.pairs, args.chars)
    rows = []
    stages = args.stages.split(",")
    print(f"{args.pairs} training pairs, texts of ~{args.chars} characters, 224 px images, "
          f"batch {args.batch}, device {args.device}, torch threads {torch.get_num_threads()}")
    def precision(r: dict) -> str:
        return "bf16" if r["bf16"] else "fp32"

    if "text" in stages:
        with text_path_before():
            before = stage_run(data, args.out, "text", args.device, args.batch,
                               prepare_once=False, bf16="false")
            rows.append(("text", "before: per step, packed LSTM", before,
                         bare_rate(before["trainer"], "text", args.batch)))
        after = stage_run(data, args.out, "text", args.device, args.batch)
        if after["bf16"]:  # auto is bf16 here: float32 as well, to show what bf16 adds
            fp32 = stage_run(data, args.out, "text", args.device, args.batch, bf16="false")
            rows.append(("text", "now: prepared once, padded LSTM", fp32,
                         bare_rate(fp32["trainer"], "text", args.batch)))
        rows.append(("text", "now: prepared once, padded LSTM", after,
                     bare_rate(after["trainer"], "text", args.batch)))
        for _stage, label, r, _bare in rows[1:]:
            print(f"stage 1 speed-up, {label} ({precision(r)}) vs before (fp32): "
                  f"{r['pairs_per_s'] / before['pairs_per_s']:.2f}x")
    for stage in [s for s in stages if s != "text"]:
        main_proc = stage_run(data, args.out, stage, args.device, args.batch, workers=0)
        if main_proc["bf16"]:
            fp32 = stage_run(data, args.out, stage, args.device, args.batch, workers=0,
                             bf16="false")
            rows.append((stage, "images decoded in the main process", fp32,
                         bare_rate(fp32["trainer"], stage, args.batch)))
        bare = bare_rate(main_proc["trainer"], stage, args.batch)
        rows.append((stage, "images decoded in the main process", main_proc, bare))
        workers = stage_run(data, args.out, stage, args.device, args.batch, workers=2)
        rows.append((stage, "2 loader workers", workers, bare))
    print(f"\n{'stage':9s} {'data path':36s} {'prec':4s} {'pairs/s':>8s} {'data wait':>9s} "
          f"{'bare step':>9s} {'overhead':>8s}")
    for stage, label, r, bare in rows:
        print(f"{stage:9s} {label:36s} {precision(r):4s} {r['pairs_per_s']:8.1f} "
              f"{r['data_wait_share']:9.1%} {bare:9.1f} {1 - r['pairs_per_s'] / bare:8.1%}")
    best: dict[str, float] = {}
    for stage, _label, r, _bare in rows:
        best[stage] = max(best.get(stage, 0.0), r["pairs_per_s"])
    print(f"\nprojected epoch time for {args.project:,} pairs (best data path): " + ", ".join(
        f"{stage} {args.project / rate / 60:.1f} min" for stage, rate in best.items()))
    (args.out / "results.json").write_text(json.dumps(
        [{k: v for k, v in r.items() if k != "trainer"} | {"label": label, "bare": bare}
         for _, label, r, bare in rows], indent=2))


if __name__ == "__main__":
    main()
