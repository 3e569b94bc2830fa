"""``daer search RUN_DIR --index DIR``: two-stage search of a prebuilt gallery index.

Kept apart from ``search_cmd`` (which ranks the run's test split exhaustively) so that the
plain command does not need the ``search`` extra (faiss) installed.
"""
from __future__ import annotations

import argparse
import json

from .exit_codes import EXIT_OK


def run_indexed(args: argparse.Namespace) -> int:
    from ..data.images import load_rgb
    from ..errors import ConfigError
    from ..search import GalleryIndex, GallerySearcher
    from ..training.run_loading import load_run
    from ..training.runtime import pick_device

    if args.k < 1:
        raise ConfigError("--k must be at least 1")
    if args.candidates is not None and args.candidates < 1:
        raise ConfigError("--candidates must be at least 1")
    query_image = load_rgb(args.image) if args.image is not None else None  # fail early
    device = pick_device(args.device, key="--device")
    loaded = load_run(args.run_dir)
    loaded.model.to(device)
    index = GalleryIndex.open(args.index, loaded.model, run_dir=loaded.run_dir)
    searcher = GallerySearcher(loaded.model, loaded.preprocess, index, device=device,
                               rerank_k=loaded.config.evaluate.rerank_k,
                               bf16=loaded.config.evaluate.bf16)
    if args.text is not None:
        result = searcher.search_text(args.text, args.k, args.candidates, args.exhaustive)
    else:
        result = searcher.search_image(query_image, args.k, args.candidates, args.exhaustive)
    rows = [h.as_dict() for h in result.hits]
    if args.json:
        print(json.dumps({"query": args.text if args.text is not None else str(args.image),
                          "results_kind": result.side, "index": str(args.index),
                          "candidates": result.candidates, "exhaustive": result.exhaustive,
                          "results": rows}, indent=2))
        return EXIT_OK
    how = "every item scored" if result.exhaustive else \
        f"{result.candidates} candidates re-ranked of {len(index.sides[result.side])}"
    print(f"top {len(rows)} {result.side}s for {'text' if args.text is not None else 'image'}"
          f" query ({how}):")
    for r in rows:
        detail = (r["text"] or "")[:70] if result.side == "text" else (r["image"] or "")
        print(f"{r['rank']:>3}. {r['score']:.4f}  [{', '.join(r['labels'])}]  {r['id']}  {detail}")
    return EXIT_OK
