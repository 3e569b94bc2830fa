"""First-stage embedding spaces: vectors whose inner product should rank like the relation head.

The relation network is not a metric, so nearest-neighbour search needs a space in which
``<query_vector(q), item_vector(x)>`` orders the gallery as ``score(q, x)`` does; the
second stage then re-scores the candidates exactly. Four spaces are implemented and compared
by ``benchmarks/search_scale.py`` (figures in ``docs/search.md``):

``distilled`` (the default, best measured recall)
    a low-rank bilinear form fitted after training. On the run's training split every text x
    image pair is scored by the relation head, and ``M`` minimises
    ``||X M Y^T - logit(S)||^2 + ridge`` in closed form, where the rows of ``X``/``Y`` are the
    features the head sees (enhanced embeddings) with a constant 1 appended (so per-item
    offsets are fitted too). ``M = L R^T`` by SVD; text items get ``L^T x``, image items
    ``R^T y``, and a query gets the other factor. No gradient steps, seconds to fit.
``taylor``
    the head linearised around the mean item half: a query ranks items by the gradient of
    ``g`` at ``query_half + mean_half``, mapped back through the first layer.
``halves``
    the plain inner product of the first-layer halves.
``embedding``
    the inner product of the raw embeddings (needs equal widths).
"""
from __future__ import annotations

import json
from contextlib import nullcontext
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from ..errors import ConfigError, DataError
from ..interfaces.relation import emitting_logits
from .scoring import PairScorer, Side

METHODS: tuple[str, ...] = ("distilled", "taylor", "halves", "embedding")
DEFAULT_METHOD = "distilled"


class FirstStage:
    """Maps items and queries into the space the ANN index searches."""

    name: ClassVar[str]

    def __init__(self, scorer: PairScorer):
        self.scorer = scorer

    def item_dim(self, side: Side) -> int:
        """Width of the vectors of items of ``side`` (and of the queries that search them)."""
        raise NotImplementedError

    def item_vectors(self, side: Side, emb: torch.Tensor) -> np.ndarray:
        """``(N, dim)`` float32 vectors of items of ``side`` from their raw embeddings."""
        raise NotImplementedError

    def query_vector(self, query_side: Side, emb: torch.Tensor) -> np.ndarray:
        """``(1, dim)`` float32 vector of one query of ``query_side``."""
        raise NotImplementedError

    def arrays(self) -> dict[str, np.ndarray]:
        """What must be saved to rebuild this stage (besides the model)."""
        return {}

    def save(self, path: Path) -> None:
        np.savez(path, meta=np.frombuffer(json.dumps({"method": self.name}).encode(), np.uint8),
                 **self.arrays())


class EmbeddingStage(FirstStage):
    name = "embedding"

    def __init__(self, scorer: PairScorer):
        super().__init__(scorer)
        if scorer.text_dim != scorer.image_dim:
            raise ConfigError(f"first stage 'embedding' needs equal text and image widths, got"
                              f" {scorer.text_dim} and {scorer.image_dim}")

    def item_dim(self, side):
        return self.scorer.text_dim

    def item_vectors(self, side, emb):
        return emb.float().cpu().numpy().astype(np.float32)

    def query_vector(self, query_side, emb):
        return emb.reshape(1, -1).float().cpu().numpy().astype(np.float32)


class HalvesStage(FirstStage):
    name = "halves"

    def __init__(self, scorer: PairScorer):
        super().__init__(scorer)
        if not scorer.splits:
            raise ConfigError("first stage 'halves' needs a relation head that splits per"
                              " modality (concat fusion, element-wise enhancement, linear"
                              " first layer)")

    def item_dim(self, side):
        return self.scorer.hidden_dim

    def item_vectors(self, side, emb):
        return self.scorer.halves(side, emb).float().cpu().numpy()

    def query_vector(self, query_side, emb):
        return self.scorer.halves(query_side, emb.reshape(1, -1)).float().cpu().numpy()


class TaylorStage(FirstStage):
    """Linearisation of ``g`` around ``query_half + mean_half[item side]``."""

    name = "taylor"

    def __init__(self, scorer: PairScorer, mean_half: dict[str, np.ndarray]):
        super().__init__(scorer)
        if not scorer.splits:
            raise ConfigError("first stage 'taylor' needs a relation head that splits per"
                              " modality")
        self.mean_half = {k: np.asarray(v, np.float32) for k, v in mean_half.items()}

    @classmethod
    def fit(cls, scorer: PairScorer, text_emb: torch.Tensor, image_emb: torch.Tensor
            ) -> "TaylorStage":
        return cls(scorer, {"text": scorer.halves("text", text_emb).mean(0).cpu().numpy(),
                            "image": scorer.halves("image", image_emb).mean(0).cpu().numpy()})

    def item_dim(self, side):
        return self.scorer.dim(side)

    def item_vectors(self, side, emb):
        with torch.no_grad():
            return self.scorer.features(emb).float().cpu().numpy()

    def query_vector(self, query_side, emb):
        item_side: Side = "image" if query_side == "text" else "text"
        model = self.scorer.model
        dev = next(model.parameters()).device
        with torch.no_grad():
            q_half = self.scorer.halves(query_side, emb.reshape(1, -1).to(dev))
        point = (q_half + torch.as_tensor(self.mean_half[item_side], device=dev)).detach()
        point.requires_grad_(True)
        with torch.enable_grad():
            model.relation.after_first_layer(point).sum().backward()
        grad = point.grad.detach()                                    # (1, H)
        weight = model.relation.first_layer().weight.detach()         # (H, Dt + Di)
        dt = self.scorer.text_dim
        w_item = weight[:, dt:] if item_side == "image" else weight[:, :dt]
        return (grad @ w_item).float().cpu().numpy()

    def arrays(self):
        return {"mean_half_text": self.mean_half["text"], "mean_half_image": self.mean_half["image"]}


class DistilledStage(FirstStage):
    """``score(t, i) ~ [f(t), 1] L R^T [f(i), 1]^T``, fitted on the training split's pairs."""

    name = "distilled"

    def __init__(self, scorer: PairScorer, left: np.ndarray, right: np.ndarray):
        super().__init__(scorer)
        self.left = np.asarray(left, np.float32)    # (Dt + 1, r)
        self.right = np.asarray(right, np.float32)  # (Di + 1, r)
        if self.left.shape != (scorer.text_dim + 1, self.left.shape[1]) or \
                self.right.shape != (scorer.image_dim + 1, self.left.shape[1]):
            raise DataError(f"distilled first stage: factor shapes {self.left.shape} and"
                            f" {self.right.shape} do not fit the model's widths"
                            f" {scorer.text_dim}/{scorer.image_dim}")

    @classmethod
    def fit(cls, scorer: PairScorer, text_emb: torch.Tensor, image_emb: torch.Tensor, *,
            rank: int | None = None, ridge: float = 1e-3, target: str = "logit",
            block_size: int = 256) -> "DistilledStage":
        """Closed-form ridge fit of the bilinear form on all ``text x image`` pairs given.

        ``target='logit'`` fits the head's pre-sigmoid score, which keeps differences among
        the best items that the sigmoid flattens near 1.
        """
        model = scorer.model
        if target not in ("logit", "score"):
            raise ConfigError(f"distilled first stage: unknown target {target!r}")
        with emitting_logits(model.relation) if target == "logit" else nullcontext():
            scores = model.score_matrix(text_emb, image_emb, block_size=block_size).double()
        with torch.no_grad():
            x = _augment(scorer.features(text_emb).double().cpu())
            y = _augment(scorer.features(image_emb).double().cpu())
        s = scores.cpu()
        gx, gy = x.T @ x, y.T @ y
        gx += torch.eye(gx.shape[0], dtype=gx.dtype) * ridge * torch.trace(gx) / gx.shape[0]
        gy += torch.eye(gy.shape[0], dtype=gy.dtype) * ridge * torch.trace(gy) / gy.shape[0]
        m = torch.linalg.solve(gx, x.T @ s @ y) @ torch.linalg.inv(gy)   # (Dt+1, Di+1)
        u, sv, vh = torch.linalg.svd(m, full_matrices=False)
        r = len(sv) if rank is None else max(1, min(rank, len(sv)))
        root = sv[:r].sqrt()
        return cls(scorer, (u[:, :r] * root).numpy(), (vh[:r].T * root).numpy())

    def item_dim(self, side):
        return int(self.left.shape[1])

    def _factor(self, side: Side) -> np.ndarray:
        return self.left if side == "text" else self.right

    def item_vectors(self, side, emb):
        with torch.no_grad():
            f = _augment(self.scorer.features(emb).float().cpu()).numpy()
        return (f @ self._factor(side)).astype(np.float32)

    def query_vector(self, query_side, emb):
        return self.item_vectors(query_side, emb.reshape(1, -1))

    def arrays(self):
        return {"left": self.left, "right": self.right}


def _augment(x: torch.Tensor) -> torch.Tensor:
    return torch.cat([x, torch.ones(x.shape[0], 1, dtype=x.dtype)], dim=1)


def fit_first_stage(method: str, scorer: PairScorer, text_emb: torch.Tensor | None,
                    image_emb: torch.Tensor | None, **options) -> FirstStage:
    """Build the named first stage; ``text_emb``/``image_emb`` are the training split's
    embeddings (used by the methods that learn something from them)."""
    if method in ("distilled", "taylor") and (text_emb is None or image_emb is None):
        raise ConfigError(f"first stage {method!r} is fitted on training embeddings; none given")
    if method == "distilled":
        return DistilledStage.fit(scorer, text_emb, image_emb, **options)
    if method == "taylor":
        return TaylorStage.fit(scorer, text_emb, image_emb)
    if method == "halves":
        return HalvesStage(scorer)
    if method == "embedding":
        return EmbeddingStage(scorer)
    raise ConfigError(f"unknown first stage {method!r}; choose one of {', '.join(METHODS)}")


def load_first_stage(path: Path, scorer: PairScorer) -> FirstStage:
    """Reopen a first stage saved with :meth:`FirstStage.save`."""
    try:
        with np.load(path) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot read the first stage: {exc}") from None
    try:
        method = json.loads(arrays.pop("meta").tobytes().decode())["method"]
    except (KeyError, ValueError) as exc:
        raise DataError(f"{path}: no readable 'meta' entry: {exc}") from None
    try:
        if method == "distilled":
            return DistilledStage(scorer, arrays["left"], arrays["right"])
        if method == "taylor":
            return TaylorStage(scorer, {"text": arrays["mean_half_text"],
                                        "image": arrays["mean_half_image"]})
    except KeyError as exc:
        raise DataError(f"{path}: first stage {method!r} lacks the array {exc}") from None
    if method == "halves":
        return HalvesStage(scorer)
    if method == "embedding":
        return EmbeddingStage(scorer)
    raise DataError(f"{path}: unknown first stage {method!r}")
