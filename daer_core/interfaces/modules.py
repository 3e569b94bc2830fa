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
