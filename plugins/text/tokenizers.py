"""The ``words`` tokenizer: lowercase word tokens, character tokens for unspaced scripts.

Word2Vec (§3.1 of the paper) learns one vector per word, so texts are split into words.
Words are maximal runs of letters, digits and combining marks (Unicode categories L*, N*,
M*), optionally joined by an apostrophe (``don't``). Scripts that are written without spaces
between words (Han, Hiragana, Katakana, Thai, Lao, Khmer, Myanmar, Tibetan, ...) have no
such runs to split on, so each of their characters becomes a token of its own, with any
combining marks that follow it (a Thai vowel sign stays on its consonant). A non-blank text
that still yields nothing (punctuation only, e.g. ``"?!"``) falls back to its non-space
characters, so a non-blank text never becomes empty (the :class:`Tokenizer` contract).
"""
from __future__ import annotations

import unicodedata

from pydantic import Field

from daer_core.interfaces.text import Tokenizer
from registry import Params

#: code point ranges of scripts written without spaces between words -> one token per char
UNSPACED_RANGES: tuple[tuple[int, int], ...] = (
    (0x0E00, 0x0E7F),    # Thai
    (0x0E80, 0x0EFF),    # Lao
    (0x0F00, 0x0FFF),    # Tibetan
    (0x1000, 0x109F),    # Myanmar
    (0x1780, 0x17FF),    # Khmer
    (0x19E0, 0x19FF),    # Khmer symbols
    (0x2E80, 0x2FDF),    # CJK radicals, Kangxi radicals
    (0x3005, 0x3007),    # CJK iteration mark, closing mark, ideographic zero
    (0x3021, 0x3029),    # Hangzhou numerals
    (0x3031, 0x3035),    # kana repeat marks
    (0x3040, 0x30FF),    # Hiragana, Katakana
    (0x31F0, 0x31FF),    # Katakana phonetic extensions
    (0x3400, 0x4DBF),    # CJK extension A
    (0x4E00, 0x9FFF),    # CJK unified ideographs
    (0xA9E0, 0xA9FF),    # Myanmar extended-B
    (0xAA60, 0xAA7F),    # Myanmar extended-A
    (0xF900, 0xFAFF),    # CJK compatibility ideographs
    (0xFF66, 0xFF9F),    # halfwidth Katakana
    (0x1B000, 0x1B16F),  # Kana supplement / extended
    (0x20000, 0x323AF),  # CJK extensions B-H
)

APOSTROPHES = frozenset("'\u2019")


def is_unspaced(ch: str) -> bool:
    """True for a character of a script written without spaces between words."""
    cp = ord(ch)
    return any(lo <= cp <= hi for lo, hi in UNSPACED_RANGES)


def _is_word_char(ch: str) -> bool:
    return unicodedata.category(ch)[0] in "LNM"


def _is_mark(ch: str) -> bool:
    return unicodedata.category(ch)[0] == "M"


def split_words(text: str, lowercase: bool = True) -> list[str]:
    """Split ``text`` into word tokens (see the module docstring for the rules)."""
    text = unicodedata.normalize("NFC", text)
    if lowercase:
        text = text.lower()
    tokens: list[str] = []
    current: list[str] = []  # the word being built (spaced scripts)

    def flush() -> None:
        if current:
            tokens.append("".join(current))
            current.clear()

    n = len(text)
    i = 0
    while i < n:
        ch = text[i]
        if is_unspaced(ch) and not _is_mark(ch):
            flush()
            j = i + 1
            while j < n and _is_mark(text[j]):  # keep combining marks on their base
                j += 1
            tokens.append(text[i:j])
            i = j
            continue
        if _is_word_char(ch):
            if current or not _is_mark(ch):  # a mark with no base letter carries no word
                current.append(ch)
        elif (ch in APOSTROPHES and current and i + 1 < n and _is_word_char(text[i + 1])
              and not is_unspaced(text[i + 1])):
            current.append("'")  # one apostrophe form, so "don't" == "don’t"
        else:
            flush()
        i += 1
    flush()
    if not tokens and text.strip():
        tokens = [ch for ch in text if not ch.isspace()]
    return tokens


class WordsParams(Params):
    """Params of the ``words`` tokenizer."""

    lowercase: bool = Field(True, description="lowercase tokens (Word2Vec vocabularies are "
                                              "usually case-folded)")


class WordTokenizer(Tokenizer):
    """Lowercase words; one token per character in unspaced scripts; never empty."""

    def __init__(self, params: WordsParams):
        self.lowercase = params.lowercase

    def __call__(self, text: str) -> list[str]:
        return split_words(text, self.lowercase)

    def __repr__(self) -> str:
        return f"WordTokenizer(lowercase={self.lowercase})"


def make_words(params: WordsParams) -> WordTokenizer:
    """Lowercase word tokens (Unicode-aware); character tokens for scripts written without spaces
    (Chinese, Japanese, Thai...).
    """
    return WordTokenizer(params)
