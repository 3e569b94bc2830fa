"""``acmr`` — Adversarial Cross-Modal Retrieval (Wang, Yang, Xu, Hanjalic & Shen, ACM MM 2017).

Two processes play against each other on every batch:

* the **feature projector** — the run's two encoders (``vector-mlp`` on a ``features``
  dataset) map image and text vectors into one common space ``s_V``, ``s_T`` of width ``d``.
  It minimises the embedding loss ``L_emb = alpha L_imi + beta L_imd + L_reg``:

  - ``L_imd`` (*intra-modal discrimination*): a label classifier shared by both modalities,
    one linear layer ``d -> C``, cross entropy on ``s_V`` plus cross entropy on ``s_T``
    (binary cross entropy for multi-label data);
  - ``L_imi`` (*inter-modal invariance*): triplet ranking constraints with an image anchor
    (its paired text positive, a text of another class negative) and with a text anchor (the
    same the other way round), ``max(0, margin + ||v_i - t_i||^2 - ||v_i - t_k||^2)``, the
    negative being the hardest one of the batch (closest in the common space, sharing no
    label with the anchor); the mean over anchors, image anchors plus text anchors;
  - ``L_reg``: the Frobenius norms of the projectors' weight matrices, times ``reg_weight``;

  and it *maximises* the modality classifier's loss ``L_adv``: the projector's step
  minimises ``L_emb + L_adv(D(GRL(s)))``, where the gradient reversal layer ``GRL`` is the
  identity forwards and multiplies the gradient by ``-lambda`` backwards — so the projector
  descends ``L_emb - lambda L_adv`` in one backward pass;
* the **modality classifier** ``D`` (``d -> d/2 -> d/4 -> 2``, ReLU between) tells image
  embeddings (class 0) from text embeddings (class 1), cross entropy ``L_adv``.

One stage, ``acmr``, with two optimizer steps per batch, in this order (the alternating
optimisation of the paper's Algorithm 1 with one projector step per classifier step):
``features`` (projectors + label classifier, on ``L_emb - lambda L_adv``) and then
``modality`` (the modality classifier alone, on ``L_adv`` of the *updated* projector's
embeddings, which it does not change).

``lambda`` follows the authors' public code: ``2 / (1 + exp(-10 p)) - 1`` times
``grl_weight``, with ``p`` the share of ``grl_ramp_steps`` batches done so far (0 at the first
batch, 1 from then on); ``grl_ramp_steps: 0`` keeps ``lambda = grl_weight`` throughout. The
batch counter lives in a buffer of the recipe's extra modules, so it is checkpointed and an
interrupted run resumes with the same ``lambda``.
"""
from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from daer_core.interfaces import StageSpec, TrainBatch, TrainingRecipe
from registry import Params

from .daer_three_stage import classification_loss, common_space_dim


class ACMRParams(Params):
    """Params of the ``acmr`` recipe. Defaults follow the authors' public code for
    Wikipedia (``ACMR_demo``), which the paper's experiments used."""

    alpha: float = Field(1.0, ge=0, description="weight of the inter-modal invariance "
                         "(triplet) loss L_imi")
    beta: float = Field(100.0, ge=0, description="weight of the intra-modal discrimination "
                        "(label classification) loss L_imd")
    margin: float = Field(0.1, ge=0, description="triplet margin (on squared distances)")
    reg_weight: float = Field(0.0, ge=0, description="weight of L_reg, the Frobenius norms of "
                              "the projectors' weights (the public code leaves it out)")
    triplet: Literal["per-anchor", "batch-sum"] = Field(
        "per-anchor", description="per-anchor: the mean over anchors of one hinge each (the "
        "paper's Eq. 4-5 read per triplet); batch-sum: one hinge per direction on the batch "
        "sums of the squared distances halved, as the public code's l2_loss terms are "
        "(docs/baselines.md)")
    positive_weight: float = Field(
        1.0, ge=0, description="factor on the positive (own-pair) distance inside the hinge "
                               "(the public code: 5)")
    grl_weight: float = Field(1.0, ge=0, description="largest gradient-reversal factor lambda")
    grl_ramp_steps: int = Field(
        1700, ge=0, description="batches over which lambda ramps as 2/(1+exp(-10p))-1 (the "
        "public code's schedule over 50 epochs of 34 batches); 0 = constant lambda")


class GradientReversal(torch.autograd.Function):
    """Identity forwards; the gradient times ``-lambda`` backwards."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, lam: float) -> torch.Tensor:
        ctx.lam = float(lam)
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return grad.neg() * ctx.lam, None


def reverse_gradient(x: torch.Tensor, lam: float) -> torch.Tensor:
    return GradientReversal.apply(x, lam)


def grl_lambda(done: float, ramp_steps: int, weight: float) -> float:
    """``weight * (2 / (1 + exp(-10 p)) - 1)``, ``p = min(1, done / ramp_steps)``."""
    if ramp_steps <= 0:
        return float(weight)
    p = min(1.0, done / ramp_steps)
    return float(weight) * (2.0 / (1.0 + math.exp(-10.0 * p)) - 1.0)


def no_shared_label(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``(N, M)`` boolean: row i of ``a`` and row j of ``b`` (multi-hot) share no label."""
    return (a.float() @ b.float().T) == 0


def triplet_loss(anchor: torch.Tensor, other: torch.Tensor, labels: torch.Tensor,
                 margin: float, *, positive_weight: float = 1.0,
                 form: str = "per-anchor") -> torch.Tensor:
    """Anchors of one modality against the other: positive = the anchor's own pair, negative
    = the closest item of the other modality sharing no label (anchors without a negative in
    the batch take no part).

    ``per-anchor``: ``mean_i [margin + w d(i, i) - d(i, neg_i)]_+`` with squared Euclidean
    distances ``d``. ``batch-sum`` (the public code): one hinge on the batch sums of the
    distances halved, ``[margin + w/2 sum_i d(i, i) - 1/2 sum_i d(i, neg_i)]_+``.
    """
    dist = torch.cdist(anchor.float(), other.float()).pow(2)           # (B, B) squared L2
    negatives = no_shared_label(labels, labels)
    hardest = dist.masked_fill(~negatives, float("inf")).min(dim=1).values
    has = negatives.any(dim=1)
    positive = dist.diagonal()
    if form == "batch-sum":
        if not bool(has.any()):
            return dist.sum() * 0.0
        return F.relu(margin + 0.5 * positive_weight * positive[has].sum()
                      - 0.5 * hardest[has].sum())
    hinge = F.relu(margin + positive_weight * positive - torch.where(has, hardest, positive))
    return torch.where(has, hinge, torch.zeros_like(hinge)).mean()


def modality_loss(classifier: nn.Module, image: torch.Tensor, text: torch.Tensor
                  ) -> torch.Tensor:
    """Cross entropy of the modality classifier: images are class 0, texts class 1."""
    logits = classifier(torch.cat([image, text])).float()
    target = torch.cat([torch.zeros(len(image), dtype=torch.long, device=logits.device),
                        torch.ones(len(text), dtype=torch.long, device=logits.device)])
    return F.cross_entropy(logits, target)


def frobenius_norms(*modules: nn.Module) -> torch.Tensor:
    """Sum of the Frobenius norms of the weight matrices of every linear layer."""
    norms = [m.weight.float().norm() for mod in modules for m in mod.modules()
             if isinstance(m, nn.Linear) and not isinstance(
                 m.weight, nn.parameter.UninitializedParameter)]
    return torch.stack(norms).sum() if norms else torch.zeros(())


class BatchCounter(nn.Module):
    """Batches trained so far (a buffer: saved in checkpoints with the other extra modules)."""

    def __init__(self):
        super().__init__()
        self.register_buffer("done", torch.zeros((), dtype=torch.float64))


class ModalityClassifier(nn.Sequential):
    def __init__(self, dim: int):
        super().__init__(nn.Linear(dim, max(1, dim // 2)), nn.ReLU(),
                         nn.Linear(max(1, dim // 2), max(1, dim // 4)), nn.ReLU(),
                         nn.Linear(max(1, dim // 4), 2))


class ACMR(TrainingRecipe):
    """Feature projectors + label classifier against a modality classifier (see module)."""

    stages = (StageSpec("acmr", "ACMR adversarial training", validation="retrieval",
                        min_batch=2, steps=("features", "modality")),)

    def __init__(self, params: ACMRParams | None = None):
        self.params = params or ACMRParams()
        self.multi_label = False

    def setup(self, model: nn.Module, num_classes: int, multi_label: bool
              ) -> dict[str, nn.Module]:
        self.multi_label = multi_label
        dim = common_space_dim(model, "acmr")
        return {"label": nn.Linear(dim, num_classes), "modality": ModalityClassifier(dim),
                "progress": BatchCounter()}

    def trainable(self, stage: str, step: str, model: nn.Module,
                  extras: nn.ModuleDict) -> list[nn.Module]:
        if step == "features":
            return [model.text_encoder, model.image_encoder, extras["label"]]
        return [extras["modality"]]

    def lam(self, extras: nn.ModuleDict) -> float:
        p = self.params
        return grl_lambda(float(extras["progress"].done), p.grl_ramp_steps, p.grl_weight)

    def losses(self, stage: str, step: str, model: nn.Module, extras: nn.ModuleDict,
               batch: TrainBatch) -> dict[str, torch.Tensor]:
        p = self.params
        if step == "modality":
            with torch.no_grad():  # the projector is not this step's to change
                v = model.encode_image(batch.images)
                t = model.encode_text(batch.text)
            adv = modality_loss(extras["modality"], v, t)
            extras["progress"].done += 1
            return {"loss": adv, "adv": adv}
        v = model.encode_image(batch.images)
        t = model.encode_text(batch.text)
        imd = (classification_loss(extras["label"](v), batch.labels, self.multi_label)
               + classification_loss(extras["label"](t), batch.labels, self.multi_label))
        kw = {"positive_weight": p.positive_weight, "form": p.triplet}
        imi = (triplet_loss(v, t, batch.labels, p.margin, **kw)
               + triplet_loss(t, v, batch.labels, p.margin, **kw))
        reg = frobenius_norms(model.image_encoder, model.text_encoder).to(imd.device)
        emb = p.alpha * imi + p.beta * imd + p.reg_weight * reg
        lam = self.lam(extras)
        adv = modality_loss(extras["modality"], reverse_gradient(v, lam),
                            reverse_gradient(t, lam))
        return {"loss": emb + adv, "emb": emb, "imi": imi, "imd": imd, "reg": reg,
                "adv": adv, "lambda": torch.tensor(lam, device=imd.device)}


def make_acmr(params: ACMRParams) -> ACMR:
    """ACMR (Wang et al., ACM MM 2017): projectors + label classifier + triplet constraints
    against a modality classifier through gradient reversal, alternating steps.
    """
    return ACMR(params)
