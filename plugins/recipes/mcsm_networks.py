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
"""
from __future__ import annotations

from collections import Counter
from typing import Any, Callable, Literal, Sequence

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import nn

from daer_core.data.feature_pairs import VectorToTensor, vectors_as_batch
from daer_core.errors import ConfigError, DimensionMismatchError
from daer_core.interfaces import ImageEncoder, TextEncoder, TwoTowerRelation
from daer_core.precision import run_recurrent
from registry import Params, Ref, ref_field


# -- the recurrent attention network ------------------------------------------------------

class AttentionPool(nn.Module):
    """``M = tanh(W_a H)``, ``a = softmax(w^T M)`` over positions; returns ``sum_j a_j h_j``.

    ``H``: ``(B, n, dim)`` LSTM states; ``mask``: ``(B, n)`` bool, True at real positions.
    """

    def __init__(self, dim: int, attention_dim: int):
        super().__init__()
        self.W_a = nn.Linear(dim, attention_dim, bias=False)
        self.w = nn.Linear(attention_dim, 1, bias=False)

    def weights(self, states: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``(B, n)`` attention weights (0 at masked positions, each row sums to 1)."""
        e = self.w(torch.tanh(self.W_a(states))).squeeze(-1)
        if mask is not None:
            e = e.masked_fill(~mask, float("-inf"))
        return torch.softmax(e, dim=1)

    def forward(self, states: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        a = self.weights(states, mask)
        return (a.unsqueeze(-1) * states).sum(dim=1)


class RecurrentAttention(nn.Module):
    """An LSTM over a sequence ``(B, n, in_dim)`` and :class:`AttentionPool` over its states."""

    def __init__(self, in_dim: int, dim: int, attention_dim: int):
        super().__init__()
        self.lstm = nn.LSTM(in_dim, dim, batch_first=True)
        self.attention = AttentionPool(dim, attention_dim)

    def forward(self, seq: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        states, _ = run_recurrent(self.lstm, seq)
        return self.attention(states, mask)


def projection(in_dim: int | None, hidden: Sequence[int], out_dim: int) -> nn.Sequential:
    """Linear layers with ReLU between (lazy first layer when ``in_dim`` is None)."""
    layers: list[nn.Module] = []
    width = in_dim
    for h in hidden:
        layers += [nn.LazyLinear(h) if width is None else nn.Linear(width, h), nn.ReLU()]
        width = h
    layers.append(nn.LazyLinear(out_dim) if width is None else nn.Linear(width, out_dim))
    return nn.Sequential(*layers)


def arrange(role: str, own: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
    """``[image-space part | text-space part]`` from an encoder's own-space embedding and its
    projection into the other modality's space."""
    return torch.cat([own, other] if role == "image" else [other, own], dim=1)


# -- the fusion ---------------------------------------------------------------------------

Fusion = Literal["adaptive", "image", "text", "sum"]


def minmax_cosine(sim: torch.Tensor) -> torch.Tensor:
    """Min-max normalisation of a cosine similarity over its range ``[-1, 1]``: ``(s+1)/2``."""
    return (sim + 1.0) / 2.0


def adaptive_fusion(sim_i: torch.Tensor, sim_t: torch.Tensor, how: Fusion = "adaptive"
                    ) -> torch.Tensor:
    """``Sim = r_t * sim_i + r_i * sim_t`` with ``r_x`` the min-max normalised ``sim_x``: a pair
    similar in one space weighs more in the other. ``image`` / ``text`` keep one space's
    similarity (the paper's single-space variants), ``sum`` adds the two unweighted."""
    if how == "image":
        return sim_i
    if how == "text":
        return sim_t
    if how == "sum":
        return sim_i + sim_t
    return minmax_cosine(sim_t) * sim_i + minmax_cosine(sim_i) * sim_t


def split_spaces(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The image-space and text-space halves of ``(N, 2 dim)`` MCSM embeddings."""
    d = x.shape[-1] // 2
    return x[..., :d], x[..., d:]


def space_similarities(text: torch.Tensor, image: torch.Tensor
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(sim_i, sim_t)``, each ``(Q, P)``: cosines of every text with every image in the
    image space and in the text space."""
    ti, tt = split_spaces(text)
    ii, it = split_spaces(image)
    sim_i = F.normalize(ti.float(), dim=-1) @ F.normalize(ii.float(), dim=-1).T
    sim_t = F.normalize(tt.float(), dim=-1) @ F.normalize(it.float(), dim=-1).T
    return sim_i, sim_t


class MCSMFusionParams(Params):
    """Params of the ``mcsm-fusion`` relation."""

    fusion: Fusion = Field(
        "adaptive", description="adaptive: r_t*sim_i + r_i*sim_t (the paper's fusion); image / "
        "text: one space's similarity only; sum: sim_i + sim_t")


class MCSMFusion(TwoTowerRelation):
    """Scores texts against images by the adaptive fusion of the two modality-specific
    similarities (see the module docstring). No parameters."""

    def __init__(self, params: MCSMFusionParams, text_dim: int, image_dim: int):
        super().__init__()
        if int(text_dim) != int(image_dim) or int(text_dim) % 2:
            raise DimensionMismatchError(
                f"relation 'mcsm-fusion' reads [image-space | text-space] embeddings of one even "
                f"width from both encoders, but the text encoder outputs {text_dim} and the "
                f"image encoder {image_dim}; use the mcsm-* encoders with one dim")
        self.params = params
        self.in_dim = int(text_dim)

    def score(self, text: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        """All pairs: ``(Q, 2d), (P, 2d) -> (Q, P)``."""
        sim_i, sim_t = space_similarities(text, image)
        return adaptive_fusion(sim_i, sim_t, self.params.fusion)

    def forward(self, text: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        """Paired rows only: ``(N, 2d), (N, 2d) -> (N,)``."""
        ti, tt = split_spaces(text)
        ii, it = split_spaces(image)
        return adaptive_fusion(F.cosine_similarity(ti.float(), ii.float(), dim=-1),
                               F.cosine_similarity(tt.float(), it.float(), dim=-1),
                               self.params.fusion)


def make_mcsm_fusion(params: MCSMFusionParams, fused_dim: int | None = None, text_dim: int = 0,
                     image_dim: int = 0) -> MCSMFusion:
    """two-tower: MCSM's adaptive fusion r_t*sim_i + r_i*sim_t of the image-space and the
    text-space cosine similarities ([image-space | text-space] embeddings from mcsm-* encoders)
    """
    return MCSMFusion(params, text_dim=text_dim, image_dim=image_dim)


# -- feature-level encoders ---------------------------------------------------------------

class MCSMVectorParams(Params):
    """Params of the ``mcsm-vector`` feature encoder (text or image)."""

    dim: int = Field(256, ge=1, description="width of each semantic space (the LSTM's units "
                     "and the projection's output); the encoder outputs 2*dim")
    steps: int = Field(1, ge=1, description="the vector is read as this many equal chunks, the "
                       "recurrent attention's sequence (1: no regions/words in a single vector)")
    attention_dim: int | None = Field(None, ge=1, description="width of M = tanh(W_a H); null = "
                                      "dim")
    hidden: list[int] = Field(default_factory=lambda: [1024], description="hidden layers of "
                              "the projection into the other modality's space (ReLU after each)")
    normalize: Literal["batchnorm", "none"] = Field(
        "batchnorm", description="standardise each input dimension (running statistics)")


class MCSMVectorNet(nn.Module):
    def __init__(self, params: MCSMVectorParams, role: str):
        super().__init__()
        self.params, self.role = params, role
        d = int(params.dim)
        self.norm = nn.LazyBatchNorm1d(affine=False) if params.normalize == "batchnorm" \
            else nn.Identity()
        self.chunk = nn.LazyLinear(d)  # embeds each chunk (its width is known from the data)
        self.own = RecurrentAttention(d, d, int(params.attention_dim or d))
        self.other = projection(None, params.hidden, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(x)
        steps = self.params.steps
        if x.shape[1] % steps:
            raise ConfigError(f"mcsm-vector: a {x.shape[1]}-d vector cannot be read as {steps} "
                              "equal chunks; set pipeline.*.encoder.params.steps to a divisor")
        seq = self.chunk(x.reshape(x.shape[0], steps, x.shape[1] // steps))
        return arrange(self.role, self.own(seq), self.other(x))


class MCSMVectorImageEncoder(ImageEncoder):
    """Image feature vectors -> ``[image-space | text-space]`` embeddings."""

    inputs = "features"
    image_size = 0

    def __init__(self, params: MCSMVectorParams):
        super().__init__()
        self.params = params
        self.out_dim = 2 * int(params.dim)
        self.net = MCSMVectorNet(params, "image")

    def transform(self, train: bool = False) -> Callable:
        return VectorToTensor()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images)


class MCSMVectorTextEncoder(TextEncoder):
    """Text feature vectors -> ``[image-space | text-space]`` embeddings."""

    inputs = "features"

    def __init__(self, params: MCSMVectorParams):
        super().__init__()
        self.params = params
        self.out_dim = 2 * int(params.dim)
        self.net = MCSMVectorNet(params, "text")

    def prepare(self, texts: Sequence[Any]) -> dict[str, torch.Tensor]:
        return {"features": vectors_as_batch(texts)}

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.net(inputs["features"])


def make_vector_text(params: MCSMVectorParams, tokenizer=None, attention=None
                     ) -> MCSMVectorTextEncoder:
    return MCSMVectorTextEncoder(params)


def make_vector_image(params: MCSMVectorParams, attention=None,
                      native_image_size: int | None = None) -> MCSMVectorImageEncoder:
    return MCSMVectorImageEncoder(params)


# -- raw images ---------------------------------------------------------------------------

#: params of mcsm-image before its CNN became a reference: they belong to ``cnn.params``
_CNN_KEYS = ("model", "weights_path", "weights_package", "size")
#: params of mcsm-words before its word network became a reference (``words.params``)
_WORDS_KEYS = ("vector_size", "vectors_path", "vectors_format", "min_count", "w2v_epochs",
               "seed", "max_tokens", "freeze_embeddings")


def _into_reference(data: Any, field: str, keys: Sequence[str], default: dict[str, Any],
                    renamed: dict[str, Sequence[str]] | None = None) -> Any:
    """Move params of a config written before ``field`` was a reference into its params
    (over the reference given, else over ``default``)."""
    if not isinstance(data, dict):
        return data
    renamed = renamed or {}
    moved = {k: data[k] for k in keys if k in data}
    for old, new in renamed.items():
        if old in data:
            moved.update({n: data[old] for n in new})
    if not moved:
        return data
    data = {k: v for k, v in data.items() if k not in moved and k not in renamed}
    ref = data.get(field)
    ref = dict(ref) if isinstance(ref, dict) else {"name": ref} if isinstance(ref, str) \
        else {"name": default["name"], "params": dict(default["params"])}
    data[field] = {**ref, "params": {**dict(ref.get("params") or {}), **moved}}
    return data


MCSM_CNN = {"name": "timm", "params": {"model": "mobilenetv3_large_100"}}


class MCSMImageParams(Params):
    """Params of the ``mcsm-image`` encoder (raw images)."""

    cnn: Ref["image_encoder", "native_image_size"] = ref_field(
        MCSM_CNN["name"], MCSM_CNN["params"], description="the CNN whose last feature map's "
        "positions are the image regions (an image encoder with a feature_map: timm, "
        "mobilenetv3-large; its projection is not used). Without local weights it starts "
        "from random weights (a warning is logged); give cnn.params.weights_path for real "
        "photographs")
    dim: int = Field(256, ge=1, description="width of each semantic space; outputs 2*dim")
    attention_dim: int | None = Field(None, ge=1, description="width of M = tanh(W_a H); null = "
                                      "dim")
    hidden: list[int] = Field(default_factory=lambda: [1024], description="hidden layers of "
                              "the projection of the pooled feature map into the text space")

    @model_validator(mode="before")
    @classmethod
    def _cnn_params(cls, data: Any) -> Any:
        return _into_reference(data, "cnn", _CNN_KEYS, MCSM_CNN)


class MCSMImageEncoder(ImageEncoder):
    """CNN feature map -> regions -> LSTM + attention (image space) and pooled map -> MLP
    (text space)."""

    def __init__(self, params: MCSMImageParams, cnn: ImageEncoder):
        super().__init__()
        self.params = params
        cnn.drop_projection()  # its pooled projection is not used
        self.cnn = cnn
        self.image_size = cnn.image_size
        was = cnn.training
        cnn.eval()
        with torch.no_grad():
            fmap = cnn.feature_map(torch.zeros(1, 3, self.image_size, self.image_size))
        cnn.train(was)
        channels = int(fmap.shape[1])
        self.regions = int(fmap.shape[2] * fmap.shape[3])
        d = int(params.dim)
        self.out_dim = 2 * d
        self.own = RecurrentAttention(channels, d, int(params.attention_dim or d))
        self.other = projection(channels, params.hidden, d)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        fmap = self.cnn.feature_map(images)                          # (B, C, h, w)
        regions = fmap.flatten(2).transpose(1, 2)                   # (B, h*w, C)
        return arrange("image", self.own(regions), self.other(fmap.mean(dim=(2, 3))))

    def pretrained_parameters(self) -> list[nn.Parameter]:
        return self.cnn.pretrained_parameters()

    def train(self, mode: bool = True) -> "MCSMImageEncoder":
        super().train(mode)
        self.cnn.train(mode)  # keeps a frozen backbone's batch-norm statistics
        return self

    def transform(self, train: bool = False) -> Callable:
        return self.cnn.transform(train)


def make_mcsm_image(params: MCSMImageParams, attention=None,
                    native_image_size: int | None = None, *,
                    cnn: ImageEncoder) -> MCSMImageEncoder:
    """MCSM image networks: a CNN (timm by default; local weights or random init), its
    feature-map positions as regions -> LSTM + attention (image space); pooled map -> MLP
    (text space)
    """
    if attention is not None:
        raise ConfigError("mcsm-image has its own (recurrent) attention; set "
                          "pipeline.image.attention: null")
    return MCSMImageEncoder(params, cnn)


# -- raw texts ----------------------------------------------------------------------------

MCSM_WORDS = {"name": "word2vec-lstm", "params": {"hidden_size": 256, "out_dim": 256}}


class MCSMWordsParams(Params):
    """Params of the ``mcsm-words`` encoder (raw texts)."""

    words: Ref["text_encoder", "tokenizer"] = ref_field(
        MCSM_WORDS["name"], MCSM_WORDS["params"], description="the word network: its word "
        "vectors feed the word CNN, its token states (LSTM units = the width of each semantic "
        "space; the encoder outputs twice that) the attention (a text encoder with token "
        "vectors and states: word2vec-lstm; its output layer is not used)")
    attention_dim: int | None = Field(None, ge=1, description="width of M = tanh(W_a H); null = "
                                      "the token states' width")
    cnn_channels: int = Field(256, ge=1, description="filters of the word CNN that projects "
                              "the text into the image space")
    cnn_width: int = Field(3, ge=1, description="words per filter of the word CNN")

    @model_validator(mode="before")
    @classmethod
    def _words_params(cls, data: Any) -> Any:
        return _into_reference(data, "words", _WORDS_KEYS, MCSM_WORDS,
                               renamed={"dim": ("hidden_size", "out_dim")})


class MCSMWordsEncoder(TextEncoder):
    """Word vectors -> LSTM + attention (text space) and word CNN (image space)."""

    def __init__(self, params: MCSMWordsParams, words: TextEncoder):
        super().__init__()
        self.params = params
        vector_dim, d = words.token_dims()
        words.drop_projection()  # its pooled output layer is not used
        self.words = words
        self.out_dim = 2 * d
        self.attention = AttentionPool(d, int(params.attention_dim or d))
        self.conv = nn.Conv1d(vector_dim, params.cnn_channels, params.cnn_width,
                              padding=params.cnn_width // 2)
        self.to_image_space = nn.Linear(params.cnn_channels, d)

    @property
    def counts(self) -> Counter:
        """Token counts of :meth:`prepare` (texts, tokens, out-of-vocabulary, truncated), as
        the word network keeps them."""
        return getattr(self.words, "counts", Counter())

    def fit(self, texts: Sequence[str]) -> None:
        self.words.fit(texts)

    def prepare(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        return self.words.prepare(texts)

    def export_state(self) -> dict[str, Any]:
        return self.words.export_state()

    def import_state(self, state: dict[str, Any]) -> None:
        self.words.import_state(state)

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        states, mask = self.words.token_states(inputs)              # (B, L, d), (B, L)
        own = self.attention(states, mask)
        vectors = self.words.token_vectors(inputs)                  # (B, L, E)
        feat = torch.relu(self.conv(vectors.transpose(1, 2)))[..., :mask.shape[1]]
        feat = feat.masked_fill(~mask.unsqueeze(1), float("-inf")).amax(dim=2)
        return arrange("text", own, self.to_image_space(feat))


def make_mcsm_words(params: MCSMWordsParams, tokenizer, attention=None, *,
                    words: TextEncoder) -> MCSMWordsEncoder:
    """MCSM text networks: Word2Vec vectors -> word LSTM + attention (text space); word CNN,
    max over time, linear (image space)
    """
    if attention is not None:
        raise ConfigError("mcsm-words has its own (recurrent) attention; set "
                          "pipeline.text.attention: null")
    return MCSMWordsEncoder(params, words)
