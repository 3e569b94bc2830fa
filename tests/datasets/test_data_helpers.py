"""Shared data helpers: tolerant text extraction, id/path resolution, seeded splits."""
from __future__ import annotations

import pytest

from daer_core.data.files import (FolderIndex, PathResolver, extension_mismatch,
                                  resolve_id, sniff_image_format)
from daer_core.data.splits import (carve, partition, sizes_from_fractions,
                                   stratified_assign)
from daer_core.data.text import decode_bytes, extract_document

from dataset_fixtures import write_image


def test_text_decoding_prefers_utf8_and_reports_fallback():
    assert decode_bytes("na\u00efve".encode("utf-8")).encoding == "utf-8"
    bom = decode_bytes(b"\xef\xbb\xbfhello")
    assert bom.text == "hello" and not bom.used_fallback
    cp = decode_bytes("\u201cquoted\u201d".encode("cp1252"))
    assert cp.text == "\u201cquoted\u201d" and cp.used_fallback and cp.encoding == "cp1252"
    assert decode_bytes(b"\x81\x8d").encoding == "latin-1"  # bytes undefined in cp1252


def test_xml_rejected_by_strict_parsers_is_still_extracted():
    raw = ('<?xml version="1.0"?>\n<document id="d1" cat="3"><text>\n  AT&T &amp; R&D '
           '&mdash; x < y &#233;  <i>it</i>\n\n second  para </text><imageset/></document>')
    doc = extract_document(raw)
    assert doc.attrs == {"id": "d1", "cat": "3"}
    assert doc.text == "AT&T & R&D \u2014 x < y \u00e9 it\nsecond para"


def test_plain_text_and_markup_without_text_element():
    assert extract_document("  just   words \n\n more ").text == "just words\nmore"
    assert extract_document("<p>one</p><p>two &amp; three</p>").text == "one\ntwo & three"


def test_resolve_id_handles_stray_characters_only_when_unambiguous():
    known = {"b315-3", "c1", "c2"}
    assert resolve_id("b315-3", known).how == "exact"
    r = resolve_id("Ab315-3", known)
    assert (r.name, r.how, r.changed) == ("b315-3", "stray-leading", True)
    assert resolve_id(" b315-3\ufeff", known).how == "whitespace"
    assert resolve_id("b315-3x", known).how == "stray-trailing"
    assert resolve_id("c12", {"c1", "2"} | {"c12x"}).name == "c1"  # only "c1" matches
    assert resolve_id("zzz", known).name is None


def test_folder_index_and_image_sniffing(tmp_path):
    write_image(tmp_path / "a" / "x .jpg", fmt="PNG")
    write_image(tmp_path / "b" / "x.bmp", fmt="BMP")
    idx = FolderIndex.build(tmp_path)
    assert sorted(w for w, _ in idx.find("x")) == ["a", "b"]
    png = idx.find("x")[0][1]
    assert sniff_image_format(png) == "PNG" and extension_mismatch(png, "PNG")
    (tmp_path / "junk.jpg").write_bytes(b"not an image")
    assert sniff_image_format(tmp_path / "junk.jpg") is None
    assert FolderIndex.build(tmp_path / "absent").by_stem == {}


def test_path_resolver(tmp_path):
    write_image(tmp_path / "sub dir" / "p.png", fmt="PNG")
    write_image(tmp_path / "sub dir" / " q.jpg")
    res = PathResolver(tmp_path)
    assert res.resolve("sub dir/p.png")[1] == "exact"
    assert res.resolve("sub dir/q.jpg")[1] == "normalized"
    assert res.resolve("sub dir/p.jpg")[1] == "other-extension"
    assert res.resolve("sub dir /p.png")[1] == "normalized"
    assert res.resolve("nope/p.png") == (None, "none")


def test_sizes_from_fractions_always_add_up():
    assert sizes_from_fractions(10, (0.8, 0.1, 0.1)) == (8, 1, 1)
    assert sizes_from_fractions(7, (1, 1, 1)) == (3, 2, 2)
    assert sum(sizes_from_fractions(1001, (0.7, 0.2, 0.1))) == 1001
    with pytest.raises(ValueError):
        sizes_from_fractions(5, (0, 0))


def test_partition_carve_and_stratify_are_seeded_and_disjoint():
    items = list(range(20))
    a, b = partition(items, [15, 5], seed=1), partition(items, [15, 5], seed=1)
    assert a == b and sorted(a[0] + a[1]) == items and a != partition(items, [15, 5], seed=2)
    keep, val = carve(items, 0.25, seed=0)
    assert len(val) == 5 and not set(keep) & set(val)
    labels = [k % 4 for k in range(40)]
    parts = stratified_assign(labels, (0.8, 0.1, 0.1), seed=0)
    for c in range(4):
        mine = [p for p, lab in zip(parts, labels) if lab == c]
        assert [mine.count(k) for k in range(3)] == [8, 1, 1]
    assert parts == stratified_assign(labels, (0.8, 0.1, 0.1), seed=0)
