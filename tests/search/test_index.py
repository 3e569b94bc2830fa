"""Gallery index: build, reopen, add, resume, and two-stage search = exhaustive when K = N."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from daer_core.errors import ConfigError, DataError
from daer_core.interfaces.relation import emitting_logits
from daer_core.search import (GalleryIndex, GallerySearcher, SearchIndexError, index_gallery,
                              resolve_gallery)
from daer_core.search import index as index_module

from search_gallery import GALLERY, GALLERY_SET

QUERY = "a large red circle left of a small blue square"


def reference_ranking(model, query_side, query_emb, item_emb):
    """The relation network's own ranking of every item (pre-sigmoid scores, as evaluation)."""
    with emitting_logits(model.relation):
        if query_side == "text":
            scores = model.score_matrix(query_emb, item_emb)[0]
        else:
            scores = model.score_matrix(item_emb, query_emb)[:, 0]
    return scores


def test_round_trip_search_equals_exhaustive_when_k_is_the_gallery(loaded_run, built_index):
    index = GalleryIndex.open(built_index, loaded_run.model, run_dir=loaded_run.run_dir)
    assert index.counts() == {"text": 80, "image": 80}
    searcher = GallerySearcher(loaded_run.model, loaded_run.preprocess, index)
    model = loaded_run.model

    q = searcher.embed_text(QUERY)
    ref = reference_ranking(model, "text", q, index.sides["image"].embedding)
    res = searcher.search("text", q, k=80, candidates=80)
    assert res.exhaustive and res.candidates == 80
    rows = [h.row for h in res.hits]
    assert sorted(rows) == list(range(80))
    got = np.array([h.logit for h in res.hits])
    np.testing.assert_allclose(got, ref.numpy()[rows], rtol=1e-5, atol=1e-6)
    assert np.all(np.diff(got) <= 0)                      # best first
    np.testing.assert_allclose(np.sort(ref.numpy())[::-1], got, rtol=1e-5, atol=1e-6)
    assert len(set(np.round(got, 6))) > 40, "scores must differ for this test to mean anything"

    image = resolve_gallery("test", loaded_run.config).items[0].image
    from daer_core.data.images import load_rgb
    qi = searcher.embed_image(load_rgb(image))
    ref_i = reference_ranking(model, "image", qi, index.sides["text"].embedding)
    res_i = searcher.search("image", qi, k=5, exhaustive=True)
    assert [h.row for h in res_i.hits] == torch.argsort(ref_i, descending=True, stable=True)[:5].tolist()


def test_two_stage_returns_k_reranked_candidates(loaded_run, built_index):
    index = GalleryIndex.open(built_index, loaded_run.model)
    searcher = GallerySearcher(loaded_run.model, loaded_run.preprocess, index)
    res = searcher.search_text(QUERY, k=5, candidates=20)
    assert not res.exhaustive and res.candidates == 20 and len(res.hits) == 5
    # the five hits are the exact top five of the twenty candidates the first stage returned
    q = searcher.embed_text(QUERY)
    qv = index.first_stage.query_vector("text", q)
    vecs = index.first_stage.item_vectors("image", index.sides["image"].embedding)
    cand = np.argsort(-(vecs @ qv[0]), kind="stable")[:20]
    ref = reference_ranking(loaded_run.model, "text", q, index.sides["image"].embedding)
    best = cand[np.argsort(-ref.numpy()[cand], kind="stable")[:5]]
    assert [h.row for h in res.hits] == best.tolist()
    assert 0.0 <= res.hits[0].score <= 1.0          # the head's sigmoid output is shown


def test_stored_halves_are_the_models_split(loaded_run, built_index):
    index = GalleryIndex.open(built_index, loaded_run.model)
    side = index.sides["image"]
    t0 = torch.zeros(0, index.scorer.text_dim)
    expected = loaded_run.model._split_first_layer(t0, side.embedding)[1]
    torch.testing.assert_close(side.half, expected)
    meta = side.meta[0]
    assert set(meta) >= {"id", "labels", "text", "path", "job", "position"}
    assert meta["labels"] and all(isinstance(x, str) for x in meta["labels"])


def test_adding_a_source_extends_both_sides_and_search_covers_it(loaded_run, index_copy):
    source = resolve_gallery("test", loaded_run.config, prefix="test/")
    index, report = index_gallery(loaded_run, source, index_copy, show_progress=False)
    n_test = len(source.items)
    assert report.added == {"text": n_test, "image": n_test}
    assert report.totals == {"text": 80 + n_test, "image": 80 + n_test}
    reopened = GalleryIndex.open(index_copy, loaded_run.model)
    assert reopened.counts() == report.totals
    assert reopened.ann["image"].ntotal == 80 + n_test
    assert reopened.sides["image"].meta[-1]["id"].startswith("test/")
    searcher = GallerySearcher(loaded_run.model, loaded_run.preprocess, reopened)
    q = searcher.embed_text(QUERY)
    ref = reference_ranking(loaded_run.model, "text", q, reopened.sides["image"].embedding)
    res = searcher.search("text", q, k=10, candidates=80 + n_test)
    assert [h.row for h in res.hits] == torch.argsort(ref, descending=True, stable=True)[:10].tolist()

    again, rep2 = index_gallery(loaded_run, source, index_copy, show_progress=False)
    assert rep2.already_indexed and again.counts() == report.totals

    # without a prefix the run's test ids (shapes-000NN) clash with the 80 gallery ids
    with pytest.raises(DataError, match="already in the index"):
        index_gallery(loaded_run, resolve_gallery("test", loaded_run.config), index_copy,
                      show_progress=False)


def test_interrupted_build_resumes_from_its_shards(loaded_run, built_index, tmp_path,
                                                   monkeypatch):
    source = resolve_gallery(GALLERY, loaded_run.config, params=GALLERY_SET)
    out = tmp_path / "resumed"
    from daer_core.search import embedding
    real = embedding.embed_items
    calls = {"n": 0}

    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(embedding, "embed_items", failing)
    with pytest.raises(KeyboardInterrupt):
        index_gallery(loaded_run, source, out, shard_size=16, show_progress=False)
    assert len(list((out / "shards").glob("j000-s*.npz"))) == 2
    info = json.loads((out / "index.json").read_text())
    assert info["jobs"][0]["complete"] is False
    # the unfinished job is not part of the index yet
    assert GalleryIndex.open(out, loaded_run.model).counts() == {"text": 0, "image": 0}
    monkeypatch.setattr(embedding, "embed_items", real)
    index, report = index_gallery(loaded_run, source, out, shard_size=16, show_progress=False)
    assert report.resumed_shards == 2 and report.added == {"text": 80, "image": 80}
    whole = GalleryIndex.open(built_index, loaded_run.model)
    torch.testing.assert_close(index.sides["image"].embedding, whole.sides["image"].embedding)
    assert [m["id"] for m in index.sides["text"].meta] == [m["id"] for m in whole.sides["text"].meta]


def test_index_belongs_to_the_weights_it_was_built_with(loaded_run, built_index, tmp_path):
    other = tmp_path / "run-copy"
    shutil.copytree(loaded_run.run_dir, other)
    (other / "checkpoints" / "final" / "model.safetensors").write_bytes(
        (loaded_run.run_dir / "checkpoints" / "final" / "model.safetensors").read_bytes() + b" ")
    with pytest.raises(SearchIndexError, match="rebuild it"):
        GalleryIndex.open(built_index, loaded_run.model, run_dir=other)
    with pytest.raises(SearchIndexError, match="not a gallery index"):
        GalleryIndex.open(tmp_path, loaded_run.model)


def test_damaged_faiss_file_is_reported(loaded_run, index_copy):
    (index_copy / "image.faiss").write_bytes(b"not faiss")
    with pytest.raises(DataError, match="image.faiss"):
        GalleryIndex.open(index_copy, loaded_run.model)


def test_folder_gallery_indexes_images_and_reports_undecodable_files(loaded_run, tmp_path):
    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    items = resolve_gallery("test", loaded_run.config).items[:3]
    for i, it in enumerate(items):
        from daer_core.data.images import load_rgb
        load_rgb(it.image).save(folder / ("sub" if i else "") / f"img{i}.png")
    (folder / "broken.png").write_bytes(b"this is text, not a PNG")
    (folder / "notes.txt").write_text("ignored: not an image name")
    source = resolve_gallery(str(folder), loaded_run.config)
    assert [it.id for it in source.items] == ["broken.png", "img0.png", "sub/img1.png",
                                              "sub/img2.png"]
    index, report = index_gallery(loaded_run, source, tmp_path / "idx", show_progress=False)
    assert report.added == {"text": 0, "image": 3}
    assert [s[0] for s in report.skipped] == ["broken.png"]
    assert index.sides["image"].meta[0]["path"].endswith("img0.png")
    searcher = GallerySearcher(loaded_run.model, loaded_run.preprocess, index)
    assert len(searcher.search_text(QUERY, k=10).hits) == 3
    with pytest.raises(ConfigError, match="no texts"):
        searcher.search_image(Image.new("RGB", (32, 32)), k=3)


@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
def test_ivf_and_hnsw_indexes_search_like_flat(loaded_run, tmp_path, kind):
    source = resolve_gallery(GALLERY, loaded_run.config, params=GALLERY_SET)
    index, _ = index_gallery(loaded_run, source, tmp_path / kind, index_type=kind,
                             first_stage="halves", show_progress=False)
    assert index.settings["image"].kind == kind
    searcher = GallerySearcher(loaded_run.model, loaded_run.preprocess, index)
    q = searcher.embed_text(QUERY)
    # with every row as a candidate the ANN structure must return each row exactly once
    res = searcher.search("text", q, k=10, candidates=79)
    assert res.candidates == 79 and len({h.row for h in res.hits}) == 10
    qv = index.first_stage.query_vector("text", q)
    from daer_core.search import ann
    rows = ann.search(index.ann["image"], index.settings["image"], qv, 80)
    assert sorted(rows.tolist()) == list(range(80))


def test_gallery_specs_are_checked(loaded_run, tmp_path):
    with pytest.raises(ConfigError, match="no such file or folder"):
        resolve_gallery(str(tmp_path / "missing"), loaded_run.config)
    with pytest.raises(ConfigError, match="unknown split"):
        resolve_gallery("dataset:shapes:nope", loaded_run.config)
    with pytest.raises(ConfigError, match="only applies"):
        resolve_gallery("test", loaded_run.config, params=["seed=1"])
    (tmp_path / "a.txt").write_text("x")
    with pytest.raises(ConfigError, match="manifest"):
        resolve_gallery(str(tmp_path / "a.txt"), loaded_run.config)
    same = resolve_gallery("test", loaded_run.config)
    assert same.key == resolve_gallery("split:test", loaded_run.config).key
    assert same.key != resolve_gallery("val", loaded_run.config).key


def test_first_stage_halves_is_the_inner_product_of_the_split(loaded_run, built_index):
    from daer_core.search import PairScorer, fit_first_stage
    scorer = PairScorer(loaded_run.model)
    stage = fit_first_stage("halves", scorer, None, None)
    index = GalleryIndex.open(built_index, loaded_run.model)
    emb_t = index.sides["text"].embedding[:3]
    emb_i = index.sides["image"].embedding[:4]
    got = stage.item_vectors("text", emb_t) @ stage.item_vectors("image", emb_i).T
    t0, i0 = torch.zeros(0, scorer.text_dim), torch.zeros(0, scorer.image_dim)
    a = loaded_run.model._split_first_layer(emb_t, i0)[0]
    b = loaded_run.model._split_first_layer(t0, emb_i)[1]
    np.testing.assert_allclose(got, (a @ b.T).detach().numpy(), rtol=1e-5, atol=1e-5)
    with pytest.raises(ConfigError, match="training embeddings"):
        fit_first_stage("distilled", scorer, None, None)
    with pytest.raises(ConfigError, match="unknown first stage"):
        fit_first_stage("nope", scorer, emb_t, emb_i)


def test_weights_fingerprint_changes_with_the_weights(search_run, tmp_path):
    fp = index_module.weights_fingerprint(search_run)
    assert fp == index_module.weights_fingerprint(search_run)
    with pytest.raises(SearchIndexError, match="checkpoints/final"):
        index_module.weights_fingerprint(tmp_path)
