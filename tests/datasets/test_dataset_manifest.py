"""The manifest layout: JSONL and CSV rows {image, text|text_file, labels, split, id}."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from daer_core.errors import DataError
from plugins.datasets.manifest import ManifestParams, load_manifest

from dataset_fixtures import write_image


def jsonl(root: Path, rows: list[dict], name: str = "manifest.jsonl") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / name).write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


def pairs(root: Path, n: int) -> list[dict]:
    rows = []
    for k in range(n):
        write_image(root / "img" / f"{k}.jpg")
        rows.append({"image": f"img/{k}.jpg", "text": f"caption {k}",
                     "labels": ["dog", "cat"][k % 2]})
    return rows


def load(root, check=False, **kw):
    return load_manifest(ManifestParams(root=str(root), **kw), check=check)


def test_jsonl_names_inferred_and_seeded_split(tmp_path):
    ds = load(jsonl(tmp_path, pairs(tmp_path, 10)))
    assert ds.classes == ["cat", "dog"]
    assert [len(ds.split(s)) for s in ("train", "val", "test")] == [8, 1, 1]
    rec = {r.id: r for s in ("train", "val", "test") for r in ds.split(s)}["row-2"]
    assert rec.text == "caption 1" and rec.labels == (0,)  # ids are line numbers; cat


def test_explicit_splits_multi_label_ids_and_text_files(tmp_path):
    rows = pairs(tmp_path, 4)
    rows[0].update(split="train", labels=["dog", "cat"], id="first")
    rows[1].update(split="valid")
    rows[2].update(split="test")
    rows[3].update(split="train", text=None, text_file="t.txt")
    (tmp_path / "t.txt").write_text("from a file")
    ds = load(jsonl(tmp_path, rows))
    assert [r.id for r in ds.split("train")] == ["first", "row-4"]
    assert ds.split("train")[0].labels == (1, 0)
    assert ds.split("train")[1].text == "from a file"
    assert [r.id for r in ds.split("val")] == ["row-2"]
    assert ds.report().info["multi_label"] is True


def test_csv_with_index_labels_and_given_classes(tmp_path):
    write_image(tmp_path / "a.png", fmt="PNG")
    write_image(tmp_path / "b.jpg")
    (tmp_path / "data.csv").write_text(
        "image,text,labels,split\n"
        'a.png,"a caption, with a comma",0;2,train\n'
        "b.jpg,another,1,test\n")
    ds = load(tmp_path / "data.csv", classes=["x", "y", "z"])
    assert ds.split("train")[0].labels == (0, 2)
    assert ds.split("train")[0].text == "a caption, with a comma"
    assert ds.split("test")[0].labels == (1,)


def test_bad_rows_are_named_by_line(tmp_path):
    rows = pairs(tmp_path, 3)
    rows[1]["labels"] = "horse"
    rows[2]["split"] = "holdout"
    root = jsonl(tmp_path, rows)
    with open(root / "manifest.jsonl", "a") as f:
        f.write("{not json\n")
    rep = load(root, check=True, classes=["cat", "dog"]).report()
    probs = {p.code: p.ids for p in rep.problems}
    assert probs["bad_label"] == ["manifest.jsonl:2 ('horse')"]
    assert probs["bad_split"] == ["manifest.jsonl:3"]
    assert probs["malformed_row"][0].startswith("manifest.jsonl:4")
    with pytest.raises(DataError, match="bad_label"):
        load(root, classes=["cat", "dog"])


def test_missing_image_error_then_skip(tmp_path):
    rows = pairs(tmp_path, 5)
    (tmp_path / "img" / "3.jpg").unlink()
    root = jsonl(tmp_path, rows)
    with pytest.raises(DataError, match="row-4"):
        load(root)
    ds = load(root, missing="skip")
    assert "row-4" not in [r.id for s in ("train", "val", "test") for r in ds.split(s)]


def test_mixed_names_and_indices_need_classes(tmp_path):
    rows = pairs(tmp_path, 2)
    rows[1]["labels"] = 0
    with pytest.raises(DataError, match="mix class names and indices"):
        load(jsonl(tmp_path, rows))


def test_line_separators_inside_a_caption_keep_rows_and_line_numbers(tmp_path):
    """U+2028, U+2029 and U+0085 may sit inside a caption: they are not line breaks."""
    rows = pairs(tmp_path, 4)
    rows[0]["text"] = "first line\u2028still the caption\u0085and more\u2029end"
    rows[2]["labels"] = "horse"                 # line 3: must be named as line 3
    (tmp_path / "manifest.jsonl").write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    rep = load(tmp_path, check=True, classes=["cat", "dog"]).report()
    probs = {p.code: p.ids for p in rep.problems}
    assert probs == {"bad_label": ["manifest.jsonl:3 ('horse')"]}
    write_image(tmp_path / "c.png", fmt="PNG")
    (tmp_path / "data.csv").write_text(
        "image,text,labels\n"
        "c.png,a caption\u2028with a separator,0\n"
        "c.png,x,z\n", encoding="utf-8")
    rep = load(tmp_path / "data.csv", check=True, classes=["a", "b"]).report()
    assert {p.code: p.ids for p in rep.problems}["bad_label"] == ["data.csv:3 ('z')"]


def test_a_long_caption_is_read_not_called_an_unclosed_quote(tmp_path):
    write_image(tmp_path / "c.png", fmt="PNG")
    caption = "word " * 220_000                   # about 1 MB, past csv's 131,072 default
    (tmp_path / "data.csv").write_text(f'image,text,labels\nc.png,"{caption}",0\n')
    ds = load(tmp_path / "data.csv", classes=["a"], split_fractions=[1.0, 0.0, 0.0])
    assert ds.split("train")[0].text == caption.strip()
    import csv
    assert csv.field_size_limit() == 131072      # the global limit is restored


def test_an_empty_or_header_only_manifest_is_not_usable(tmp_path):
    (tmp_path / "data.csv").write_text("image,text,labels\n")
    rep = load(tmp_path / "data.csv", check=True).report()
    assert not rep.usable and "empty_manifest" in {p.code for p in rep.problems}
    with pytest.raises(DataError, match="empty_manifest"):
        load(tmp_path / "data.csv")


def captions_csv(root: Path, body: str) -> Path:
    """A CSV manifest with an image_id column; images a.jpg, b.jpg, c.jpg exist."""
    for name in ("a", "b", "c"):
        write_image(root / f"{name}.jpg")
    (root / "data.csv").write_text("image,text,labels,split,image_id\n" + body)
    return root / "data.csv"


def test_rows_sharing_an_image_id_are_captions_of_one_image(tmp_path):
    path = captions_csv(tmp_path, "a.jpg,a dog runs,dog,train,im1\n"
                                  "a.jpg,a brown dog,dog,train,im1\n"
                                  "b.jpg,a cat,cat,train,\n"
                                  "c.jpg,a bird,bird,test,im3\n")
    ds = load(path)
    train = ds.split("train")
    assert [r.image_id for r in train] == ["im1", "im1", None]
    assert train[0].image_key == train[1].image_key != train[2].image_key
    rep = ds.report()
    assert rep.usable and rep.info["images"] == {"train": 2, "val": 0, "test": 1}
    assert rep.info["image_ids"] == 2


def test_one_image_id_naming_two_files_is_a_problem(tmp_path):
    path = captions_csv(tmp_path, "a.jpg,a dog,dog,train,im1\n"
                                  "a.jpg,the dog,dog,train,im1\n"
                                  "b.jpg,a cat,cat,train,im1\n")
    rep = load(path, check=True).report()
    prob = {p.code: p for p in rep.problems}["image_id_file_conflict"]
    assert prob.severity == "error"
    assert prob.ids == ["im1 (a.jpg: data.csv:2, data.csv:3; b.jpg: data.csv:4)"]
    with pytest.raises(DataError, match="image_id_file_conflict.*im1"):
        load(path)


def test_one_image_id_in_two_splits_is_a_problem(tmp_path):
    path = captions_csv(tmp_path, "a.jpg,a dog,dog,train,im1\n"
                                  "a.jpg,the dog,dog,test,im1\n"
                                  "a.jpg,one dog,dog,,im1\n"
                                  "b.jpg,a cat,cat,train,im2\n")
    rep = load(path, check=True).report()
    prob = {p.code: p for p in rep.problems}["image_id_split_conflict"]
    assert prob.ids == ["im1 (train: data.csv:2; test: data.csv:3; no split: data.csv:4)"]
    with pytest.raises(DataError, match="image_id_split_conflict"):
        load(path)


def test_rows_without_a_split_are_split_an_image_at_a_time(tmp_path):
    rows = []
    for k in range(10):
        write_image(tmp_path / "img" / f"{k}.jpg")
        for c in range(3):
            rows.append({"image": f"img/{k}.jpg", "text": f"caption {c} of {k}",
                         "labels": "x", "image_id": k})
    ds = load(jsonl(tmp_path, rows))
    per_split = {s: {r.image_id for r in ds.split(s)} for s in ("train", "val", "test")}
    assert [len(per_split[s]) for s in ("train", "val", "test")] == [8, 1, 1]
    assert [len(ds.split(s)) for s in ("train", "val", "test")] == [24, 3, 3]
    assert not (per_split["train"] & per_split["test"]) and not (per_split["train"]
                                                                 & per_split["val"])
