"""The xmedianet layout: per-split image and text lists of `<path> <label>` rows."""
from __future__ import annotations

from pathlib import Path

import pytest

from daer_core.errors import DataError
from plugins.datasets.xmedianet import XMediaNetParams, load_xmedianet

from dataset_fixtures import write_image


def build(root: Path, sizes=(("train", 6), ("val", 2), ("test", 2)), base: int = 1) -> Path:
    (root / "list").mkdir(parents=True)
    k = 0
    for split, n in sizes:
        ilines, tlines = [], []
        for j in range(n):
            lab = k % 3
            img = f"c{lab}/img {k}.jpg"   # a path with a space
            write_image(root / "image" / img)
            (root / "text" / f"c{lab}").mkdir(parents=True, exist_ok=True)
            (root / "text" / f"c{lab}" / f"{k}.txt").write_text(f"document {k} of class {lab}")
            ilines.append(f"{img} {lab + base}")
            tlines.append(f"c{lab}/{k}.txt {lab + base}")
            k += 1
        (root / "list" / f"image_{split}.list").write_text("\n".join(ilines) + "\n")
        (root / "list" / f"text_{split}.list").write_text("\n".join(tlines) + "\n")
    return root


def load(root, check=False, **kw):
    return load_xmedianet(XMediaNetParams(root=str(root), **kw), check=check)


def test_lists_pair_row_by_row_with_one_based_labels(tmp_path):
    ds = load(build(tmp_path))
    assert [len(ds.split(s)) for s in ("train", "val", "test")] == [6, 2, 2]
    rec = ds.split("train")[4]
    assert rec.id == "c1/img 4" and rec.labels == (1,)
    assert rec.text == "document 4 of class 1"
    assert rec.load_image().size == (8, 8)
    assert ds.classes == ["class_0", "class_1", "class_2"]
    rep = ds.report()
    assert rep.usable and rep.info["label_base"] == 1


def test_zero_based_labels_class_names_and_val_carve(tmp_path):
    root = build(tmp_path, sizes=(("train", 10), ("test", 3)), base=0)
    (root / "classes.txt").write_text("x\ny\nz\n")
    ds = load(root, val_fraction=0.2)
    assert ds.classes == ["x", "y", "z"]
    assert [len(ds.split(s)) for s in ("train", "val", "test")] == [8, 2, 3]
    assert ds.split("test")[0].labels == (1,)  # k=10 -> 10 % 3


def test_paths_with_stray_spaces_or_other_extension_are_resolved(tmp_path):
    root = build(tmp_path)
    (root / "image" / "c0" / "img 0.jpg").rename(root / "image" / "c0" / "img 0.jpg ")
    img3 = root / "image" / "c0" / "img 3.jpg"
    img3.unlink()
    write_image(img3.with_suffix(".png"), fmt="PNG")
    rep = load(root, check=True).report()
    assert rep.usable
    prob = {p.code: p for p in rep.problems}["path_resolved"]
    assert prob.ids == ["c0/img 0", "c0/img 3"] and "'c0/img 3.jpg' -> 'img 3.png'" in prob.message


def test_missing_files_label_mismatch_and_bad_rows(tmp_path):
    root = build(tmp_path)
    (root / "text" / "c2" / "5.txt").unlink()
    with open(root / "list" / "image_test.list", "a") as f:
        f.write("c0/img 0.jpg 3\nno-label-here\n")
    with open(root / "list" / "text_test.list", "a") as f:
        f.write("c0/0.txt 1\n")
    with pytest.raises(DataError) as exc:
        load(root)
    assert "texts_missing (1)" in str(exc.value) and "c2/img 5" in str(exc.value)
    probs = {p.code: p.ids for p in load(root, check=True).report().problems}
    assert probs["label_mismatch"] == ["image_test.list:3 vs text_test.list:3"]
    assert probs["malformed_row"] == ["image_test.list:4"]
    assert probs["list_length_mismatch"] == ["test"]


def test_absent_lists_are_explained(tmp_path):
    tmp_path.joinpath("image").mkdir()
    with pytest.raises(DataError, match=r"image_train\.list.*<relative path> <label>"):
        load(tmp_path)
