"""``daer search RUN_DIR``: rank a run's test gallery for a text or an image query."""
from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

from .exit_codes import EXIT_OK


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
    p.add_argument("--index", type=Path, default=None,
                   help="a gallery index from `daer index`: two-stage search of it instead of"
                        " scoring the run's test split exhaustively")
    p.add_argument("--candidates", type=int, default=None,
                   help="with --index: items re-ranked exactly (default max(100, 1%% of the"
                        " gallery))")
    p.add_argument("--exhaustive", action="store_true",
                   help="with --index: score every item with the relation network")
    p.set_defaults(func=run)


def query_notices(encoder, before: Counter) -> list[str]:
    """What the text encoder did to the query that changes its meaning: words it does not
    know (all of them: the ranking then says nothing about the query), no tokens at all, or
    a query cut at ``max_tokens``. Read from the encoder's ``counts`` (word2vec-lstm keeps
    them); encoders without counts give no notices."""
    delta = Counter(getattr(encoder, "counts", None) or {})
    delta.subtract(before)
    tokens, oov = delta.get("tokens", 0), delta.get("oov_tokens", 0)
    out = []
    if delta.get("empty_texts", 0) > 0:
        out.append("the query has no words the tokenizer keeps; the ranking does not depend"
                   " on it")
    elif tokens and oov == tokens:
        out.append(f"none of the query's {tokens} word(s) is in the model's vocabulary (they"
                   " all map to <unk>); the ranking does not depend on the query's words")
    elif oov > 0:
        out.append(f"{oov} of the query's {tokens} word(s) are not in the model's vocabulary"
                   " and map to <unk>")
    if delta.get("truncated", 0) > 0:
        limit = getattr(getattr(encoder, "params", None), "max_tokens", None)
        out.append(f"the query was cut at max_tokens={limit}; later words were ignored"
                   if limit else "the query was cut short by the text encoder")
    return out


def run(args: argparse.Namespace) -> int:
    if args.index is not None:
        from .index_search import run_indexed
        return run_indexed(args)
    if args.candidates is not None or args.exhaustive:
        from ..errors import ConfigError
        raise ConfigError("--candidates and --exhaustive need --index (without it every test"
                          " item is scored)")
    import torch

    from ..data.images import load_rgb
    from ..errors import ConfigError
    from ..evaluation.protocol import cosine_scores, distinct_images, rerank
    from ..evaluation.retrieval import embed_records, top_k
    from ..training.run_loading import load_run
    from ..training.runtime import pick_device

    if args.k < 1:
        raise ConfigError("--k must be at least 1")
    query_image = load_rgb(args.image) if args.image is not None else None  # fail early
    device = pick_device(args.device, key="--device")  # a bad value fails before loading
    loaded = load_run(args.run_dir)
    model = loaded.model.to(device)
    gallery = embed_records(model, loaded.preprocess, loaded.test, device=device,
                            desc="embedding gallery")
    by_id = {r.id: r for r in loaded.test}
    rerank_k = loaded.config.evaluate.rerank_k
    with torch.no_grad():
        notices: list[str] = []
        if args.text is not None:
            before = Counter(getattr(model.text_encoder, "counts", None) or {})
            prepared = loaded.preprocess.text([args.text])
            notices = query_notices(model.text_encoder, before)
            inputs = {k: v.to(device) for k, v in prepared.items()}
            q = model.encode_text(inputs).float().cpu()
            # each image once, though several captions may show it
            rows, _ = distinct_images(gallery.image_keys, len(gallery.ids))
            items = gallery.image[torch.as_tensor(rows)]
            ids = [gallery.ids[r] for r in rows]
            scores = model.score_matrix(q.to(device), items.to(device))[0].numpy()
            first = cosine_scores(q, items)[0] if rerank_k else None
            kind = "image"
        else:
            img = loaded.preprocess.image_eval(query_image).unsqueeze(0).to(device)
            q = model.encode_image(img).float().cpu()
            ids = gallery.ids
            scores = model.score_matrix(gallery.text.to(device), q.to(device))[:, 0].numpy()
            first = cosine_scores(gallery.text, q)[:, 0] if rerank_k else None
            kind = "text"
    # a run that re-ranks its cosine first stage is searched as it was evaluated
    order_by = scores if first is None else rerank(first[None], scores[None], rerank_k)[0]
    results = []
    for rank, idx in enumerate(top_k(order_by, min(args.k, len(scores))), start=1):
        rec = by_id[ids[idx]]
        results.append({"rank": rank, "id": rec.id, "score": float(scores[idx]),
                        "labels": [loaded.classes[i] for i in rec.labels],
                        "text": rec.text if kind == "text" else None,
                        "image": str(rec.image) if not callable(rec.image) else None})
    for note in notices:
        print(f"daer: notice: {note}", file=sys.stderr)
    if args.json:
        print(json.dumps({"query": args.text if args.text is not None else str(args.image),
                          "results_kind": kind, "notices": notices, "results": results},
                         indent=2))
        return EXIT_OK
    print(f"top {len(results)} {kind}s for {'text' if args.text is not None else 'image'} query:")
    for r in results:
        detail = r["text"][:70] if r["text"] else (r["image"] or "")
        print(f"{r['rank']:>3}. {r['score']:.4f}  [{', '.join(r['labels'])}]  {r['id']}  {detail}")
    return EXIT_OK
