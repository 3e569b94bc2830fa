"""First-stage embedding spaces: vectors whose inner product should rank like the relation head.

The relation network is not a metric, so nearest-neighbour search needs a space in which
``<query_vector(q), item_vector(x)>`` orders the gallery as ``score(q, x)`` does; the
second stage then re-scores the candidates exactly. Five spaces are implemented and compared
by ``benchmarks/search_scale.py`` (figures in ``docs/search.md``):

``learned`` (the default, best measured recall)
    two small towers (a linear part started from the ``distilled`` fit plus a one-hidden-layer
    MLP) trained after training with a listwise loss on the relation head's logits of the
    training split's pairs, optionally continued on items mined from a pool of unlabelled
    items (the gallery's own); see :class:`LearnedStage`.
``distilled``
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
``cosine``
    the cosine of the raw embeddings: the first stage a ``contrastive-rerank`` run trained
    (its relation head re-ranks this ranking's top candidates, as at evaluation), and the
    ranking of any contrastive / VSE two-tower model.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from ..errors import ConfigError, DataError
from ..interfaces.relation import emitting_logits
from .scoring import PairScorer, Side

METHODS: tuple[str, ...] = ("learned", "distilled", "taylor", "halves", "embedding", "cosine")
DEFAULT_METHOD = "learned"


def teacher_logits(model, text: torch.Tensor, image: torch.Tensor, *,
                   block_size: int = 256) -> torch.Tensor:
    """The relation head's pre-sigmoid scores of every ``text x image`` pair: what the fitted
    first stages imitate (computed once by ``daer index`` and shared by the fit and the
    gallery refinement). The logit keeps differences among the best items that the sigmoid
    flattens near 1."""
    with torch.no_grad(), emitting_logits(model.relation):
        return model.score_matrix(text, image, block_size=block_size).float().cpu()


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

    def meta(self) -> dict:
        """JSON-ready settings saved beside the arrays (informative)."""
        return {}

    def save(self, path: Path) -> None:
        meta = {"method": self.name, **self.meta()}
        np.savez(path, meta=np.frombuffer(json.dumps(meta).encode(), np.uint8), **self.arrays())


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


class LearnedStage(FirstStage):
    """Two small towers ``u(t)``, ``v(i)`` distilled from the relation head's *ranking*.

    Each tower maps the features the head sees of an item (its enhanced embedding ``f``) to
    ``r`` numbers: ``[f, 1] A + W2 relu(W1 (f - mean) / scale + b1)`` — a linear part,
    initialised with the ``distilled`` bilinear factors (so training starts from that fit),
    plus a one-hidden-layer MLP whose output layer starts at zero. Trained after training on
    the run's training split: the head's logits of every ``text x image`` pair are the
    teacher; the loss is listwise, for each text the cross-entropy between
    ``softmax(teacher row / tau)`` and ``softmax(student row / tau)`` over all training
    images (and the same for each image over the texts), plus a small squared error on the
    logits that keeps the global scale. ``tau`` is ``temperature`` times the mean spread of
    the teacher's rows, so a small temperature puts the weight on the order of each query's
    best items — what the exhaustive top-10 depends on. Full-batch Adam, seeded; a few
    hundred steps take seconds to a minute on a CPU.
    """

    name = "learned"
    KEYS: ClassVar[tuple[str, ...]] = ("lin", "mean", "scale", "w1", "b1", "w2")

    def __init__(self, scorer: PairScorer, towers: dict[str, dict[str, np.ndarray]],
                 settings: dict | None = None):
        super().__init__(scorer)
        self.towers = {side: {k: np.asarray(towers[side][k], np.float32) for k in self.KEYS}
                       for side in ("text", "image")}
        self.settings = dict(settings or {})
        ranks = set()
        for side, t in self.towers.items():
            d = scorer.dim(side)
            h, r = t["w2"].shape
            want = {"lin": (d + 1, r), "mean": (d,), "scale": (d,), "w1": (d, h), "b1": (h,),
                    "w2": (h, r)}
            bad = [k for k in self.KEYS if t[k].shape != want[k]]
            if bad:
                raise DataError(f"learned first stage: {side} tower arrays {bad} have shapes"
                                f" {[t[k].shape for k in bad]}, expected"
                                f" {[want[k] for k in bad]} for the model's width {d}")
            ranks.add(r)
        if len(ranks) != 1:
            raise DataError(f"learned first stage: the towers' widths differ ({sorted(ranks)})")

    @classmethod
    def fit(cls, scorer: PairScorer, text_emb: torch.Tensor, image_emb: torch.Tensor, *,
            rank: int = 128, hidden: int = 256, steps: int = 400, lr: float = 3e-3,
            temperature: float = 0.1, mse_weight: float = 0.1, weight_decay: float = 1e-5,
            seed: int = 0, block_size: int = 256,
            scores: torch.Tensor | None = None,
            pool: dict[str, torch.Tensor] | None = None, pool_items: int = 4096,
            rounds: int = 6, mined: int = 64, drawn: int = 64,
            pool_steps: int = 150, start: "LearnedStage | None" = None) -> "LearnedStage":
        """``pool``: optional unlabelled item embeddings per side (e.g. the gallery's own
        items). After the fit on the training pairs, each training query's current top
        ``mined`` pool items (by the student) and ``drawn`` random ones are scored by the
        teacher, and ``pool_steps`` more steps fit the listwise loss on those sets too
        (``rounds`` times, re-mining each time): the order among the items a query's
        candidates are drawn from is what recall needs. Six rounds by default: on the
        benchmark model (docs/search.md) 2, 4 and 6 rounds gave recall@10 at 1 % of 0.907,
        0.960 and 0.975 text->image; 2 rounds of 300 steps matched 4 of 150, so it is the
        number of steps on mined sets that counts, not how often they are re-mined.

        ``start``: continue from these towers instead of the bilinear fit (``rank`` and
        ``hidden`` are then theirs), e.g. to refine an index's stage on its gallery once the
        gallery is embedded; ``steps=0`` skips straight to the pool."""
        model = scorer.model
        if scores is None:
            scores = teacher_logits(model, text_emb, image_emb, block_size=block_size)
        teacher = scores.float().cpu()
        gen = torch.Generator().manual_seed(seed)
        feats = {"text": scorer.features(text_emb).float().cpu(),
                 "image": scorer.features(image_emb).float().cpu()}
        params: dict[str, dict[str, torch.Tensor]] = {}
        if start is not None:
            params = {side: {k: torch.tensor(v) for k, v in start.towers[side].items()}
                      for side in ("text", "image")}
            hidden = int(params["text"]["w1"].shape[1])
        else:
            base = DistilledStage.fit(scorer, text_emb, image_emb, rank=rank, scores=teacher)
            for side, factor in (("text", base.left), ("image", base.right)):
                f = feats[side]
                d, r = f.shape[1], max(rank, factor.shape[1])
                lin = torch.zeros(d + 1, r)  # the bilinear factors, padded to ``rank`` columns
                lin[:, :factor.shape[1]] = torch.as_tensor(factor, dtype=torch.float32)
                params[side] = {
                    "lin": lin,
                    "mean": f.mean(0), "scale": f.std(0).clamp_min(1e-6),
                    "w1": torch.randn(d, hidden, generator=gen) * (2.0 / d) ** 0.5,
                    "b1": torch.zeros(hidden), "w2": torch.zeros(hidden, r)}
        trainable = [params[s][k] for s in params for k in ("lin", "w1", "b1", "w2")]
        for p in trainable:
            p.requires_grad_(True)
        # tau: ``temperature`` x the mean standard deviation of the teacher's rows and columns
        spread = 0.5 * (teacher.std(1).mean() + teacher.std(0).mean())
        tau = float(temperature * spread)
        log_p_rows = torch.log_softmax(teacher / tau, dim=1)
        log_p_cols = torch.log_softmax(teacher / tau, dim=0)
        opt = torch.optim.Adam(trainable, lr=lr, weight_decay=weight_decay)
        loss = None
        with torch.enable_grad():
            for _ in range(steps):
                u = _tower(params["text"], feats["text"])
                v = _tower(params["image"], feats["image"])
                s = u @ v.T
                rows = -(log_p_rows.exp() * torch.log_softmax(s / tau, dim=1)).sum(1).mean()
                cols = -(log_p_cols.exp() * torch.log_softmax(s / tau, dim=0)).sum(0).mean()
                mse = ((s - teacher) ** 2).mean() / spread ** 2
                loss = rows + cols + mse_weight * mse
                opt.zero_grad()
                loss.backward()
                opt.step()
        mined_sets = 0
        if pool:
            mined_sets, loss = _fit_on_pool(
                scorer, params, feats, (text_emb, image_emb), pool, log_p_rows, log_p_cols,
                teacher, tau, spread, opt, gen, pool_items=pool_items, rounds=rounds,
                mined=mined, drawn=drawn, steps=pool_steps, mse_weight=mse_weight)
        towers = {side: {k: v.detach().numpy() for k, v in params[side].items()}
                  for side in params}
        settings = {"rank": int(params["text"]["lin"].shape[1]), "hidden": hidden,
                    "steps": steps, "lr": lr,
                    "temperature": temperature, "mse_weight": mse_weight,
                    "weight_decay": weight_decay, "seed": seed, "tau": tau,
                    "pairs": [int(teacher.shape[0]), int(teacher.shape[1])],
                    "pool": ({side: int(len(v)) for side, v in pool.items()} if pool else None),
                    "pool_settings": ({"pool_items": pool_items, "rounds": rounds,
                                       "mined": mined, "drawn": drawn, "steps": pool_steps,
                                       "sets": mined_sets} if pool else None),
                    "started_from": (None if start is None else {
                        k: start.settings.get(k) for k in ("steps", "pairs", "pool")}),
                    "final_loss": None if loss is None else float(loss.detach())}
        return cls(scorer, towers, settings)

    def item_dim(self, side):
        return int(self.towers[side]["w2"].shape[1])

    def item_vectors(self, side, emb):
        f = self.scorer.features(emb).float().cpu().numpy()
        t = self.towers[side]
        out = f @ t["lin"][:-1] + t["lin"][-1]
        z = (f - t["mean"]) / t["scale"]
        out += np.maximum(z @ t["w1"] + t["b1"], 0.0) @ t["w2"]
        return out.astype(np.float32)

    def query_vector(self, query_side, emb):
        return self.item_vectors(query_side, emb.reshape(1, -1))

    def meta(self):
        return {"settings": self.settings}

    def arrays(self):
        return {f"{side}_{k}": v for side, t in self.towers.items() for k, v in t.items()}


def _teacher_sets(scorer: PairScorer, query_side: Side, q_emb: torch.Tensor,
                  item_emb: torch.Tensor, sets: torch.Tensor, chunk: int = 64) -> torch.Tensor:
    """The head's logits of query ``q`` with items ``sets[q]``: ``(Q, m)``."""
    model = scorer.model
    item_side: Side = "image" if query_side == "text" else "text"
    out = []
    with torch.no_grad(), emitting_logits(model.relation):
        if scorer.splits:
            qh = scorer.halves(query_side, q_emb)
            ih = scorer.halves(item_side, item_emb)
            for a in range(0, len(sets), chunk):
                h = qh[a:a + chunk, None, :] + ih[sets[a:a + chunk]]
                out.append(model.relation.after_first_layer(h.reshape(-1, h.shape[-1]))
                           .reshape(h.shape[0], h.shape[1]))
        else:
            for q, idx in zip(q_emb, sets):
                items = item_emb[idx]
                out.append(model.pair_scores(q[None], items)[0] if query_side == "text"
                           else model.pair_scores(items, q[None])[:, 0])
            out = [torch.stack(out)]
    return torch.cat(out).float().cpu()


def _fit_on_pool(scorer, params, feats, train_emb, pool, log_p_rows, log_p_cols, teacher,
                 tau, spread, opt, gen, *, pool_items, rounds, mined, drawn, steps,
                 mse_weight) -> tuple[int, torch.Tensor | None]:
    """Continue the fit with mined sets of pool items for the training queries; returns the
    number of (query, item) pairs the teacher scored and the last loss."""
    sides = [s for s in ("text", "image") if s in pool and len(pool[s])]
    pool_emb, pool_f = {}, {}
    for side in sides:
        emb = pool[side]
        if len(emb) > pool_items:
            emb = emb[torch.randperm(len(emb), generator=gen)[:pool_items]]
        pool_emb[side] = emb
        pool_f[side] = scorer.features(emb).float().cpu()
    q_emb = {"text": train_emb[0], "image": train_emb[1]}
    count = 0
    loss = None
    for _ in range(rounds):
        targets = {}
        for side in sides:                       # pool items of ``side``, queries of the other
            q_side: Side = "image" if side == "text" else "text"
            with torch.no_grad():
                qv = _tower(params[q_side], feats[q_side])
                iv = _tower(params[side], pool_f[side])
            n = len(iv)
            m = min(mined, n)
            top = torch.topk(qv @ iv.T, m, dim=1).indices
            rand = torch.randint(0, n, (len(qv), min(drawn, n)), generator=gen)
            sets = torch.cat([top, rand], dim=1)
            logits = _teacher_sets(scorer, q_side, q_emb[q_side], pool_emb[side], sets)
            targets[side] = (sets, torch.log_softmax(logits / tau, dim=1), logits)
            count += sets.numel()
        with torch.enable_grad():
            for _ in range(steps):
                u = _tower(params["text"], feats["text"])
                v = _tower(params["image"], feats["image"])
                s = u @ v.T
                loss = (-(log_p_rows.exp() * torch.log_softmax(s / tau, dim=1)).sum(1).mean()
                        - (log_p_cols.exp() * torch.log_softmax(s / tau, dim=0)).sum(0).mean()
                        + mse_weight * ((s - teacher) ** 2).mean() / spread ** 2)
                for side, (sets, log_p, logits) in targets.items():
                    q = u if side == "image" else v
                    items = _tower(params[side], pool_f[side])[sets]       # (Q, m, r)
                    st = (items * q[:, None, :]).sum(-1)
                    loss = loss - (log_p.exp() * torch.log_softmax(st / tau, dim=1)).sum(1).mean()
                    loss = loss + mse_weight * ((st - logits) ** 2).mean() / spread ** 2
                opt.zero_grad()
                loss.backward()
                opt.step()
    return count, loss


def _tower(p: dict[str, torch.Tensor], f: torch.Tensor) -> torch.Tensor:
    out = f @ p["lin"][:-1] + p["lin"][-1]
    z = (f - p["mean"]) / p["scale"]
    return out + torch.relu(z @ p["w1"] + p["b1"]) @ p["w2"]


def _augment(x: torch.Tensor) -> torch.Tensor:
    return torch.cat([x, torch.ones(x.shape[0], 1, dtype=x.dtype)], dim=1)


def fit_first_stage(method: str, scorer: PairScorer, text_emb: torch.Tensor | None,
                    image_emb: torch.Tensor | None, **options) -> FirstStage:
    """Build the named first stage; ``text_emb``/``image_emb`` are the training split's
    embeddings (used by the methods that learn something from them)."""
    if method in ("learned", "distilled", "taylor") and (text_emb is None or image_emb is None):
        raise ConfigError(f"first stage {method!r} is fitted on training embeddings; none given")
    if method == "learned":
        return LearnedStage.fit(scorer, text_emb, image_emb, **options)
    if method == "distilled":
        return DistilledStage.fit(scorer, text_emb, image_emb, **options)
    if method == "taylor":
        return TaylorStage.fit(scorer, text_emb, image_emb)
    if method == "halves":
        return HalvesStage(scorer)
    if method == "embedding":
        return EmbeddingStage(scorer)
    if method == "cosine":
        return CosineStage(scorer)
    raise ConfigError(f"unknown first stage {method!r}; choose one of {', '.join(METHODS)}")


def load_first_stage(path: Path, scorer: PairScorer) -> FirstStage:
    """Reopen a first stage saved with :meth:`FirstStage.save`."""
    try:
        with np.load(path) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot read the first stage: {exc}") from None
    try:
        meta = json.loads(arrays.pop("meta").tobytes().decode())
        method = meta["method"]
    except (KeyError, ValueError) as exc:
        raise DataError(f"{path}: no readable 'meta' entry: {exc}") from None
    try:
        if method == "learned":
            return LearnedStage(scorer, {side: {k: arrays[f"{side}_{k}"] for k in LearnedStage.KEYS}
                                         for side in ("text", "image")}, meta.get("settings"))
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
    if method == "cosine":
        return CosineStage(scorer)
    raise DataError(f"{path}: unknown first stage {method!r}")
