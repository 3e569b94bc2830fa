"""From dataset records to batches — the one loader training, validation and evaluation share.

Designed so that a GPU is never kept waiting by the host:

* **texts are prepared once.** :class:`PreparedTexts` runs the text encoder's ``prepare`` on
  every text of a split one time (after ``fit``), and the loader only pads and stacks the
  stored tensors (:func:`pad_prepared`) — no tokenising inside the training loop;
* **images are decoded lazily in worker processes** (``num_workers``), into pinned memory on
  CUDA, so that host-to-device copies can be ``non_blocking``;
* **shuffling is seeded per epoch** by :class:`EpochSampler`, which also shards the epoch
  between the processes of a ``torchrun`` job; one loader serves a whole stage (workers stay
  alive between epochs) and a resumed run replays exactly the batches an uninterrupted one saw.

Records whose image cannot be decoded are dropped from their batch and reported in
:attr:`Batch.skipped`, for the main process to count and log.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Iterator, Sequence

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from ..interfaces import PairRecord
from .images import ImageDecodeError


def multi_hot(labels: Sequence[Sequence[int]], num_classes: int) -> torch.Tensor:
    """``(N, C)`` float matrix with a 1 for every label of every row."""
    out = torch.zeros(len(labels), num_classes)
    for i, labs in enumerate(labels):
        out[i, list(labs)] = 1.0
    return out


def image_groups(image_keys: Sequence[str]) -> torch.Tensor:
    """``(N,)`` long tensor numbering the distinct images of a batch in order of appearance:
    pairs with equal numbers are captions of one image, which contrastive losses must never
    count as each other's negatives (their image is the positive itself)."""
    seen: dict[str, int] = {}
    return torch.tensor([seen.setdefault(k, len(seen)) for k in image_keys], dtype=torch.long)


class PreparedTexts:
    """The text encoder's ``prepare`` output for every text of a split, computed once.

    Each text is prepared on its own and stored without its batch dimension; batches are
    re-assembled by :func:`pad_prepared`. That contract needs ``prepare`` to pad with zeros
    along the first (sequence) dimension — true of the token-id encoders shipped here, whose
    masks or lengths mark the padding; an encoder that cannot be batched this way sets
    ``prepare_once = False`` and is prepared per batch instead.
    """

    def __init__(self, prepare: Callable[[Sequence[str]], dict[str, torch.Tensor]],
                 texts: Sequence[str]):
        self.items: list[dict[str, torch.Tensor]] = []
        for text in texts:
            batch = prepare([text])
            self.items.append({k: v[0] for k, v in batch.items()})

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return self.items[i]


def pad_prepared(items: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Stack per-text tensors into a batch, zero-padding the first dimension to the longest."""
    out: dict[str, torch.Tensor] = {}
    for key in items[0]:
        parts = [it[key] for it in items]
        if parts[0].dim() == 0:
            out[key] = torch.stack(parts)
            continue
        length = max(p.shape[0] for p in parts)
        batch = parts[0].new_zeros((len(parts), length, *parts[0].shape[1:]))
        for row, p in enumerate(parts):
            batch[row, :p.shape[0]] = p
        out[key] = batch
    return out


class PairTorchDataset(Dataset):
    """Records as loader items; decodes one image per access so large sets never sit in memory."""

    def __init__(self, records: Sequence[PairRecord], image_transform: Callable | None,
                 with_images: bool = True, prepared: PreparedTexts | None = None):
        self.records = list(records)
        self.transform = image_transform
        self.with_images = with_images
        self.prepared = prepared
        if prepared is not None and len(prepared) != len(self.records):
            raise ValueError(f"{len(prepared)} prepared texts for {len(self.records)} records")

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> dict:
        rec = self.records[i]
        image = None
        if self.with_images:
            try:
                image = self.transform(rec.load_image())
            except ImageDecodeError as exc:
                return {"id": rec.id, "skip": str(exc)}
        text_inputs = self.prepared[i] if self.prepared is not None else None
        return {"id": rec.id, "text": rec.text, "text_inputs": text_inputs, "image": image,
                "labels": rec.labels, "image_key": rec.image_key}


@dataclass
class Batch:
    ids: list[str]
    texts: list[str]
    #: padded ``prepare`` output when the texts were prepared once, else None
    text_inputs: dict[str, torch.Tensor] | None
    images: torch.Tensor | None
    labels: torch.Tensor  # (B, C) multi-hot
    #: ``(B,)`` which image each pair shows, numbered within the batch: two captions of one
    #: image share a number (see :func:`image_groups`)
    groups: torch.Tensor | None = None
    #: (id, reason) of records dropped from this batch; counted by the trainer in the main
    #: process (worker processes cannot update shared counters)
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def pin_memory(self) -> "Batch":
        """Called by the DataLoader with ``pin_memory=True`` (page-locked host memory makes
        the copies to the GPU asynchronous)."""
        self.labels = self.labels.pin_memory()
        if self.groups is not None:
            self.groups = self.groups.pin_memory()
        if self.images is not None:
            self.images = self.images.pin_memory()
        if self.text_inputs is not None:
            self.text_inputs = {k: v.pin_memory() for k, v in self.text_inputs.items()}
        return self


class Collate:
    """Items -> :class:`Batch` (a class, so worker processes can receive it)."""

    def __init__(self, num_classes: int):
        self.num_classes = num_classes

    def __call__(self, items: list[dict]) -> Batch:
        good = [it for it in items if "skip" not in it]
        skipped = [(it["id"], it["skip"]) for it in items if "skip" in it]
        images = None
        if good and good[0]["image"] is not None:
            images = torch.stack([it["image"] for it in good])
        text_inputs = None
        if good and good[0]["text_inputs"] is not None:
            text_inputs = pad_prepared([it["text_inputs"] for it in good])
        return Batch(ids=[it["id"] for it in good], texts=[it["text"] for it in good],
                     text_inputs=text_inputs, images=images,
                     labels=multi_hot([it["labels"] for it in good], self.num_classes),
                     groups=image_groups([it["image_key"] for it in good]),
                     skipped=skipped)


class EpochSampler(Sampler[int]):
    """A seeded permutation per epoch, optionally one shard of it per process.

    ``set_epoch(seed)`` fixes the order of the next epoch: every process of a job computes
    the same permutation from the same seed and takes every ``world``-th index starting at its
    ``rank`` (the permutation is padded by wrapping around so shards are equal, as
    ``DistributedSampler`` does). With one process the order is exactly the one earlier
    versions of the trainer used, so runs keep the batches they always had.
    """

    def __init__(self, size: int, *, shuffle: bool = True, rank: int = 0, world: int = 1):
        self.size, self.shuffle, self.rank, self.world = size, shuffle, rank, world
        self.seed = 0

    def set_epoch(self, seed: int) -> None:
        self.seed = int(seed)

    def __len__(self) -> int:
        return math.ceil(self.size / self.world)

    def __iter__(self) -> Iterator[int]:
        if self.shuffle:
            gen = torch.Generator().manual_seed(self.seed)
            # Runs before this sampler existed shuffled with DataLoader(shuffle=True,
            # generator=gen) behind a tqdm bar, which took two values from the generator (for
            # worker seeds) before the permutation; taking them here keeps every earlier run's
            # batches, so its results reproduce exactly.
            for _ in range(2):
                torch.empty((), dtype=torch.int64).random_(generator=gen)
            order = torch.randperm(self.size, generator=gen).tolist()
        else:
            order = list(range(self.size))
        total = len(self) * self.world
        order += order[:total - len(order)]
        return iter(order[self.rank:total:self.world])


def make_loader(records: Sequence[PairRecord], transform: Callable | None, *, batch_size: int,
                num_classes: int, sampler: Sampler | None = None, num_workers: int = 0,
                pin_memory: bool = False, with_images: bool = True,
                prepared: PreparedTexts | None = None,
                generator: torch.Generator | None = None) -> DataLoader:
    """A loader of :class:`Batch` objects; workers persist across epochs. ``generator``
    seeds the workers (each new iteration takes a value from it; None = the global random
    state, as a plain DataLoader does)."""
    return DataLoader(PairTorchDataset(records, transform, with_images, prepared),
                      batch_size=batch_size, sampler=sampler, num_workers=num_workers,
                      collate_fn=Collate(num_classes), drop_last=False,
                      pin_memory=pin_memory, persistent_workers=num_workers > 0,
                      generator=generator)
