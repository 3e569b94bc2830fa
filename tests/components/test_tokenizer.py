"""The ``words`` tokenizer: lowercase words, character tokens for unspaced scripts."""
from __future__ import annotations

import pytest

from plugins.text.tokenizers import WordsParams, WordTokenizer, make_words, split_words


def test_lowercase_words_and_apostrophes():
    assert split_words("Hello, World! Don't stop-me now 42x") == [
        "hello", "world", "don't", "stop", "me", "now", "42x"]
    assert split_words("Don\u2019t") == ["don't"]  # typographic apostrophe, same token
    assert split_words("Ça va? Straße") == ["ça", "va", "straße"]


def test_lowercase_can_be_turned_off():
    assert make_words(WordsParams(lowercase=False))("Red Circle") == ["Red", "Circle"]


@pytest.mark.parametrize("text, expected", [
    ("我爱北京", ["我", "爱", "北", "京"]),
    ("カタカナとひらがな", ["カ", "タ", "カ", "ナ", "と", "ひ", "ら", "が", "な"]),
    ("I love 東京 a lot", ["i", "love", "東", "京", "a", "lot"]),
])
def test_unspaced_scripts_fall_back_to_characters(text, expected):
    assert split_words(text) == expected


def test_thai_marks_stay_on_their_consonant():
    tokens = split_words("ง่าย")  # consonant + tone mark, vowel, consonant
    assert tokens == ["ง\u0e48", "า", "ย"]
    assert "".join(tokens) == "ง่าย"


def test_spaced_non_latin_words_keep_combining_marks():
    assert split_words("हिन्दी भाषा") == ["हिन्दी", "भाषा"]


def test_never_empty_for_non_blank_text():
    tok = WordTokenizer(WordsParams())
    assert tok("?!") == ["?", "!"]
    assert tok("  ...  ") == [".", ".", "."]
    assert tok("   ") == [] and tok("") == []
