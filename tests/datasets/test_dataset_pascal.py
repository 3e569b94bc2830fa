"""The pascal-sentence layout on a small fixture with the real-world quirks."""
from __future__ import annotations

from pathlib import Path

import pytest

from daer_core.errors import DataError
from plugins.datasets.pascal import PascalParams, load_pascal

from dataset_fixtures import split_ids, write_image

CLASSES = ["aeroplane", "bird", "cat"]


def build(root: Path, per_class: int = 10) -> Path:
    for cls in CLASSES:
        for k in range(per_class):
            stem = f"{cls}_{k:03d}"
            write_image(root / "dataset" / cls / f"{stem}.jpg")
            s = root / "sentence" / cls / f"{stem}.txt"
            s.parent.mkdir(parents=True, exist_ok=True)
            s.write_text("".join(f"A {cls} picture, sentence {j}.\n" for j in range(5)))
    return root


def load(root, check=False, **kw):
    return load_pascal(PascalParams(root=str(root), **kw), check=check)


def test_split_is_stratified_80_10_10_and_seeded(tmp_path):
    ds = load(build(tmp_path))
    assert ds.classes == CLASSES
    assert [len(ds.split(s)) for s in ("train", "val", "test")] == [24, 3, 3]
    for s, n in (("train", 8), ("val", 1), ("test", 1)):
        assert ds.report().class_counts[s] == {c: n for c in CLASSES}
    assert split_ids(ds) == split_ids(load(tmp_path))
    assert split_ids(ds) != split_ids(load(tmp_path, seed=5))
    problems = {p.code for p in ds.report().problems}
    assert problems == {"differs_from_release"}  # 30 pairs, not 1000


def test_texts_join_five_sentences_or_take_the_first(tmp_path):
    build(tmp_path)
    recs = {r.id: r for s in ("train", "val", "test") for r in load(tmp_path).split(s)}
    rec = recs["bird/bird_000"]
    assert rec.text.count("sentence") == 5 and rec.labels == (1,)
    first = {r.id: r for s in ("train", "val", "test")
             for r in load(tmp_path, sentences="first").split(s)}
    assert first["bird/bird_000"].text == "A bird picture, sentence 0."


def test_quirks_format_spaces_duplicates_and_odd_sentence_counts(tmp_path):
    root = build(tmp_path)
    write_image(root / "dataset" / "cat" / "cat_001.jpg", fmt="BMP")  # BMP named .jpg
    (root / "dataset" / "cat" / "cat_002.jpg").rename(root / "dataset" / "cat" / " cat_002.jpg")
    write_image(root / "dataset" / "bird" / "cat_003.jpg", colour=(0, 0, 255))  # duplicate id
    (root / "sentence" / "cat" / "cat_004.txt").write_text("Only one.\n")
    (root / "sentence" / "cat" / "cat_005.txt").write_bytes("Un caf\xe9.\n".encode("cp1252"))
    (root / "dataset" / "cat" / "Thumbs.db").write_bytes(b"junk")  # file-manager litter
    (root / "dataset" / ".hidden").mkdir()
    ds = load(root, check=True)
    rep = ds.report()
    assert rep.usable
    probs = {p.code: p.ids for p in rep.problems}
    assert probs["image_extension_mismatch"] == ["cat/cat_001"]
    assert probs["duplicate_image_id"] == ["cat/cat_003"]
    assert probs["unexpected_sentence_count"] == ["cat/cat_004", "cat/cat_005"]
    assert probs["text_encoding_fallback"] == ["cat/cat_005"]
    recs = {r.id: r for s in ("train", "val", "test") for r in ds.split(s)}
    assert recs["cat/cat_002"].load_image().size == (8, 8)
    assert recs["cat/cat_003"].image.parent.name == "cat"  # the sentence's class decides
    assert recs["cat/cat_001"].load_image().mode == "RGB"
    assert recs["cat/cat_005"].text == "Un caf\xe9."


def test_missing_image_or_sentences_error_or_skip(tmp_path):
    root = build(tmp_path)
    (root / "dataset" / "bird" / "bird_004.jpg").unlink()
    (root / "sentence" / "cat" / "cat_007.txt").unlink()
    with pytest.raises(DataError) as exc:
        load(root)
    assert "bird/bird_004" in str(exc.value) and "cat/cat_007" in str(exc.value)
    ds = load(root, missing="skip")
    assert sum(len(ds.split(s)) for s in ("train", "val", "test")) == 28


def test_wrong_layout_names_the_expected_folders(tmp_path):
    (tmp_path / "JPEGImages").mkdir()
    with pytest.raises(DataError, match="sentence/<class>/<image>.txt"):
        load(tmp_path)
