"""Feature extractors: TF-IDF, LDA, doc2vec, precomputed and frozen-backbone pooling."""
from __future__ import annotations

import logging

import numpy as np
import pytest
from PIL import Image

import registry
from plugins.features import (BackbonePoolFeatures, Doc2VecFeatures, LdaFeatures,
                              PrecomputedFeatures, TfidfFeatures)

SPORT = ["the team won the football match with a late goal",
         "football players train on the pitch before the match",
         "the goal keeper saved a penalty and the team celebrated the match",
         "a striker scored twice and the football team won the league"]
FOOD = ["bake the bread in a hot oven with butter and flour",
        "the recipe needs flour sugar and butter baked in the oven",
        "knead the dough then bake the bread until golden in the oven",
        "whisk sugar and butter then fold in flour for the cake recipe"]


def test_registered_extractors(tmp_path):
    reg = registry.load_plugins().registry
    names = {s.name for s in reg.list("feature_extractor")}
    assert {"backbone-pool", "tfidf", "lda", "doc2vec", "precomputed"} <= names
    ext = reg.create("feature_extractor", "tfidf", {"max_features": 50})
    assert isinstance(ext, TfidfFeatures) and ext.max_features == 50


def test_tfidf_rows_are_normalised_and_vocabulary_is_fit_on_train():
    ext = TfidfFeatures(max_features=20, min_df=1).fit(SPORT + FOOD)
    feats = ext.transform(SPORT[:2] + ["completely unseen words here"])
    assert feats.shape == (3, 20)
    np.testing.assert_allclose(np.linalg.norm(feats[:2], axis=1), 1.0)
    assert not feats[2].any()                       # no training-vocabulary word
    assert "the" not in ext.vocabulary              # English stop words removed
    with pytest.raises(TypeError, match="item 1 is a int"):
        ext.transform(["ok", 3])


def test_lda_separates_two_topics_and_is_deterministic():
    ext = LdaFeatures(num_topics=2, passes=50, no_below=1, no_above=1.0, seed=1)
    ext.fit(SPORT * 3 + FOOD * 3)
    a = ext.transform(SPORT + FOOD)
    np.testing.assert_allclose(a.sum(axis=1), 1.0, atol=1e-6)
    np.testing.assert_array_equal(a, ext.transform(SPORT + FOOD))
    sport_topic, food_topic = a[:4].argmax(1), a[4:].argmax(1)
    assert len(set(sport_topic)) == 1 and len(set(food_topic)) == 1
    assert sport_topic[0] != food_topic[0]


def test_doc2vec_shape_determinism_and_empty_vocabulary():
    ext = Doc2VecFeatures(vector_size=8, epochs=5, min_count=1).fit(SPORT + FOOD)
    a = ext.transform(SPORT[:3])
    assert a.shape == (3, 8) and np.isfinite(a).all()
    np.testing.assert_array_equal(a, ext.transform(SPORT[:3]))
    with pytest.raises(ValueError, match="no word occurs"):
        Doc2VecFeatures(min_count=5).fit(["the and of", "a b c d", "x y", "z", "q"])


def test_precomputed_passes_numbers_and_rejects_raw_items():
    ext = PrecomputedFeatures()
    assert ext.uses_dataset_features
    np.testing.assert_array_equal(ext.transform(np.eye(3)), np.eye(3))
    with pytest.raises(TypeError, match="raw images or texts"):
        ext.transform(["a text"])


def _images(n=3):
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 255, size=(40, 48, 3), dtype=np.uint8))
            for _ in range(n)]


def test_backbone_without_weights_warns_and_pools(caplog):
    ext = BackbonePoolFeatures(backbone="resnet18", image_size=32, batch_size=2)
    with caplog.at_level(logging.WARNING):
        feats = ext.transform(_images(3))
    assert feats.shape == (3, 512)
    assert "random" in caplog.text and "no weights file" in caplog.text


def test_backbone_uses_local_weights_like_the_full_network(tmp_path):
    import torch
    import torchvision

    torch.manual_seed(3)
    reference = torchvision.models.get_model("resnet18", weights=None).eval()
    path = tmp_path / "resnet18.pth"
    torch.save(reference.state_dict(), path)
    ext = BackbonePoolFeatures(backbone="resnet18", weights=str(path), image_size=32)
    feats = ext.transform(_images(2))
    # independent computation: the full network with its classifier replaced by identity
    reference.fc = torch.nn.Identity()
    batch = torch.stack([ext._tensor(im) for im in _images(2)])
    batch = (batch - ext.mean_) / ext.std_
    with torch.no_grad():
        expected = reference(batch).numpy()
    np.testing.assert_allclose(feats, expected, rtol=1e-4, atol=1e-5)


def test_backbone_rejects_a_file_of_another_architecture(tmp_path):
    import torch
    torch.save({"conv.weight": torch.zeros(3, 3)}, tmp_path / "other.pth")
    ext = BackbonePoolFeatures(backbone="resnet18", weights=str(tmp_path / "other.pth"),
                               image_size=32)
    with pytest.raises(Exception, match="weights"):
        ext.transform(_images(1))


def test_tfidf_character_ngrams_read_text_without_spaces():
    """Chinese has no spaces: word tokens made one token per sentence, so no two captions
    shared a feature. Character bigrams do."""
    texts = ["足球队赢得了比赛", "足球运动员在比赛前训练", "在烤箱里烤面包", "面包需要面粉和黄油"]
    words = TfidfFeatures(min_df=1, stop_words=None).fit(texts)
    assert len(words.vocabulary) == 4                # every sentence is one "word"
    chars = TfidfFeatures(min_df=1, analyzer="char", ngram_min=1, ngram_max=2).fit(texts)
    feats = chars.transform(texts)
    sim = feats @ feats.T
    assert "足球" in chars.vocabulary and "面包" in chars.vocabulary
    assert sim[0, 1] > sim[0, 2] and sim[2, 3] > sim[2, 0]   # topics share characters
    with pytest.raises(ValueError, match="ngram_min 3 is larger than ngram_max 2"):
        TfidfFeatures(analyzer="char", ngram_min=3, ngram_max=2).fit(texts)
