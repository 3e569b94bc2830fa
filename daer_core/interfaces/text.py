"""Text-side interfaces: tokenizer, text attention, text encoder.

Shapes use B = batch, L = tokens, D = feature width.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, Callable, Sequence

import torch

from .modules import Encoder, Module

if TYPE_CHECKING:
    from .image import ImageEncoder


class Tokenizer(ABC):
    """Splits one raw text into tokens. Must never return an empty list for non-blank text."""

    @abstractmethod
    def __call__(self, text: str) -> list[str]: ...


class TextAttention(Module):
    """Re-weights a token sequence: ``(B, L, D)`` (+ optional ``(B, L)`` bool mask) -> ``(B, L, D)``.

    Built by the core with the width it will see: ``factory(params, dim=D)``.
    """

    @abstractmethod
    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor: ...


#: What a text encoder receives for its attention slot: ``dim -> TextAttention``.
TextAttentionFactory = Callable[[int], TextAttention]


class TextEncoder(Encoder):
    """Maps raw texts to embeddings of width :attr:`out_dim`.

    The encoder owns the path from strings to tensors (:meth:`prepare`), because the right
    tokenisation depends on the model (word vectors vs. a transformer's sub-words). The core
    calls :meth:`fit` once on the training texts before training (e.g. to learn Word2Vec),
    and saves :meth:`export_state` (JSON-able: vocabularies) beside the weights so that a
    checkpoint can rebuild the module before loading its tensors.
    """

    def fit(self, texts: Sequence[str]) -> None:
        """Learn anything that comes from the training corpus. Default: nothing."""

    @abstractmethod
    def prepare(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """Turn a batch of raw texts into the tensors :meth:`forward` takes (on CPU)."""

    @abstractmethod
    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor: ...  # (B, out_dim)

    def export_state(self) -> dict[str, Any]:
        """JSON-able state that is not in the tensors (vocabulary, ...). Default: none."""
        return {}

    def import_state(self, state: dict[str, Any]) -> None:
        """Restore :meth:`export_state` output; called before ``load_state_dict``."""

    # -- optional members other components use (the default raises, naming the encoder) ----

    def token_dims(self) -> tuple[int, int]:
        """``(E, H)``: the widths of :meth:`token_vectors` and :meth:`token_states`."""
        raise self.unsupported("token_dims()", "per-token vectors and states")

    def token_vectors(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """``(B, L, E)``: the input vector of every token (word vectors), 0 at padding."""
        raise self.unsupported("token_vectors()", "per-token input vectors")

    def token_states(self, inputs: dict[str, torch.Tensor]
                     ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, L, H)`` token states before pooling, and the ``(B, L)`` bool mask of real
        tokens: the text's feature map (MCSM's text network attends over them)."""
        raise self.unsupported("token_states()", "per-token states")

    def image_backbone(self) -> "ImageEncoder | None":
        """The image encoder this text encoder reads its texts through (``char-grid``: texts
        become images first), else None (the default)."""
        return None

    def share_image_backbone(self, image_encoder: "ImageEncoder") -> None:
        """Read texts through ``image_encoder`` itself from now on (one network for both
        media, FGCrossNet); a ConfigError when it is not built like this encoder's own."""
        raise self.unsupported("share_image_backbone()", "image backbone to share")

    def as_images(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """``(B, 3, S, S)``: the texts as the images :meth:`image_backbone` reads, so that a
        recipe can put images and texts through that network in one batch."""
        raise self.unsupported("as_images()", "image form of its texts")
