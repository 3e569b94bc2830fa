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
    p.add_argument("--index-type", default="auto",
                   choices=("auto", "flat", "ivf", "ivfpq", "hnsw"),
                   help="FAISS index: auto = flat up to 100,000 items, IVF-PQ (compressed,"
                        " memory-mapped) beyond")
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
    p.add_argument("--engine", default="process", choices=("process", "ray"),
                   help="where the gallery is embedded: process = this process (the default,"
                        " for small galleries), ray = a pool of model actors on Ray Data"
                        " (local Ray, or the cluster at --ray-address); docs/search.md")
    p.add_argument("--ray-address", default=None, metavar="ADDR",
                   help="--engine ray: join a running Ray cluster (e.g. auto, or HOST:6379)"
                        " instead of starting a local Ray")
    p.add_argument("--ray-workers", type=int, default=None, metavar="N",
                   help="--engine ray: model actors (default 2)")
    p.add_argument("--ray-cpus-per-worker", type=float, default=None, metavar="C",
                   help="--engine ray: CPUs per actor, also its torch threads (default 1); a"
                        " local Ray starts with N x C CPUs")
    p.add_argument("--ray-gpus-per-worker", type=float, default=None, metavar="G",
                   help="--engine ray: GPUs per actor (default 0: CPU actors; 1, or a"
                        " fraction such as 0.5 to share a GPU); actors embed on CUDA when > 0")
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


def ray_engine(args: argparse.Namespace):
    """The :class:`~daer_core.search.ray_embedding.RayEngine` of ``--engine ray`` (None for
    ``process``; ``--ray-*`` options without ``--engine ray`` are an error)."""
    from ..errors import ConfigError
    given = {name: getattr(args, name) for name in ("ray_address", "ray_workers",
                                                     "ray_cpus_per_worker",
                                                     "ray_gpus_per_worker")}
    if args.engine != "ray":
        stray = [f"--{k.replace('_', '-')}" for k, v in given.items() if v is not None]
        if stray:
            raise ConfigError(f"{', '.join(stray)} only apply with --engine ray")
        return None
    from ..search.ray_embedding import RayEngine
    defaults = {"ray_workers": 2, "ray_cpus_per_worker": 1.0, "ray_gpus_per_worker": 0.0}
    v = {k: given[k] if given[k] is not None else defaults.get(k) for k in given}
    return RayEngine(address=v["ray_address"], workers=v["ray_workers"],
                     cpus_per_worker=v["ray_cpus_per_worker"],
                     gpus_per_worker=v["ray_gpus_per_worker"],
                     plugin_opts=tuple(getattr(args, "plugin_opts", None) or ()))


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
    engine = ray_engine(args)
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
        device=device, refine=args.refine_first_stage, engine=engine)
    embedding = engine.report if engine is not None and not report.already_indexed else None
    if args.json:
        print(json.dumps({"schema": "daer.index-report/1", "out": str(args.out),
                          "job": report.job, "source": report.source, "items": report.items,
                          "added": report.added, "skipped": [list(s) for s in report.skipped],
                          "resumed_shards": report.resumed_shards,
                          "already_indexed": report.already_indexed,
                          "seconds": round(report.seconds, 3), "totals": report.totals,
                          "ann": report.ann,
                          "first_stage": index.info["first_stage"]["method"],
                          "gallery_refined": index.info["first_stage"].get("gallery_refined"),
                          "engine": args.engine,
                          "embedding": embedding.as_dict() if embedding is not None else None},
                         indent=2))
        return EXIT_OK
    if report.already_indexed:
        print(f"{args.out}: this gallery is already indexed (job {report.job}); nothing added")
    else:
        resumed = f", resumed after {report.resumed_shards} finished shard(s)" \
            if report.resumed_shards else ""
        print(f"{args.out}: added {report.added['image']} images and {report.added['text']}"
              f" texts from {report.items} items in {report.seconds:.1f} s{resumed}")
        if embedding is not None:
            print(f"  embedded on Ray ({embedding.address}, {embedding.workers} workers):"
                  f" {embedding.embedded_items} items in {embedding.seconds:.1f} s,"
                  f" {embedding.items_per_s:.1f} items/s (first shard after"
                  f" {embedding.first_shard_s:.1f} s; {embedding.actor_items_per_s:.1f} items/s"
                  f" per actor while embedding); items table {embedding.metadata}")
        if report.skipped:
            print(f"  skipped {len(report.skipped)} image(s) that do not decode, e.g."
                  f" {report.skipped[0][0]}: {report.skipped[0][1]}")
    kinds = ", ".join(f"{s} {k}" for s, k in sorted(report.ann.items()))
    print(f"  index holds {report.totals['image']} images and {report.totals['text']} texts"
          f" (FAISS: {kinds or 'none'}; first stage {index.info['first_stage']['method']})")
    return EXIT_OK
