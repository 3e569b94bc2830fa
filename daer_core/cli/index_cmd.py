"""``daer index RUN_DIR --gallery SPEC --out DIR``: embed a gallery once into a search index."""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from .exit_codes import EXIT_OK

log = logging.getLogger("daer")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("index", help="embed a gallery into a search index (for search --index"
                                     " and serve)")
    p.add_argument("run_dir", type=Path)
    p.add_argument("--gallery", required=True,
                   help="test | val | train | all (the run's dataset), dataset:NAME[:SPLIT],"
                        " a folder of images, or a manifest file (.jsonl/.csv/.json)")
    p.add_argument("--gallery-set", action="append", default=[], metavar="KEY=VALUE",
                   help="dataset param for --gallery dataset:NAME (repeatable)")
    p.add_argument("--out", type=Path, required=True,
                   help="index folder: created, extended (another gallery) or resumed")
    p.add_argument("--id-prefix", default="", help="prepended to every id of this gallery")
    p.add_argument("--index-type", default="auto", choices=("auto", "flat", "ivf", "hnsw"),
                   help="FAISS index: auto = flat up to 100,000 items, IVF beyond")
    p.add_argument("--nlist", type=int, default=None, help="IVF lists (default 4 sqrt(N))")
    p.add_argument("--nprobe", type=int, default=None, help="IVF lists visited per query")
    p.add_argument("--first-stage", default="auto",
                   choices=("auto", "learned", "distilled", "taylor", "halves", "embedding",
                            "cosine"),
                   help="first-stage space (docs/search.md compares them); auto = cosine"
                        " for a run that re-ranks its own first stage (evaluate.rerank_k),"
                        " else learned, except for a new index of at most 100 items per side, which every"
                        " query scores whole anyway: a stage that needs no fitting")
    p.add_argument("--refine-first-stage", default="auto", choices=("auto", "always", "never"),
                   help="learned first stage: refine it on the gallery's own items once the"
                        " first gallery is embedded (auto), again on everything the index"
                        " holds after this call (always, e.g. after adding a gallery), or keep"
                        " the fit on training pairs alone (never)")
    p.add_argument("--fit-items", type=int, default=1024,
                   help="training pairs a fitted first stage (learned, distilled) is fitted on"
                        " (at most)")
    p.add_argument("--shard-size", type=int, default=2048,
                   help="items per shard; an interrupted build resumes at shard granularity")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--workers", type=int, default=0, help="DataLoader workers decoding images")
    p.add_argument("--device", default="auto",
                   help="where to embed: auto (CUDA when present), cpu, cuda, cuda:N")
    p.add_argument("--json", action="store_true", help="print the build report as JSON")
    p.set_defaults(func=run)


def auto_first_stage(loaded, source, out: Path) -> str:
    """``cosine`` for a run that trained its own first stage (``evaluate.rerank_k``: a
    contrastive first stage whose top candidates the relation head re-ranks, as the run was
    evaluated). Else ``learned`` (the measured best, docs/search.md), except for a new index
    whose gallery every query scores whole by default (at most ``MIN_CANDIDATES`` items per
    side): fitting and refining a first stage there took minutes and changed no result, so it
    gets one derived from the weights (``halves`` where the relation head splits, else ``embedding``
    where both towers have one width, else the cheapest fitted one, ``distilled``)."""
    from ..search.scoring import PairScorer
    from ..search.searcher import MIN_CANDIDATES
    if loaded.config.evaluate.rerank_k:
        log.info("the run re-ranks a cosine first stage (evaluate.rerank_k = %d): the index"
                 " searches that cosine and re-scores candidates with the relation head",
                 loaded.config.evaluate.rerank_k)
        return "cosine"
    if (out / "index.json").is_file() or len(source.items) > MIN_CANDIDATES:
        return "learned"
    model = loaded.model
    if PairScorer(model).splits:
        method = "halves"
    elif int(model.text_encoder.out_dim) == int(model.image_encoder.out_dim):
        method = "embedding"
    else:  # nothing derived fits: the cheapest fitted one
        method = "distilled"
    log.info("gallery of %d items: every query scores all of them (up to %d candidates), so"
             " the first stage is %r, which needs no fitting (--first-stage learned fits one"
             " anyway)", len(source.items), MIN_CANDIDATES, method)
    return method


def run(args: argparse.Namespace) -> int:
    from ..errors import ConfigError
    from ..search import index_gallery, resolve_gallery
    from ..training.run_loading import load_run
    from ..training.runtime import pick_device

    for name in ("batch_size", "shard_size", "fit_items"):
        if getattr(args, name) < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be at least 1")
    if args.workers < 0:
        raise ConfigError("--workers must be 0 or more")
    device = pick_device(args.device, key="--device")
    loaded = load_run(args.run_dir)
    loaded.model.to(device)
    source = resolve_gallery(args.gallery, loaded.config, params=args.gallery_set,
                             prefix=args.id_prefix)
    first_stage = args.first_stage
    if first_stage == "auto":
        first_stage = auto_first_stage(loaded, source, args.out)
    index, report = index_gallery(
        loaded, source, args.out, first_stage=first_stage, index_type=args.index_type,
        nlist=args.nlist, nprobe=args.nprobe, fit_items=args.fit_items,
        shard_size=args.shard_size, batch_size=args.batch_size, num_workers=args.workers,
        device=device, refine=args.refine_first_stage)
    if args.json:
        print(json.dumps({"schema": "daer.index-report/1", "out": str(args.out),
                          "job": report.job, "source": report.source, "items": report.items,
                          "added": report.added, "skipped": [list(s) for s in report.skipped],
                          "resumed_shards": report.resumed_shards,
                          "already_indexed": report.already_indexed,
                          "seconds": round(report.seconds, 3), "totals": report.totals,
                          "ann": report.ann,
                          "first_stage": index.info["first_stage"]["method"],
                          "gallery_refined": index.info["first_stage"].get("gallery_refined")},
                         indent=2))
        return EXIT_OK
    if report.already_indexed:
        print(f"{args.out}: this gallery is already indexed (job {report.job}); nothing added")
    else:
        resumed = f", resumed after {report.resumed_shards} finished shard(s)" \
            if report.resumed_shards else ""
        print(f"{args.out}: added {report.added['image']} images and {report.added['text']}"
              f" texts from {report.items} items in {report.seconds:.1f} s{resumed}")
        if report.skipped:
            print(f"  skipped {len(report.skipped)} image(s) that do not decode, e.g."
                  f" {report.skipped[0][0]}: {report.skipped[0][1]}")
    kinds = ", ".join(f"{s} {k}" for s, k in sorted(report.ann.items()))
    print(f"  index holds {report.totals['image']} images and {report.totals['text']} texts"
          f" (FAISS: {kinds or 'none'}; first stage {index.info['first_stage']['method']})")
    return EXIT_OK
