"""Synthetic paired data shared by the baseline tests (no files, a few hundred rows)."""
from __future__ import annotations

import numpy as np


def make_pairs(n: int = 300, dx: int = 12, dy: int = 7, classes: int = 4, noise: float = 0.5,
               seed: int = 0):
    """Image and text features generated from a shared class-dependent latent variable."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, size=n)
    centres = rng.normal(size=(classes, 3)) * 2.0
    latent = centres[labels] + rng.normal(size=(n, 3))
    x = latent @ rng.normal(size=(3, dx)) + noise * rng.normal(size=(n, dx))
    y = latent @ rng.normal(size=(3, dy)) + noise * rng.normal(size=(n, dy))
    return x, y, labels


def cosine_scores(method, image, text):
    """(texts x images) cosine similarities in the method's common space."""
    a = method.transform_image(image)
    b = method.transform_text(text)
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return b @ a.T
