"""What the torch-module interfaces share.

:class:`Module` makes ``@abstractmethod`` binding on ``nn.Module`` subclasses, so every
interface is an abstract base class in the same sense (``Tokenizer``, ``PairDataset`` and the
baselines' interfaces are plain ABCs): a component that leaves out part of its contract fails
when it is built, naming the missing method, instead of raising ``NotImplementedError`` in the
middle of a run. :class:`Encoder` holds what the text and the image encoder have in common.
"""
from __future__ import annotations

from abc import ABCMeta

from torch import nn

from ..errors import PipelineError


class Module(nn.Module, metaclass=ABCMeta):
    """An ``nn.Module`` whose abstract methods must be implemented by its subclasses."""


class Encoder(Module):
    """Maps one modality to ``(B, out_dim)`` embeddings."""

    out_dim: int
    #: what the encoder reads: ``raw`` texts / images, or precomputed ``features`` (vectors
    #: from a feature dataset); the trainer refuses a pipeline that does not match its data
    inputs: str = "raw"

    def pretrained_parameters(self) -> list[nn.Parameter]:
        """Parameters that come from pretrained weights (the backbone), as opposed to the layers
        the encoder adds on top (projection, inserted attention and its gates).

        The trainer gives them ``train.stages.<stage>.backbone_lr``, freezes them for the
        stage's first ``frozen_backbone_epochs`` and, with ``batchnorm: frozen``, keeps the
        batch-norm statistics that came with them. Decided by the config (weights configured),
        not by whether a file was read, so that a resumed run groups its parameters the same
        way. Default: none — the encoder starts from random weights.
        """
        return []

    # -- what other components may use of an encoder (recipes, encoders built on encoders) --
    # Named here so that no recipe reaches into an encoder's attributes (``.net``, ``.proj``,
    # ``.backbone``); an encoder that cannot offer one says so with the error below.

    def layer_stack(self) -> nn.Sequential | None:
        """The encoder's whole network as one sequence of layers, when it is one (an MLP on
        feature vectors, ``vector-mlp``), else None (the default). Recipes that share layers
        between the two encoders or mirror them (``cm-gans``, ``fgcrossnet``) edit it in
        place: the same ``nn.Sequential``, not a copy."""
        return None

    def drop_projection(self) -> None:
        """Remove the output projection (the layer from the pooled features to ``out_dim``);
        ``out_dim`` becomes the pooled width. For a component that uses this encoder's
        features instead of its output (MCSM's networks read the feature map or the token
        states), so that no unused layer is trained or saved."""
        raise self.unsupported("drop_projection()", "an output projection to drop")

    def unsupported(self, member: str, what: str) -> PipelineError:
        """The error of an optional member this encoder does not implement."""
        return PipelineError(f"{type(self).__name__} has no {what}: it does not implement "
                             f"{member}; choose an encoder that provides it")
