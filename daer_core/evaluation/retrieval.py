"""Embedding a split, blocked scoring, and ranking for search."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from ..interfaces import PairRecord
from ..interfaces.relation import emitting_logits
from ..precision import bf16_native
from .metrics import retrieval_report

log = logging.getLogger(__name__)


@dataclass
class Embedded:
    """Embeddings of one split (both modalities) with ids and labels, on CPU."""

    ids: list[str]
    text: torch.Tensor
    image: torch.Tensor
    labels: list[tuple[int, ...]]
    #: the image each pair shows (:attr:`PairRecord.image_key`); None = one image per pair
    image_keys: list[str] | None = None


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
    ids, texts, images, labels, keys = [], [], [], [], []
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
        keys.extend(by_id[i].image_key for i in batch.ids)
    if not ids:
        raise ValueError(f"{desc}: no usable pairs to embed")
    return Embedded(ids, torch.cat(texts).cpu(), torch.cat(images).cpu(), labels, keys)


def resolve_scoring_bf16(setting: bool | str, device: torch.device | str) -> bool:
    """``evaluate.bf16`` (``auto``, true or false) for ``device``."""
    if setting == "auto":
        return bf16_native(device)
    if not isinstance(setting, bool):
        raise ValueError(f"evaluate.bf16 must be auto, true or false, got {setting!r}")
    if setting and not bf16_native(device):
        log.warning("evaluate.bf16: true on %s, which has no native bf16 matrix products "
                    "(needs CUDA with bf16, or a CPU with AMX/AVX512-BF16): scoring will be "
                    "much slower than float32; set evaluate.bf16: auto", torch.device(device))
    return setting


@torch.no_grad()
def score_embedded(model, emb: Embedded, *, block_size: int = 256,
                   device: torch.device | str = "cpu", bf16: bool | str = False) -> np.ndarray:
    """``(texts, images)`` ranking scores from the relation head, computed blockwise.

    These are the head's scores before its final sigmoid (same order, no float32
    saturation into ties); see :attr:`~daer_core.interfaces.relation.RelationHead.emit_logits`.
    ``bf16`` is ``evaluate.bf16`` (see :func:`resolve_scoring_bf16`).
    """
    device = torch.device(device)
    model.eval()
    with emitting_logits(model.relation):
        return model.score_matrix(emb.text.to(device), emb.image.to(device),
                                  block_size=block_size,
                                  bf16=resolve_scoring_bf16(bf16, device)).numpy()


def evaluate_embedded(model, emb: Embedded, *, block_size: int = 256,
                      device: torch.device | str = "cpu", ks: Sequence[int] = (1, 5, 10, 50),
                      bf16: bool | str = False) -> tuple[dict, np.ndarray]:
    scores = score_embedded(model, emb, block_size=block_size, device=device, bf16=bf16)
    return retrieval_report(scores, emb.labels, emb.labels, ks=ks), scores


def top_k(scores_row: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k best gallery items (stable for ties)."""
    order = np.argsort(-np.asarray(scores_row, dtype=np.float64), kind="stable")
    return order[:k]
