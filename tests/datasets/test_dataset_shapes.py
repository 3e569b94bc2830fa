"""The synthetic shapes dataset: determinism, splits, label/caption agreement, images."""
from __future__ import annotations

import hashlib
import pickle

import numpy as np
import pytest

from plugins.datasets.shapes import (COLOUR_NAMES, INVERSE, RELATION_WORDS, SHAPES,
                                     ShapesDataset, ShapesParams, class_combos, relation_of)
from plugins.datasets.shapes import scenes as shapes  # the generator module (its globals)
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


# --- captions_per_image: instance-level data ----------------------------------------------

#: frozen with the code of before captions_per_image existed (seed 3, 60 pairs): the default
#: params must keep giving exactly these records, which golden tests elsewhere depend on
FROZEN_TEST_SPLIT = [
    ("shapes-00054", "there is a large red square beneath a little magenta cross"),
    ("shapes-00055", "a small blue circle to the right of the big magenta cross"),
    ("shapes-00056", "left of the small green square there is a big cyan star"),
]
#: sha256 over (split, id, text, labels, repr(scene), image_id) of every record, same code
FROZEN_DIGEST_SMALL = "1a72705bdd356e5771308e504167600a2c5015373387a4f066fd0f23c8066973"
FROZEN_DIGEST_DEFAULT = "f02cffa3353c2c05ea1575bd2903af8a665dc309f60f50dcac190c39de07ceec"


def digest(ds) -> str:
    h = hashlib.sha256()
    for s in ("train", "val", "test"):
        for r in ds.split(s):
            h.update(repr((s, r.id, r.text, r.labels, r.image, r.image_id)).encode())
    return h.hexdigest()


def by_image(records) -> dict[str, list]:
    out: dict[str, list] = {}
    for r in records:
        out.setdefault(r.image_key, []).append(r)
    return out


def test_one_caption_per_image_keeps_the_records_of_before():
    small = make()
    assert [(r.id, r.text) for r in small.split("test")[:3]] == FROZEN_TEST_SPLIT
    assert all(r.image_id is None for r in all_records(small))
    assert digest(small) == FROZEN_DIGEST_SMALL
    assert digest(make(captions_per_image=1)) == FROZEN_DIGEST_SMALL
    assert digest(ShapesDataset(ShapesParams())) == FROZEN_DIGEST_DEFAULT
    assert "images" not in small.report().info


def test_several_captions_per_scene_share_image_scene_label_and_split():
    one, three = make(), make(captions_per_image=3)
    for s in ("train", "val", "test"):
        groups = by_image(three.split(s))
        scenes = one.split(s)
        assert list(groups) == [r.id for r in scenes]  # same scenes, same order, same split
        for base, group in zip(scenes, groups.values(), strict=True):
            key = base.id
            assert [r.id for r in group] == [f"{key}-{c}" for c in range(3)]
            assert all(r.image_id == key and r.image_key == key for r in group)
            assert all(r.image is group[0].image for r in group)  # one drawing
            assert group[0].image == base.image  # adding captions changes no scene
            assert group[0].text == base.text  # caption 0 is the scene's caption of before
            assert all(r.labels == base.labels for r in group)
            assert len({r.text for r in group}) == 3  # distinct: there are enough forms


def test_splits_count_scenes_not_pairs():
    ds = make(captions_per_image=4, split_sizes=(30, 10, 20))
    assert [len(ds.split(s)) for s in ("train", "val", "test")] == [120, 40, 80]
    images = [set(by_image(ds.split(s))) for s in ("train", "val", "test")]
    assert [len(i) for i in images] == [30, 10, 20]
    assert not (images[0] & images[1] or images[0] & images[2] or images[1] & images[2])
    ds = make(captions_per_image=2)  # fractions 80/10/10 of 60 scenes
    assert [len(ds.split(s)) for s in ("train", "val", "test")] == [96, 12, 12]
    with pytest.raises(ValueError, match="split_sizes.*scenes"):
        ShapesParams(num_pairs=60, captions_per_image=2, split_sizes=(96, 12, 12))


def test_several_captions_are_deterministic_and_extending_keeps_earlier_ones():
    a, b = make(captions_per_image=3), make(captions_per_image=3)
    assert digest(a) == digest(b)
    five = by_image(all_records(make(captions_per_image=5)))
    for key, group in by_image(all_records(a)).items():
        assert [r.text for r in group] == [r.text for r in five[key][:3]]


MAIN_WORDS, SMALL_WORDS = ("large", "big"), ("small", "little")
PHRASE_TO_RELATION = {p: rel for rel, ps in RELATION_WORDS.items() for p in ps}


def read_caption(text: str) -> tuple[tuple[str, str], tuple[str, str] | None, str | None]:
    """What a caption says: the main object's (colour, shape), the distractor's (or None),
    and where the main object is relative to the distractor (or None), parsed from its words.

    The forms put the relation phrase between the objects ("<main> REL <other>", which
    "<other> INV <main>" says inversely) or first ("REL <other> ... <main>")."""
    words = text.split()
    main = other = None
    main_at = other_at = -1
    for i, w in enumerate(words[:-2]):
        if w in MAIN_WORDS:
            main, main_at = (words[i + 1], words[i + 2]), i
        elif w in SMALL_WORDS:
            other, other_at = (words[i + 1], words[i + 2]), i
    assert main is not None, text
    if other is None:
        return main, None, None
    phrase = max((p for p in PHRASE_TO_RELATION if f" {p} " in f" {text} "), key=len)
    rel = PHRASE_TO_RELATION[phrase]
    if text.startswith(phrase) or main_at < other_at:
        return main, other, rel
    return main, other, INVERSE[rel]


def test_paraphrases_describe_the_same_scene():
    """Same objects, colours, sizes and relation in every caption of an image, and that is
    what is drawn."""
    ds = make(num_pairs=200, captions_per_image=5)
    lone = paired = inverse_forms = 0
    for group in by_image(all_records(ds)).values():
        objs = sorted(group[0].image.objects, key=lambda o: -o.radius)  # main is larger
        truth = ((objs[0].colour, objs[0].shape),
                 (objs[1].colour, objs[1].shape) if len(objs) > 1 else None,
                 relation_of(objs[0], objs[1]) if len(objs) > 1 else None)
        for r in group:
            assert read_caption(r.text) == truth, (r.text, truth)
            colours = [w for w in r.text.split() if w in COLOUR_NAMES]
            shapes = [w for w in r.text.split() if w in SHAPES]
            first = group[0].text.split()
            assert sorted(colours) == sorted(w for w in first if w in COLOUR_NAMES)
            assert sorted(shapes) == sorted(w for w in first if w in SHAPES)
            inverse_forms += r.text.split()[1] in SMALL_WORDS  # "a <small ...> INV ..."
        lone += truth[1] is None
        paired += truth[1] is not None
    assert lone and paired and inverse_forms  # every kind of caption was checked


def test_a_lone_object_gets_all_its_ten_captions():
    """A lone object has exactly 10 captions (2 size words x 5 forms): 10 asked, 10 given."""
    ds = make(num_pairs=20, captions_per_image=10, distractor_prob=0.0)
    for group in by_image(all_records(ds)).values():
        assert len(group) == 10 and len({r.text for r in group}) == 10


def test_an_exhausted_form_space_repeats_a_caption_rather_than_loop(monkeypatch):
    """With one size word a lone object has 5 captions; asking for 8 still ends, with every
    form used and the rest duplicates."""
    monkeypatch.setattr(shapes, "MAIN_SIZE_WORDS", ("large",))
    ds = make(num_pairs=10, captions_per_image=8, distractor_prob=0.0)
    for group in by_image(all_records(ds)).values():
        assert len(group) == 8 and len({r.text for r in group}) == 5


def test_report_counts_images_with_several_captions():
    rep = make(captions_per_image=3).report()
    assert rep.counts == {"train": 144, "val": 18, "test": 18}
    assert rep.info["images"] == {"train": 48, "val": 6, "test": 6}
    assert rep.info["generated"] and rep.info["params"]["captions_per_image"] == 3


@pytest.mark.parametrize("bad", [0, 11, "many"])
def test_captions_per_image_is_validated_by_name(bad):
    reg = load_plugins(autoload=False, load=["plugins.datasets.shapes"]).registry
    with pytest.raises(ParamsError, match="captions_per_image"):
        reg.create("dataset", "shapes", {"num_pairs": 20, "captions_per_image": bad})
