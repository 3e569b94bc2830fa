"""``dscmr`` — Deep Supervised Cross-modal Retrieval (Zhen, Hu, Wang & Peng, CVPR 2019).

One stage, ``joint``: both encoders map their modality into a common space (``U`` for images,
``V`` for texts, one row per item of the batch) and are trained together with a linear label
classifier ``P`` shared by the two modalities (the recipe's extra module, dropped after
training). The loss is ``J1 + alpha * J2 + beta * J3``:

* **J1, label space** — ``P`` applied to each modality's common features should reproduce the
  (multi-hot) labels: ``1/n ||U P - Y|| + 1/n ||V P - Y||``, read as the mean over items of the
  Euclidean norm of each row's error (see :func:`label_space_loss`);
* **J2, common-space discrimination** — a negative log-likelihood of the label similarities
  ``S[i, j] = 1`` when items i and j share a class, under ``Gamma[i, j] = cos(a_i, b_j) / 2``:
  ``mean(log(1 + exp(Gamma)) - S * Gamma)`` over the image-text, image-image and text-text
  pairs of the batch, summed (see :func:`discrimination_loss`);
* **J3, modality invariance** — paired image and text features should coincide:
  ``1/n ||U - V||``, the mean row-wise Euclidean distance (see :func:`invariance_loss`).

The paper's two sub-networks share the weights of their last layer; ``share_last_layer``
ties the last linear layer of the two encoders (both must end in layers of one shape, e.g.
``vector-mlp`` with equal ``hidden[-1]`` and ``out_dim``). Retrieval afterwards is the cosine
of the common-space features: pair the recipe with the two-tower ``cosine`` relation (the
``dscmr`` preset does).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from daer_core.errors import ConfigError
from daer_core.interfaces import StageSpec, TrainBatch, TrainingRecipe
from registry import Params

from .daer_three_stage import common_space_dim


class DSCMRParams(Params):
    """Params of the ``dscmr`` recipe; the stage itself is configured under
    ``train.stages.joint``."""

    alpha: float = Field(1e-3, ge=0, description="weight of J2, the common-space "
                         "discrimination loss (paper / public code default 1e-3)")
    beta: float = Field(0.1, ge=0, description="weight of J3, the modality invariance loss "
                        "(paper / public code default 0.1)")
    share_last_layer: bool = Field(
        True, description="tie the last linear layer of the image and text encoders (the "
        "paper's weight sharing between the two sub-networks)")
    classifier_bias: bool = Field(
        False, description="give the shared label classifier P a bias (the paper's P is a "
        "plain linear projection)")


def j1(image_pred: torch.Tensor, text_pred: torch.Tensor, labels: torch.Tensor
       ) -> torch.Tensor:
    """J1: the label-space loss of both modalities, ``(B, C)`` predictions vs ``(B, C)`` labels."""
    return ((image_pred.float() - labels).norm(dim=1).mean()
            + (text_pred.float() - labels).norm(dim=1).mean())


def share_matrix(labels_a: torch.Tensor, labels_b: torch.Tensor) -> torch.Tensor:
    """``S[i, j] = 1`` when item i of ``labels_a`` and item j of ``labels_b`` share a class."""
    return (labels_a.float() @ labels_b.float().T > 0).float()


def pair_nll(a: torch.Tensor, b: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """``mean(log(1 + exp(Gamma)) - S * Gamma)`` with ``Gamma = cos(a_i, b_j) / 2``."""
    gamma = 0.5 * (F.normalize(a.float(), dim=1, eps=1e-6)
                   @ F.normalize(b.float(), dim=1, eps=1e-6).T)
    return (F.softplus(gamma) - s * gamma).mean()


def discrimination_loss(image: torch.Tensor, text: torch.Tensor, labels: torch.Tensor
                        ) -> torch.Tensor:
    """J2: the pairwise negative log-likelihood over image-text, image-image and text-text
    pairs of one batch (item i's image and text both carry ``labels[i]``)."""
    s = share_matrix(labels, labels)
    return pair_nll(image, text, s) + pair_nll(image, image, s) + pair_nll(text, text, s)


def invariance_loss(image: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
    """J3: the mean Euclidean distance between paired image and text features."""
    return (image.float() - text.float()).norm(dim=1).mean()


def _last_linear(encoder: nn.Module) -> tuple[nn.Module, str, nn.Linear] | None:
    """(parent, attribute name, layer) of the encoder's last ``nn.Linear`` submodule."""
    found = None
    for parent in encoder.modules():
        for name, child in parent.named_children():
            if isinstance(child, nn.Linear) and not isinstance(child, nn.LazyLinear):
                found = (parent, name, child)
    return found


class DSCMR(TrainingRecipe):
    """DSCMR: one joint stage, J1 + alpha J2 + beta J3, a shared linear label classifier."""

    stages = (StageSpec("joint", "DSCMR joint training", validation="retrieval", min_batch=2),)

    def __init__(self, params: DSCMRParams | None = None):
        self.params = params or DSCMRParams()

    def setup(self, model: nn.Module, num_classes: int, multi_label: bool
              ) -> dict[str, nn.Module]:
        dt = common_space_dim(model, "dscmr")
        if self.params.share_last_layer:
            self._tie_last_layers(model)
        return {"classifier": nn.Linear(dt, num_classes, bias=self.params.classifier_bias)}

    @staticmethod
    def _tie_last_layers(model: nn.Module) -> None:
        text, image = _last_linear(model.text_encoder), _last_linear(model.image_encoder)
        if text is None or image is None or text[2].weight.shape != image[2].weight.shape \
                or (text[2].bias is None) != (image[2].bias is None):
            raise ConfigError(
                "train.recipe.params.share_last_layer: the text and image encoders must both "
                "end in a linear layer of the same shape (e.g. vector-mlp with equal hidden[-1] "
                "and out_dim); set it to false to train two separate last layers")
        parent, name, _ = image
        setattr(parent, name, text[2])  # one module, one set of parameters, seen by both

    def trainable(self, stage: str, step: str, model: nn.Module,
                  extras: nn.ModuleDict) -> list[nn.Module]:
        return [model.text_encoder, model.image_encoder, extras["classifier"]]

    def losses(self, stage: str, step: str, model: nn.Module, extras: nn.ModuleDict,
               batch: TrainBatch) -> dict[str, torch.Tensor]:
        image = model.encode_image(batch.images).float()
        text = model.encode_text(batch.text).float()
        labels = batch.labels.float()
        classifier = extras["classifier"]
        label_term = j1(classifier(image), classifier(text), labels)
        disc = discrimination_loss(image, text, labels)
        inv = invariance_loss(image, text)
        loss = label_term + self.params.alpha * disc + self.params.beta * inv
        return {"loss": loss, "j1_label": label_term.detach(), "j2_discrimination": disc.detach(),
                "j3_invariance": inv.detach()}


def make_dscmr(params: DSCMRParams) -> DSCMR:
    """DSCMR (Zhen et al., CVPR 2019): one joint stage minimising J1 (label space, a shared
    linear classifier) + alpha J2 (pairwise NLL of label similarity in the common space) +
    beta J3 (modality invariance); retrieval by cosine in the common space.
    """
    return DSCMR(params)
