"""Networks of the ``mcsm`` method (Peng, Qi & Yuan, TIP 2018): the two modality-specific
semantic spaces as encoders, and their adaptive fusion as a two-tower relation.

MCSM builds one semantic space per modality:

* the **image space**: a recurrent attention network reads the image as a sequence of regions
  (an LSTM over the region features, then attention over its states); the text is projected
  into this space by a network of its own (the paper: a word CNN);
* the **text space**: a recurrent attention network reads the text as a sequence of words
  (an LSTM over the word vectors, then attention); the image is projected into this space by
  a network of its own (the paper: fully connected layers on the CNN's global feature).

The attention of a recurrent attention network, over its LSTM states ``H = [h_1 .. h_n]``:
``M = tanh(W_a H)``, ``a = softmax(w^T M)`` over the n positions, and the item's embedding in
its own space is ``sum_j a_j h_j`` (:class:`AttentionPool`).

Within the shared framework (two encoders and a relation; the core is unchanged) every
encoder outputs **both** of its item's embeddings, concatenated in one fixed order,
``[image-space part | text-space part]``, each ``dim`` wide:

* an image encoder: ``[own recurrent attention embedding | projection into the text space]``;
* a text encoder: ``[projection into the image space | own recurrent attention embedding]``.

The ``mcsm-fusion`` relation then scores a text against an image with the two
modality-specific similarities, ``sim_i`` on the first halves and ``sim_t`` on the second
halves, fused adaptively (:func:`adaptive_fusion`).

Components:

* ``mcsm-vector`` (text and image encoder) for ``features`` datasets: a single vector per item
  has no regions or words, so the recurrent attention reads the (standardised) vector as
  ``steps`` equal chunks (``steps: 1`` = one LSTM step, where the attention weight is 1);
* ``mcsm-image`` (image encoder) for raw images: a CNN (the ``cnn`` reference, a ``timm``
  encoder by default; any image encoder with a ``feature_map``); the positions of its last
  feature map are the regions; the projection into the text space reads the map's global
  average;
* ``mcsm-words`` (text encoder) for raw texts: the word vectors and word-level LSTM of the
  ``words`` reference (``word2vec-lstm`` by default; any text encoder with token vectors and
  states) with the MCSM attention on top; the projection into the image space is a word CNN
  (one convolution over the word vectors, max over time, a linear layer).

The referenced encoders are built by the registry and handed in (their params live under
``cnn.params`` / ``words.params``); these networks use their features, not their outputs,
and drop their output projections. Configs written before the references (``model``,
``weights_path``, ... of mcsm-image; ``dim``, ``vector_size``, ... of mcsm-words) are read
as them.

This module is the networks' overview and the place their names are imported from; each
part lives in a module of its own: the shared blocks in :mod:`.mcsm_layers`, the fusion in
:mod:`.mcsm_fusion`, the feature-level encoders in :mod:`.mcsm_vector`, the image side in
:mod:`.mcsm_image` and the text side in :mod:`.mcsm_words`.
"""
from __future__ import annotations

from .mcsm_fusion import (Fusion, MCSMFusion, MCSMFusionParams, adaptive_fusion,
                          make_mcsm_fusion, minmax_cosine, space_similarities, split_spaces)
from .mcsm_image import MCSM_CNN, MCSMImageEncoder, MCSMImageParams, make_mcsm_image
from .mcsm_layers import AttentionPool, RecurrentAttention, arrange, projection
from .mcsm_vector import (MCSMVectorImageEncoder, MCSMVectorNet, MCSMVectorParams,
                          MCSMVectorTextEncoder, make_vector_image, make_vector_text)
from .mcsm_words import MCSM_WORDS, MCSMWordsEncoder, MCSMWordsParams, make_mcsm_words

__all__ = [
    "AttentionPool", "Fusion", "MCSMFusion", "MCSMFusionParams", "MCSMImageEncoder",
    "MCSMImageParams", "MCSMVectorImageEncoder", "MCSMVectorNet", "MCSMVectorParams",
    "MCSMVectorTextEncoder", "MCSMWordsEncoder", "MCSMWordsParams", "MCSM_CNN", "MCSM_WORDS",
    "RecurrentAttention", "adaptive_fusion", "arrange", "make_mcsm_fusion", "make_mcsm_image",
    "make_mcsm_words", "make_vector_image", "make_vector_text", "minmax_cosine", "projection",
    "space_similarities", "split_spaces",
]
