"""From dataset records to batches: lazy image decoding, counted skips, label matrices."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
from torch.utils.data import DataLoader, Dataset

from ..data.images import ImageDecodeError
from ..interfaces import PairRecord

log = logging.getLogger(__name__)


def multi_hot(labels: Sequence[Sequence[int]], num_classes: int) -> torch.Tensor:
    out = torch.zeros(len(labels), num_classes)
    for i, labs in enumerate(labels):
        out[i, list(labs)] = 1.0
    return out


def shared_label_target(text_labels: torch.Tensor, image_labels: torch.Tensor) -> torch.Tensor:
    """The Frobenius target T: ``T[q, p] = 1`` when text q and image p share a label.

    Both inputs are ``(N, C)`` multi-hot matrices.
    """
    return (text_labels @ image_labels.T > 0).to(text_labels.dtype)


class PairTorchDataset(Dataset):
    """Wraps records; decodes one image per access so large sets never sit in memory."""

    def __init__(self, records: Sequence[PairRecord], image_transform: Callable | None,
                 with_images: bool = True):
        self.records = list(records)
        self.transform = image_transform
        self.with_images = with_images

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int):
        rec = self.records[i]
        image = None
        if self.with_images:
            try:
                image = self.transform(rec.load_image())
            except ImageDecodeError as exc:
                return {"id": rec.id, "skip": str(exc)}
        return {"id": rec.id, "text": rec.text, "image": image, "labels": rec.labels}


@dataclass
class SkipCounter:
    """Counts records skipped because their image could not be decoded (logged once each)."""

    ids: list[str] = field(default_factory=list)

    def add(self, rid: str, reason: str) -> None:
        if rid not in self.ids:
            log.warning("skipping pair %s: %s", rid, reason)
            self.ids.append(rid)


@dataclass
class Batch:
    ids: list[str]
    texts: list[str]
    images: torch.Tensor | None
    labels: torch.Tensor  # (B, C) multi-hot
    #: (id, reason) of records dropped from this batch; counted by the trainer in the main
    #: process (worker processes cannot update shared counters)
    skipped: list[tuple[str, str]] = field(default_factory=list)


def make_collate(num_classes: int) -> Callable[[list[dict]], Batch]:
    def collate(items: list[dict]) -> Batch:
        good = [it for it in items if "skip" not in it]
        skipped = [(it["id"], it["skip"]) for it in items if "skip" in it]
        images = None
        if good and good[0]["image"] is not None:
            images = torch.stack([it["image"] for it in good])
        return Batch(ids=[it["id"] for it in good], texts=[it["text"] for it in good],
                     images=images, labels=multi_hot([it["labels"] for it in good], num_classes),
                     skipped=skipped)
    return collate


def make_loader(records: Sequence[PairRecord], transform: Callable | None, *, batch_size: int,
                num_classes: int, shuffle: bool = False,
                generator: torch.Generator | None = None, num_workers: int = 0,
                with_images: bool = True) -> DataLoader:
    return DataLoader(PairTorchDataset(records, transform, with_images), batch_size=batch_size,
                      shuffle=shuffle, generator=generator, num_workers=num_workers,
                      collate_fn=make_collate(num_classes), drop_last=False)
