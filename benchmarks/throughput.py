"""Training throughput per stage (images or texts per second) and test scoring speed
(text x image pairs per second through fusion, enhancement and the relation head).

    python benchmarks/throughput.py [--preset daer] [--size 64] [--batches 5] [--pairs 1024]
    python benchmarks/throughput.py --scoring-only [--pairs 1536] [--bf16-scoring auto|on|off]

Scoring is compared with the matrix-product peak measured in the same run: a float32 and a
bfloat16 product of the relation head's largest hidden layer (for the paper, rows x 1024 @
1024 x 512), converted to pairs/s at the head's FLOPs per pair. A scoring path can at best
approach the peak of the precision it computes in.

Numbers are measured on whatever device `train.device: auto` picks (CUDA when present). They
are wall-clock figures on a possibly shared machine: compare ratios, not absolutes.
"""
from __future__ import annotations

import argparse
import functools
import time

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="daer")
    ap.add_argument("--size", type=int, default=64, help="image size in pixels")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--batches", type=int, default=5)
    ap.add_argument("--pairs", type=int, default=1024, help="gallery side for scoring (pairs = side^2)")
    ap.add_argument("--scoring-only", action="store_true", help="skip the training stages")
    ap.add_argument("--bf16-scoring", choices=["auto", "on", "off"], default="auto",
                    help="time bf16 scoring: auto = only where bf16 is native (emulated bf16 "
                         "is ~50x slower than float32 and would take minutes)")
    args = ap.parse_args()

    from daer_core.pipeline import load_model_and_preprocess
    from plugins.recipes.daer_three_stage import shared_label_target
    from daer_core.training.runtime import pick_device

    model, pre, cfg = load_model_and_preprocess(
        args.preset, overrides=[f"pipeline.image.encoder.params.size={args.size}"])
    device = pick_device("auto")
    model.to(device)
    if args.scoring_only:
        scoring_report(model, cfg, device, args)
        return
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
    print(f"ratio stage2/stage1 throughput: {r2 / r1:.3f}")
    scoring_report(model, cfg, device, args)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def gemm_peak(rows: int, k: int, n: int, dtype: torch.dtype, device: torch.device,
              budget_s: float = 2.0) -> float:
    """FLOP/s of a ``(rows, k) @ (k, n)`` product in ``dtype``: the best of a few timed runs,
    with rows cut down first where the product is slow (emulated bf16) to fit ``budget_s``."""
    a = torch.randn(rows, k, device=device).to(dtype)
    b = torch.randn(k, n, device=device).to(dtype)
    probe = a[:64] @ b  # warm-up and speed probe
    _sync(device)
    t0 = time.perf_counter()
    probe = a[:64] @ b
    _sync(device)
    per_row = (time.perf_counter() - t0) / 64
    rows = max(64, min(rows, int(budget_s / 4 / max(per_row, 1e-12))))
    a = a[:rows]
    a @ b
    best = float("inf")
    for _ in range(3):
        _sync(device)
        t0 = time.perf_counter()
        a @ b
        _sync(device)
        best = min(best, time.perf_counter() - t0)
    return 2.0 * rows * k * n / best


@torch.no_grad()
def grid_before(head, t_part: torch.Tensor, i_part: torch.Tensor, *,
                dtype: torch.dtype = torch.float32, workspace: dict | None = None
                ) -> torch.Tensor:
    """The ``mlp`` head's bf16 grid as it was first written (ReLU heads): the pair sums in one
    broadcast add that converts float32 to bf16 (~10x slower per pair than adding row by row
    on CPU for blocks of 128+ rows) and a fresh float32 copy of the last hidden layer."""
    from torch import nn
    linears = [m for m in head.net if isinstance(m, nn.Linear)]
    ws = {} if workspace is None else workspace
    if "weights" not in ws:
        ws["weights"] = [(m.weight.to(dtype).t(), m.bias.to(dtype)) for m in linears[1:-1]]
    q, p = len(t_part), len(i_part)
    x = head._buffer(ws, "h0", q * p, t_part.shape[1], dtype, t_part.device)
    torch.add(t_part.unsqueeze(1), i_part.unsqueeze(0), out=x.view(q, p, -1))
    x.relu_()
    for k, (weight_t, bias) in enumerate(ws["weights"], start=1):
        y = head._buffer(ws, f"h{k}", q * p, weight_t.shape[1], dtype, t_part.device)
        x = torch.addmm(bias, x, weight_t, out=y).relu_()
    last = linears[-1]
    return head._squash(nn.functional.linear(x.float(), last.weight, last.bias).squeeze(-1)
                        ).view(q, p)


def scoring_report(model, cfg, device: torch.device, args) -> None:
    """Test-time scoring (``score_matrix``) in float32, in bf16 where it is timed, and the
    module-chain path that the grid path replaced, against the GEMM peaks of this run."""
    from torch import nn

    from daer_core.precision import bf16_native
    model.eval()
    block = cfg.evaluate.block_size
    side = args.pairs
    t = torch.randn(side, model.text_encoder.out_dim, device=device)
    i = torch.randn(side, model.image_encoder.out_dim, device=device)
    linears = [m for m in model.relation.modules() if isinstance(m, nn.Linear)]
    if len(linears) < 2 or model._split_first_layer(t[:1], i[:1]) is None:
        model.score_matrix(t[:64], i[:64])
        t0 = time.perf_counter()
        model.score_matrix(t, i, block_size=block)
        _sync(device)
        print(f"test scoring                : {side * side / (time.perf_counter() - t0):10.0f} "
              f"pairs/s (no split first layer and hidden layers: no GEMM peak to compare)")
        return
    hidden = linears[1:]
    flop_pair = sum(2 * m.in_features * m.out_features for m in hidden)
    biggest = max(hidden, key=lambda m: m.in_features * m.out_features)
    rows = min(block * block, 65536)
    peaks: dict[torch.dtype, float] = {}

    def measure_peaks() -> None:  # before, between and after the scoring runs; best counts
        for dt in (torch.float32, torch.bfloat16):
            peaks[dt] = max(peaks.get(dt, 0.0), gemm_peak(
                rows, biggest.in_features, biggest.out_features, dt, device))

    measure_peaks()
    native = bf16_native(device)
    print(f"scoring: {side}x{side} pairs, block {block}, {flop_pair / 1e6:.2f} MFLOP/pair "
          f"after the split first layer; bf16 native on {device}: {native} "
          f"(evaluate.bf16: auto -> {'bf16' if native else 'float32'})")

    def timed(**kw) -> float:
        model.score_matrix(t[:64], i[:64], **kw)
        _sync(device)
        t0 = time.perf_counter()
        model.score_matrix(t, i, block_size=block, **kw)
        _sync(device)
        return side * side / (time.perf_counter() - t0)

    def chain(**kw) -> float:  # the path before the grid: the module chain on each block
        model.relation.after_first_layer_grid = None
        try:
            return timed(**kw)
        finally:
            del model.relation.after_first_layer_grid

    def bf16_before() -> float:  # the bf16 grid before its two fixes (grid_before)
        model.relation.after_first_layer_grid = functools.partial(grid_before, model.relation)
        try:
            return timed(bf16=True)
        finally:
            del model.relation.after_first_layer_grid

    paths = {"float32": lambda: timed(bf16=False)}
    grid = getattr(model.relation, "after_first_layer_grid", None) is not None
    if grid:
        paths["float32, module chain (before)"] = lambda: chain(bf16=False)
    if args.bf16_scoring == "on" or (args.bf16_scoring == "auto" and native):
        if grid and getattr(model.relation, "activation", None) == "relu":
            paths["bf16, broadcast add (before)"] = bf16_before
        paths["bf16"] = lambda: timed(bf16=True)
    rates: dict[str, float] = {}
    for _ in range(2):  # alternate the paths twice; the best of each counts (shared machine)
        for name, run in paths.items():
            rates[name] = max(rates.get(name, 0.0), run())
        measure_peaks()
    for dt, peak in peaks.items():
        print(f"  GEMM peak {str(dt).removeprefix('torch.'):8s}: {peak / 1e9:8.1f} GFLOP/s "
              f"= {peak / flop_pair:10.0f} pairs/s")
    for name, rate in rates.items():
        own = peaks[torch.bfloat16 if name.startswith("bf16") else torch.float32]
        print(f"  scoring {name:30s}: {rate:10.0f} pairs/s = {rate * flop_pair / own:5.2f} of "
              f"its precision's GEMM peak, {rate * flop_pair / peaks[torch.bfloat16]:7.2f} of "
              f"the bf16 GEMM peak")
    if "bf16" not in rates:
        print("  scoring bf16: not timed (bf16 is emulated here; --bf16-scoring on to force)")
    chosen = rates["bf16"] if native and "bf16" in rates else rates["float32"]
    print(f"test scoring                : {chosen:10.0f} pairs/s with evaluate.bf16: auto, "
          f"{chosen * flop_pair / peaks[torch.bfloat16]:.2f} x the bf16 GEMM peak of this run")


if __name__ == "__main__":
    main()
