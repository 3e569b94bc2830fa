"""``fgcrossnet`` — FGCrossNet (He, Peng & Xie, ACM MM 2019, "A New Benchmark and Approach for
Fine-grained Cross-media Retrieval").

**One network for every medium.** FGCrossNet learns the common representation of images and
texts (and, in the paper, videos and audio) with one and the same network — a ResNet-50 —
without modality-specific branches above the input. Only the *input* is modality-specific:
a text becomes a square "image" first (characters -> embeddings -> 1-D convolutions -> an
``L x L`` map -> a 3x3 convolution to three channels, ``L`` = 448 = the image side; the
``char-grid`` text encoder) and then goes through the very CNN the images go through. Here:

* **raw inputs** (``fgcrossnet-shapes``): the text encoder is ``char-grid``, whose CNN is
  built from the same image-encoder spec as the run's image encoder; :meth:`setup` makes it
  *the image encoder itself* (one module, one set of parameters);
* **precomputed features** (``fgcrossnet``): each modality's first linear layer reads its own
  input width (the input processing), and every layer above it is one module shared by both
  modalities (``shared_layers``; ``null`` = all but the first, as the paper shares the whole
  network above the input).

**Three constraints** on the common representations ``s`` of all items of a batch (B images
and B texts pooled, N = 2B items, class ``y_n``):

* ``cla`` — *classification*: a linear classifier shared by the media (extra module
  ``label``, ``d -> C``), cross entropy of the images plus cross entropy of the texts (batch
  means, summed over the media as the paper sums its media);
* ``center`` — *centre constraint* (compactness of a subcategory): learnable class centres
  ``c_k`` (extra module ``centers``, ``C x d``, standard-normal start),
  ``(1/N) sum_n ||s_n - c_{y_n}||^2``. Weighted by ``center_weight`` (0.001) for the
  network; the centres themselves move by the term weighted by ``center_update`` (1): their
  gradient is rescaled by ``center_update / center_weight``, as the public code rescales it
  by 1/0.001 so that the centres learn at the optimiser's own rate;
* ``rank`` — *ranking constraint* (sparsity between subcategories), the quadruplet loss over
  every quadruplet ``(i, j, k, l)`` of the batch with ``y_i = y_j`` (``i != j``),
  ``y_k != y_i``, ``y_l != y_i``, ``y_k != y_l``:
  ``[d(i,j) - d(i,k) + margin1]_+ + [d(i,j) - d(k,l) + margin2]_+`` with Euclidean
  distances ``d``. Each hinge is averaged over the quadruplets that violate it
  (``quad_anchor``, ``quad_pair``; both 0 when none does), ``rank`` is their sum, weighted
  by ``rank_weight`` (0.1). Quadruplets cross the media freely (an image anchor, its own
  text as the positive, ...), as the public code pools all media of a batch.

``loss = cla + center_weight * center + rank_weight * rank``. One stage, ``fgcrossnet``, one
optimizer step per batch over the encoders, the classifier and the centres. Retrieval ranks by
the cosine of the common representations; with the ``class-softmax`` relation it ranks as the
public code does, by the cosine of the classifier's softmax outputs, and the recipe then
trains that relation's classifier as its own. Single-label data only (the paper's fine-grained
subcategories): the centre and the quadruplets need one class per item.
"""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from daer_core.errors import ConfigError
from daer_core.interfaces import (StageSpec, TextEncoder, TrainBatch, TrainingRecipe,
                                  TwoTowerRelation)
from registry import Params

from .cm_gans import layer_stack, linear_layers, share_upper_layers
from .daer_three_stage import classification_loss, common_space_dim


class FGCrossNetParams(Params):
    """Params of the ``fgcrossnet`` recipe. Defaults are the paper's / its public code's."""

    center_weight: float = Field(0.001, ge=0, description="weight of the centre constraint in "
                                 "the network's loss (public code: 0.001)")
    center_update: float = Field(1.0, ge=0, description="weight of the centre constraint in "
                                 "the centres' own update (public code: their gradient x "
                                 "1/0.001, i.e. 1)")
    rank_weight: float = Field(0.1, ge=0, description="weight of the quadruplet ranking "
                               "constraint (public code: 0.1)")
    margin1: float = Field(1.0, ge=0, description="quadruplet margin between d(anchor, "
                           "positive) and d(anchor, negative) (public code: 1)")
    margin2: float = Field(0.5, ge=0, description="quadruplet margin between d(anchor, "
                           "positive) and d(negative, other negative) (public code: 0.5)")
    hinge: Literal["each", "sum"] = Field(
        "each", description="each: the two quadruplet terms are hinges of their own, each "
        "averaged over the quadruplets violating it (the quadruplet loss's usual form); sum: "
        "one hinge on their sum per quadruplet, averaged over the quadruplets whose loss is "
        "positive, as the public code computes it (a well-satisfied term can then cancel a "
        "violated one)")
    shared_layers: int | None = Field(
        None, ge=0, description="feature encoders (vector-mlp): their last N linear layers "
        "are one module shared by both modalities; null = all but the first (the paper shares"
        " the whole network above the input); 0 = none. A char-grid text encoder always "
        "reads through the image encoder itself")


def scale_gradient(x: torch.Tensor, factor: float) -> torch.Tensor:
    """``x`` forwards (exactly); its gradient times ``factor`` backwards."""
    if factor == 1.0:
        return x
    frozen = x.detach()
    return frozen + factor * (x - frozen)


def center_loss(features: torch.Tensor, classes: torch.Tensor, centers: torch.Tensor
                ) -> torch.Tensor:
    """``(1/N) sum_n ||f_n - c_{y_n}||^2`` for ``(N, d)`` features, ``(N,)`` class ids and
    ``(C, d)`` centres."""
    return (features.float() - centers.float()[classes]).pow(2).sum(dim=1).mean()


def euclidean(x: torch.Tensor) -> torch.Tensor:
    """``(N, N)`` Euclidean distances between the rows of ``x`` (finite gradient at 0), in
    float32 at least."""
    x = x if x.dtype == torch.float64 else x.float()
    sq = (x.unsqueeze(1) - x.unsqueeze(0)).pow(2).sum(dim=-1)
    return sq.clamp_min(1e-12).sqrt()


def quadruplet_terms(features: torch.Tensor, classes: torch.Tensor, margin1: float,
                     margin2: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The two hinges of the quadruplet loss over every valid quadruplet of the batch, each
    averaged over the quadruplets that violate it (0 when none does); see the module.

    Computed without enumerating the N^4 quadruplets: the first hinge depends on (i, j, k)
    only and counts once per valid l (``N - n(y_i) - n(y_k)`` of them); the second compares
    a positive pair's distance with every valid negative pair's, through sorted distances
    and their prefix sums (one sort per class).
    """
    dist = euclidean(features)
    n = len(classes)
    same = classes.unsqueeze(0) == classes.unsqueeze(1)
    positive = same & ~torch.eye(n, dtype=torch.bool, device=dist.device)
    negative = ~same
    counts = torch.bincount(classes, minlength=int(classes.max()) + 1).to(dist.dtype)
    # first hinge: (i, j, k) with j a positive and k a negative of i, times the number of l
    others = n - counts[classes].unsqueeze(1) - counts[classes].unsqueeze(0)    # (i, k)
    weight = (positive.unsqueeze(2) & negative.unsqueeze(1)).to(dist.dtype) \
        * others.clamp_min(0).unsqueeze(1)                                      # (i, j, k)
    hinge = F.relu(dist.unsqueeze(2) - dist.unsqueeze(1) + margin1)           # (i, j, k)
    violated = weight * (hinge > 0).to(dist.dtype)
    total1, count1 = (hinge * weight).sum(), violated.sum()
    # second hinge: positive pair (i, j) of class c against ordered negative pairs (k, l)
    # of two different classes, neither of them c
    total2 = dist.new_zeros(())
    count2 = dist.new_zeros(())
    for c in torch.unique(classes[positive.any(dim=1)]).tolist():
        anchor = classes == c
        pairs = negative & ~anchor.unsqueeze(0) & ~anchor.unsqueeze(1)
        if not pairs.any():
            continue
        values, _ = torch.sort(dist[pairs])
        prefix = torch.cat([values.new_zeros(1), torch.cumsum(values, dim=0)])
        bound = dist[positive & anchor.unsqueeze(1)] + margin2       # d(i, j) + margin2
        below = torch.searchsorted(values.detach(), bound.detach())   # # negatives d < bound
        total2 = total2 + (below.to(dist.dtype) * bound - prefix[below]).sum()
        count2 = count2 + below.sum().to(dist.dtype)
    first = total1 / count1 if count1 > 0 else total1 * 0
    second = total2 / count2 if count2 > 0 else total2 * 0
    return first, second


def summed_quadruplet_loss(features: torch.Tensor, classes: torch.Tensor, margin1: float,
                           margin2: float) -> torch.Tensor:
    """The public code's form: ``[(d_ij - d_ik + margin1) + (d_ij - d_kl + margin2)]_+`` per
    valid quadruplet (as in :func:`quadruplet_terms`), averaged over the quadruplets whose
    loss is positive (0 when none is).

    One anchor at a time: its positives ``j`` against every ordered pair ``(k, l)`` of two
    different classes other than the anchor's, a ``(P, N, N)`` block per anchor.
    """
    dist = euclidean(features)
    same = classes.unsqueeze(0) == classes.unsqueeze(1)
    total = dist.new_zeros(())
    count = dist.new_zeros(())
    for i in range(len(classes)):
        positive = same[i].clone()
        positive[i] = False
        other = ~same[i]
        pairs = other.unsqueeze(1) & other.unsqueeze(0) & ~same          # (k, l)
        if not positive.any() or not pairs.any():
            continue
        value = (2 * dist[i, positive] + margin1 + margin2).view(-1, 1, 1) \
            - dist[i].view(1, -1, 1) - dist.unsqueeze(0)                  # (P, k, l)
        counted = (value > 0) & pairs.unsqueeze(0)
        total = total + value.masked_fill(~counted, 0.0).sum()
        count = count + counted.sum().to(dist.dtype)
    return total / count if count > 0 else total * 0


def quadruplet_loss(features: torch.Tensor, classes: torch.Tensor, margin1: float,
                    margin2: float) -> torch.Tensor:
    """The ranking constraint: the sum of the two averaged hinges (:func:`quadruplet_terms`)."""
    first, second = quadruplet_terms(features, classes, margin1, margin2)
    return first + second


class Centers(nn.Module):
    """The learnable class centres of the centre constraint, ``(C, d)``."""

    def __init__(self, num_classes: int, dim: int):
        super().__init__()
        self.centers = nn.Parameter(torch.randn(num_classes, dim))


def image_backbone(text: nn.Module) -> nn.Module | None:
    """The image encoder a text encoder reads texts through (``char-grid``), or None."""
    return text.image_backbone() if isinstance(text, TextEncoder) else None


def relation_classifier(model: nn.Module) -> nn.Linear | None:
    """The classifier the run's relation ranks through (``class-softmax``), or None: the
    recipe then trains a classifier of its own, used for training only."""
    relation = getattr(model, "relation", None)   # (recipe test models may have none)
    return relation.class_head() if isinstance(relation, TwoTowerRelation) else None


def tie_backbone(model: nn.Module) -> None:
    """Make a ``char-grid`` text encoder read through the run's image encoder (one module);
    the text encoder checks that it is built like its own backbone (ConfigError)."""
    model.text_encoder.share_image_backbone(model.image_encoder)


class FGCrossNet(TrainingRecipe):
    """One shared network, classification + centre + quadruplet ranking (see the module)."""

    stages = (StageSpec("fgcrossnet", "FGCrossNet training", validation="retrieval",
                        min_batch=2),)

    def __init__(self, params: FGCrossNetParams | None = None):
        self.params = params or FGCrossNetParams()
        self.multi_label = False

    def _share(self, model: nn.Module) -> None:
        if image_backbone(model.text_encoder) is not None:
            tie_backbone(model)
            return
        n = self.params.shared_layers
        if n == 0:
            return
        if not all(layer_stack(enc) is not None
                   for enc in (model.text_encoder, model.image_encoder)):
            raise ConfigError(
                "train.recipe 'fgcrossnet' shares one network between the modalities: use "
                "vector-mlp encoders on features, or the char-grid text encoder with an image "
                "encoder on raw pairs (train.recipe.params.shared_layers: 0 keeps two separate "
                "networks)")
        if n is None:
            n = min(len(linear_layers(enc)[1])
                    for enc in (model.text_encoder, model.image_encoder)) - 1
        share_upper_layers(model, n)

    def setup(self, model: nn.Module, num_classes: int, multi_label: bool
              ) -> dict[str, nn.Module]:
        if multi_label:
            raise ConfigError(
                "train.recipe 'fgcrossnet' needs one class per pair (its centre and "
                "quadruplet constraints are per class), but the training split has pairs "
                "with several labels")
        dim = common_space_dim(model, "fgcrossnet")
        self._share(model)
        extras: dict[str, nn.Module] = {"centers": Centers(num_classes, dim)}
        head = relation_classifier(model)
        if head is None:
            extras["label"] = nn.Linear(dim, num_classes)
        elif head.out_features != num_classes:
            raise ConfigError(
                f"train.recipe 'fgcrossnet' trains the classifier of relation "
                f"'class-softmax', which has pipeline.relation.params.num_classes = "
                f"{head.out_features}, but the training data has {num_classes} classes; set "
                f"it to {num_classes}")
        return extras

    @staticmethod
    def _classifier(model: nn.Module, extras: nn.ModuleDict) -> nn.Module:
        head = relation_classifier(model)
        return head if head is not None else extras["label"]

    def trainable(self, stage: str, step: str, model: nn.Module,
                  extras: nn.ModuleDict) -> list[nn.Module]:
        classifier = model.relation if relation_classifier(model) is not None else extras["label"]
        return [model.text_encoder, model.image_encoder, classifier, extras["centers"]]

    @staticmethod
    def _encode(model: nn.Module, batch: TrainBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """The common representations of the batch's images and texts. When the texts are read
        by the image encoder itself (``char-grid``) and their maps have the images' size, both
        go through it as one batch, as the paper's network takes all media at once (its
        batch-norm layers then see the statistics of both media, as at evaluation)."""
        text = model.text_encoder
        if image_backbone(text) is model.image_encoder:
            grid = text.as_images(batch.text)
            if grid.shape[1:] == batch.images.shape[1:]:
                both = model.image_encoder(torch.cat([batch.images, grid.to(batch.images.dtype)]))
                return both[:len(batch.images)], both[len(batch.images):]
        return model.encode_image(batch.images), model.encode_text(batch.text)

    def losses(self, stage: str, step: str, model: nn.Module, extras: nn.ModuleDict,
               batch: TrainBatch) -> dict[str, torch.Tensor]:
        p = self.params
        s_i, s_t = self._encode(model, batch)
        label = self._classifier(model, extras)
        cla = (classification_loss(label(s_i), batch.labels, False)
               + classification_loss(label(s_t), batch.labels, False))
        feats = torch.cat([s_i, s_t]).float()
        classes = batch.labels.argmax(dim=1).repeat(2)
        centers = extras["centers"].centers
        if p.center_weight > 0:
            centers = scale_gradient(centers, p.center_update / p.center_weight)
        center = center_loss(feats, classes, centers)
        if p.hinge == "sum":
            rank = summed_quadruplet_loss(feats, classes, p.margin1, p.margin2)
            terms = {}
        else:
            first, second = quadruplet_terms(feats, classes, p.margin1, p.margin2)
            rank = first + second
            terms = {"quad_anchor": first, "quad_pair": second}
        loss = cla + p.center_weight * center + p.rank_weight * rank
        return {"loss": loss, "cla": cla, "center": center, "rank": rank, **terms}


def make_fgcrossnet(params: FGCrossNetParams) -> FGCrossNet:
    """FGCrossNet (He, Peng & Xie, ACM MM 2019): one network shared by both modalities,
    classification + centre + quadruplet ranking constraints, one joint stage.
    """
    return FGCrossNet(params)
