"""``word2vec-lstm`` text encoder — the text feature extraction module of §3.1 / §4.4.

Words -> Word2Vec vectors (300-d) -> LSTM (300 units) -> text attention (the ``dual-region``
attention of Eq. 1-3 when configured) over the LSTM states -> pooling over the real tokens
-> a fully connected layer to the 300-d text representation ``R^t``.

Word vectors come from one of two places, never from the network:

* by default Word2Vec is trained on the training texts in :meth:`fit` (gensim, seeded, one
  worker thread, so the vectors are the same on every run);
* with ``vectors_path`` they are read from a local file (word2vec binary/text, GloVe text or
  gensim KeyedVectors; see :mod:`plugins.text.vectors`).

Index 0 is ``<pad>`` (a zero row, masked everywhere) and index 1 is ``<unk>``, used for every
out-of-vocabulary word. ``<unk>`` is either a learned vector (starting at the mean word vector,
trained even when the word vectors are frozen) or a fixed zero vector (``unk``). The vocabulary
is not a tensor, so :meth:`export_state` / :meth:`import_state` carry it beside the weights:
a checkpoint rebuilds an embedding of the right size before ``load_state_dict``.
"""
from __future__ import annotations

import logging
import zlib
from collections import Counter
from typing import Any, Literal, Sequence

import numpy as np
import torch
from pydantic import Field
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from daer_core.errors import CheckpointError, PipelineError
from daer_core.interfaces.text import TextAttentionFactory, TextEncoder, Tokenizer
from daer_core.precision import run_recurrent
from registry import Params

from .vectors import VectorsFormat, load_vectors

log = logging.getLogger(__name__)

PAD, UNK = "<pad>", "<unk>"
PAD_ID, UNK_ID = 0, 1
STATE_VERSION = 1
#: where this component's params live in a run config, quoted in errors
CONFIG_KEY = "pipeline.text.encoder.params"


class NotFittedError(PipelineError, RuntimeError):
    """The encoder has no vocabulary yet: it was neither fitted nor given a vectors file."""


class Word2VecLSTMParams(Params):
    """Params of the ``word2vec-lstm`` text encoder (defaults: paper §4.4 where it fixes them)."""

    vector_size: int = Field(300, ge=1, description="word vector width; paper: 300")
    vectors_path: str | None = Field(
        None, description="local pretrained word-vector file; null trains Word2Vec on the "
                          "training texts in fit()")
    vectors_format: VectorsFormat = Field(
        "auto", description="format of vectors_path: auto (detected from the content), "
                            "word2vec-binary, word2vec-text, glove-text (no header), "
                            "keyedvectors (gensim .save file)")
    vocabulary: Literal["corpus", "file"] = Field(
        "corpus", description="with vectors_path: keep only words of the training texts "
                              "(small embedding) or every word of the file")
    min_count: int = Field(2, ge=1, description="Word2Vec: ignore words rarer than this in the "
                                                "training texts (they become <unk>)")
    window: int = Field(5, ge=1, description="Word2Vec context window")
    w2v_epochs: int = Field(10, ge=1, description="Word2Vec training passes over the texts")
    skip_gram: bool = Field(False, description="Word2Vec: skip-gram instead of CBOW")
    seed: int = Field(0, description="Word2Vec seed (one worker thread, so runs are identical)")
    unk: Literal["learned", "zero"] = Field(
        "learned", description="<unk> vector: learned (starts at the mean word vector) or a "
                               "fixed zero vector")
    normalize: Literal["standardize", "none"] = Field(
        "standardize", description="rescale the word vectors per dimension to zero mean and "
                                   "unit variance over the vocabulary, so the LSTM sees "
                                   "unit-scale inputs (Word2Vec trained on a small corpus gives "
                                   "vectors of norm ~0.5, which leave the LSTM nearly constant)")
    freeze_embeddings: bool = Field(
        True, description="keep the Word2Vec vectors fixed (they are features, §3.1); false "
                          "fine-tunes them with the LSTM")
    max_tokens: int = Field(200, ge=1, description="tokens kept per text (the first ones); "
                                                   "longer texts are truncated and counted")
    hidden_size: int = Field(300, ge=1, description="LSTM units; paper: 300")
    num_layers: int = Field(1, ge=1, description="stacked LSTM layers")
    bidirectional: bool = Field(False, description="bidirectional LSTM (state width doubles)")
    pooling: Literal["mean", "max", "last"] = Field(
        "mean", description="how token states become one vector: mean / max over real tokens, "
                            "or the state at the last real token")
    dropout: float = Field(0.0, ge=0, lt=1, description="dropout before the output layer "
                                                        "(and between LSTM layers)")
    out_dim: int = Field(300, ge=1, description="text representation width; paper: 300")


def _stable_hash(text: str) -> int:
    """Python's ``hash`` of a str changes per process; Word2Vec seeding must not."""
    return zlib.crc32(text.encode("utf-8"))


class Word2VecLSTMEncoder(TextEncoder):
    """Word2Vec + LSTM (+ attention) + pooling + FC: raw texts -> ``(B, out_dim)``."""

    def __init__(self, params: Word2VecLSTMParams, tokenizer: Tokenizer,
                 attention: TextAttentionFactory | None = None):
        super().__init__()
        self.params = params
        self.tokenizer = tokenizer
        self.out_dim = int(params.out_dim)
        self.vocab: list[str] = []
        self.index: dict[str, int] = {}
        self.source: str | None = None
        #: cumulative counts from prepare(): texts, tokens, oov_tokens, empty_texts, truncated
        self.counts: Counter[str] = Counter()
        #: what fit() found (vocabulary size, coverage of the training tokens, ...)
        self.fit_report: dict[str, Any] = {}
        e = params.vector_size
        self.embedding = self._new_embedding(2)
        if params.unk == "learned":
            self.unk_vector = nn.Parameter(torch.zeros(e))
        else:
            self.register_buffer("unk_vector", torch.zeros(e))
        self.lstm = nn.LSTM(e, params.hidden_size, num_layers=params.num_layers,
                            batch_first=True, bidirectional=params.bidirectional,
                            dropout=params.dropout if params.num_layers > 1 else 0.0)
        state_dim = params.hidden_size * (2 if params.bidirectional else 1)
        self.state_dim = state_dim
        self.attention = attention(state_dim) if attention is not None else None
        self.dropout = nn.Dropout(params.dropout)
        self.fc = nn.Linear(state_dim, self.out_dim)

    # -- vocabulary ----------------------------------------------------------------------
    @property
    def fitted(self) -> bool:
        return bool(self.vocab)

    def _new_embedding(self, rows: int, weights: np.ndarray | None = None) -> nn.Embedding:
        old = getattr(self, "embedding", None)
        device = old.weight.device if old is not None else None
        emb = nn.Embedding(rows, self.params.vector_size, padding_idx=PAD_ID, device=device)
        with torch.no_grad():
            emb.weight.zero_()
            if weights is not None:
                emb.weight.copy_(torch.from_numpy(weights))
        emb.weight.requires_grad_(not self.params.freeze_embeddings)
        return emb

    def _set_vocabulary(self, words: list[str], vectors: np.ndarray | None, source: str) -> None:
        """Install ``<pad>, <unk>, *words``; ``vectors`` (len(words), E) or None (zeros)."""
        self.vocab = [PAD, UNK, *words]
        self.index = {w: i for i, w in enumerate(self.vocab)}
        self.source = source
        weights = None
        if vectors is not None and self.params.normalize == "standardize" and len(vectors) > 1:
            vectors = np.asarray(vectors, dtype=np.float64)
            std = vectors.std(axis=0)
            vectors = ((vectors - vectors.mean(axis=0)) / np.where(std > 0, std, 1.0)
                       ).astype(np.float32)
        if vectors is not None:
            weights = np.zeros((len(self.vocab), self.params.vector_size), dtype=np.float32)
            weights[2:] = vectors
        self.embedding = self._new_embedding(len(self.vocab), weights)
        if vectors is not None and self.params.unk == "learned" and len(vectors):
            with torch.no_grad():
                self.unk_vector.copy_(torch.from_numpy(vectors.mean(axis=0)))

    def _tokenize(self, texts: Sequence[str]) -> list[list[str]]:
        return [self.tokenizer(t if isinstance(t, str) else str(t)) for t in texts]

    def fit(self, texts: Sequence[str]) -> None:
        """Build the vocabulary and word vectors from the training texts.

        Trains Word2Vec on them, or (with ``vectors_path``) reads the file and keeps the
        vectors of the words that occur in them (``vocabulary: corpus``) or all of them.
        """
        docs = self._tokenize(texts)
        freq = Counter(tok for doc in docs for tok in doc)
        if not freq:
            raise PipelineError("word2vec-lstm: fit() got no tokens — the training texts are "
                                "empty or blank")
        if self.params.vectors_path:
            self._load_file(restrict_to=freq)
        else:
            self._train_word2vec(docs)
        covered = sum(c for w, c in freq.items() if w in self.index)
        total = sum(freq.values())
        self.fit_report = {
            "source": self.source, "vocabulary_size": len(self.vocab),
            "training_texts": len(docs), "training_tokens": total,
            "training_token_coverage": covered / total,
            "training_words_as_unk": sum(1 for w in freq if w not in self.index),
        }
        log.info("word2vec-lstm: %d words from %s; %.1f%% of the %d training tokens covered, "
                 "%d distinct training words map to <unk>", len(self.vocab) - 2, self.source,
                 100 * covered / total, total, self.fit_report["training_words_as_unk"])

    def _train_word2vec(self, docs: list[list[str]]) -> None:
        from gensim.models import Word2Vec
        p = self.params
        model = Word2Vec(sentences=docs, vector_size=p.vector_size, window=p.window,
                         min_count=p.min_count, sg=int(p.skip_gram), epochs=p.w2v_epochs,
                         seed=p.seed, workers=1, hashfxn=_stable_hash)
        words = [w for w in model.wv.index_to_key if w not in (PAD, UNK)]
        if not words:
            raise PipelineError(
                f"word2vec-lstm: no word occurs {p.min_count}+ times in the training texts; "
                f"lower {CONFIG_KEY}.min_count")
        vectors = np.stack([model.wv[w] for w in words]).astype(np.float32)
        self._set_vocabulary(words, vectors, f"word2vec trained on {len(docs)} texts")

    def _load_file(self, restrict_to: Counter | None) -> None:
        p = self.params
        words, matrix, fmt = load_vectors(p.vectors_path, p.vectors_format,
                                          key=f"{CONFIG_KEY}.vectors_path")
        if matrix.shape[1] != p.vector_size:
            raise PipelineError(
                f"{p.vectors_path} holds {matrix.shape[1]}-d vectors but "
                f"{CONFIG_KEY}.vector_size is {p.vector_size}; set it to {matrix.shape[1]}")
        table: dict[str, int] = {}
        for i, w in enumerate(words):  # files list frequent words first: first one wins
            table.setdefault(w, i)
        for i, w in enumerate(words):  # "Paris" also answers for the lowercase token "paris"
            table.setdefault(w.lower(), i)
        table.pop(PAD, None), table.pop(UNK, None)
        if restrict_to is not None and p.vocabulary == "corpus":
            keep = [w for w, _ in restrict_to.most_common() if w in table]
        else:
            keep = list(table)
        rows = np.asarray([table[w] for w in keep], dtype=np.int64)
        vectors = matrix[rows] if len(rows) else np.zeros((0, p.vector_size), np.float32)
        self._set_vocabulary(keep, vectors, f"{p.vectors_path} ({fmt})")

    # -- tensors -------------------------------------------------------------------------
    def prepare(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """``{"ids": (B, L) long, "lengths": (B,) long}`` on CPU, padded with ``<pad>`` (0).

        Out-of-vocabulary words become ``<unk>``; a text without tokens becomes one ``<unk>``;
        texts longer than ``max_tokens`` keep their first ``max_tokens`` tokens. All three are
        counted in :attr:`counts`.
        """
        if not self.fitted:
            if not self.params.vectors_path:
                raise NotFittedError(
                    "word2vec-lstm has no vocabulary yet: call fit(train_texts) or give "
                    f"{CONFIG_KEY}.vectors_path")
            self._load_file(restrict_to=None)
        docs = self._tokenize(texts)
        limit = self.params.max_tokens
        seqs: list[list[int]] = []
        empty = 0
        for doc in docs:
            if len(doc) > limit:
                self.counts["truncated"] += 1
                doc = doc[:limit]
            ids = [self.index.get(tok, UNK_ID) for tok in doc]
            self.counts["tokens"] += len(ids)
            self.counts["oov_tokens"] += sum(1 for i in ids if i == UNK_ID)
            if not ids:
                empty += 1
                ids = [UNK_ID]
            seqs.append(ids)
        self.counts["texts"] += len(docs)
        if empty:
            self.counts["empty_texts"] += empty
            log.warning("word2vec-lstm: %d text(s) in this batch had no tokens and were "
                        "encoded as a single <unk>", empty)
        length = max((len(s) for s in seqs), default=1)
        ids = torch.zeros(len(seqs), length, dtype=torch.long)
        for row, s in enumerate(seqs):
            ids[row, :len(s)] = torch.tensor(s, dtype=torch.long)
        lengths = torch.tensor([len(s) for s in seqs], dtype=torch.long)
        return {"ids": ids, "lengths": lengths}

    def token_dims(self) -> tuple[int, int]:
        """``(vector_size, LSTM state width)``."""
        return int(self.params.vector_size), int(self.state_dim)

    def token_vectors(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """The word vectors of :meth:`prepare`'s ids (:meth:`embed`)."""
        return self.embed(inputs["ids"])

    def drop_projection(self) -> None:
        """The pooled output layer goes; the encoder then outputs the pooled states."""
        self.fc = nn.Identity()
        self.out_dim = int(self.state_dim)

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        """Word vectors ``(B, L, E)``; ``<unk>`` positions get :attr:`unk_vector`."""
        vectors = self.embedding(ids)
        unk = (ids == UNK_ID).unsqueeze(-1)
        return torch.where(unk, self.unk_vector.to(vectors.dtype), vectors)

    def token_states(self, inputs: dict[str, torch.Tensor]
                     ) -> tuple[torch.Tensor, torch.Tensor]:
        """LSTM states after attention ``(B, L, H)`` and the real-token mask ``(B, L)``."""
        if not self.fitted:
            raise NotFittedError("word2vec-lstm has no vocabulary yet: call fit(train_texts) "
                                 f"or give {CONFIG_KEY}.vectors_path")
        ids, lengths = inputs["ids"], inputs["lengths"]
        # checked where it is free: reading a GPU tensor's max would stall every step
        if ids.device.type == "cpu" and ids.numel() and int(ids.max()) >= \
                self.embedding.num_embeddings:
            raise PipelineError(f"word2vec-lstm: token id {int(ids.max())} is outside the "
                                f"vocabulary of {self.embedding.num_embeddings}; were these "
                                "inputs prepared by another encoder?")
        length = ids.shape[1]
        if self.packs(ids):
            packed = pack_padded_sequence(self.embed(ids), lengths.cpu().clamp_min(1),
                                          batch_first=True, enforce_sorted=False)
            out, _ = run_recurrent(self.lstm, packed)
            states, _ = pad_packed_sequence(out, batch_first=True, total_length=length)
        else:
            # a forward-only LSTM's state at a real token never depends on the padding after
            # it, so the padded batch runs as is and the mask below hides the padded positions
            states, _ = run_recurrent(self.lstm, self.embed(ids))
        mask = torch.arange(length, device=ids.device).unsqueeze(0) < lengths.to(
            ids.device).unsqueeze(1)
        if self.attention is not None:
            states = self.attention(states, mask)
        return states, mask

    def packs(self, ids: torch.Tensor) -> bool:
        """Whether the LSTM runs on a packed sequence: only when it is bidirectional (the
        backward direction would otherwise start in the padding).

        A forward-only LSTM runs on the padded batch on every device. Packing would skip the
        padding but costs more than it saves: it needs the lengths on the host (a stall per
        step on a GPU), and on CPU the packed LSTM falls back to one small kernel per time step
        whose backward re-adds every step's gradient into a full-size buffer: 5.5x slower
        than the fused padded kernel for 32 texts of 150-200 tokens (docs/performance.md)."""
        return self.params.bidirectional

    def pool(self, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """One vector per text from the states of its real tokens."""
        how = self.params.pooling
        m = mask.unsqueeze(-1)
        if how == "mean":
            return (states * m.to(states.dtype)).sum(1) / m.sum(1).clamp_min(1).to(states.dtype)
        if how == "max":
            return states.masked_fill(~m, torch.finfo(states.dtype).min).amax(1)
        last = (mask.sum(1) - 1).clamp_min(0)
        return states[torch.arange(states.shape[0], device=states.device), last]

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        states, mask = self.token_states(inputs)
        return self.fc(self.dropout(self.pool(states, mask)))

    # -- checkpoint state ----------------------------------------------------------------
    def export_state(self) -> dict[str, Any]:
        """The vocabulary (JSON-able); the vectors themselves are in the state dict."""
        return {"version": STATE_VERSION, "vocab": list(self.vocab),
                "vector_size": self.params.vector_size, "source": self.source}

    def import_state(self, state: dict[str, Any]) -> None:
        """Rebuild the embedding for a saved vocabulary, ready for ``load_state_dict``."""
        if not isinstance(state, dict) or "vocab" not in state:
            raise CheckpointError("word2vec-lstm state has no 'vocab' entry")
        vocab = list(state["vocab"])
        if vocab[:2] != [PAD, UNK]:
            raise CheckpointError("word2vec-lstm state: the vocabulary must start with "
                                  f"{PAD}, {UNK}")
        if int(state.get("vector_size", self.params.vector_size)) != self.params.vector_size:
            raise CheckpointError(
                f"word2vec-lstm state has {state['vector_size']}-d vectors but "
                f"{CONFIG_KEY}.vector_size is {self.params.vector_size}")
        self._set_vocabulary(vocab[2:], None, state.get("source") or "checkpoint")

    def extra_repr(self) -> str:
        return f"vocab={len(self.vocab)}, source={self.source!r}, pooling={self.params.pooling}"


def make_word2vec_lstm(params: Word2VecLSTMParams, tokenizer: Tokenizer,
                       attention: TextAttentionFactory | None = None) -> Word2VecLSTMEncoder:
    """DAER text module (§3.1): Word2Vec 300-d (trained on the training texts or read from a local
    file) -> LSTM 300 -> attention slot -> masked mean -> FC 300.
    """
    return Word2VecLSTMEncoder(params, tokenizer, attention)
