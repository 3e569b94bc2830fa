"""Text-side components of the DAER paper (§3.1): the ``words`` tokenizer, the
``word2vec-lstm`` encoder and the ``dual-region`` attention (Eq. 1-3); and the ``hf-text``
alternative encoder.

Registered the way docs/writing-a-plugin.md teaches: one ``@hookimpl`` calling
``registry.add`` per component, each with its factory and params model.
"""
from registry import hookimpl

from .dual_region import DualRegionParams, make_dual_region
from .hf_text import HFTextParams, make_hf_text
from .tokenizers import WordsParams, make_words
from .word2vec_lstm import Word2VecLSTMParams, make_word2vec_lstm


@hookimpl
def daer_register_components(registry) -> None:
    registry.add("tokenizer", "words", factory=make_words, params=WordsParams,
                 summary="Lowercase word tokens (Unicode-aware); character tokens for scripts "
                         "written without spaces (Chinese, Japanese, Thai...).")
    registry.add("text_encoder", "word2vec-lstm", factory=make_word2vec_lstm,
                 params=Word2VecLSTMParams,
                 summary="DAER text module (§3.1): Word2Vec 300-d (trained on the training "
                         "texts or read from a local file) -> LSTM 300 -> attention slot -> "
                         "masked mean -> FC 300.")
    registry.add("text_attention", "dual-region", factory=make_dual_region,
                 params=DualRegionParams,
                 summary="DAER dual-region attention (Eq. 1-3): avg+max word pooling at two "
                         "window sizes (3, 7), shared W per scale, MLP 512-1024-512, sigmoid "
                         "weights multiplied into the LSTM states.")
    registry.add("text_encoder", "hf-text", factory=make_hf_text, params=HFTextParams,
                 summary="a local transformers model (directory or installed package, never "
                         "downloaded), mean/CLS pooling, projected to out_dim")
