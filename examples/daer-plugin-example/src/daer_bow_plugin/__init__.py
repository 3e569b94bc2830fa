"""daer plugin ``bag-of-words``: registers the ``bag-of-words`` text encoder.

daer imports this module on every start (it is named in the ``daer`` entry-point group of
this distribution's ``pyproject.toml``) and calls its ``@hookimpl`` functions. Keep the import
cheap: only the params model is imported here; the torch module is imported when the
encoder is actually built.
"""
from __future__ import annotations

from daer_core.errors import ConfigError
from registry import hookimpl

from .params import BagOfWordsParams

__version__ = "0.1.0"


def make_bag_of_words(params: BagOfWordsParams, tokenizer=None, attention=None):
    """Factory called by the core as ``factory(params, tokenizer=..., attention=...)``.

    ``tokenizer`` is the component configured at ``pipeline.text.tokenizer``; ``attention``
    is the factory of ``pipeline.text.attention`` (or None). A bag of words has no token
    sequence to re-weight, so a configured attention is a config error, reported now.
    """
    if attention is not None:
        raise ConfigError("text_encoder 'bag-of-words' has no token sequence for a text "
                          "attention to re-weight; set pipeline.text.attention to null")
    from .encoder import BagOfWordsEncoder
    return BagOfWordsEncoder(params, tokenizer)


@hookimpl
def daer_register_components(registry) -> None:
    registry.add("text_encoder", "bag-of-words", factory=make_bag_of_words,
                 params=BagOfWordsParams,
                 summary="Bag of words (training vocabulary or hashed buckets) -> MLP -> "
                         "out_dim; no word vectors, trains from scratch.")
