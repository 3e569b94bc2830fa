"""Issue 14, cases 5-7: malformed CSV rows, `data check` and `train` agreeing on images, and
manifest problems reported under the right code with their `file:line`."""
from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from PIL import Image

from daer_core.errors import ConfigError, DataError
from plugins.datasets.manifest import ManifestParams, load_manifest

from data_files import write_image_manifest
from dataset_fixtures import write_image


def _problems(ds) -> dict[str, dict]:
    return {p["code"]: p for p in ds.report().as_dict()["problems"]}


def _csv_rows(root: Path, n: int = 8) -> list[str]:
    lines = []
    for k in range(n):
        write_image(root / "img" / f"{k}.png", fmt="PNG", colour=(30 * k, 90, 200))
        lines.append(f"img/{k}.png,caption number {k},{['dog', 'cat'][k % 2]},"
                     f"{'train' if k < 6 else 'test'}\n")
    return lines


def test_an_unclosed_csv_quote_is_a_malformed_row_named_by_file_and_line(tmp_path):
    """Case 5: the quote on line 4 used to swallow the next lines into one field, shifting
    columns (a split value read as a label invented the class `train`)."""
    lines = _csv_rows(tmp_path)
    lines[2] = 'img/2.png,"caption number 2,dog,train\n'  # line 4 (after the header)
    (tmp_path / "manifest.csv").write_text("image,text,labels,split\n" + "".join(lines))
    ds = load_manifest(ManifestParams(root=str(tmp_path), missing="skip"), check=True)
    problems = _problems(ds)
    assert "malformed_row" in problems, problems
    assert any(i.startswith("manifest.csv:4") for i in problems["malformed_row"]["ids"])
    assert ds.classes == ["cat", "dog"]
    loaded = sorted(r.id for s in ("train", "val", "test") for r in ds.split(s))
    assert loaded == ["row-2", "row-3", "row-5", "row-6", "row-7", "row-8", "row-9"]
    with pytest.raises(DataError, match=r"malformed_row.*manifest.csv:4"):
        load_manifest(ManifestParams(root=str(tmp_path)))


def test_csv_rows_with_too_few_fields_and_multiline_quoted_texts(tmp_path):
    lines = _csv_rows(tmp_path, 4)
    lines[1] = "img/1.png,caption only\n"
    lines[3] = 'img/3.png,"a caption\nover two lines, with a comma",cat,test\n'
    (tmp_path / "m.csv").write_text("image,text,labels,split\n" + "".join(lines))
    ds = load_manifest(ManifestParams(root=str(tmp_path / "m.csv")), check=True)
    assert _problems(ds)["malformed_row"]["ids"] == [
        "m.csv:3 (2 fields, fewer than the header's 4)"]
    test = {r.id: r.text for r in ds.split("test")}
    assert test == {"row-5": "a caption\nover two lines, with a comma"}


def _truncated_jpeg(path: Path) -> None:
    buf = io.BytesIO()
    Image.effect_noise((64, 64), 60).convert("RGB").save(buf, format="JPEG", quality=95)
    data = buf.getvalue()
    path.write_bytes(data[:len(data) // 2])  # the header is intact, the pixels are cut
    with Image.open(path) as im:  # opens (and reports its size) without complaint
        assert im.size == (64, 64)


def test_data_check_decodes_images_completely(tmp_path):
    """Case 6: a JPEG truncated after an intact header passed the header-only check."""
    root = write_image_manifest(tmp_path)
    _truncated_jpeg(root / "img" / "3.jpg")
    ds = load_manifest(ManifestParams(root=str(root)), check=True)
    problems = _problems(ds)
    assert problems["image_unreadable"]["ids"] == ["row-4"]
    assert problems["image_unreadable"]["severity"] == "error"
    assert not ds.report().usable
    skip = load_manifest(ManifestParams(root=str(root), missing="skip"), check=True)
    assert _problems(skip)["image_unreadable"]["severity"] == "warning"


def test_one_stray_index_label_is_one_bad_row_not_an_unreadable_file(tmp_path):
    """Case 7: a single integer among class names made the whole manifest unreadable."""
    rows = []
    for k in range(6):
        write_image(tmp_path / f"{k}.jpg")
        rows.append({"image": f"{k}.jpg", "text": f"t {k}", "labels": ["dog", "cat"][k % 2]})
    rows[4]["labels"] = 1
    (tmp_path / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    ds = load_manifest(ManifestParams(root=str(tmp_path)), check=True)
    assert ds.classes == ["cat", "dog"]
    assert _problems(ds)["mixed_labels"]["ids"] == ["manifest.jsonl:5 (index 1)"]
    assert sum(len(ds.split(s)) for s in ("train", "val", "test")) == 5


def test_rows_without_labels_and_invalid_labels_are_told_apart(tmp_path):
    """Case 7: an invalid label used to be listed under 'rows without labels'."""
    rows = []
    for k in range(5):
        write_image(tmp_path / f"{k}.jpg")
        rows.append({"image": f"{k}.jpg", "text": f"t {k}", "labels": ["dog", "cat"][k % 2]})
    rows[1]["labels"] = []
    rows[2]["labels"] = 7
    (tmp_path / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    ds = load_manifest(ManifestParams(root=str(tmp_path), classes=["cat", "dog"]), check=True)
    problems = _problems(ds)
    assert problems["no_label"]["ids"] == ["manifest.jsonl:2"]
    assert problems["no_label"]["message"] == "rows without labels"
    assert problems["bad_label"]["ids"] == ["manifest.jsonl:3 (7)"]
    assert "neither one of the 2 class names" in problems["bad_label"]["message"]


def test_empty_texts_are_reported(tmp_path):
    """Case 7: the Wikipedia layout reports empty texts; the manifest did not."""
    rows = []
    for k in range(4):
        write_image(tmp_path / f"{k}.jpg")
        rows.append({"image": f"{k}.jpg", "text": f"t {k}", "labels": "a"})
    rows[1]["text"] = "   "
    del rows[2]["text"]
    rows[2]["text_file"] = "empty.txt"
    (tmp_path / "empty.txt").write_text("\n")
    (tmp_path / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    ds = load_manifest(ManifestParams(root=str(tmp_path)), check=True)
    empty = _problems(ds)["empty_text"]
    assert empty["severity"] == "warning"
    assert empty["ids"] == ["row-2 (manifest.jsonl:2)", "row-3 (manifest.jsonl:3)"]


@pytest.mark.parametrize("fractions", [(-0.1, 0.6, 0.5), (0.0, 0.0, 0.0), (float("inf"), 0, 0)])
def test_bad_split_fractions_are_rejected_when_the_config_is_validated(fractions):
    """Case 8: `config validate` accepted negative fractions that loading then rejected."""
    from daer_core.config import load_run_config
    cfg = {"preset": "daer", "dataset": {"name": "manifest", "params": {
        "root": "somewhere", "split_fractions": list(fractions)}}}
    with pytest.raises(ConfigError, match="dataset.params.split_fractions"):
        load_run_config(cfg)
