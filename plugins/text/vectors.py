"""Reading pretrained word vectors from a local file — never from the network.

Supported formats (``vectors_format``):

* ``word2vec-binary`` — the original ``word2vec`` C binary (``GoogleNews-vectors-*.bin``);
* ``word2vec-text`` — text with a ``<count> <dim>`` header line, then ``word v1 ... vD``;
* ``glove-text`` — the same lines without a header (GloVe's ``glove.*.txt``);
* ``keyedvectors`` — a file written by gensim's ``KeyedVectors.save`` (a pickle: only load
  files you trust);
* ``auto`` — decided from the first bytes (see :func:`detect_format`); a pickled
  ``keyedvectors`` file is recognised but refused unless ``vectors_format: keyedvectors`` is
  set explicitly, since unpickling can run code.

``.gz`` / ``.bz2`` files are read transparently for the three word2vec/GloVe formats.
"""
from __future__ import annotations

import bz2
import gzip
import re
from pathlib import Path
from typing import Literal

import numpy as np

from daer_core.errors import ConfigError, DataError

VectorsFormat = Literal["auto", "word2vec-binary", "word2vec-text", "glove-text", "keyedvectors"]
_HEADER = re.compile(rb"^\s*\d+\s+\d+\s*$")


def _open_raw(path: Path):
    if path.suffix == ".gz":
        return gzip.open(path, "rb")
    if path.suffix == ".bz2":
        return bz2.open(path, "rb")
    return open(path, "rb")


def detect_format(path: Path) -> str:
    """Guess a vectors file's format from its content.

    A pickle opcode first -> ``keyedvectors``; a ``<count> <dim>`` header followed by a line
    of ``dim`` decimal numbers after a word -> ``word2vec-text``, by anything else ->
    ``word2vec-binary``; no header but ``word number...`` lines -> ``glove-text``.
    """
    with _open_raw(path) as fh:
        head = fh.read(1 << 16)
    if head[:1] == b"\x80":
        return "keyedvectors"
    first, _, rest = head.partition(b"\n")
    if _HEADER.match(first):
        dim = int(first.split()[1])
        line = rest.split(b"\n", 1)[0]
        try:
            parts = line.decode("utf-8").rstrip().split(" ")
            [float(p) for p in parts[1:]]
            if len(parts) - 1 == dim:
                return "word2vec-text"
        except (UnicodeDecodeError, ValueError):
            pass
        return "word2vec-binary"
    try:
        parts = first.decode("utf-8").rstrip().split(" ")
        [float(p) for p in parts[1:]]
        if len(parts) >= 2:
            return "glove-text"
    except (UnicodeDecodeError, ValueError):
        pass
    raise DataError(f"{path}: cannot tell the word-vector format from its content; set "
                    "vectors_format to word2vec-binary, word2vec-text, glove-text or "
                    "keyedvectors")


def load_vectors(path: str | Path, fmt: VectorsFormat = "auto", *,
                 key: str = "vectors_path") -> tuple[list[str], np.ndarray, str]:
    """Read ``(words, matrix (V, D) float32, resolved format)`` from a local vectors file.

    ``key`` is the config key that named the file, quoted in errors.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise ConfigError(f"{key}: word-vector file {path} not found (vectors are only read "
                          "from local files; remove the key to train Word2Vec on the training "
                          "texts instead)")
    if fmt == "auto":
        fmt = detect_format(path)
        if fmt == "keyedvectors":
            # a gensim .save file is a pickle: loading it can run code, so only on request
            raise ConfigError(
                f"{key}: {path} is a pickled gensim KeyedVectors file; loading a pickle can run"
                " arbitrary code, so daer does it only when asked: set vectors_format:"
                " keyedvectors if you trust this file, or export it with"
                " KeyedVectors.save_word2vec_format")
    from gensim.models import KeyedVectors
    try:
        if fmt == "keyedvectors":
            kv = KeyedVectors.load(str(path))
            if not isinstance(kv, KeyedVectors):  # a full Word2Vec model saved with .save()
                kv = getattr(kv, "wv", None)
                if not isinstance(kv, KeyedVectors):
                    raise DataError(f"{path}: not a gensim KeyedVectors / Word2Vec file")
        else:
            kv = KeyedVectors.load_word2vec_format(
                str(path), binary=(fmt == "word2vec-binary"), no_header=(fmt == "glove-text"),
                unicode_errors="replace")
    except DataError:
        raise
    except Exception as exc:  # noqa: BLE001 - gensim raises many kinds; name the file
        raise DataError(f"{path}: cannot read word vectors as {fmt}: "
                        f"{type(exc).__name__}: {exc}") from None
    words = list(kv.index_to_key)
    if not words:
        raise DataError(f"{path}: the word-vector file holds no vectors")
    return [str(w) for w in words], np.asarray(kv.vectors, dtype=np.float32), fmt
