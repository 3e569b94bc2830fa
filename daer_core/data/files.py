"""Finding the files a list names, when real copies differ from the list in small ways.

Lists and folders drift apart: names gain stray spaces, an id picks up a stray character, the
same image sits in two class folders, a PNG is saved as ``.jpg``. These helpers resolve what
can be resolved unambiguously and say what they did, so the caller can report it.
"""
from __future__ import annotations

import os
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping

from PIL import Image, UnidentifiedImageError

#: file extensions (lower case) and the PIL format names they claim
EXTENSION_FORMATS: dict[str, str] = {
    ".jpg": "JPEG", ".jpeg": "JPEG", ".jpe": "JPEG", ".png": "PNG", ".bmp": "BMP",
    ".gif": "GIF", ".tif": "TIFF", ".tiff": "TIFF", ".webp": "WEBP", ".ppm": "PPM",
    ".pgm": "PPM", ".pbm": "PPM",
}
IMAGE_EXTENSIONS = frozenset(EXTENSION_FORMATS)
#: files that file managers leave in image folders; never data
JUNK_FILES = frozenset({"thumbs.db", "desktop.ini", ".ds_store"})

_INVISIBLE = re.compile(r"[\u200b-\u200f\u2060\ufeff]")


def normalize_name(name: str) -> str:
    """A comparison key for a file stem or an id: NFC, no invisible characters, no outer
    whitespace or quotes."""
    name = unicodedata.normalize("NFC", _INVISIBLE.sub("", name))
    return name.strip().strip("\"'").strip()


@dataclass
class FolderIndex:
    """Files under a folder keyed by normalised stem; each entry lists every match, with the
    (normalised) name of the sub-folder it sits in (``""`` for the top level)."""

    root: Path
    by_stem: dict[str, list[tuple[str, Path]]] = field(default_factory=dict)

    @classmethod
    def build(cls, root: str | Path, extensions: Iterable[str] | None = None) -> "FolderIndex":
        root = Path(root)
        exts = None if extensions is None else {e.lower() for e in extensions}
        index = cls(root)
        if not root.is_dir():
            return index
        for dirpath, dirs, files in os.walk(root):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))  # stable, no hidden
            rel = Path(dirpath).relative_to(root)
            folder = normalize_name(rel.parts[0]) if rel.parts else ""
            for fname in sorted(files):
                if fname.startswith(".") or fname.lower() in JUNK_FILES:
                    continue
                stem, ext = os.path.splitext(fname)
                if exts is not None and ext.strip().lower() not in exts:
                    continue
                index.by_stem.setdefault(normalize_name(stem), []).append(
                    (folder, Path(dirpath) / fname))
        return index

    def __len__(self) -> int:
        return sum(len(v) for v in self.by_stem.values())

    def find(self, stem: str) -> list[tuple[str, Path]]:
        return self.by_stem.get(normalize_name(stem), [])


@dataclass(frozen=True)
class Resolved:
    """How an id from a list was matched to a known name."""

    raw: str
    name: str | None      # the known name it resolved to, or None when nothing matched
    how: str              # "exact", "whitespace", "stray-leading", "stray-trailing", "none"

    @property
    def changed(self) -> bool:
        return self.name is not None and self.how != "exact"


def resolve_id(raw: str, known: Mapping[str, object] | set[str]) -> Resolved:
    """Match ``raw`` against ``known`` names: exactly, after removing invisible characters and
    outer whitespace/quotes, or after dropping one stray leading or trailing character (only
    when that gives exactly one known name)."""
    if raw in known:
        return Resolved(raw, raw, "exact")
    clean = normalize_name(raw)
    if clean in known:
        return Resolved(raw, clean, "whitespace")
    if len(clean) > 1:
        lead, trail = clean[1:], clean[:-1]
        hits = [(n, h) for n, h in ((lead, "stray-leading"), (trail, "stray-trailing"))
                if n in known]
        if len(hits) == 1:
            return Resolved(raw, hits[0][0], hits[0][1])
    return Resolved(raw, None, "none")


def sniff_image_format(path: str | Path) -> str | None:
    """The image format PIL detects from the file's first bytes (no full decode), or None."""
    try:
        with Image.open(path) as im:
            return im.format
    except (UnidentifiedImageError, OSError):
        return None


def extension_mismatch(path: str | Path, fmt: str | None) -> bool:
    """True when a decodable file's extension claims another format (e.g. a PNG named .jpg)."""
    claimed = EXTENSION_FORMATS.get(Path(path).suffix.strip().lower())
    return fmt is not None and claimed is not None and claimed != fmt


class PathResolver:
    """Finds ``base/rel`` when the copy on disk differs slightly from the listed path.

    Tried in order: the exact path; each path component compared after
    :func:`normalize_name` (stray spaces, invisible characters); and, for the file name, the
    same stem with another extension when exactly one such file exists. Folder listings are
    cached, so resolving many paths costs one ``listdir`` per folder.
    """

    def __init__(self, base: str | Path):
        self.base = Path(base)
        self._listings: dict[Path, dict[str, list[str]]] = {}

    def _listing(self, folder: Path) -> dict[str, list[str]]:
        if folder not in self._listings:
            names: dict[str, list[str]] = {}
            try:
                for n in sorted(os.listdir(folder)):
                    names.setdefault(normalize_name(n), []).append(n)
            except OSError:
                pass
            self._listings[folder] = names
        return self._listings[folder]

    def resolve(self, rel: str) -> tuple[Path | None, str]:
        """``(path, how)`` with how in exact / normalized / other-extension / none."""
        rel = rel.strip()
        exact = self.base / rel
        if exact.is_file():
            return exact, "exact"
        parts = [p for p in re.split(r"[\\/]", rel) if p.strip()]
        folder = self.base
        for part in parts[:-1]:
            hits = self._listing(folder).get(normalize_name(part), [])
            if len(hits) != 1:
                return None, "none"
            folder = folder / hits[0]
        if not parts:
            return None, "none"
        name = normalize_name(parts[-1])
        hits = self._listing(folder).get(name, [])
        if len(hits) == 1 and (folder / hits[0]).is_file():
            return folder / hits[0], "normalized"
        stem = normalize_name(os.path.splitext(name)[0])
        same_stem = [n for key, ns in self._listing(folder).items() for n in ns
                     if normalize_name(os.path.splitext(key)[0]) == stem]
        if len(same_stem) == 1 and (folder / same_stem[0]).is_file():
            return folder / same_stem[0], "other-extension"
        return None, "none"
