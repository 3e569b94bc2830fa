"""The features layout: Wikipedia raw_features.mat and the train_img/train_txt/train_lab
arrays in .mat, .npz and .npy form."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.io

from daer_core.errors import DataError
from plugins.datasets.features import FeaturesParams, load_features

REAL = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "wikipedia"
RNG = np.random.default_rng(0)


def wiki_mat(root: Path, n_train: int = 4, n_test: int = 2, stray: bool = True) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "categories.list").write_text("art\nbiology\nsport\n")
    tr = [(f"t{k}", f"i{k}", k % 3 + 1) for k in range(n_train)]
    te = [(f"u{k}", f"j{k}", k % 3 + 1) for k in range(n_test)]
    rows = [f"{'A' if stray and k == 0 else ''}{t}\t{i}\t{c}" for k, (t, i, c) in enumerate(tr)]
    (root / "trainset_txt_img_cat.list").write_text("\n".join(rows) + "\n")
    (root / "testset_txt_img_cat.list").write_text("\n".join("\t".join(map(str, r))
                                                             for r in te) + "\n")
    (root / "texts").mkdir(exist_ok=True)
    for t, _, _ in tr + te:
        (root / "texts" / f"{t}.xml").write_text(f"<document><text>{t}</text></document>")
    # row k of each matrix encodes its row index so alignment is checkable
    mats = {"I_tr": np.arange(n_train)[:, None] * np.ones((1, 5)),
            "I_te": np.arange(n_test)[:, None] * np.ones((1, 5)),
            "T_tr": RNG.random((n_train, 3)), "T_te": RNG.random((n_test, 3)),
            "T_tfidf_tr": RNG.random((n_train, 7)), "T_tfidf_te": RNG.random((n_test, 7))}
    scipy.io.savemat(root / "raw_features.mat", mats)
    return root


def test_wikipedia_raw_features_aligned_with_list_labels(tmp_path):
    root = wiki_mat(tmp_path)
    ds = load_features(FeaturesParams(root=str(root)))
    tr = ds.features("train")
    assert tr.image.shape == (4, 5) and tr.text.shape == (4, 3)
    assert tr.labels.tolist() == [0, 1, 2, 0]  # 1-based list labels -> 0-based
    assert tr.ids == ["t0", "t1", "t2", "t3"]  # stray 'A' resolved against texts/
    assert tr.image[:, 0].tolist() == [0, 1, 2, 3]
    assert ds.classes == ["art", "biology", "sport"]
    rep = ds.report()
    assert rep.usable and rep.counts == {"train": 4, "val": 0, "test": 2}
    assert [p.code for p in rep.problems] == ["stray_characters_in_id"]
    with pytest.raises(KeyError, match="val_fraction"):
        ds.features("val")


def test_wikipedia_tfidf_choice_and_val_carve(tmp_path):
    root = wiki_mat(tmp_path, n_train=10)
    ds = load_features(FeaturesParams(root=str(root / "raw_features.mat"),
                                      text_feature="tfidf", val_fraction=0.2, seed=3))
    assert ds.features("train").text.shape == (8, 7)
    val = ds.features("val")
    assert len(val.labels) == 2 and set(val.ids).isdisjoint(ds.features("train").ids)
    assert ds.report().info["dims"] == {"image": 5, "text": 7}


def test_wikipedia_misaligned_rows_are_an_error(tmp_path):
    root = wiki_mat(tmp_path)
    with open(root / "testset_txt_img_cat.list", "a") as f:
        f.write("u9\tj9\t1\n")
    (root / "texts" / "u9.xml").write_text("<document><text>x</text></document>")
    with pytest.raises(DataError, match="misaligned_rows"):
        load_features(FeaturesParams(root=str(root)))
    rep = load_features(FeaturesParams(root=str(root)), check=True).report()
    assert not rep.usable and "3 rows" in rep.problems[-1].message


def split_arrays(n=(6, 2, 3), one_based=True, multi=False) -> dict[str, np.ndarray]:
    out = {}
    for split, k in zip(("train", "valid", "test"), n):
        out[f"{split}_img"] = RNG.random((k, 4))
        out[f"{split}_txt"] = RNG.random((k, 6))
        lab = np.arange(k) % 3
        if multi:
            hot = np.zeros((k, 3), dtype=np.uint8)
            hot[np.arange(k), lab] = 1
            hot[:, 2] = 1
            out[f"{split}_lab"] = hot
        else:
            out[f"{split}_lab"] = (lab + 1 if one_based else lab)[:, None]
    return out


@pytest.mark.parametrize("form", ["mat", "npz", "npy"])
def test_split_arrays_in_every_container(tmp_path, form):
    arrays = split_arrays()
    if form == "mat":
        scipy.io.savemat(tmp_path / "feats.mat", arrays)
    elif form == "npz":
        np.savez(tmp_path / "feats.npz", **arrays)
    else:
        for k, v in arrays.items():
            np.save(tmp_path / f"{k}.npy", v)
    ds = load_features(FeaturesParams(root=str(tmp_path)))
    assert ds.report().info["label_base"] == 1
    assert ds.features("train").labels.tolist() == [0, 1, 2, 0, 1, 2]
    assert len(ds.features("val").labels) == 2  # "valid_" prefix
    assert ds.classes == ["class_0", "class_1", "class_2"]
    assert ds.features("test").text.dtype == np.float32


def test_zero_based_labels_class_names_and_multi_hot(tmp_path):
    np.savez(tmp_path / "a.npz", **split_arrays(one_based=False))
    (tmp_path / "classes.txt").write_text("x\ny\nz\n")
    ds = load_features(FeaturesParams(root=str(tmp_path / "a.npz")))
    assert ds.features("train").labels.tolist() == [0, 1, 2, 0, 1, 2]
    assert ds.classes == ["x", "y", "z"]
    np.savez(tmp_path / "m.npz", **split_arrays(multi=True))
    ds = load_features(FeaturesParams(root=str(tmp_path / "m.npz")))
    lab = ds.features("train").labels
    assert lab.shape == (6, 3) and ds.report().info["multi_label"]
    assert ds.report().class_counts["train"]["z"] == 6


def test_bad_inputs_name_the_file_and_key(tmp_path):
    arrays = split_arrays()
    arrays["test_txt"] = arrays["test_txt"][:2]
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(DataError, match="test_txt 2"):
        load_features(FeaturesParams(root=str(tmp_path / "bad.npz")))
    np.savez(tmp_path / "none.npz", x=np.zeros(3))
    with pytest.raises(DataError, match="train_img"):
        load_features(FeaturesParams(root=str(tmp_path / "none.npz")))
    v73 = tmp_path / "h5.mat"
    v73.write_bytes(b"MATLAB 7.3 MAT-file, Platform: GLNXA64" + b"\0" * 200)
    with pytest.raises(DataError, match="v7.3"):
        load_features(FeaturesParams(root=str(v73)))
    with pytest.raises(DataError, match="does not exist"):
        load_features(FeaturesParams(root=str(tmp_path / "nothing")))


def test_non_finite_rows_are_reported(tmp_path):
    arrays = split_arrays()
    arrays["train_img"][1, 0] = np.nan
    np.savez(tmp_path / "f.npz", **arrays)
    with pytest.raises(DataError, match="non_finite_features"):
        load_features(FeaturesParams(root=str(tmp_path / "f.npz")))
    rep = load_features(FeaturesParams(root=str(tmp_path / "f.npz")), check=True).report()
    assert {p.code: p.ids for p in rep.problems}["non_finite_features"] == ["1"]


@pytest.mark.skipif(not REAL.is_dir(), reason=f"real Wikipedia copy not present at {REAL}")
@pytest.mark.parametrize("text_feature,dim", [("lda", 10), ("tfidf", 1000)])
def test_real_raw_features(text_feature, dim):
    ds = load_features(FeaturesParams(root=str(REAL / "raw_features.mat"),
                                      text_feature=text_feature))
    tr, te = ds.features("train"), ds.features("test")
    assert tr.image.shape == (2173, 128) and te.image.shape == (693, 128)
    assert tr.text.shape == (2173, dim) and te.text.shape == (693, dim)
    assert tr.labels.min() == 0 and tr.labels.max() == 9 and len(ds.classes) == 10
    assert tr.ids[0] == "b3150b0c281960b6a6d33407824fd40a-3"
    # aligned: per-class text centroids classify test texts far above chance (0.1)
    cent = np.stack([tr.text[tr.labels == c].mean(0) for c in range(10)])
    norm = lambda m: m / np.linalg.norm(m, axis=1, keepdims=True)  # noqa: E731
    acc = ((norm(te.text) @ norm(cent).T).argmax(1) == te.labels).mean()
    assert acc > 0.4


def test_features_of_different_widths_across_splits_are_reported(tmp_path):
    import numpy as np

    from plugins.datasets.features import FeaturesParams, load_features
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "f.npz", train_img=rng.random((6, 4)), train_txt=rng.random((6, 2)),
             train_lab=np.arange(6) % 2, test_img=rng.random((4, 4)),
             test_txt=rng.random((4, 5)), test_lab=np.arange(4) % 2)
    loaded = load_features(FeaturesParams(root=str(tmp_path / "f.npz")), check=True)
    widths = [p for p in loaded.problems if p.code == "feature_width_mismatch"]
    assert len(widths) == 1 and widths[0].severity == "error"
    assert "text" in widths[0].message and "train 2" in widths[0].message
    assert "test 5" in widths[0].message


def test_an_unreadable_feature_file_is_named(tmp_path):
    import pytest

    from daer_core.errors import DataError
    from plugins.datasets.features import FeaturesParams, load_features
    (tmp_path / "f.npz").write_bytes(b"not a zip at all")
    with pytest.raises(DataError, match="f.npz"):
        load_features(FeaturesParams(root=str(tmp_path / "f.npz")))
