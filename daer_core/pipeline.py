"""Assembling a retrieval model from named components, LAVIS style.

:func:`build_pipeline` turns a :class:`~daer_core.config.PipelineConfig` into a
:class:`RetrievalModel` and the :class:`Preprocess` that belongs to it. Widths are checked as
the components are connected, so a mismatch (say fusion 600 vs relation 512) is reported with
both component names and dims before any data flows.

Each kind is built with ``registry.create(kind, name, params, **deps)``; the deps the core
hands each kind, and the interface the result must satisfy, are in :data:`registry.KINDS`
(the table is in ``docs/architecture.md``).
"""
from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
from torch import nn

from registry import ComponentRef, get_registry

from .config.schema import PipelineConfig, RunConfig
from .errors import DimensionMismatchError
from .interfaces import (Enhancement, Fusion, ImageEncoder, RelationHead, RelationLoss,
                         TextEncoder, TwoTowerRelation)


_restoring: ContextVar[bool] = ContextVar("daer_restoring_weights", default=False)


def restoring_weights() -> bool:
    """True while the core builds a model whose every weight is loaded from a run's checkpoint
    right afterwards (``daer evaluate``, ``daer search``).

    Components may then skip reading pretrained weight files — the checkpoint replaces them,
    and the file need not exist on the machine that evaluates — and the warnings about
    starting from random weights, which would be false.
    """
    return _restoring.get()


@dataclass
class Preprocess:
    """The preprocessing that belongs to a model: raw texts and PIL images to tensors."""

    text: Callable[[Sequence[str]], dict[str, torch.Tensor]]
    image_train: Callable
    image_eval: Callable


class RetrievalModel(nn.Module):
    """Text and image encoders plus the relation side: scores every text x image pair."""

    def __init__(self, text_encoder: TextEncoder, image_encoder: ImageEncoder, fusion: Fusion | None,
                 enhancement: Enhancement | None, relation: RelationHead, loss: RelationLoss,
                 names: dict[str, str] | None = None):
        super().__init__()
        self.text_encoder = text_encoder
        self.image_encoder = image_encoder
        self.fusion = fusion
        self.enhancement = enhancement
        self.relation = relation
        self.loss = loss
        self.names = dict(names or {})

    @property
    def two_tower(self) -> bool:
        return isinstance(self.relation, TwoTowerRelation)

    def encode_text(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.text_encoder(inputs)

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        return self.image_encoder(images)

    def pair_scores(self, text: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        """Scores of all ``Q x P`` pairs, differentiable: ``(Q, Dt), (P, Di) -> (Q, P)``."""
        if self.two_tower:
            return self.relation.score(text, image)
        q, p = text.shape[0], image.shape[0]
        t = text.unsqueeze(1).expand(q, p, text.shape[1]).reshape(q * p, -1)
        i = image.unsqueeze(0).expand(q, p, image.shape[1]).reshape(q * p, -1)
        fused = self.fusion(t, i)
        if self.enhancement is not None:
            fused = self.enhancement(fused)
        return self.relation(fused).reshape(q, p)

    @torch.no_grad()
    def score_matrix(self, text: torch.Tensor, image: torch.Tensor,
                     block_size: int = 256, bf16: bool = False) -> torch.Tensor:
        """All ``Q x P`` scores computed in ``block_size x block_size`` blocks.

        Only one block of fused pairs exists at a time, so a 4000 x 4000 gallery never
        materialises a 4000 x 4000 x 600 tensor. Returns a CPU float32 matrix.

        With the split first layer (:meth:`_split_first_layer`) and a head in eval mode that
        has ``after_first_layer_grid`` (the ``mlp`` head), each block's pair sums go straight
        into a reused buffer and the hidden layers run as in-place matrix products.
        ``bf16=True`` runs those pair sums and hidden layers in bfloat16 (the per-item
        projections and the output layer stay float32): rankings equal float32's up to
        near-ties, and it is fast only where bf16 is native (see ``evaluate.bf16``). Other
        pipelines score in float32 whatever ``bf16`` says.
        """
        q, p = text.shape[0], image.shape[0]
        out = torch.empty(q, p, dtype=torch.float32, device=text.device)
        split = self._split_first_layer(text, image)
        grid = None
        if split is not None and not self.relation.training:
            grid = getattr(self.relation, "after_first_layer_grid", None)
        dtype = torch.bfloat16 if bf16 else torch.float32
        workspace: dict = {}
        for a in range(0, q, block_size):
            for b in range(0, p, block_size):
                if split is None:
                    block = self.pair_scores(text[a:a + block_size], image[b:b + block_size])
                else:
                    t_part, i_part = split[0][a:a + block_size], split[1][b:b + block_size]
                    if grid is not None:
                        block = grid(t_part, i_part, dtype=dtype, workspace=workspace)
                    else:
                        hidden = t_part.unsqueeze(1) + i_part.unsqueeze(0)  # (bq, bp, H)
                        block = self.relation.after_first_layer(
                            hidden.reshape(-1, hidden.shape[-1])).reshape(len(t_part),
                                                                          len(i_part))
                out[a:a + block_size, b:b + block_size] = block
        return out.cpu()

    def _split_first_layer(self, text: torch.Tensor, image: torch.Tensor
                           ) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Per-item halves of the relation head's first layer, when the components allow it.

        For ``concat`` fusion, an element-wise enhancement ``e`` and a linear first layer
        ``W = [W_t | W_i]``: ``W e([t; i]) + b = W_t e(t) + (W_i e(i) + b)``. Each text and each
        image is then projected once, and a pair costs one addition instead of a
        ``(Dt + Di) x H`` product — the same scores, about twice as fast for the paper's sizes.
        """
        if self.two_tower or not getattr(self.fusion, "concatenates", False):
            return None
        if self.enhancement is not None and not getattr(self.enhancement, "elementwise", False):
            return None
        first = self.relation.first_layer()
        if first is None or first.in_features != text.shape[1] + image.shape[1]:
            return None
        if self.enhancement is not None:
            text, image = self.enhancement(text), self.enhancement(image)
        dt = text.shape[1]
        t_part = text @ first.weight[:, :dt].T
        i_part = image @ first.weight[:, dt:].T
        if first.bias is not None:
            i_part = i_part + first.bias
        return t_part, i_part


def _create(registry, ref: ComponentRef, kind: str, **deps: Any):
    """Build one component with the deps the core hands its kind.

    The factory's signature was checked against ``registry.KINDS[kind]`` when its plugin
    registered, and the registry checks the built object's interface, so a TypeError raised
    here comes from the plugin's own code and is left as it is.
    """
    return registry.create(kind, ref.name, ref.params, **deps)


def build_pipeline(config: PipelineConfig | RunConfig, registry=None, *,
                   native_image_size: int | None = None, restoring: bool = False
                   ) -> tuple[RetrievalModel, Preprocess]:
    """Build the model and its preprocessing from a (resolved) pipeline config.

    Raises :class:`DimensionMismatchError` naming the components and widths that disagree.
    ``restoring=True`` promises that a checkpoint's weights are loaded next (see
    :func:`restoring_weights`).
    """
    token = _restoring.set(restoring)
    try:
        return _build(config, registry, native_image_size)
    finally:
        _restoring.reset(token)


def _build(config: PipelineConfig | RunConfig, registry, native_image_size: int | None
           ) -> tuple[RetrievalModel, Preprocess]:
    registry = get_registry(registry)
    pipe = config.pipeline if isinstance(config, RunConfig) else config

    tokenizer = _create(registry, pipe.text.tokenizer, "tokenizer")
    text_attention = None
    if pipe.text.attention is not None:
        ref = pipe.text.attention
        text_attention = lambda dim, ref=ref: _create(registry, ref, "text_attention", dim=dim)  # noqa: E731
    text_encoder = _create(registry, pipe.text.encoder, "text_encoder",
                           tokenizer=tokenizer, attention=text_attention)

    image_attention = None
    if pipe.image.attention is not None:
        ref = pipe.image.attention
        image_attention = lambda channels, ref=ref: _create(  # noqa: E731
            registry, ref, "image_attention", channels=channels)
    image_encoder = _create(registry, pipe.image.encoder, "image_encoder",
                            attention=image_attention, native_image_size=native_image_size)

    dt, di = int(text_encoder.out_dim), int(image_encoder.out_dim)
    names = {"text_encoder": pipe.text.encoder.name, "image_encoder": pipe.image.encoder.name,
             "fusion": pipe.fusion.name, "enhancement": pipe.enhancement.name,
             "relation": pipe.relation.name, "loss": pipe.loss.name}
    fusion = _create(registry, pipe.fusion, "fusion", text_dim=dt, image_dim=di)
    fused_dim = int(fusion.out_dim)
    enhancement = _create(registry, pipe.enhancement, "enhancement", dim=fused_dim)
    if int(enhancement.out_dim) != fused_dim:
        raise DimensionMismatchError(
            f"enhancement {pipe.enhancement.name!r} changes the width from {fused_dim} to"
            f" {enhancement.out_dim}; enhancements must keep it")
    relation = _create(registry, pipe.relation, "relation", fused_dim=fused_dim,
                       text_dim=dt, image_dim=di)
    if isinstance(relation, TwoTowerRelation):
        # a two-tower relation scores the embeddings directly: fusion and enhancement unused
        fusion = enhancement = None
        names.pop("fusion"), names.pop("enhancement")
    elif int(relation.in_dim) != fused_dim:
        raise DimensionMismatchError(
            f"fusion {pipe.fusion.name!r} outputs {fused_dim} (text_encoder"
            f" {pipe.text.encoder.name!r} {dt}, image_encoder {pipe.image.encoder.name!r}"
            f" {di}) but relation {pipe.relation.name!r} expects in_dim={relation.in_dim}."
            f" Fix pipeline.relation.params.in_dim or the encoders' out_dim.")
    loss = _create(registry, pipe.loss, "loss")
    model = RetrievalModel(text_encoder, image_encoder, fusion, enhancement, relation, loss, names)
    preprocess = Preprocess(text=text_encoder.prepare,
                            image_train=image_encoder.transform(train=True),
                            image_eval=image_encoder.transform(train=False))
    return model, preprocess


def load_model_and_preprocess(config_or_preset: str | dict | RunConfig, *, dataset: str | None = None,
                              overrides: Sequence[str] = (), registry=None
                              ) -> tuple[RetrievalModel, Preprocess, RunConfig]:
    """One call: a ready model, its preprocessing and the resolved config.

    ``config_or_preset`` is a preset name (``"daer"``), a config file path, a dict or a
    :class:`RunConfig`. Text encoders that learn from a corpus (Word2Vec) still need
    ``model.text_encoder.fit(train_texts)`` — the trainer does that for you.
    """
    from pathlib import Path

    from .config import load_run_config
    if isinstance(config_or_preset, RunConfig):
        cfg = config_or_preset
    elif isinstance(config_or_preset, str) and not Path(config_or_preset).suffix:
        cfg = load_run_config(None, preset=config_or_preset, dataset=dataset,
                              overrides=overrides, registry=registry)
    else:
        cfg = load_run_config(config_or_preset, dataset=dataset, overrides=overrides,
                              registry=registry)
    native = None
    if cfg.dataset is not None:  # encoders with `size: auto` follow the dataset's image size
        registry = get_registry(registry)
        dataset = registry.create("dataset", cfg.dataset.name, cfg.dataset.params)
        native = getattr(dataset, "native_image_size", None)
    model, pre = build_pipeline(cfg, registry, native_image_size=native)
    return model, pre, cfg
