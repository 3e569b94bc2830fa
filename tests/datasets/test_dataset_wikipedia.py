"""The wikipedia layout on small fixtures with every real-world quirk, plus the real copy."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from daer_core.errors import DataError
from plugins.datasets.wikipedia import WikipediaParams, load_wikipedia

from dataset_fixtures import split_ids, write_image

CLASSES = ["art", "biology", "sport"]
REAL = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "wikipedia"


def xml_doc(doc_id: str, cat: str, body: str) -> str:
    return (f'<document id="{doc_id}" name="N" cat="{cat}">\n<text>\n{body}\n</text>\n'
            f'<imageset>\n<image id="x">../img/x.jpg</image>\n</imageset>\n</document>\n')


def build(root: Path, *, images: bool = True) -> Path:
    """3 classes, 6 train rows (one with a stray leading 'A'), 3 test rows."""
    (root / "texts").mkdir(parents=True)
    (root / "categories.list").write_text("\n".join(CLASSES) + "\n")
    train = [("t1", "i1", 1), ("t2", "i2", 2), ("t3", "i3", 3), ("t4", "i4", 1),
             ("t5", "i5", 2), ("t6", "i6", 3)]
    test = [("t7", "i7", 1), ("t8", "i8", 2), ("t9", "i9", 3)]
    lines = [f"{'A' if k == 0 else ''}{t}\t{i}\t{c}" for k, (t, i, c) in enumerate(train)]
    (root / "trainset_txt_img_cat.list").write_text("\n".join(lines) + "\n")
    (root / "testset_txt_img_cat.list").write_text(
        "\n".join(f"{t}\t{i}\t{c}" for t, i, c in test) + "\n")
    cats = {1: "1", 2: "3", 3: "11"}
    for t, _i, c in train + test:
        body = f"Text of {t} R&D &ndash; fine &amp; dandy &undefinedthing; <b>bold</b>"
        (root / "texts" / f"{t}.xml").write_text(xml_doc(t, cats[c], body), encoding="utf-8")
    # plain text and a non-UTF-8 text
    (root / "texts" / "t2.xml").unlink()
    (root / "texts" / "t2.txt").write_text("Plain text of t2.\n")
    (root / "texts" / "t3.xml").write_bytes(
        xml_doc("t3", "11", "caf\xe9 na\xefve").encode("cp1252"))
    if images:
        for t, i, c in train + test:
            write_image(root / "images" / CLASSES[c - 1] / f"{i}.jpg")
        # a PNG saved as .jpg, a name with a stray space, the same id in two class folders
        write_image(root / "images" / "biology" / "i5.jpg", fmt="PNG")
        (root / "images" / "sport" / "i6.jpg").rename(root / "images" / "sport" / "i6 .jpg")
        write_image(root / "images" / "sport" / "i4.jpg", colour=(0, 0, 255))
    return root


def params(root: Path, **kw) -> WikipediaParams:
    return WikipediaParams(root=str(root), **kw)


def codes(ds) -> dict[str, object]:
    return {p.code: p for p in ds.report().problems}


def test_clean_copy_with_quirks_is_usable(tmp_path):
    ds = load_wikipedia(params(build(tmp_path), val_fraction=1 / 6), check=True)
    rep = ds.report()
    assert rep.usable, [p.as_dict() for p in rep.problems if p.severity == "error"]
    assert rep.counts == {"train": 5, "val": 1, "test": 3}
    assert rep.info["standard_split"] == {"train": 6, "test": 3}
    assert rep.info["documents"] == 9
    probs = codes(ds)
    stray = probs["stray_characters_in_id"]
    assert stray.ids == ["At1"] and "'At1' -> 't1'" in stray.message
    assert stray.severity == "warning"
    assert probs["image_extension_mismatch"].ids == ["t5"]
    assert probs["duplicate_image_id"].ids == ["t4"]
    assert probs["text_encoding_fallback"].ids == ["t3"]
    assert rep.class_counts["test"] == {"art": 1, "biology": 1, "sport": 1}


def test_records_resolve_files_and_extract_clean_text(tmp_path):
    ds = load_wikipedia(params(build(tmp_path), val_fraction=0.0))
    recs = {r.id: r for s in ("train", "val", "test") for r in ds.split(s)}
    assert set(recs) == {f"t{k}" for k in range(1, 10)}
    t1 = recs["t1"].text
    assert t1 == "Text of t1 R&D \u2013 fine & dandy &undefinedthing; bold"
    assert recs["t2"].text == "Plain text of t2."
    assert recs["t3"].text == "caf\xe9 na\xefve"
    assert recs["t3"].labels == (2,)
    # the list's label decides: t4 is art, the art copy (red) is used, not the sport one
    red, _, blue = np.asarray(recs["t4"].load_image())[0, 0].tolist()
    assert red > 150 and blue < 80
    assert recs["t5"].load_image().size == (8, 8)  # PNG named .jpg decodes
    assert recs["t6"].image.name == "i6 .jpg"


def test_missing_files_raise_listing_ids(tmp_path):
    root = build(tmp_path)
    (root / "texts" / "t8.xml").unlink()
    (root / "images" / "sport" / "i9.jpg").unlink()
    with pytest.raises(DataError) as exc:
        load_wikipedia(params(root))
    msg = str(exc.value)
    assert "texts_missing (1)" in msg and "t8" in msg
    assert "images_missing (1)" in msg and "t9" in msg
    # check mode reports instead of raising
    rep = load_wikipedia(params(root), check=True).report()
    assert not rep.usable
    assert {p.code: p.ids for p in rep.problems}["texts_missing"] == ["t8"]


def test_missing_skip_drops_rows_with_a_count_and_a_logged_warning(tmp_path, caplog):
    root = build(tmp_path)
    (root / "texts" / "t8.xml").unlink()
    (root / "images" / "sport" / "i9.jpg").unlink()
    with caplog.at_level(logging.WARNING, logger="daer.data"):
        ds = load_wikipedia(params(root, missing="skip"))
    assert [r.id for r in ds.split("test")] == ["t7"]
    rep = ds.report()
    assert rep.usable
    skipped = {p.code: p for p in rep.problems}["rows_skipped"]
    assert sorted(skipped.ids) == ["t8", "t9"] and skipped.severity == "warning"
    assert "skipped 2 rows" in caplog.text


def test_absent_image_folder_is_reported_not_crashed(tmp_path):
    root = build(tmp_path, images=False)
    rep = load_wikipedia(params(root), check=True).report()
    prob = {p.code: p for p in rep.problems}["images_missing"]
    assert prob.severity == "error" and len(prob.ids) == 9
    assert "does not exist" in prob.message
    assert rep.info["text_only_usable"] and not rep.info["images_present"]
    with pytest.raises(DataError, match="images_missing"):
        load_wikipedia(params(root))
    # text-only use
    ds = load_wikipedia(params(root, require_images=False))
    assert ds.report().usable and len(ds.split("test")) == 3


def test_random_split_is_seeded(tmp_path):
    root = build(tmp_path)
    a = load_wikipedia(params(root, split="random", split_fractions=(0.6, 0.2, 0.2), seed=1))
    b = load_wikipedia(params(root, split="random", split_fractions=(0.6, 0.2, 0.2), seed=1))
    assert [len(a.split(s)) for s in ("train", "val", "test")] == [5, 2, 2]
    assert split_ids(a) == split_ids(b)


def test_bad_rows_and_label_disagreements_are_named(tmp_path):
    root = build(tmp_path)
    with open(root / "testset_txt_img_cat.list", "a") as f:
        f.write("t10\ti10\t7\nonly-two\tcolumns\n")
    (root / "texts" / "t7.xml").write_text(xml_doc("t7", "11", "moved"))  # cat 11 -> label 3
    rep = load_wikipedia(params(root), check=True).report()
    probs = {p.code: p for p in rep.problems}
    assert probs["bad_label"].ids == ["testset_txt_img_cat.list:4"]
    assert probs["malformed_row"].ids == ["testset_txt_img_cat.list:5"]
    assert probs["label_disagrees_with_xml_cat"].ids == ["t7"]


def test_missing_list_file_names_it(tmp_path):
    root = build(tmp_path)
    (root / "testset_txt_img_cat.list").unlink()
    with pytest.raises(DataError, match="testset_txt_img_cat.list"):
        load_wikipedia(params(root), check=True)


@pytest.mark.skipif(not REAL.is_dir(), reason=f"real Wikipedia copy not present at {REAL}")
def test_real_wikipedia_copy():
    rep = load_wikipedia(params(REAL), check=True).report()
    assert rep.info["documents"] == 2866 and len(rep.classes) == 10
    assert rep.info["standard_split"] == {"train": 2173, "test": 693}
    assert sum(rep.counts.values()) == 2866
    probs = {p.code: p for p in rep.problems}
    assert probs["stray_characters_in_id"].ids == ["Ab3150b0c281960b6a6d33407824fd40a-3"]
    assert len(probs["images_missing"].ids) == 2866 and not rep.usable
    assert rep.info["texts_rejected_by_strict_xml"] > 500
