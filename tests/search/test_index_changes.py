"""An index that changes without a rebuild (add, remove), opens memory-mapped with the same
results as in memory, compresses its first stage (IVF-PQ), re-ranks in bfloat16 with float32
near-tie settling, and is picked up by a running service between two queries."""
from __future__ import annotations

import json
import shutil

import pytest

from daer_core.search import GalleryIndex, GallerySearcher, index_gallery, resolve_gallery
from daer_core.search.columns import LazyMeta

from search_cli import run_cli

QUERIES = ["a large red circle left of a small blue square", "a big green star",
           "the large yellow triangle is above the small white cross"]


def hits(searcher, query: str, **kw) -> list[tuple[str, float]]:
    res = searcher.search_text(query, **kw)
    return [(h.item["id"], round(h.logit, 5)) for h in res.hits]


def test_memory_mapped_open_returns_what_an_index_in_memory_does(loaded_run, index_copy):
    mapped = GalleryIndex.open(index_copy, loaded_run.model)
    in_ram = GalleryIndex.open(index_copy, loaded_run.model, mmap=False)
    assert isinstance(mapped.sides["image"].meta, LazyMeta)      # rows stay in their files
    assert isinstance(in_ram.sides["image"].meta, list)
    a = GallerySearcher(loaded_run.model, loaded_run.preprocess, mapped)
    b = GallerySearcher(loaded_run.model, loaded_run.preprocess, in_ram)
    for q in QUERIES:
        assert hits(a, q, k=10, candidates=20) == hits(b, q, k=10, candidates=20)
        assert hits(a, q, k=10, exhaustive=True) == hits(b, q, k=10, exhaustive=True)
    assert mapped.sides["image"].meta[3] == in_ram.sides["image"].meta[3]


def test_an_index_without_columns_opens_from_its_shards(loaded_run, index_copy):
    before = GalleryIndex.open(index_copy, loaded_run.model)
    ref = GallerySearcher(loaded_run.model, loaded_run.preprocess, before)
    expected = hits(ref, QUERIES[0], k=8, exhaustive=True)
    shutil.rmtree(index_copy / "columns")               # an index of an earlier version
    info = json.loads((index_copy / "index.json").read_text())
    info.pop("columns")
    (index_copy / "index.json").write_text(json.dumps(info))
    old = GalleryIndex.open(index_copy, loaded_run.model)
    assert isinstance(old.sides["image"].meta, list)
    searcher = GallerySearcher(loaded_run.model, loaded_run.preprocess, old)
    assert hits(searcher, QUERIES[0], k=8, exhaustive=True) == expected


def test_add_then_search_finds_the_new_items(loaded_run, index_copy, capsys):
    code, out, err = run_cli(capsys, "index", "add", str(loaded_run.run_dir), "--index",
                             str(index_copy), "--gallery", "dataset:shapes:all",
                             "--gallery-set", "num_pairs=30", "--gallery-set", "seed=77",
                             "--id-prefix", "new/", "--device", "cpu", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["added"] == {"text": 30, "image": 30}
    index = GalleryIndex.open(index_copy, loaded_run.model)
    assert index.counts() == {"text": 110, "image": 110}
    recall = index.info["jobs"][-1]["first_stage_recall"]       # the drift check ran
    assert set(recall) == {"image", "text"} and 0 <= recall["image"]["recall_at_k"] <= 1
    # a new item's own caption finds it among the exhaustive hits
    searcher = GallerySearcher(loaded_run.model, loaded_run.preprocess, index)
    new = [m for m in index.sides["text"].meta if m["id"].startswith("new/")]
    found = {h.item["id"] for h in searcher.search_text(new[0]["text"], k=110,
                                                        exhaustive=True).hits}
    assert {m["id"] for m in new} <= found
    code, _, err = run_cli(capsys, "index", "add", str(loaded_run.run_dir), "--index",
                           str(index_copy.parent / "nowhere"), "--gallery", "test")
    assert code == 2 and "no index there" in err


def add_twelve(capsys, loaded_run, index_copy) -> None:
    """`daer index add` 12 more shapes pairs (ids ``more/...``) to the index copy."""
    code, _, err = run_cli(capsys, "index", "add", str(loaded_run.run_dir), "--index",
                           str(index_copy), "--gallery", "dataset:shapes:all",
                           "--gallery-set", "num_pairs=12", "--gallery-set", "seed=78",
                           "--id-prefix", "more/", "--device", "cpu", "--json")
    assert code == 0, err


def test_add_appends_to_the_columns_as_a_full_rewrite_would_write_them(loaded_run,
                                                                       index_copy, capsys):
    from daer_core.search import columns
    files = sorted((index_copy / "columns").iterdir())
    inodes = {p.name: p.stat().st_ino for p in files if p.suffix in (".npy", ".jsonl")
              and not p.name.endswith("offsets.npy")}
    add_twelve(capsys, loaded_run, index_copy)
    # appended in place: the same files (a rewrite would have moved new ones into place)
    assert {n: (index_copy / "columns" / n).stat().st_ino for n in inodes} == inodes
    appended = GalleryIndex.open(index_copy, loaded_run.model, mmap=False)
    assert appended.info["columns"]["counts"] == {"text": 92, "image": 92}
    # what a consolidation of every shard from scratch writes, byte for byte
    fresh = index_copy.parent / "rewritten"
    shutil.copytree(index_copy, fresh)
    shutil.rmtree(fresh / "columns")
    info = json.loads((fresh / "index.json").read_text())
    info.pop("columns")
    assert columns.write(fresh, info, appended.scorer) == appended.info["columns"]
    for p in sorted((index_copy / "columns").iterdir()):
        assert (fresh / "columns" / p.name).read_bytes() == p.read_bytes(), p.name
    rewritten = GalleryIndex.open(fresh, loaded_run.model, mmap=False)
    for side in ("text", "image"):
        assert list(appended.sides[side].meta) == list(rewritten.sides[side].meta)


def test_columns_not_as_recorded_are_rewritten_not_appended_to(loaded_run, index_copy,
                                                                  capsys):
    path = index_copy / "columns" / "image-embedding.npy"
    path.write_bytes(path.read_bytes()[:-4])            # a torn file: one float short
    add_twelve(capsys, loaded_run, index_copy)
    index = GalleryIndex.open(index_copy, loaded_run.model)
    assert index.sides["image"].embedding.shape[0] == 92
    searcher = GallerySearcher(loaded_run.model, loaded_run.preprocess, index)
    assert len(searcher.search_text(QUERIES[0], k=92, exhaustive=True).hits) == 92


def test_remove_then_search_never_returns_them(loaded_run, index_copy, capsys):
    index = GalleryIndex.open(index_copy, loaded_run.model)
    searcher = GallerySearcher(loaded_run.model, loaded_run.preprocess, index)
    top = [i for i, _ in hits(searcher, QUERIES[0], k=5, exhaustive=True)]
    code, out, err = run_cli(capsys, "index", "remove", str(loaded_run.run_dir), "--index",
                             str(index_copy), "--ids", *top, "missing-id", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["removed"] == {"text": 5, "image": 5} and result["unknown"] == ["missing-id"]
    index = GalleryIndex.open(index_copy, loaded_run.model)
    assert index.counts() == {"text": 75, "image": 75}
    searcher = GallerySearcher(loaded_run.model, loaded_run.preprocess, index)
    for q in QUERIES:
        for kw in ({"k": 10, "candidates": 20}, {"k": 75, "exhaustive": True}):
            got = {i for i, _ in hits(searcher, q, **kw)}
            assert not got & set(top)
    # the rest keep their order: the exhaustive ranking minus the removed items
    everything = [i for i, _ in hits(searcher, QUERIES[0], k=75, exhaustive=True)]
    assert len(everything) == 75 and everything[0] not in top
    # removing again is harmless; a removed id may come back with another gallery
    assert index.remove(top)["removed"] == {"text": 0, "image": 0}


def test_ivfpq_is_compressed_recorded_and_mapped(loaded_run, tmp_path):
    source = resolve_gallery("dataset:shapes:all", loaded_run.config,
                             params=["num_pairs=200", "seed=5"])
    index, report = index_gallery(loaded_run, source, tmp_path / "pq", first_stage="halves",
                                  index_type="ivfpq", nlist=4, show_progress=False)
    settings = index.info["ann"]["sides"]["image"]
    assert settings["kind"] == "ivfpq" and settings["pq_m"] >= 1
    assert settings["trained_on"] == 200 and settings["nlist"] == 4
    reopened = GalleryIndex.open(tmp_path / "pq", loaded_run.model)
    searcher = GallerySearcher(loaded_run.model, loaded_run.preprocess, reopened)
    res = searcher.search_text(QUERIES[0], k=5, candidates=50)
    assert len(res.hits) == 5 and not res.exhaustive
    # its candidates are re-scored exactly: the hits are in the relation head's order
    logits = [h.logit for h in res.hits]
    assert logits == sorted(logits, reverse=True)


def test_bf16_reranking_settles_near_ties_in_float32(loaded_run, built_index):
    index = GalleryIndex.open(built_index, loaded_run.model)
    exact = GallerySearcher(loaded_run.model, loaded_run.preprocess, index)
    fast = GallerySearcher(loaded_run.model, loaded_run.preprocess, index, bf16=True)
    assert fast.bf16 and not exact.bf16
    for q in QUERIES:
        # the hits and their logits are float32's: the head of the bf16 order is re-scored
        assert hits(fast, q, k=5, candidates=40) == hits(exact, q, k=5, candidates=40)


def test_a_running_service_picks_up_a_new_version_between_queries(loaded_run, index_copy):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from daer_core.service import create_app, model_card
    index = GalleryIndex.open(index_copy, loaded_run.model)
    searcher = GallerySearcher(loaded_run.model, loaded_run.preprocess, index)
    app = create_app(searcher, card=model_card(searcher, loaded_run.run_dir, loaded_run.config))
    with TestClient(app) as client:
        first = client.post("/api/search/text", json={"query": QUERIES[0], "k": 3}).json()
        assert client.get("/api/health").headers["X-Index-Version"] == "1"
        gone = [r["id"] for r in first["results"]]
        GalleryIndex.open(index_copy, loaded_run.model).remove(gone)   # another process's edit
        after = client.post("/api/search/text", json={"query": QUERIES[0], "k": 3})
        assert after.status_code == 200
        assert not {r["id"] for r in after.json()["results"]} & set(gone)
        health = client.get("/api/health")
        assert health.headers["X-Index-Version"] == "2"
        assert health.json()["items"]["image"] == 77
