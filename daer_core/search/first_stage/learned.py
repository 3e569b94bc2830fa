"""The ``learned`` first stage: two small towers trained on the relation head's ranking of
the training split's pairs (and, optionally, of mined pool items), and that training."""
from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch

from ...errors import DataError
from ...interfaces.relation import emitting_logits
from ..scoring import PairScorer, Side
from .base import FirstStage, teacher_logits
from .closed_form import DistilledStage


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
    fitted = True
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
    def create(cls, scorer, text_emb, image_emb, **options):
        return cls.fit(scorer, text_emb, image_emb, **options)

    @classmethod
    def from_arrays(cls, scorer, arrays, meta):
        return cls(scorer, {side: {k: arrays[f"{side}_{k}"] for k in cls.KEYS}
                            for side in ("text", "image")}, meta.get("settings"))

    @classmethod
    def fit(cls, scorer: PairScorer, text_emb: torch.Tensor, image_emb: torch.Tensor, *,
            rank: int = 128, hidden: int = 256, steps: int = 400, lr: float = 3e-3,
            temperature: float = 0.1, mse_weight: float = 0.1, weight_decay: float = 1e-5,
            seed: int = 0, block_size: int = 256,
            scores: torch.Tensor | None = None,
            pool: dict[str, torch.Tensor] | None = None, pool_items: int = 4096,
            rounds: int = 6, mined: int = 64, drawn: int = 64,
            pool_steps: int = 150, shared_draw: bool = False,
            start: "LearnedStage | None" = None) -> "LearnedStage":
        """``pool``: optional unlabelled item embeddings per side (e.g. the gallery's own
        items). After the fit on the training pairs, each training query's current top
        ``mined`` pool items (by the student) and ``drawn`` random ones are scored by the
        teacher, and ``pool_steps`` more steps fit the listwise loss on those sets too
        (``rounds`` times, re-mining each time): the order among the items a query's
        candidates are drawn from is what recall needs. Six rounds by default: on the
        benchmark model (docs/search.md) 2, 4 and 6 rounds gave recall@10 at 1 % of 0.907,
        0.960 and 0.975 text->image; 2 rounds of 300 steps matched 4 of 150, so it is the
        number of steps on mined sets that counts, not how often they are re-mined.

        ``shared_draw``: one random draw of ``drawn`` pool items a round for every query
        (instead of one per query), so each step runs the towers on the mined rows and a few
        more rather than on ``queries x drawn`` random ones: what makes a pool of 65,536 items
        affordable (the towers only ever run on the distinct rows of the sets).

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
                mined=mined, drawn=drawn, steps=pool_steps, mse_weight=mse_weight,
                shared_draw=shared_draw)
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
                 mse_weight, shared_draw=False) -> tuple[int, torch.Tensor | None]:
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
            top = torch.cat([torch.topk(qv[a:a + 256] @ iv.T, m, dim=1).indices
                             for a in range(0, len(qv), 256)])
            if shared_draw:  # one random draw for every query: few distinct rows a step
                rand = torch.randint(0, n, (1, min(drawn, n)), generator=gen).expand(len(qv), -1)
            else:
                rand = torch.randint(0, n, (len(qv), min(drawn, n)), generator=gen)
            sets = torch.cat([top, rand], dim=1)
            logits = _teacher_sets(scorer, q_side, q_emb[q_side], pool_emb[side], sets)
            # the towers run on the distinct rows of the sets only, not the whole pool
            rows, where = torch.unique(sets, return_inverse=True)
            targets[side] = (rows, where, torch.log_softmax(logits / tau, dim=1), logits)
            count += sets.numel()
        with torch.enable_grad():
            for _ in range(steps):
                u = _tower(params["text"], feats["text"])
                v = _tower(params["image"], feats["image"])
                s = u @ v.T
                loss = (-(log_p_rows.exp() * torch.log_softmax(s / tau, dim=1)).sum(1).mean()
                        - (log_p_cols.exp() * torch.log_softmax(s / tau, dim=0)).sum(0).mean()
                        + mse_weight * ((s - teacher) ** 2).mean() / spread ** 2)
                for side, (rows, where, log_p, logits) in targets.items():
                    q = u if side == "image" else v
                    items = _tower(params[side], pool_f[side][rows])[where]  # (Q, m, r)
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
