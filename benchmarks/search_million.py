"""A gallery index at 10^6 items on this machine: build, disk, serving memory, latency, recall.

    .venv/bin/python benchmarks/search_million.py --run RUN_DIR [--items 1000000]

The relation head, the encoders' output space and the index code are a trained run's; the
gallery's **image embeddings are synthetic**: ``--real`` pairs of the run's dataset (another
seed than its training data) are embedded by the run's model, and each of the ``--items``
gallery vectors is one of those real image embeddings plus Gaussian noise of
``--noise`` x the per-dimension spread (so the gallery keeps the run's clusters and its scale,
and no two items are equal). Embedding 10^6 real images would take this machine days; the
index, first stage, FAISS, re-ranking and serving code run exactly as for real items. Queries
are the real texts (never in the gallery).

Prints, in one run:

* build: seconds for shards + columns (the synthetic vectors go through ``add_source`` like
  embedded ones), first-stage fit / refinement (on samples, sizes stated), FAISS training and
  adding; the index type and its recorded parameters;
* disk: bytes of the FAISS file, the columns, the shards;
* serving: in a fresh process that opens the index memory-mapped, its resident memory
  (private / file-backed, from /proc) after opening and after the queries, start-up seconds,
  and p50 / p95 latency of two-stage search at several candidate counts;
* recall@10 of two-stage search against exhaustive relation scoring of all ``--items`` items
  (the same universe), for ``--recall-queries`` queries (exhaustive scoring of 10^6 items
  costs seconds per query here), at the same candidate counts.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def synthetic_embedder(real: torch.Tensor, noise: float, shard_size: int, seed: int):
    """``embed(chunk)`` for ``GalleryIndex.add_source``: shard ``s`` of the gallery gets the
    same vectors whoever builds it (seeded by the item's number), so a resumed build matches."""
    from daer_core.search.embedding import EmbeddedItems
    spread = real.std(dim=0, keepdim=True)

    def embed(chunk):
        start = int(chunk[0].id.split("-")[1])
        gen = torch.Generator().manual_seed(seed * 1_000_003 + start)
        base = real[torch.randint(len(real), (len(chunk),), generator=gen)]
        vectors = base + noise * spread * torch.randn(base.shape, generator=gen)
        return EmbeddedItems(image_pos=list(range(len(chunk))), image=vectors.float())
    return embed


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def memory_kb() -> dict[str, int]:
    """Resident memory of this process from /proc/self/status (kB): private, file-backed."""
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key = line.split(":")[0]
        if key in ("VmRSS", "RssAnon", "RssFile"):
            out[key] = int(line.split()[1])
    return out


def build(args) -> None:
    from daer_core.evaluation.retrieval import embed_records
    from daer_core.search import GalleryIndex, GallerySource
    from daer_core.search.build import REFINE_POOL, refine_on_gallery, training_embeddings
    from daer_core.search.first_stage import teacher_logits
    from daer_core.search.gallery import GalleryItem
    from daer_core.training.run_loading import load_run
    from registry import get_registry

    loaded = load_run(args.run)
    model = loaded.model.eval()
    ds = loaded.config.dataset
    params = {**ds.params, "seed": int(ds.params.get("seed", 0)) + 1000,
              "num_pairs": args.real}
    real = list(get_registry().create("dataset", ds.name, params).split("train"))
    t0 = time.perf_counter()
    emb = embed_records(model, loaded.preprocess, real, desc="embedding real pairs")
    t_real = time.perf_counter() - t0
    torch.save({"text": emb.text, "image": emb.image}, args.out / "real.pt")

    if args.index.exists():
        # rebuilt from scratch, but only a folder this script (daer) wrote: an index
        if not (args.index / "index.json").is_file():
            raise SystemExit(f"--index {args.index}: exists and is not a daer index (no"
                             f" index.json); choose a new folder")
        shutil.rmtree(args.index)
    timings = {}
    t0 = time.perf_counter()
    text, image, note = training_embeddings(loaded, fit_items=1024)
    teacher = teacher_logits(model, text, image)
    index = GalleryIndex.create(args.index, run_dir=loaded.run_dir, model=model,
                                train_text=text, train_image=image,
                                first_stage=args.first_stage, fit_note=note,
                                fit_options={"scores": teacher}
                                if args.first_stage in ("learned", "distilled") else {})
    timings["first_stage_fit"] = time.perf_counter() - t0
    items = [GalleryItem(id=f"syn-{i:07d}", text=None, image=f"synthetic:{i}")
             for i in range(args.items)]
    source = GallerySource({"kind": "synthetic", "items": args.items, "seed": args.seed,
                            "noise": args.noise}, items)
    t0 = time.perf_counter()
    report = index.add_source(source, model, loaded.preprocess, shard_size=args.shard_size,
                              embed=synthetic_embedder(emb.image, args.noise, args.shard_size,
                                                       args.seed), show_progress=False)
    timings["add_source"] = time.perf_counter() - t0
    if args.first_stage == "learned":
        t0 = time.perf_counter()
        refine_on_gallery(index, text, image, fit_note=note, teacher=teacher)
        timings["refine_on_gallery"] = time.perf_counter() - t0
    disk = {"faiss": (args.index / "image.faiss").stat().st_size,
            "columns": folder_bytes(args.index / "columns"),
            "shards": folder_bytes(args.index / "shards"), "all": folder_bytes(args.index)}
    result = {"items": args.items, "real_pairs": len(real), "real_embedding_s": t_real,
              "build_s": timings, "ann": index.info["ann"]["sides"]["image"],
              "first_stage": {k: v for k, v in index.info["first_stage"].items()},
              "refine_pool_limit": REFINE_POOL, "disk_bytes": disk,
              "float32_embeddings_bytes": args.items * int(emb.image.shape[1]) * 4,
              "added": report.added}
    (args.out / "build.json").write_text(json.dumps(result, indent=2, default=str))


def refit(args) -> None:
    """Refit the first stage of the index ``build`` wrote (the training-split fit, then the
    gallery refinement as ``daer index`` does it) without re-embedding: for measuring another
    first-stage setting on the same 10^6 items. ``build.json`` keeps the shards / columns /
    FAISS seconds of the build and gets the new fit and refinement seconds."""
    from daer_core.search import GalleryIndex
    from daer_core.search.build import refine_on_gallery, training_embeddings
    from daer_core.search.first_stage import LearnedStage, teacher_logits
    from daer_core.training.run_loading import load_run

    loaded = load_run(args.run)
    model = loaded.model.eval()
    index = GalleryIndex.open(args.index, model)
    t0 = time.perf_counter()
    text, image, note = training_embeddings(loaded, fit_items=1024)
    teacher = teacher_logits(model, text, image)
    index.first_stage = LearnedStage.fit(index.scorer, text, image, scores=teacher)
    fit_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    refine_on_gallery(index, text, image, fit_note=note, teacher=teacher)
    refine_s = time.perf_counter() - t0
    result = json.loads((args.out / "build.json").read_text())
    result["build_s"].update({"first_stage_fit": fit_s, "refine_on_gallery": refine_s})
    result["first_stage"] = dict(index.info["first_stage"])
    result["ann"] = index.info["ann"]["sides"]["image"]
    result["refit"] = "first stage refitted on the built index (--stage refit)"
    (args.out / "build.json").write_text(json.dumps(result, indent=2, default=str))


@torch.no_grad()
def serve(args) -> None:
    """Run in a fresh process: open memory-mapped, measure memory, latency and recall."""
    t_start = time.perf_counter()
    from daer_core.search import GalleryIndex, GallerySearcher
    from daer_core.training.run_loading import load_run
    torch.set_num_threads(args.threads)
    loaded = load_run(args.run)
    model = loaded.model.eval()
    before = memory_kb()
    t_open = time.perf_counter()
    index = GalleryIndex.open(args.index, model)
    startup = time.perf_counter() - t_open
    opened = memory_kb()
    searcher = GallerySearcher(model, loaded.preprocess, index)
    real = torch.load(args.out / "real.pt")
    queries = real["text"][:args.queries]
    lat = {c: [] for c in args.candidates}
    tops = {c: [] for c in args.candidates}
    for c in args.candidates:
        for q in queries:
            t0 = time.perf_counter()
            res = searcher.search("text", q.reshape(1, -1), k=10, candidates=c)
            lat[c].append(time.perf_counter() - t0)
            tops[c].append([h.row for h in res.hits])
    after = memory_kb()
    # exhaustive relation scores of every item for the first --recall-queries queries
    data = index.sides["image"]
    recalls = {c: [] for c in args.candidates}
    t0 = time.perf_counter()
    for qi in range(min(args.recall_queries, len(queries))):
        q = queries[qi].reshape(1, -1)
        qh = index.scorer.halves("text", q) if index.scorer.splits else None
        scores = []
        for a in range(0, len(data), 65536):
            sel = slice(a, a + 65536)
            scores.append(index.scorer.scores(
                "text", q, qh, data.embedding[sel],
                None if data.half is None else data.half[sel], logits=True))
        scores = torch.cat(scores).numpy()
        truth = np.argsort(-scores, kind="stable")[:10]
        kth = scores[truth[-1]]
        for c in args.candidates:
            got = tops[c][qi]
            # tie-aware: an item scoring at least the exhaustive 10th best counts
            recalls[c].append(sum(scores[r] >= kth - 1e-4 for r in got) / 10)
    exhaustive_s = (time.perf_counter() - t0) / max(1, min(args.recall_queries, len(queries)))
    out = {"process_start_to_open_s": t_open - t_start, "open_s": startup,
           "memory_kb": {"before_open": before, "after_open": opened, "after_queries": after},
           "latency_ms": {str(c): {"p50": float(np.percentile(lat[c], 50) * 1000),
                                   "p95": float(np.percentile(lat[c], 95) * 1000)}
                          for c in args.candidates},
           "recall_at_10": {str(c): float(np.mean(recalls[c])) for c in args.candidates},
           "recall_queries": min(args.recall_queries, len(queries)),
           "latency_queries": len(queries), "exhaustive_s_per_query": exhaustive_s,
           "threads": args.threads}
    (args.out / "serve.json").write_text(json.dumps(out, indent=2))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", type=Path, required=True, help="a finished run directory")
    ap.add_argument("--items", type=int, default=1_000_000)
    ap.add_argument("--real", type=int, default=2000, help="real pairs embedded")
    ap.add_argument("--noise", type=float, default=0.3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--first-stage", default="learned")
    ap.add_argument("--shard-size", type=int, default=65536)
    ap.add_argument("--index", type=Path, default=ROOT / "benchmark-results" / "million-index")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmark-results" / "million")
    ap.add_argument("--queries", type=int, default=200, help="latency queries")
    ap.add_argument("--recall-queries", type=int, default=20)
    ap.add_argument("--candidates", type=int, nargs="+", default=[200, 1000, 4000])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--stage", choices=("all", "build", "refit", "serve", "report"),
                    default="all",
                    help="all: build, then serve in a fresh process; refit: refit the first "
                    "stage of the built --index only (then --stage serve, --stage report); "
                    "report: print the figures build.json and serve.json hold")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(args.threads)
    if args.stage in ("all", "build"):
        build(args)
    if args.stage == "refit":
        refit(args)
        return 0
    if args.stage == "all":  # serving measured in a fresh process: nothing of the build in RAM
        cmd = [sys.executable, __file__, "--stage", "serve", *sys.argv[1:]]
        subprocess.run(cmd, check=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    if args.stage == "serve":
        serve(args)
        return 0
    b = json.loads((args.out / "build.json").read_text())
    s = json.loads((args.out / "serve.json").read_text())
    mb = 1 / 2 ** 20
    print(f"gallery: {b['items']:,} synthetic image vectors around {b['real_pairs']} real"
          f" embeddings (noise {args.noise} x spread); queries: real texts")
    print(f"build: {json.dumps({k: round(v, 1) for k, v in b['build_s'].items()})} s;"
          f" index {b['ann']['kind']} {json.dumps(b['ann'])}")
    print(f"first stage: {b['first_stage']['method']}, fit: {b['first_stage'].get('fit')};"
          f" refined on {b['first_stage'].get('gallery_refined')}")
    print(f"disk: FAISS {b['disk_bytes']['faiss'] * mb:.1f} MB, columns"
          f" {b['disk_bytes']['columns'] * mb:.0f} MB, shards {b['disk_bytes']['shards'] * mb:.0f}"
          f" MB; float32 embeddings alone {b['float32_embeddings_bytes'] * mb:.0f} MB")
    m = s["memory_kb"]
    print(f"serving: open {s['open_s']:.2f} s; resident after open {m['after_open']['VmRSS'] / 1024:.0f}"
          f" MB (private {m['after_open']['RssAnon'] / 1024:.0f}), after"
          f" {s['latency_queries'] * len(args.candidates)} queries"
          f" {m['after_queries']['VmRSS'] / 1024:.0f} MB (private"
          f" {m['after_queries']['RssAnon'] / 1024:.0f}, file pages"
          f" {m['after_queries']['RssFile'] / 1024:.0f}); before opening"
          f" {m['before_open']['VmRSS'] / 1024:.0f} MB (model and libraries)")
    print("candidates  p50 ms  p95 ms  recall@10 (vs exhaustive over all items)")
    for c in args.candidates:
        lat = s["latency_ms"][str(c)]
        print(f"{c:>10}  {lat['p50']:>6.1f}  {lat['p95']:>6.1f}  {s['recall_at_10'][str(c)]:.3f}")
    print(f"({s['recall_queries']} recall queries; exhaustive scoring took"
          f" {s['exhaustive_s_per_query']:.1f} s per query; {s['threads']} threads)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
