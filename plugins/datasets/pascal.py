"""The Pascal Sentence set (Rashtchian et al. 2010): 1000 images, 20 classes, 5 sentences each.

Expected layout under ``root`` (the public release's)::

    dataset/<class>/<image>.jpg      images, a folder per class (any format, by content)
    sentence/<class>/<image>.txt     the image's five sentences, one per line

A pair is an image and the sentence file with the same name in the same class; the sentence
file's folder gives the class. An image also found in another class folder is reported and the
copy in the sentence's class is used. The split is seeded and stratified by class: 80/10/10,
i.e. 40/5/5 images per class and 800/100/100 overall for the full release.
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from daer_core.data.files import IMAGE_EXTENSIONS, FolderIndex, normalize_name
from daer_core.data.splits import SplitFractions, stratified_assign
from daer_core.data.text import read_document
from daer_core.errors import DataError

from .common import LayoutParams, ProblemLog, Row, finish, pick_image

RELEASE = {"pairs": 1000, "classes": 20, "sentences_per_image": 5}
SPLIT_NAMES = ("train", "val", "test")


class PascalParams(LayoutParams):
    """Params of the ``pascal-sentence`` layout."""

    images_dir: str = Field("dataset", description="folder of per-class image folders")
    texts_dir: str = Field("sentence", description="folder of per-class sentence folders")
    sentences: Literal["join", "first"] = Field(
        "join", description="the pair's text: all sentences joined, or only the first")
    split_fractions: SplitFractions = Field(
        (0.8, 0.1, 0.1), description="train / val / test fractions, applied per class")


def _class_folders(folder: Path) -> dict[str, str]:
    """Normalised class name -> actual folder name, for the sub-folders of ``folder``."""
    if not folder.is_dir():
        return {}
    return {normalize_name(p.name): p.name for p in sorted(folder.iterdir())
            if p.is_dir() and not p.name.startswith(".")}


def load_pascal(params: PascalParams, *, check: bool = False):
    root = Path(params.root)
    img_root, txt_root = root / params.images_dir, root / params.texts_dir
    if not root.is_dir():
        raise DataError(f"pascal-sentence layout: root folder not found: {root}")
    if not txt_root.is_dir() and not img_root.is_dir():
        raise DataError(f"pascal-sentence layout: neither {img_root} nor {txt_root} exists "
                        "(expected dataset/<class>/<image>.jpg and sentence/<class>/<image>.txt;"
                        " set images_dir / texts_dir if yours differ)")
    problems = ProblemLog()
    img_classes, txt_classes = _class_folders(img_root), _class_folders(txt_root)
    classes = sorted(set(img_classes) | set(txt_classes))
    images = FolderIndex.build(img_root, IMAGE_EXTENSIONS)

    # each (class, stem) seen in either tree is one expected pair
    pairs: dict[tuple[str, str], Path | None] = {}
    for cls in classes:
        folder = txt_root / txt_classes[cls] if cls in txt_classes else None
        if folder is not None:
            for p in sorted(folder.iterdir()):
                if p.is_file() and p.suffix.lower() == ".txt" and not p.name.startswith("."):
                    pairs[(cls, normalize_name(p.stem))] = p
    owner: dict[str, str] = {}
    for (cls, stem) in list(pairs):
        if stem in owner:
            problems.add("duplicate_id_across_classes", "the same image name has sentence "
                         "files in several class folders; each is kept as a separate pair",
                         [f"{cls}/{stem}"], "warning")
        owner.setdefault(stem, cls)
    for stem, hits in images.by_stem.items():
        for where, _path in hits:
            if where and (where, stem) not in pairs and owner.get(stem) is None:
                pairs[(where, stem)] = None  # an image without sentences

    rows: list[Row] = []
    for (cls, stem), txt_path in sorted(pairs.items()):
        pid = f"{cls}/{stem}"
        img = pick_image(images, stem, cls, pid, problems)
        text = _read_sentences(txt_path, pid, params, problems) if txt_path else None
        rows.append(Row(pid, text, img or img_root / cls / f"{stem}.jpg",
                        (classes.index(cls),), "train", img is not None))
    for r, part in zip(rows, stratified_assign([r.labels[0] for r in rows],
                                               params.split_fractions, params.seed)):
        r.split = SPLIT_NAMES[part]
    if rows and (len(rows) != RELEASE["pairs"] or len(classes) != RELEASE["classes"]):
        problems.add("differs_from_release", f"{len(rows)} pairs in {len(classes)} classes; the "
                     f"public release has {RELEASE['pairs']} in {RELEASE['classes']}",
                     severity="warning")
    info = {"pairs": len(rows), "image_files": len(images), "split": "stratified by class",
            "split_fractions": list(params.split_fractions), "sentences": params.sentences,
            "release": RELEASE}
    return finish("pascal-sentence", params, classes, rows, problems, info, check=check)


def _read_sentences(path: Path, pid: str, params: PascalParams,
                    problems: ProblemLog) -> str | None:
    doc = read_document(path)
    if doc.encoding not in ("utf-8", "utf-8-sig"):
        problems.add("text_encoding_fallback", "sentence files that are not UTF-8 (decoded "
                     "with a fallback encoding)", [pid], "warning")
    sentences = [s for s in doc.text.splitlines() if s.strip()]
    if not sentences:
        problems.add("empty_text", "sentence files with no sentence", [pid])
        return ""
    if len(sentences) != RELEASE["sentences_per_image"]:
        problems.add("unexpected_sentence_count", "sentence files without exactly five "
                     "sentences (all present ones are used)", [pid], "warning")
    return sentences[0] if params.sentences == "first" else " ".join(sentences)


def make_pascal(params: PascalParams, check: bool = False):
    """Pascal Sentence (1000 pairs, 20 classes, 5 sentences per image), seeded per-class
    800/100/100 split.
    """
    return load_pascal(params, check=check)
