"""Embedding gallery items: images through DataLoader workers, texts in batches.

Images are decoded lazily in the workers, one item per access, so a gallery of 10^6 files
never sits in memory; a file that does not decode is skipped and reported with its reason
(the item's text, if any, is still indexed — the two sides of an index are independent).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
from torch.utils.data import DataLoader, Dataset

from ..data.images import ImageDecodeError
from .gallery import GalleryItem


class _ItemImages(Dataset):
    def __init__(self, items: Sequence[GalleryItem], positions: Sequence[int], transform: Callable):
        self.items, self.positions, self.transform = items, list(positions), transform

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, i: int):
        pos = self.positions[i]
        item = self.items[pos]
        try:
            from ..data.images import load_rgb
            return pos, self.transform(load_rgb(item.image)), None
        except ImageDecodeError as exc:
            return pos, None, str(exc)
        except Exception as exc:  # noqa: BLE001 - a broken file must not stop a long build
            return pos, None, f"{type(exc).__name__}: {exc}"


def _collate(batch):
    good = [(p, t) for p, t, err in batch if t is not None]
    bad = [(p, err) for p, t, err in batch if t is None]
    tensors = torch.stack([t for _, t in good]) if good else None
    return [p for p, _ in good], tensors, bad


@dataclass
class EmbeddedItems:
    """Embeddings of one group of items; positions index the group's item list."""

    image_pos: list[int] = field(default_factory=list)
    image: torch.Tensor | None = None
    text_pos: list[int] = field(default_factory=list)
    text: torch.Tensor | None = None
    #: (position, reason) of images that could not be decoded
    skipped: list[tuple[int, str]] = field(default_factory=list)


@torch.no_grad()
def embed_items(model, preprocess, items: Sequence[GalleryItem], *, batch_size: int = 64,
                num_workers: int = 0, device: torch.device | str = "cpu",
                progress: Callable[[int], None] | None = None) -> EmbeddedItems:
    """Embed every image and every text of ``items`` (CPU float32 results).

    ``progress(n)`` is called after each batch with the number of items it finished (an
    item counts once, with its image batch, or with its text batch when it has no image), so
    callers can drive one progress bar across many groups.
    """
    device = torch.device(device)
    model.eval()
    out = EmbeddedItems()
    image_positions = [i for i, it in enumerate(items) if it.image is not None]
    text_positions = [i for i, it in enumerate(items) if it.text is not None]
    if image_positions:
        loader = DataLoader(_ItemImages(items, image_positions, preprocess.image_eval),
                            batch_size=batch_size, num_workers=num_workers, collate_fn=_collate)
        chunks = []
        for pos, tensors, bad in loader:
            out.skipped.extend(bad)
            if tensors is not None:
                chunks.append(model.encode_image(tensors.to(device)).float().cpu())
                out.image_pos.extend(pos)
            if progress is not None:
                progress(len(pos) + len(bad))
        out.image = torch.cat(chunks) if chunks else None
    if text_positions:
        chunks = []
        for a in range(0, len(text_positions), batch_size):
            pos = text_positions[a:a + batch_size]
            inputs = {k: v.to(device) for k, v in preprocess.text([items[p].text for p in pos]).items()}
            chunks.append(model.encode_text(inputs).float().cpu())
            out.text_pos.extend(pos)
            if progress is not None:
                progress(sum(1 for p in pos if items[p].image is None))
        out.text = torch.cat(chunks)
    if progress is not None:  # items with neither (nothing to embed) still count as done
        progress(sum(1 for it in items if it.image is None and it.text is None))
    return out
