"""Seeded, reproducible split arithmetic shared by the dataset plugins.

Every function here is a pure function of its arguments (numpy ``Generator`` seeded with an
integer, never Python's ``hash``), so the same seed gives the same split on any machine.
"""
from __future__ import annotations

import math
from typing import Annotated, Sequence, TypeVar

import numpy as np
from pydantic import AfterValidator

T = TypeVar("T")


def sizes_from_fractions(total: int, fractions: Sequence[float]) -> tuple[int, ...]:
    """Split ``total`` items into integer parts proportional to ``fractions``.

    Fractions are normalised to sum to one; rounding leftovers go to the parts with the
    largest remainders (ties: earlier part first), so the sizes always add up to ``total``.
    """
    fr = np.asarray(list(fractions), dtype=float)
    if total < 0:
        raise ValueError(f"total must be >= 0, got {total}")
    if fr.size == 0 or np.any(fr < 0) or fr.sum() <= 0:
        raise ValueError(f"split fractions must be non-negative and not all zero, got "
                         f"{list(fractions)}")
    exact = fr / fr.sum() * total
    sizes = np.floor(exact).astype(int)
    leftover = total - int(sizes.sum())
    order = sorted(range(len(fr)), key=lambda i: (-(exact[i] - sizes[i]), i))
    for i in order[:leftover]:
        sizes[i] += 1
    return tuple(int(s) for s in sizes)


def _check_fractions(value: tuple[float, float, float]) -> tuple[float, float, float]:
    if any(not math.isfinite(f) or f < 0 for f in value) or sum(value) <= 0:
        raise ValueError(f"train / val / test fractions must be finite, non-negative and not"
                         f" all zero, got {list(value)}")
    return value


#: a dataset param of train / val / test fractions, checked when the config is validated
#: (``daer config validate`` then rejects what loading the data would reject)
SplitFractions = Annotated[tuple[float, float, float], AfterValidator(_check_fractions)]


def seeded_permutation(n: int, seed: int) -> np.ndarray:
    """A permutation of ``range(n)`` that depends only on ``n`` and ``seed``."""
    return np.random.default_rng(seed).permutation(n)


def partition(items: Sequence[T], sizes: Sequence[int], seed: int | None) -> list[list[T]]:
    """Cut ``items`` into consecutive parts of ``sizes`` after an optional seeded shuffle.

    Each part keeps the original relative order of its items, so a split listed in a file
    reads in file order.
    """
    if sum(sizes) != len(items):
        raise ValueError(f"split sizes {list(sizes)} do not add up to {len(items)} items")
    order = (np.arange(len(items)) if seed is None else seeded_permutation(len(items), seed))
    parts: list[list[T]] = []
    start = 0
    for size in sizes:
        idx = sorted(int(i) for i in order[start:start + size])
        parts.append([items[i] for i in idx])
        start += size
    return parts


def carve(items: Sequence[T], fraction: float, seed: int) -> tuple[list[T], list[T]]:
    """Split ``items`` into (kept, carved): a seeded ``fraction`` is carved out (e.g. a
    validation part taken from a standard training list)."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"carve fraction must be in [0, 1), got {fraction}")
    n_carved = int(round(len(items) * fraction))
    carved, kept = partition(items, [n_carved, len(items) - n_carved], seed)
    return kept, carved


def stratified_assign(labels: Sequence[int], fractions: Sequence[float],
                      seed: int) -> list[int]:
    """Assign each item a part index so every class is split in ``fractions`` (seeded).

    Classes are visited in sorted order with one generator, so the result depends only on
    the labels, the fractions and the seed.
    """
    rng = np.random.default_rng(seed)
    out = [0] * len(labels)
    by_class: dict[int, list[int]] = {}
    for i, lab in enumerate(labels):
        by_class.setdefault(int(lab), []).append(i)
    for lab in sorted(by_class):
        members = by_class[lab]
        order = rng.permutation(len(members))
        start = 0
        for part, size in enumerate(sizes_from_fractions(len(members), fractions)):
            for j in order[start:start + size]:
                out[members[int(j)]] = part
            start += size
    return out
