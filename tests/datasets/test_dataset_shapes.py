"""The synthetic shapes dataset: determinism, splits, label/caption agreement, images."""
from __future__ import annotations

import pickle

import numpy as np
import pytest

from plugins.datasets.shapes import (COLOUR_NAMES, SHAPES, ShapesDataset, ShapesParams,
                                     class_combos)
from registry import ParamsError, load_plugins

SMALL = dict(num_pairs=60, seed=3)


def make(**kw) -> ShapesDataset:
    return ShapesDataset(ShapesParams(**{**SMALL, **kw}))


def all_records(ds):
    return [r for s in ("train", "val", "test") for r in ds.split(s)]


def test_same_seed_same_data_including_pixels():
    a, b = make(), make()
    for ra, rb in zip(all_records(a), all_records(b), strict=True):
        assert (ra.id, ra.text, ra.labels) == (rb.id, rb.text, rb.labels)
    for ra, rb in list(zip(all_records(a), all_records(b)))[:10]:
        assert np.array_equal(np.asarray(ra.load_image()), np.asarray(rb.load_image()))


def test_different_seed_differs():
    a, b = make(seed=1), make(seed=2)
    assert [r.text for r in all_records(a)] != [r.text for r in all_records(b)]


def test_drawing_twice_gives_identical_pixels():
    rec = make().split("train")[0]
    assert np.array_equal(np.asarray(rec.load_image()), np.asarray(rec.load_image()))


def test_default_split_sizes_are_80_10_10():
    ds = ShapesDataset(ShapesParams())
    assert [len(ds.split(s)) for s in ("train", "val", "test")] == [960, 120, 120]
    ds = make(num_pairs=61)
    sizes = [len(ds.split(s)) for s in ("train", "val", "test")]
    assert sum(sizes) == 61 and sizes[0] == 49


def test_explicit_split_sizes_and_disjoint_ids():
    ds = make(split_sizes=(30, 10, 20))
    ids = [set(r.id for r in ds.split(s)) for s in ("train", "val", "test")]
    assert [len(i) for i in ids] == [30, 10, 20]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])


def test_bad_split_sizes_and_too_many_classes_are_rejected():
    with pytest.raises(ValueError, match="split_sizes"):
        ShapesParams(num_pairs=10, split_sizes=(5, 5, 5))
    with pytest.raises(ValueError, match="num_classes"):
        ShapesParams(num_classes=7, label_scheme="shape")


def test_captions_name_the_class_and_are_non_empty():
    ds = make(num_pairs=200)
    for rec in all_records(ds):
        assert rec.text.strip()
        (lab,) = rec.labels
        assert 0 <= lab < len(ds.classes) == 10
        # the main object is the one with a large-type size word right before its name
        assert any(f"{w} {ds.classes[lab]}" in rec.text for w in ("large", "big")), rec.text


def test_classes_are_unique_readable_and_balanced():
    ds = make(num_pairs=200)
    assert len(set(ds.classes)) == 10
    assert all(" " in c for c in ds.classes)  # "<colour> <shape>"
    counts = np.bincount([r.labels[0] for r in all_records(ds)], minlength=10)
    assert counts.min() == counts.max() == 20


def test_bag_of_words_is_not_enough():
    """Some captions of different classes use exactly the same multiset of words."""
    ds = make(num_pairs=600)
    by_bag: dict[tuple, set[int]] = {}
    for rec in all_records(ds):
        by_bag.setdefault(tuple(sorted(rec.text.split())), set()).add(rec.labels[0])
    assert any(len(labels) > 1 for labels in by_bag.values())


def test_sentence_forms_vary_and_word_order_changes():
    ds = make(num_pairs=200)
    first_words = {r.text.split()[0] for r in all_records(ds)}
    assert {"a", "the", "there"} <= first_words
    assert first_words & {"left", "right", "above", "below", "over", "under", "to", "beneath"}


def test_images_have_the_configured_size_and_mode():
    ds = make(image_size=32)
    assert ds.native_image_size == 32
    img = ds.split("val")[0].load_image()
    assert img.size == (32, 32) and img.mode == "RGB"
    arr = np.asarray(img)
    assert arr.std() > 5  # something is drawn


def test_records_are_picklable_for_dataloader_workers():
    rec = make().split("train")[0]
    clone = pickle.loads(pickle.dumps(rec))
    assert np.array_equal(np.asarray(clone.load_image()), np.asarray(rec.load_image()))


@pytest.mark.parametrize("scheme,n", [("shape", len(SHAPES)), ("colour", len(COLOUR_NAMES))])
def test_single_attribute_schemes(scheme, n):
    ds = make(label_scheme=scheme, num_classes=n)
    assert ds.classes == [c for combo in class_combos(n, scheme) for c in combo if c]
    for rec in all_records(ds):
        assert ds.classes[rec.labels[0]] in rec.text


def test_no_distractor_captions_mention_one_object():
    ds = make(distractor_prob=0.0)
    for rec in all_records(ds):
        assert not any(w in rec.text.split() for w in ("small", "little"))


def test_report_counts_every_split():
    rep = make().report()
    assert rep.usable and rep.layout == "shapes"
    assert rep.counts == {"train": 48, "val": 6, "test": 6}
    assert sum(rep.class_counts["train"].values()) == 48


def test_registered_as_dataset_component():
    reg = load_plugins(autoload=False, load=["plugins.datasets.shapes"]).registry
    ds = reg.create("dataset", "shapes", {"num_pairs": 20, "image_size": 16})
    assert len(ds.split("train")) == 16
    with pytest.raises(ParamsError, match="num_pairs"):
        reg.create("dataset", "shapes", {"num_pairs": "many"})
