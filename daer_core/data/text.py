"""Robust text reading: encodings with a reported fallback, and XML that strict parsers reject.

Real collections are messy: about a third of the Wikipedia set's documents contain bare ``&``
or HTML entities such as ``&ndash;`` that an XML parser refuses. Rather than parse, we locate
the ``<text>`` element with a tolerant pattern and decode only well-formed entity references,
so a bare ``&`` stays a literal ampersand and no text is lost.
"""
from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from pathlib import Path

#: tried in order; latin-1 decodes any byte string, so reading never fails on encoding
FALLBACK_ENCODINGS: tuple[str, ...] = ("cp1252", "latin-1")

_TEXT_ELEMENT = re.compile(r"<text\b[^>]*>(.*?)</text\s*>", re.S | re.I)
_ROOT_TAG = re.compile(r"<([A-Za-z_][\w.-]*)((?:\s+[^<>]*?)?)/?>")
_ATTR = re.compile(r"([A-Za-z_][\w.-]*)\s*=\s*(\"[^\"]*\"|'[^']*')")
_TAG = re.compile(r"<[^<>]*>")
_ENTITY = re.compile(r"&(#[0-9]+|#[xX][0-9a-fA-F]+|[A-Za-z][A-Za-z0-9]*);")


@dataclass
class TextFile:
    """The decoded content of one file and how it was decoded."""

    text: str
    encoding: str

    @property
    def used_fallback(self) -> bool:
        return self.encoding not in ("utf-8", "utf-8-sig")


@dataclass
class Document:
    """A text extracted from a document file; ``attrs`` are its root element's attributes."""

    text: str
    attrs: dict[str, str] = field(default_factory=dict)
    encoding: str = "utf-8"


def decode_bytes(data: bytes) -> TextFile:
    """UTF-8 (a BOM is dropped) first, then the fallbacks; reports which one worked."""
    if data.startswith(b"\xef\xbb\xbf"):
        try:
            return TextFile(data[3:].decode("utf-8"), "utf-8-sig")
        except UnicodeDecodeError:
            pass
    try:
        return TextFile(data.decode("utf-8"), "utf-8")
    except UnicodeDecodeError:
        pass
    for enc in FALLBACK_ENCODINGS:
        try:
            return TextFile(data.decode(enc), enc)
        except UnicodeDecodeError:
            continue
    raise AssertionError("latin-1 decodes every byte string")  # pragma: no cover


def read_text_file(path: str | Path) -> TextFile:
    """Read a file as text; see :func:`decode_bytes` for the encoding policy."""
    return decode_bytes(Path(path).read_bytes())


def unescape_entities(text: str) -> str:
    """Decode ``&name;`` / ``&#NN;`` references, leaving bare ``&`` and unknown names as is."""
    return _ENTITY.sub(lambda m: html.unescape(m.group(0)), text)


def clean_whitespace(text: str) -> str:
    """Collapse runs of spaces inside lines, drop blank lines, keep paragraph breaks."""
    lines = (" ".join(line.split()) for line in text.splitlines())
    return "\n".join(line for line in lines if line)


def extract_document(raw: str) -> Document:
    """The readable text of a document file: XML-ish (``<document …><text>…</text>``), other
    markup, or plain text. Never raises on malformed markup.
    """
    stripped = raw.lstrip()
    if not stripped.startswith("<"):
        return Document(clean_whitespace(raw))
    attrs: dict[str, str] = {}
    root = _ROOT_TAG.search(stripped)
    if root:
        attrs = {k: unescape_entities(v[1:-1]) for k, v in _ATTR.findall(root.group(2) or "")}
    parts = _TEXT_ELEMENT.findall(raw)
    if parts:
        body = "\n".join(parts)
    else:  # markup without a <text> element: keep every text node
        body = _TAG.sub("\n", raw)
    return Document(clean_whitespace(unescape_entities(_TAG.sub(" ", body))), attrs)


def read_document(path: str | Path) -> Document:
    """Read and extract one document file (``.xml``, ``.txt``, ...)."""
    tf = read_text_file(path)
    doc = extract_document(tf.text)
    doc.encoding = tf.encoding
    return doc
