"""Validation on a run's validation split (never the test split), after every epoch.

A recipe's stage says what its score is (:attr:`~daer_core.interfaces.StageSpec.validation`):
``accuracy`` of the recipe's classifier (:func:`accuracy`), or the retrieval figures under the
run's protocol (:func:`retrieval`): mAP average for category-level data, mean Recall@K for
instance-level data. Under ``torchrun`` each process scores its share (:func:`shard`) and
the figures are summed or gathered across processes.
"""
from __future__ import annotations

from typing import Callable

import torch

from ..evaluation.protocol import evaluate_split
from ..evaluation.retrieval import Embedded, embed_records, evaluate_embedded
from ..interfaces import StageSpec


def shard(records: list, dist) -> list:
    """This process's share of an evaluation split (every ``world``-th record)."""
    return records[dist.rank::dist.world] if dist.enabled else records


@torch.no_grad()
def accuracy(recipe, stage: str, spec: StageSpec, model, heads, records: list, *,
             batches, dist, device: torch.device) -> dict[str, float]:
    """The recipe's classification accuracy on ``records``, as ``val_accuracy`` and
    ``score``."""
    loader = batches.loader("val", spec, 64, train=False,
                            records=shard(records, dist) if dist.enabled else None)
    counts = torch.zeros(2, dtype=torch.float64, device=device)
    for batch in loader:
        if not batch.ids:
            continue
        tb = batches.on_device(batch, spec)
        with batches.autocast():
            logits = recipe.classify(stage, model, heads, tb)
        pred = logits.float().argmax(dim=1)
        counts[0] += tb.labels[torch.arange(len(pred), device=device), pred].sum()
        counts[1] += len(pred)
    correct, n = dist.sum(counts).tolist()
    return {"val_accuracy": correct / max(n, 1), "score": correct / max(n, 1)}


def retrieval(model, emb: Embedded, config, protocol: str, *, device: torch.device,
              scorer: str = "relation",
              category_fn: Callable = evaluate_embedded) -> dict[str, float]:
    """The validation split's retrieval figures under the run's protocol, with ``score``
    (mAP average, or mean Recall@K). Category-level scoring by the relation head goes
    through ``category_fn`` (:func:`~daer_core.evaluation.retrieval.evaluate_embedded`; the
    trainer passes the one its module holds, the seam tests script validation scores with)."""
    ec = config.evaluate
    if protocol == "category" and scorer == "relation":
        rep, _ = category_fn(model, emb, block_size=ec.block_size, device=device, ks=ec.ks,
                             bf16=ec.bf16)
        return {"val_i2t": rep["i2t"], "val_t2i": rep["t2i"], "val_avg": rep["avg"],
                "score": rep["avg"]}
    rep, _ = evaluate_split(model, emb, ec, protocol, device=device, scorer=scorer,
                            with_category=False)
    if protocol == "category":
        return {"val_i2t": rep["i2t"], "val_t2i": rep["t2i"], "val_avg": rep["avg"],
                "score": rep["score"]}
    inst = rep["instance"]
    out = {"val_rsum": inst["rsum"]}
    if "r@1" in inst["i2t"]:
        out["val_r1"] = (inst["i2t"]["r@1"] + inst["t2i"]["r@1"]) / 2
    return {**out, "val_score": rep["score"], "score": rep["score"]}


def embed(model, preprocess, records: list, desc: str, *, dist, device: torch.device,
          bf16: bool, num_workers: int, embed_fn: Callable = embed_records) -> Embedded:
    """Embeddings of ``records``; under ``torchrun`` each process embeds its share and all
    of them receive the whole split, in the split's order."""
    emb = embed_fn(model, preprocess, shard(records, dist), device=device, bf16=bf16,
                   desc=desc, num_workers=num_workers)
    if not dist.enabled:
        return emb
    parts = {e_id: (t, i, lab) for part in dist.gather(emb)
             for e_id, t, i, lab in zip(part.ids, part.text, part.image, part.labels)}
    ids = [r.id for r in records if r.id in parts]
    return Embedded(ids, torch.stack([parts[i][0] for i in ids]),
                    torch.stack([parts[i][1] for i in ids]), [parts[i][2] for i in ids],
                    [r.image_key for r in records if r.id in parts])
