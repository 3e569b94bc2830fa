"""Words and hash buckets, kept free of torch so that they are cheap to import and test."""
from __future__ import annotations

import hashlib
import re

_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


def simple_words(text: str) -> list[str]:
    """Fallback tokenizer when the core hands none: lower-cased alphanumeric words."""
    return _WORD.findall(text.lower())


def stable_bucket(token: str, buckets: int) -> int:
    """Hash bucket of a token, identical in every process (``hash()`` is salted per run)."""
    digest = hashlib.blake2b(token.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little") % buckets
