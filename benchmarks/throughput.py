"""Training throughput per stage (images or texts per second) and test scoring speed
(text x image pairs per second through fusion, enhancement and the relation head).

    python benchmarks/throughput.py [--preset daer] [--size 64] [--batches 5] [--pairs 1024]

Numbers are measured on whatever device `train.device: auto` picks (CUDA when present). They
are wall-clock figures on a possibly shared machine: compare ratios, not absolutes.
"""
from __future__ import annotations

import argparse
import time

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="daer")
    ap.add_argument("--size", type=int, default=64, help="image size in pixels")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--batches", type=int, default=5)
    ap.add_argument("--pairs", type=int, default=1024, help="gallery side for scoring (pairs = side^2)")
    args = ap.parse_args()

    from daer_core.pipeline import load_model_and_preprocess
    from plugins.recipes.daer_three_stage import shared_label_target
    from daer_core.training.runtime import pick_device

    model, pre, cfg = load_model_and_preprocess(
        args.preset, overrides=[f"pipeline.image.encoder.params.size={args.size}"])
    device = pick_device("auto")
    model.to(device)
    words = "a small red circle left of a big blue square above the green triangle".split()
    rng = torch.Generator().manual_seed(0)
    texts = [" ".join(words[int(i)] for i in torch.randint(len(words), (12,), generator=rng))
             for _ in range(args.batch)]
    model.text_encoder.fit(texts)
    images = torch.randn(args.batch, 3, args.size, args.size, device=device)
    labels = torch.nn.functional.one_hot(torch.arange(args.batch) % 5, 5).float().to(device)
    head_t = torch.nn.Linear(model.text_encoder.out_dim, 5).to(device)
    head_i = torch.nn.Linear(model.image_encoder.out_dim, 5).to(device)
    opt = torch.optim.SGD([*model.parameters(), *head_t.parameters(), *head_i.parameters()], lr=1e-3)
    inputs = {k: v.to(device) for k, v in pre.text(texts).items()}

    def timed(step) -> float:
        step()  # warm-up
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(args.batches):
            step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return args.batches * args.batch / (time.perf_counter() - t0)

    def stage1():
        opt.zero_grad()
        torch.nn.functional.cross_entropy(head_t(model.encode_text(inputs)), labels.argmax(1)).backward()
        opt.step()

    def stage2():
        opt.zero_grad()
        torch.nn.functional.cross_entropy(head_i(model.encode_image(images)), labels.argmax(1)).backward()
        opt.step()

    def stage3():
        opt.zero_grad()
        p = model.pair_scores(model.encode_text(inputs), model.encode_image(images))
        model.loss(p, shared_label_target(labels, labels)).backward()
        opt.step()

    model.train()
    print(f"device: {device}, threads: {torch.get_num_threads()}, preset: {args.preset}, "
          f"image {args.size}px, batch {args.batch}")
    r1, r2, r3 = timed(stage1), timed(stage2), timed(stage3)
    print(f"stage 1 text classification : {r1:10.1f} texts/s")
    print(f"stage 2 image classification: {r2:10.1f} images/s")
    print(f"stage 3 relation training   : {r3:10.1f} training pairs/s "
          f"= {r3 * args.batch:.0f} scored text-image combinations/s "
          f"(each step scores all {args.batch}x{args.batch})")
    model.eval()
    t = torch.randn(args.pairs, model.text_encoder.out_dim, device=device)
    i = torch.randn(args.pairs, model.image_encoder.out_dim, device=device)
    model.score_matrix(t[:64], i[:64])
    t0 = time.perf_counter()
    model.score_matrix(t, i, block_size=cfg.evaluate.block_size)
    dt = time.perf_counter() - t0
    print(f"test scoring                : {args.pairs ** 2 / dt:10.0f} pairs/s "
          f"({args.pairs}x{args.pairs} in {dt:.2f}s, block {cfg.evaluate.block_size})")
    print(f"ratio stage2/stage1 throughput: {r2 / r1:.3f}")


if __name__ == "__main__":
    main()
