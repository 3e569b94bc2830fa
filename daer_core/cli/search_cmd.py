"""``daer search RUN_DIR``: rank a run's test gallery for a text or an image query."""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("search", help="top-k test-gallery items for a text or image query")
    p.add_argument("run_dir", type=Path)
    q = p.add_mutually_exclusive_group(required=True)
    q.add_argument("--text", help="text query: ranks the gallery's images")
    q.add_argument("--image", type=Path, help="image file query: ranks the gallery's texts")
    p.add_argument("--k", type=int, default=10, help="number of results (default 10)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--device", default="auto",
                   help="where to run: auto (CUDA when present), cpu, cuda, cuda:N")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from ..data.images import load_rgb
    from ..errors import ConfigError
    from ..evaluation.retrieval import embed_records, top_k
    from ..training.run_loading import load_run
    from ..training.runtime import pick_device

    if args.k < 1:
        raise ConfigError("--k must be at least 1")
    query_image = load_rgb(args.image) if args.image is not None else None  # fail early
    loaded = load_run(args.run_dir)
    device = pick_device(args.device)
    model = loaded.model.to(device)
    gallery = embed_records(model, loaded.preprocess, loaded.test, device=device,
                            desc="embedding gallery")
    by_id = {r.id: r for r in loaded.test}
    with torch.no_grad():
        if args.text is not None:
            inputs = {k: v.to(device) for k, v in loaded.preprocess.text([args.text]).items()}
            q = model.encode_text(inputs)
            scores = model.score_matrix(q, gallery.image.to(device))[0].numpy()
            kind = "image"
        else:
            img = loaded.preprocess.image_eval(query_image).unsqueeze(0).to(device)
            q = model.encode_image(img)
            scores = model.score_matrix(gallery.text.to(device), q)[:, 0].numpy()
            kind = "text"
    results = []
    for rank, idx in enumerate(top_k(scores, min(args.k, len(scores))), start=1):
        rec = by_id[gallery.ids[idx]]
        results.append({"rank": rank, "id": rec.id, "score": float(scores[idx]),
                        "labels": [loaded.classes[i] for i in rec.labels],
                        "text": rec.text if kind == "text" else None,
                        "image": str(rec.image) if not callable(rec.image) else None})
    if args.json:
        print(json.dumps({"query": args.text if args.text is not None else str(args.image),
                          "results_kind": kind, "results": results}, indent=2))
        return 0
    print(f"top {len(results)} {kind}s for {'text' if args.text is not None else 'image'} query:")
    for r in results:
        detail = r["text"][:70] if r["text"] else (r["image"] or "")
        print(f"{r['rank']:>3}. {r['score']:.4f}  [{', '.join(r['labels'])}]  {r['id']}  {detail}")
    return 0
