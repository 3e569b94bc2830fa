"""Text-side components of the DAER paper (§3.1): the ``words`` tokenizer, the
``word2vec-lstm`` encoder and the ``dual-region`` attention (Eq. 1-3); and the ``hf-text``
alternative encoder.
"""
from registry import hookimpl

from .char_grid import CharGridParams, make_char_grid
from .dual_region import DualRegionParams, make_dual_region
from .hf_text import HFTextParams, make_hf_text
from .tokenizers import WordsParams, make_words
from .word2vec_lstm import Word2VecLSTMParams, make_word2vec_lstm


@hookimpl
def daer_register_components(registry) -> None:
    registry.add("tokenizer", "words", factory=make_words, params=WordsParams,
                 default=True)
    registry.add("text_encoder", "word2vec-lstm", factory=make_word2vec_lstm,
                 params=Word2VecLSTMParams, default=True)
    registry.add("text_attention", "dual-region", factory=make_dual_region,
                 params=DualRegionParams)
    registry.add("text_encoder", "hf-text", factory=make_hf_text, params=HFTextParams)
    registry.add("text_encoder", "char-grid", factory=make_char_grid, params=CharGridParams,
                 summary="FGCrossNet's text input: characters -> 1-D convolutions -> a square "
                 "map read by an image encoder (the run's own, under the fgcrossnet recipe)")
    # (char-grid's image encoder is a reference in its params, `backbone`: the registry
    # builds it, and its default, mobilenetv3-large, is a requirement checked at load time)
