"""``cm-gans`` — Cross-modal Generative Adversarial Networks (Peng, Qi & Yuan, ACM TOMM 2019),
simplified to precomputed features (``vector-mlp`` encoders on a ``features`` dataset).

**Generative model** — one generator per modality, an autoencoder through the common space:

* *encoders*: the run's two encoders map image and text vectors to common representations
  ``s_I``, ``s_T`` (width ``d``); their last ``shared_layers`` linear layers are one and the
  same module (the paper's weight-sharing constraint on the upper layers), the layers below
  stay modality-specific;
* *decoders* (extra modules, one per modality): the encoder's linear layers mirrored,
  ``d -> ... -> h1`` with their own weights and ReLU, then ``h1 -> D`` with the *transposed*
  weight of the encoder's first layer (tied), reconstructing the encoder's standardised input
  ``x`` (the output of its batch-norm layer; the raw vector when ``normalize: none``);
* a label classifier shared by the modalities (one linear layer ``d -> C``) keeps the common
  representation semantic: cross entropy of ``s_I`` and of ``s_T``.

**Discriminative model** — two kinds of discriminators:

* *inter-modality* ``D_inter`` (``d -> d/2 -> 1``): is a common representation an image's
  (1) or a text's (0)?
* *intra-modality* ``D_I``, ``D_T`` (``h1 -> h1/2 -> 1``): is a vector the original input (1)
  or its reconstruction (0)? By default both are read through the modality's first encoder
  layer, ``relu(W1 x + b1)`` with ``W1`` held fixed for the discriminator, whose first layer
  therefore has a width known before any data is seen; ``intra_input: own`` gives each
  discriminator an input layer of its own (sized by the data, trained with it), as the
  paper's and the public code's discriminators read the input directly.

Losses (``BCE(z, y)`` is the binary cross entropy of logit z against y, batch means):

* discriminator step: ``L_D = BCE(D_inter(s_I), 1) + BCE(D_inter(s_T), 0)
  + sum_m [BCE(D_m(x_m), 1) + BCE(D_m(x~_m), 0)]``;
* generator step: ``L_G = label_weight (CE(s_I) + CE(s_T))
  + recon_weight (||x~_I - x_I||^2 + ||x~_T - x_T||^2) / dims
  + adv_weight [BCE(D_inter(s_I), 0) + BCE(D_inter(s_T), 1) + sum_m BCE(D_m(x~_m), 1)]``
  — the generators try to make each modality's common representation look like the other's
  and each reconstruction look original (the non-saturating GAN objective).

One stage, ``cm-gans``, with two optimizer steps per batch: ``generator`` (encoders, decoders,
label classifier) then ``discriminator`` (the three discriminators, on the updated
generators' outputs, which it does not change).
"""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from daer_core.interfaces import StageSpec, TrainBatch, TrainingRecipe
from daer_core.interfaces.modules import Encoder
from registry import Params

from .daer_three_stage import classification_loss, common_space_dim


class CMGANsParams(Params):
    """Params of the ``cm-gans`` recipe."""

    shared_layers: int = Field(2, ge=0, description="the encoders' last N linear layers are "
                               "shared by the modalities (the paper shares the upper layers; "
                               "0 = none)")
    label_weight: float = Field(1.0, ge=0, description="weight of the label classification "
                                "of the common representations")
    recon_weight: float = Field(1.0, ge=0, description="weight of the reconstruction terms "
                                "(mean squared error of each modality's standardised input)")
    adv_weight: float = Field(1.0, ge=0, description="weight of the generators' adversarial "
                              "terms (inter- and intra-modality)")
    intra_input: Literal["generator", "own"] = Field(
        "generator", description="what the intra-modality discriminators read the input and "
        "its reconstruction through: generator = the encoder's first layer, held fixed; own ="
        " an input layer of their own, trained with them, as the paper's and the public "
        "code's discriminators have")


def gan_loss(logits: torch.Tensor, real: bool) -> torch.Tensor:
    """Binary cross entropy of discriminator logits against 1 (real) or 0 (fake)."""
    logits = logits.float().reshape(-1)
    target = torch.full_like(logits, 1.0 if real else 0.0)
    return F.binary_cross_entropy_with_logits(logits, target)


def reconstruction_loss(recon: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error over items and dimensions."""
    return F.mse_loss(recon.float(), target.float())


def layer_stack(encoder: nn.Module) -> nn.Sequential | None:
    """The encoder's network as one sequence of layers (``Encoder.layer_stack``), or None."""
    return encoder.layer_stack() if isinstance(encoder, Encoder) else None


def linear_layers(encoder: nn.Module) -> tuple[nn.Sequential, list[int]]:
    """The encoder's layer stack and the positions of its linear layers (vector-mlp)."""
    net = layer_stack(encoder)
    if net is None:
        raise ValueError(f"cm-gans needs feature encoders whose network is one stack of "
                         f"layers (vector-mlp), got {type(encoder).__name__}")
    return net, [i for i, m in enumerate(net) if isinstance(m, nn.Linear)]


def first_linear(encoder: nn.Module) -> nn.Linear:
    """The encoder's first linear layer (the one that reads the modality's own input)."""
    net, idx = linear_layers(encoder)
    return net[idx[0]]


def standardised(encoder: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """What the encoder's first linear layer reads: the batch-normed input (no gradient)."""
    net, idx = linear_layers(encoder)
    with torch.no_grad():
        for layer in net[:idx[0]]:
            if isinstance(layer, nn.modules.batchnorm._BatchNorm):
                # batch statistics while training, without touching the running ones (the
                # encoder's own forward pass has already updated them for this batch)
                x = F.batch_norm(x, None if layer.training else layer.running_mean,
                                 None if layer.training else layer.running_var,
                                 layer.weight, layer.bias, layer.training, 0.0, layer.eps)
            else:
                x = layer(x)
        return x


def share_upper_layers(model: nn.Module, n: int) -> None:
    """Make the image encoder's last ``n`` linear layers the text encoder's (one module each,
    one set of parameters); the first linear layer of each encoder, which reads the
    modality's own input width, always stays its own. Both encoders must be MLPs with a
    layer stack (``vector-mlp``); ValueError naming ``train.recipe.params.shared_layers`` when the
    layers are too few or differ in shape."""
    if not n:
        return
    tnet, tidx = linear_layers(model.text_encoder)
    inet, iidx = linear_layers(model.image_encoder)
    if n >= min(len(tidx), len(iidx)):
        raise ValueError(
            f"train.recipe.params.shared_layers: {n} shared layers need encoders with at "
            f"least {n + 1} linear layers each (the first one reads the modality's own "
            f"input width); give both encoders more `hidden` layers or share fewer")
    for k in range(1, n + 1):
        t, i = tnet[tidx[-k]], inet[iidx[-k]]
        if t.weight.shape != i.weight.shape:
            raise ValueError(
                f"train.recipe.params.shared_layers: the encoders' linear layer {-k} "
                f"differs in shape (text {tuple(t.weight.shape)}, image "
                f"{tuple(i.weight.shape)}); give both the same hidden widths and out_dim")
        inet[iidx[-k]] = t


class TiedDecoder(nn.Module):
    """``d -> ... -> h1`` own layers (ReLU), then ``h1 -> D`` by the encoder's first weight,
    transposed. The encoder is passed at call time (not a submodule: no second copy)."""

    def __init__(self, encoder: nn.Module):
        super().__init__()
        net, idx = linear_layers(encoder)
        widths = [net[i].out_features for i in idx]          # [h1, ..., d]
        layers: list[nn.Module] = []
        for a, b in zip(widths[::-1], widths[::-1][1:]):     # d -> ... -> h1
            layers += [nn.Linear(a, b), nn.ReLU()]
        self.layers = nn.Sequential(*layers)

    def forward(self, s: torch.Tensor, encoder: nn.Module) -> torch.Tensor:
        return F.linear(self.layers(s), first_linear(encoder).weight.T)


class IntraDiscriminator(nn.Module):
    """Original vs reconstruction, read through the encoder's first layer (held fixed), or
    through an input layer of its own (``own``: sized by the data on first use)."""

    def __init__(self, width: int, own: bool = False):
        super().__init__()
        self.input = nn.LazyLinear(width) if own else None
        self.head = nn.Sequential(nn.Linear(width, max(1, width // 2)), nn.ReLU(),
                                  nn.Linear(max(1, width // 2), 1))

    def forward(self, x: torch.Tensor, encoder: nn.Module) -> torch.Tensor:
        if self.input is not None:
            return self.head(F.relu(self.input(x)))
        first = first_linear(encoder)
        return self.head(F.relu(F.linear(x, first.weight.detach(), first.bias.detach())))


class CMGANs(TrainingRecipe):
    """Cross-modal GANs at feature level (see the module docstring)."""

    stages = (StageSpec("cm-gans", "CM-GANs adversarial training", validation="retrieval",
                        min_batch=2, steps=("generator", "discriminator")),)

    def __init__(self, params: CMGANsParams | None = None):
        self.params = params or CMGANsParams()
        self.multi_label = False

    def _share_upper_layers(self, model: nn.Module) -> None:
        share_upper_layers(model, self.params.shared_layers)

    def setup(self, model: nn.Module, num_classes: int, multi_label: bool
              ) -> dict[str, nn.Module]:
        self.multi_label = multi_label
        dim = common_space_dim(model, "cm-gans")
        self._share_upper_layers(model)
        own = self.params.intra_input == "own"
        first = {m: first_linear(enc).out_features
                 for m, enc in (("image", model.image_encoder), ("text", model.text_encoder))}
        return {"label": nn.Linear(dim, num_classes),
                "decode_image": TiedDecoder(model.image_encoder),
                "decode_text": TiedDecoder(model.text_encoder),
                "inter": nn.Sequential(nn.Linear(dim, max(1, dim // 2)), nn.ReLU(),
                                       nn.Linear(max(1, dim // 2), 1)),
                "intra_image": IntraDiscriminator(first["image"], own),
                "intra_text": IntraDiscriminator(first["text"], own)}

    def trainable(self, stage: str, step: str, model: nn.Module,
                  extras: nn.ModuleDict) -> list[nn.Module]:
        if step == "generator":
            return [model.text_encoder, model.image_encoder, extras["label"],
                    extras["decode_image"], extras["decode_text"]]
        return [extras["inter"], extras["intra_image"], extras["intra_text"]]

    def _forward(self, model: nn.Module, extras: nn.ModuleDict, batch: TrainBatch):
        s_i = model.encode_image(batch.images)
        s_t = model.encode_text(batch.text)
        x_i = standardised(model.image_encoder, batch.images.float())
        x_t = standardised(model.text_encoder, batch.text["features"].float())
        r_i = extras["decode_image"](s_i, model.image_encoder)
        r_t = extras["decode_text"](s_t, model.text_encoder)
        return s_i, s_t, x_i, x_t, r_i, r_t

    def losses(self, stage: str, step: str, model: nn.Module, extras: nn.ModuleDict,
               batch: TrainBatch) -> dict[str, torch.Tensor]:
        p = self.params
        if step == "discriminator":
            with torch.no_grad():  # the generators are not this step's to change
                s_i, s_t, x_i, x_t, r_i, r_t = self._forward(model, extras, batch)
            inter = gan_loss(extras["inter"](s_i), True) + gan_loss(extras["inter"](s_t), False)
            intra = (gan_loss(extras["intra_image"](x_i, model.image_encoder), True)
                     + gan_loss(extras["intra_image"](r_i, model.image_encoder), False)
                     + gan_loss(extras["intra_text"](x_t, model.text_encoder), True)
                     + gan_loss(extras["intra_text"](r_t, model.text_encoder), False))
            return {"loss": inter + intra, "inter": inter, "intra": intra}
        s_i, s_t, x_i, x_t, r_i, r_t = self._forward(model, extras, batch)
        label = (classification_loss(extras["label"](s_i), batch.labels, self.multi_label)
                 + classification_loss(extras["label"](s_t), batch.labels, self.multi_label))
        recon = reconstruction_loss(r_i, x_i) + reconstruction_loss(r_t, x_t)
        inter = gan_loss(extras["inter"](s_i), False) + gan_loss(extras["inter"](s_t), True)
        intra = (gan_loss(extras["intra_image"](r_i, model.image_encoder), True)
                 + gan_loss(extras["intra_text"](r_t, model.text_encoder), True))
        loss = p.label_weight * label + p.recon_weight * recon + p.adv_weight * (inter + intra)
        return {"loss": loss, "label": label, "recon": recon, "inter": inter, "intra": intra}


def make_cm_gans(params: CMGANsParams) -> CMGANs:
    """CM-GANs (Peng, Qi & Yuan, TOMM 2019) at feature level: per-modality generators with
    shared upper layers and tied decoders, inter- and intra-modality discriminators,
    reconstruction and label terms, alternating generator / discriminator steps.
    """
    return CMGANs(params)
