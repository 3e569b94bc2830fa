"""The first stages computed in closed form or read off the weights: ``distilled`` (a ridge
fit of a low-rank bilinear form), ``taylor`` (the head linearised around the mean item half),
``halves`` (the first-layer halves), ``embedding`` and ``cosine`` (the raw embeddings).
What each one is: the docstring of :mod:`daer_core.search.first_stage`."""
from __future__ import annotations

import numpy as np
import torch

from ...errors import ConfigError, DataError
from ..scoring import PairScorer, Side
from .base import FirstStage, teacher_logits


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


class CosineStage(EmbeddingStage):
    name = "cosine"

    def item_vectors(self, side, emb):
        return _unit_rows(super().item_vectors(side, emb))

    def query_vector(self, query_side, emb):
        return _unit_rows(super().query_vector(query_side, emb))


def _unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to length 1 (a zero row stays zero), so inner products are cosines."""
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.where(norms > 0, norms, 1.0)).astype(np.float32)


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
    fitted = True

    def __init__(self, scorer: PairScorer, mean_half: dict[str, np.ndarray]):
        super().__init__(scorer)
        if not scorer.splits:
            raise ConfigError("first stage 'taylor' needs a relation head that splits per"
                              " modality")
        self.mean_half = {k: np.asarray(v, np.float32) for k, v in mean_half.items()}

    @classmethod
    def create(cls, scorer, text_emb, image_emb, **options):
        return cls.fit(scorer, text_emb, image_emb)   # nothing to set: ``options`` unused

    @classmethod
    def from_arrays(cls, scorer, arrays, meta):
        return cls(scorer, {"text": arrays["mean_half_text"],
                            "image": arrays["mean_half_image"]})

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
    fitted = True

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
    def create(cls, scorer, text_emb, image_emb, **options):
        return cls.fit(scorer, text_emb, image_emb, **options)

    @classmethod
    def from_arrays(cls, scorer, arrays, meta):
        return cls(scorer, arrays["left"], arrays["right"])

    @classmethod
    def fit(cls, scorer: PairScorer, text_emb: torch.Tensor, image_emb: torch.Tensor, *,
            rank: int | None = None, ridge: float = 1e-3, target: str = "logit",
            block_size: int = 256, scores: torch.Tensor | None = None) -> "DistilledStage":
        """Closed-form ridge fit of the bilinear form on all ``text x image`` pairs given.

        ``target='logit'`` fits the head's pre-sigmoid score, which keeps differences among
        the best items that the sigmoid flattens near 1. ``scores``: the ``text x image``
        target matrix when the caller has it already.
        """
        model = scorer.model
        if target not in ("logit", "score"):
            raise ConfigError(f"distilled first stage: unknown target {target!r}")
        if scores is None and target == "logit":
            scores = teacher_logits(model, text_emb, image_emb, block_size=block_size)
        elif scores is None:
            with torch.no_grad():
                scores = model.score_matrix(text_emb, image_emb, block_size=block_size)
        scores = scores.double()
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
