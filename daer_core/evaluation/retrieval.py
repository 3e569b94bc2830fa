"""Embedding a split, blocked scoring, and ranking for search."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from ..interfaces import PairRecord
from ..interfaces.relation import emitting_logits
from .metrics import retrieval_report

log = logging.getLogger(__name__)


@dataclass
class Embedded:
    """Embeddings of one split (both modalities) with ids and labels, on CPU."""

    ids: list[str]
    text: torch.Tensor
    image: torch.Tensor
    labels: list[tuple[int, ...]]


@torch.no_grad()
def embed_records(model, preprocess, records: Sequence[PairRecord], *, batch_size: int = 64,
                  device: torch.device | str = "cpu", num_workers: int = 0,
                  bf16: bool = False, desc: str = "embedding") -> Embedded:
    """Embed texts and images of ``records`` in eval mode. Undecodable images are skipped
    (with their text, so both galleries stay aligned) and logged. Images are decoded by
    ``num_workers`` processes into pinned memory on CUDA and copied without blocking."""
    from tqdm.auto import tqdm

    from ..data.loader import make_loader
    device = torch.device(device)
    model.eval()
    num_classes = 1 + max((max(r.labels) for r in records if r.labels), default=0)
    loader = make_loader(records, preprocess.image_eval, batch_size=batch_size,
                         num_classes=num_classes, num_workers=num_workers,
                         pin_memory=device.type == "cuda")
    ids, texts, images, labels = [], [], [], []
    by_id = {r.id: r for r in records}
    for batch in tqdm(loader, desc=desc, leave=False, unit="batch", disable=None):
        for rid, reason in batch.skipped:
            log.warning("%s: skipping pair %s: %s", desc, rid, reason)
        if not batch.ids:
            continue
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=bf16):
            inputs = {k: v.to(device, non_blocking=True)
                      for k, v in preprocess.text(batch.texts).items()}
            texts.append(model.encode_text(inputs).float())
            images.append(model.encode_image(batch.images.to(device, non_blocking=True)).float())
        ids.extend(batch.ids)
        labels.extend(by_id[i].labels for i in batch.ids)
    if not ids:
        raise ValueError(f"{desc}: no usable pairs to embed")
    return Embedded(ids, torch.cat(texts).cpu(), torch.cat(images).cpu(), labels)


@torch.no_grad()
def score_embedded(model, emb: Embedded, *, block_size: int = 256,
                   device: torch.device | str = "cpu") -> np.ndarray:
    """``(texts, images)`` ranking scores from the relation head, computed blockwise.

    These are the head's scores before its final sigmoid (same order, no float32
    saturation into ties); see :attr:`~daer_core.interfaces.relation.RelationHead.emit_logits`.
    """
    device = torch.device(device)
    model.eval()
    with emitting_logits(model.relation):
        return model.score_matrix(emb.text.to(device), emb.image.to(device),
                                  block_size=block_size).numpy()


def evaluate_embedded(model, emb: Embedded, *, block_size: int = 256,
                      device: torch.device | str = "cpu", ks: Sequence[int] = (1, 5, 10, 50)
                      ) -> tuple[dict, np.ndarray]:
    scores = score_embedded(model, emb, block_size=block_size, device=device)
    return retrieval_report(scores, emb.labels, emb.labels, ks=ks), scores


def top_k(scores_row: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k best gallery items (stable for ties)."""
    order = np.argsort(-np.asarray(scores_row, dtype=np.float64), kind="stable")
    return order[:k]
