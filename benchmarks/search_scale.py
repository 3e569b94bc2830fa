"""Two-stage search against exhaustive relation scoring on a large `shapes` gallery.

    .venv/bin/python benchmarks/search_scale.py --run RUN_DIR [--gallery-size 20000]

Prints, in one run: the index build time (embedding, first-stage fit, FAISS), query latency
p50/p99 of two-stage search and of exhaustive scoring (text->image and image->text), the
recall of the exhaustive top-10 within the two-stage top-10 at several candidate counts, and
the same recall for each first-stage space (the measurement behind the default, see
docs/search.md).

The gallery is real: ``--gallery-size`` freshly drawn `shapes` pairs (the run's dataset params
with another seed), every image and text embedded by the run's model — nothing is copied or
perturbed. Queries are the texts and images of the run's validation and test splits, which the
gallery does not contain. Without ``--run`` (or when it does not exist) the script first trains
the benchmark model described in docs/search.md into that folder.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

#: the benchmark model when none is given: the `daer` preset on `shapes` drawn at 32 px, with
#: timm's convnext_atto as image backbone (random init, layer norm) and three epochs a stage —
#: trainable in about half an hour on two busy CPU cores; any finished run (e.g. `make demo`'s)
#: can be passed with --run instead
BENCH_OVERRIDES = [
    "dataset.params.image_size=32",
    "pipeline.image.encoder={name: timm, params: {model: convnext_atto}}",
    "pipeline.image.attention=null",
    "train.stages.text.epochs=3", "train.stages.image.epochs=3",
    "train.stages.relation.epochs=3",
]


#: logits closer than this to the exhaustive k-th best count as tied with it (the same item
#: scored in another batch can differ in the last float32 bits)
TIE_TOLERANCE = 1e-4


def pct(values, q) -> float:
    return float(np.percentile(np.asarray(values) * 1000.0, q))


def recall(rows, logits, truth_rows, truth_kth) -> tuple[float, float]:
    """(tie-aware, by-row) recall of the exhaustive top-k within a returned top-k.

    Tie-aware counts a returned item when its exact logit is at least the exhaustive k-th
    best: identical gallery items (the same caption drawn twice) have identical scores, and
    which of them the exhaustive sort lists first is arbitrary. By-row counts only the rows
    the exhaustive sort happened to list."""
    k = len(truth_rows)
    tied = sum(float(v) >= truth_kth - TIE_TOLERANCE for v in logits) / k
    return tied, len(set(int(r) for r in rows) & set(truth_rows)) / k


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", type=Path, default=ROOT / "runs" / "search-bench")
    ap.add_argument("--gallery-size", type=int, default=20000)
    ap.add_argument("--gallery-seed", type=int, default=1234)
    ap.add_argument("--index-dir", type=Path, default=None,
                    help="default: benchmark-results/search-index-<size>")
    ap.add_argument("--reuse-index", action="store_true",
                    help="search an index already built there instead of rebuilding it (its"
                         " first stage is refitted when --first-stage names another; nothing"
                         " is re-embedded)")
    ap.add_argument("--first-stage", default=None,
                    help="first stage of the index (default: the library's default)")
    ap.add_argument("--refine", default="auto", choices=("auto", "always", "never"),
                    help="refine a learned first stage on the gallery (daer index"
                         " --refine-first-stage); the spaces table compares both either way")
    ap.add_argument("--build-only", action="store_true",
                    help="stop after building the index")
    ap.add_argument("--queries", type=int, default=200, help="queries per direction")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--candidates", type=int, nargs="+", default=[50, 100, 200, 400])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=128)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from daer_core.search import (GalleryIndex, GallerySearcher, PairScorer, default_candidates,
                                  fit_first_stage, index_gallery, refine_on_gallery,
                                  resolve_gallery, training_embeddings)
    from daer_core.search import ann
    from daer_core.search.first_stage import DEFAULT_METHOD, METHODS
    from daer_core.training.run_loading import load_run

    if not (args.run / "checkpoints" / "final").is_dir():
        from daer_core.config import load_run_config
        from daer_core.training.api import train_and_evaluate
        print(f"training the benchmark model into {args.run} ({', '.join(BENCH_OVERRIDES)})",
              flush=True)
        cfg = load_run_config(None, preset="daer", dataset="shapes", overrides=BENCH_OVERRIDES)
        train_and_evaluate(cfg, args.run)
    loaded = load_run(args.run)
    model = loaded.model
    n = args.gallery_size
    index_dir = args.index_dir or ROOT / "benchmark-results" / f"search-index-{n}"
    method = args.first_stage or DEFAULT_METHOD

    # -------------------------------------------------------------- build
    build = {}
    build_record = index_dir / "benchmark-build.json"
    rebuilt = not args.reuse_index or not (index_dir / "index.json").is_file()
    if rebuilt:
        if index_dir.exists():
            shutil.rmtree(index_dir)
        source = resolve_gallery("dataset:shapes:all", loaded.config,
                                 params=[f"num_pairs={n}", f"seed={args.gallery_seed}"])
        t0 = time.perf_counter()
        index, report = index_gallery(loaded, source, index_dir, first_stage=method,
                                      batch_size=args.batch_size, refine=args.refine)
        build["total"] = time.perf_counter() - t0
        build["add"] = report.seconds
        build["first_stage"] = method
        build["when"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        build_record.write_text(json.dumps(build, indent=2) + "\n")
    elif build_record.is_file():
        build = json.loads(build_record.read_text())
    if args.build_only:
        print(f"built {index_dir}: {build}")
        return 0
    index = GalleryIndex.open(index_dir, model, run_dir=loaded.run_dir)
    refit = None
    fit_t = fit_i = None
    if index.info["first_stage"]["method"] != method:
        fit_t, fit_i, note = training_embeddings(loaded)
        t_emb, i_emb, fit_note = fit_t, fit_i, note
        t0 = time.perf_counter()
        stage = fit_first_stage(method, PairScorer(model), t_emb, i_emb)
        refit = {"fit": time.perf_counter() - t0}
        t0 = time.perf_counter()
        index.replace_first_stage(stage, fit_note)
        refit["faiss"] = time.perf_counter() - t0
        index = GalleryIndex.open(index_dir, model, run_dir=loaded.run_dir)
    refined_now = None
    stage_info = index.info["first_stage"]
    if not rebuilt and method == "learned" and args.refine != "never" and (
            args.refine == "always" or refit is not None or "gallery_refined" not in stage_info):
        if fit_t is None:
            fit_t, fit_i, note = training_embeddings(loaded)
        t0 = time.perf_counter()
        refine_on_gallery(index, fit_t, fit_i, fit_note=stage_info.get("fit", ""))
        refined_now = time.perf_counter() - t0
        index = GalleryIndex.open(index_dir, model, run_dir=loaded.run_dir)
    searcher = GallerySearcher(model, loaded.preprocess, index)
    sizes = index.counts()

    # the FAISS part alone: rebuilding the flat index of one side from its vectors
    vec_image = index.first_stage.item_vectors("image", index.sides["image"].embedding)
    t0 = time.perf_counter()
    ann.build(ann.AnnSettings("flat"), vec_image)
    build["faiss_flat_image"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    ivf_settings = ann.choose_settings("ivf", len(vec_image))
    ivf_image = ann.build(ivf_settings, vec_image)
    build["faiss_ivf_image"] = time.perf_counter() - t0

    # -------------------------------------------------------------- queries
    from daer_core.data.images import load_rgb
    records = [r for s in ("val", "test") for r in
               resolve_gallery(s, loaded.config).items][:args.queries]
    with torch.no_grad():
        q_text = torch.cat([searcher.embed_text(r.text) for r in records])
        q_image = torch.cat([searcher.embed_image(load_rgb(r.image)) for r in records])
    t0 = time.perf_counter()
    for r in records[:50]:
        searcher.embed_text(r.text)
    embed_text_ms = (time.perf_counter() - t0) / 50 * 1000
    t0 = time.perf_counter()
    for r in records[:50]:
        searcher.embed_image(load_rgb(r.image))
    embed_image_ms = (time.perf_counter() - t0) / 50 * 1000

    default_c = {side: default_candidates(sizes[side], args.k) for side in ("image", "text")}
    rows = []
    exhaustive_top: dict[str, list[list[int]]] = {}
    exhaustive_kth: dict[str, list[float]] = {}
    for query_side, q_all in (("text", q_text), ("image", q_image)):
        side = "image" if query_side == "text" else "text"
        ex_t, ex_top, ex_kth = [], [], []
        for q in q_all:
            t0 = time.perf_counter()
            res = searcher.search(query_side, q[None], args.k, exhaustive=True)
            ex_t.append(time.perf_counter() - t0)
            ex_top.append([h.row for h in res.hits])
            ex_kth.append(res.hits[-1].logit)
        exhaustive_top[query_side] = ex_top
        exhaustive_kth[query_side] = ex_kth
        for c in sorted(set(args.candidates) | {default_c[side]}):
            times, rec = [], []
            for q, truth, kth in zip(q_all, ex_top, ex_kth):
                t0 = time.perf_counter()
                res = searcher.search(query_side, q[None], args.k, candidates=c)
                times.append(time.perf_counter() - t0)
                rec.append(recall([h.row for h in res.hits], [h.logit for h in res.hits],
                                  truth, kth))
            rows.append((f"{query_side}->{side}", f"two-stage flat, C={c}"
                         f" ({100 * c / sizes[side]:.2f}%)", pct(times, 50), pct(times, 99),
                         *np.mean(rec, axis=0)))
        # IVF first stage (text->image only: the index we built for the build-time figure)
        if query_side == "text":
            times, rec = [], []
            c = default_c[side]
            for q, truth, kth in zip(q_all, ex_top, ex_kth):
                t0 = time.perf_counter()
                qv = index.first_stage.query_vector("text", q[None])
                cand = np.sort(ann.search(ivf_image, ivf_settings, qv, c))
                sel = torch.from_numpy(cand)
                qh = index.scorer.halves("text", q[None])
                side_data = index.sides["image"]
                lg = index.scorer.scores("text", q[None], qh, side_data.embedding[sel],
                                         None if side_data.half is None else side_data.half[sel],
                                         logits=True)
                order = np.argsort(-lg.numpy(), kind="stable")[:args.k]
                times.append(time.perf_counter() - t0)
                rec.append(recall(cand[order], lg.numpy()[order], truth, kth))
            rows.append((f"{query_side}->{side}", f"two-stage IVF nlist={ivf_settings.nlist}"
                         f" nprobe={ivf_settings.nprobe}, C={c}", pct(times, 50),
                         pct(times, 99), *np.mean(rec, axis=0)))
        rows.append((f"{query_side}->{side}", "exhaustive (every item scored)", pct(ex_t, 50),
                     pct(ex_t, 99), 1.0, 1.0))

    # -------------------------------------------------------------- first-stage spaces
    if fit_t is None:
        fit_t, fit_i, note = training_embeddings(loaded)
    scorer = PairScorer(model)
    stage_rows = []
    spaces = list(METHODS)
    refined_info = index.info["first_stage"].get("gallery_refined")
    if refined_info:   # the index's own stage: learned, then refined on the gallery
        spaces.insert(1, "learned+gallery")
    for space in spaces:
        try:
            if space == "learned+gallery":
                stage, fit_s = index.first_stage, refined_info["seconds"]
            elif refit is not None and space == method and not refined_info:
                stage, fit_s = index.first_stage, refit["fit"]
            else:
                t0 = time.perf_counter()
                stage = fit_first_stage(space, scorer, fit_t, fit_i)
                fit_s = time.perf_counter() - t0
        except Exception as exc:  # noqa: BLE001 - e.g. 'embedding' with unequal widths
            stage_rows.append((space, None, None, None, str(exc)))
            continue
        result = {}
        for query_side, q_all in (("text", q_text), ("image", q_image)):
            side = "image" if query_side == "text" else "text"
            vecs = stage.item_vectors(side, index.sides[side].embedding)
            c = default_c[side]
            rec = []
            for q, truth, kth in zip(q_all, exhaustive_top[query_side],
                                     exhaustive_kth[query_side]):
                qv = stage.query_vector(query_side, q[None])[0]
                cand = np.sort(np.argpartition(-(vecs @ qv), c - 1)[:c])
                sel = torch.from_numpy(cand)
                qh = scorer.halves(query_side, q[None]) if scorer.splits else None
                lg = scorer.scores(query_side, q[None], qh, index.sides[side].embedding[sel],
                                   None if index.sides[side].half is None
                                   else index.sides[side].half[sel], logits=True)
                order = np.argsort(-lg.numpy(), kind="stable")[:args.k]
                rec.append(recall(cand[order], lg.numpy()[order], truth, kth))
            result[query_side] = tuple(np.mean(rec, axis=0))
        stage_rows.append((space, result["text"], result["image"], fit_s, ""))

    # -------------------------------------------------------------- report
    print()
    print(f"model: {loaded.run_dir} ({', '.join(f'{k}={v}' for k, v in model.names.items())})")
    print(f"gallery: {n} shapes pairs (seed {args.gallery_seed}) -> {sizes['image']} images,"
          f" {sizes['text']} texts; queries: {len(records)} texts and {len(records)} images"
          f" from the run's val+test splits; k={args.k}; torch threads {args.threads}")
    if "total" in build:
        print(f"index build{'' if rebuilt else ' (recorded when it was built, ' + build['when'] + ')'}:"
              f" {build['total']:.1f} s in all (embedding + FAISS: {build['add']:.1f} s; the"
              f" rest is fitting the {build['first_stage']} first stage on {note}"
              f"{' and refining it on the gallery' if rebuilt and refined_info else ''})")
    if refit is not None:
        print(f"first stage of the reused index refitted as {method}: fit {refit['fit']:.1f} s,"
              f" vectors + FAISS of both sides {refit['faiss']:.1f} s")
    if refined_now is not None:
        print(f"first stage refined on the reused index's gallery: {refined_now:.1f} s"
              f" (teacher scores, mining, steps, vectors + FAISS)")
    searched = index.info["first_stage"]["method"]
    if refined_info:
        searched += (" refined on " + " + ".join(f"{v} {k}" for k, v in
                                                 refined_info["items"].items())
                     + " gallery items")
    print(f"first stage searched: {searched}")
    print(f"FAISS alone, image side: flat {build['faiss_flat_image'] * 1000:.1f} ms,"
          f" IVF (k-means training + add) {build['faiss_ivf_image'] * 1000:.0f} ms")
    print(f"query embedding: text {embed_text_ms:.1f} ms, image {embed_image_ms:.1f} ms"
          f" (not included below)")
    print()
    print(f"recall@{args.k}: of the exhaustive top-{args.k}, the share the two-stage top-{args.k}"
          f" returns; tie-aware counts a returned item scored at least the exhaustive"
          f" {args.k}-th best (identical gallery items score identically), by row only the"
          f" rows the exhaustive sort listed")
    print(f"{'direction':<14} {'method':<44} {'p50 ms':>8} {'p99 ms':>8} {'recall':>8}"
          f" {'by row':>8}")
    for d, m, p50, p99, r, r_row in rows:
        print(f"{d:<14} {m:<44} {p50:>8.2f} {p99:>8.2f} {r:>8.3f} {r_row:>8.3f}")
    print()
    print(f"first-stage spaces (candidates {default_c['image']} images /"
          f" {default_c['text']} texts, exact re-ranking, recall of the exhaustive top-{args.k}):")
    print(f"{'space':<16} {'text->image':>12} {'by row':>7} {'image->text':>12} {'by row':>7}"
          f" {'fit s':>8}")
    for method, rt, ri, fit_s, err in stage_rows:
        if err:
            print(f"{method:<16} {'n/a':>12} {'':>7} {'n/a':>12} {'':>7} {'':>8}  ({err})")
        else:
            print(f"{method:<16} {rt[0]:>12.3f} {rt[1]:>7.3f} {ri[0]:>12.3f} {ri[1]:>7.3f}"
                  f" {fit_s:>8.2f}")
    if refined_info:
        print("(learned+gallery: the index's stage; its fit s is the refinement alone, on top"
              " of a learned fit)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
