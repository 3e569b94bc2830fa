"""The karpathy layout: Karpathy's split files of Flickr8k/30k and COCO, one pair per caption,
captions of one image sharing its image_id."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from daer_core.errors import DataError
from plugins.datasets.karpathy import KarpathyParams, load_karpathy
from registry import load_plugins

from dataset_fixtures import write_image

SPLITS = ("train", "val", "test")
#: (split, number of captions) of the six images of the fixture, imgid = position
IMAGES = [("train", 5), ("train", 3), ("restval", 4), ("restval", 2), ("val", 5), ("test", 2)]


def write_flickr8k(root: Path, images=IMAGES, filepath: str | None = None) -> Path:
    """``root/dataset_flickr8k.json`` and one small JPEG per image under ``root/images``."""
    entries = []
    sentid = 0
    for imgid, (split, n) in enumerate(images):
        name = f"{1000 + imgid}_img.jpg"
        folder = root / "images" / (filepath or "")
        write_image(folder / name, colour=(40 * imgid, 80, 120))
        sentences = []
        for k in range(n):
            sentences.append({"raw": f"Image {imgid} caption {k} .",
                              "tokens": ["image", str(imgid), "caption", str(k)],
                              "imgid": imgid, "sentid": sentid})
            sentid += 1
        entry = {"filename": name, "imgid": imgid, "split": split, "sentences": sentences,
                 "sentids": [s["sentid"] for s in sentences]}
        if filepath:
            entry["filepath"] = filepath
        entries.append(entry)
    (root / "dataset_flickr8k.json").write_text(json.dumps(
        {"images": entries, "dataset": "flickr8k"}))
    return root


def load(root, check=False, **kw):
    return load_karpathy(KarpathyParams(root=str(root), **kw), check=check)


def sizes(ds) -> dict[str, tuple[int, int]]:
    """(pairs, distinct images) per split."""
    return {s: (len(ds.split(s)), len({r.image_key for r in ds.split(s)})) for s in SPLITS}


def test_restval_goes_to_train_and_captions_share_their_image(tmp_path):
    ds = load(write_flickr8k(tmp_path))
    assert sizes(ds) == {"train": (14, 4), "val": (5, 1), "test": (2, 1)}
    assert ds.classes == [] and all(r.labels == () for s in SPLITS for r in ds.split(s))
    first = ds.split("train")[:5]
    assert [r.id for r in first] == ["0-0", "0-1", "0-2", "0-3", "0-4"]
    assert {r.image_id for r in first} == {"0"}
    assert first[0].text == "Image 0 caption 0 ." and first[0].image == first[4].image
    assert first[0].image == tmp_path / "images" / "1000_img.jpg"
    rep = ds.report()
    assert rep.usable and rep.counts == {"train": 14, "val": 5, "test": 2}
    assert rep.info["images"] == {"train": 4, "val": 1, "test": 1}
    assert rep.info["dataset"] == "flickr8k" and rep.info["restval_images"] == 2
    assert ds.split("train")[0].load_image().size == (8, 8)


def test_restval_skip_keeps_karpathy_train_only(tmp_path):
    ds = load(write_flickr8k(tmp_path), restval="skip")
    assert sizes(ds)["train"] == (8, 2)
    assert {r.image_id for r in ds.split("train")} == {"0", "1"}


def test_captions_per_image_keeps_the_first(tmp_path):
    ds = load(write_flickr8k(tmp_path), captions_per_image=2)
    assert sizes(ds) == {"train": (8, 4), "val": (2, 1), "test": (2, 1)}
    assert [r.id for r in ds.split("val")] == ["4-14", "4-15"]
    assert ds.report().info["captions_dropped_by_cap"] == 3 + 1 + 2 + 3


def test_max_images_caps_each_split_in_file_order(tmp_path):
    ds = load(write_flickr8k(tmp_path), max_images=1)
    assert sizes(ds) == {"train": (5, 1), "val": (5, 1), "test": (2, 1)}
    assert ds.split("train")[0].image_id == "0"


def test_coco_filepath_is_a_subfolder_of_images(tmp_path):
    ds = load(write_flickr8k(tmp_path, filepath="val2014"))
    assert ds.split("test")[0].image == tmp_path / "images" / "val2014" / "1005_img.jpg"


def test_root_may_be_the_json_file_and_images_a_param(tmp_path):
    write_flickr8k(tmp_path)
    (tmp_path / "images").rename(tmp_path / "Flicker8k_Dataset")
    ds = load(tmp_path / "dataset_flickr8k.json", images="Flicker8k_Dataset")
    assert sizes(ds)["test"] == (2, 1)


def test_a_missing_image_is_counted_then_skipped(tmp_path):
    write_flickr8k(tmp_path)
    (tmp_path / "images" / "1001_img.jpg").unlink()  # image 1: three captions
    rep = load(tmp_path, check=True).report()
    probs = {p.code: p for p in rep.problems}
    assert probs["images_missing"].severity == "error"
    assert probs["images_missing"].ids == ["1-5", "1-6", "1-7"]
    assert rep.info["image_files_missing"] == 1 and not rep.usable
    with pytest.raises(DataError, match="images_missing.*1-5"):
        load(tmp_path)
    ds = load(tmp_path, missing="skip")
    assert sizes(ds)["train"] == (11, 3)
    assert "rows_skipped" in {p.code for p in ds.report().problems}


def test_an_undecodable_image_is_counted(tmp_path):
    write_flickr8k(tmp_path)
    (tmp_path / "images" / "1004_img.jpg").write_bytes(b"not an image at all")
    rep = load(tmp_path, check=True).report()
    bad = {p.code: p for p in rep.problems}["image_unreadable"]
    assert bad.severity == "error" and bad.ids == [f"4-{k}" for k in range(14, 19)]
    assert rep.info["image_files_unreadable"] == 1 and not rep.usable


def test_an_absent_image_folder_is_named(tmp_path):
    write_flickr8k(tmp_path)
    rep = load(tmp_path, check=True, images="nowhere").report()
    prob = {p.code: p for p in rep.problems}["images_missing"]
    assert "nowhere" in prob.message and len(prob.ids) == 21


@pytest.mark.parametrize("damage, message", [
    (lambda d: d.pop("images"), "no `images` list"),
    (lambda d: d["images"][2]["sentences"][1].pop("raw"),
     r"images\[2\] \(1002_img.jpg\): sentences\[1\] has no `raw`"),
    (lambda d: d["images"][3].update(split="holdout"), r"images\[3\].*split 'holdout'"),
    (lambda d: d["images"][4].update(imgid=1), r"images\[4\] repeats imgid 1 of images\[1\]"),
])
def test_a_malformed_split_file_names_the_file_and_entry(tmp_path, damage, message):
    path = write_flickr8k(tmp_path) / "dataset_flickr8k.json"
    data = json.loads(path.read_text())
    damage(data)
    path.write_text(json.dumps(data))
    with pytest.raises(DataError, match=message) as err:
        load(tmp_path)
    assert str(path) in str(err.value)


def test_not_json_and_no_split_file_are_data_errors(tmp_path):
    with pytest.raises(DataError, match="no dataset_\\*.json"):
        load(tmp_path)
    (tmp_path / "dataset_coco.json").write_text("{not json")
    with pytest.raises(DataError, match="dataset_coco.json.*JSON"):
        load(tmp_path)


def test_registered_as_dataset_component(tmp_path):
    write_flickr8k(tmp_path)
    reg = load_plugins(autoload=False, load=["plugins.datasets"]).registry
    ds = reg.create("dataset", "karpathy", {"root": str(tmp_path), "captions_per_image": 2})
    assert sizes(ds)["train"] == (8, 4)
    rep = reg.create("dataset", "karpathy", {"root": str(tmp_path)}, check=True).report()
    assert rep.usable and rep.layout == "karpathy"


def test_check_decodes_each_image_file_once(tmp_path, monkeypatch):
    """Five captions of one image are five pairs but one file: a check of COCO reads each
    image once, not once per caption."""
    import daer_core.data.images as images
    write_flickr8k(tmp_path)
    seen: list[str] = []
    real = images.undecodable

    def counting(records):
        seen.extend(str(r.image) for r in records)
        return real(records)

    monkeypatch.setattr(images, "undecodable", counting)
    ds = load(tmp_path, check=True)
    pairs = sum(len(ds.split(s)) for s in ("train", "val", "test"))
    assert len(seen) == len(set(seen)) < pairs


def test_a_karpathy_fixture_trains_and_evaluates_at_instance_level(tmp_path):
    """Loads, checks and trains: a contrastive two-tower run on a Flickr8k-format fixture
    (no classes) reports Recall@K; a recipe that needs classes is refused by name."""
    from daer_core.config import load_run_config
    from daer_core.errors import ConfigError
    from daer_core.training.api import train_and_evaluate
    images = [("train", 3)] * 6 + [("restval", 2)] * 2 + [("val", 2)] * 3 + [("test", 2)] * 3
    root = write_flickr8k(tmp_path / "data", images)
    assert load(root, check=True).report().usable
    stage = {"epochs": 1, "batch_size": 4, "warmup_steps": 0,
             "optimizer": {"name": "adam", "lr": 1e-3}}
    cfg = {"preset": "contrastive-shapes", "seed": 0,
           "dataset": {"name": "karpathy", "params": {"root": str(root)}},
           "pipeline": {"text": {"encoder": {"name": "word2vec-lstm",
                                             "params": {"vector_size": 8, "hidden_size": 8,
                                                        "out_dim": 8}},
                                 "attention": None},
                        "image": {"encoder": {"name": "timm",
                                              "params": {"model": "convnext_atto",
                                                         "out_dim": 8, "size": 32}},
                                  "attention": None}},
           "train": {"device": "cpu", "threads": 1, "stages": {"contrastive": stage}},
           "evaluate": {"examples": 0}}
    metrics = train_and_evaluate(load_run_config(cfg), tmp_path / "run")
    assert metrics["protocol"] == "instance" and "avg" not in metrics  # no classes: no mAP
    assert metrics["instance"]["images"] == 3 and metrics["instance"]["texts"] == 6
    assert (tmp_path / "run" / "recall_curve.png").is_file()

    cfg["preset"], cfg["train"]["stages"] = "daer", {}
    with pytest.raises(ConfigError, match="daer-three-stage.*has none.*contrastive"):
        train_and_evaluate(load_run_config(cfg), tmp_path / "run-daer")
