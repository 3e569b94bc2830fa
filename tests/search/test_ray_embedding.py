"""``daer index --engine ray``: a local Ray of 2 CPUs embeds the gallery with 2 model actors;
the shards it writes equal the single-process ones, and an interrupted embedding resumes from
the shards written (issue 25).

Ray starts once for the module (about 10-20 s here) and each actor pool loads the run anew
(about 20-30 s on 2 cores), so the module takes a few minutes; nothing in it is skipped unless
the ``ray`` extra is missing.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("ray.data", reason="the ray extra is not installed: pip install -e '.[ray]'")
pq = pytest.importorskip("pyarrow.parquet")

from search_gallery import GALLERY, GALLERY_SET  # noqa: E402

from daer_core.cli.main import main  # noqa: E402
from daer_core.search import index_gallery, resolve_gallery  # noqa: E402
from daer_core.search.ray_embedding import RayEngine  # noqa: E402

SHARD = 16   # 80 items: 5 shards


@pytest.fixture(scope="module", autouse=True)
def ray_stops_after_the_module():
    yield
    import ray
    if ray.is_initialized():
        ray.shutdown()


@pytest.fixture(scope="module")
def process_index(loaded_run, tmp_path_factory) -> Path:
    """The same gallery embedded in this process (the default engine)."""
    out = tmp_path_factory.mktemp("ray-baseline") / "index"
    source = resolve_gallery(GALLERY, loaded_run.config, params=GALLERY_SET)
    index_gallery(loaded_run, source, out, shard_size=SHARD, first_stage="halves",
                  show_progress=False)
    return out


def assert_same_shards(a: Path, b: Path) -> None:
    names = sorted(p.name for p in (a / "shards").glob("*.npz"))
    assert names == sorted(p.name for p in (b / "shards").glob("*.npz"))
    assert len(names) == 5
    for name in names:
        with np.load(a / "shards" / name) as za, np.load(b / "shards" / name) as zb:
            assert sorted(za.files) == sorted(zb.files)
            assert "image_half" in za.files   # the test model splits: halves are stored
            for key in za.files:
                x, y = za[key], zb[key]
                assert x.shape == y.shape and x.dtype == y.dtype, (name, key)
                if x.dtype.kind == "f":
                    np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6, err_msg=f"{name} {key}")
                else:
                    np.testing.assert_array_equal(x, y, err_msg=f"{name} {key}")


def test_ray_engine_writes_the_single_process_shards(search_run, process_index, tmp_path,
                                                      capsys):
    out = tmp_path / "ray-index"
    set_args = [a for kv in GALLERY_SET for a in ("--gallery-set", kv)]
    code = main(["index", str(search_run), "--gallery", GALLERY, *set_args, "--out", str(out),
                 "--shard-size", str(SHARD), "--first-stage", "halves", "--engine", "ray",
                 "--ray-workers", "2", "--json"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["engine"] == "ray" and report["added"] == {"text": 80, "image": 80}
    emb = report["embedding"]
    assert emb["workers"] == 2 and emb["address"] == "local"
    assert emb["embedded_shards"] == 5 and emb["resumed_shards"] == 0
    assert emb["embedded_items"] == 80 and emb["items_per_s"] > 0
    assert report["resumed_shards"] == 0
    assert_same_shards(process_index, out)
    # the index built from them is the single-process one
    a = json.loads((process_index / "index.json").read_text())
    b = json.loads((out / "index.json").read_text())
    assert a["counts"] == b["counts"] and a["ann"] == b["ann"]
    assert [j["ids_sha256"] for j in a["jobs"]] == [j["ids_sha256"] for j in b["jobs"]]
    # the items table: one row per item, in job order
    table = pq.read_table(out / "metadata" / "j000.parquet").to_pylist()
    assert len(table) == 80 and [r["position"] for r in table] == list(range(80))
    assert {r["shard"] for r in table} == set(range(5))
    assert all(r["has_text"] and r["has_image"] and r["image_embedded"] and r["skipped"] is None
               for r in table)
    ids = [m["id"] for s in range(5)
           for m in json.loads(np.load(out / "shards" / f"j000-s{s:05d}.npz")["meta"].tobytes())]
    assert [r["id"] for r in table] == ids


def test_interrupted_ray_embedding_resumes_from_the_shards_written(loaded_run, search_run,
                                                                    process_index, tmp_path):
    source = resolve_gallery(GALLERY, loaded_run.config, params=GALLERY_SET)
    out = tmp_path / "resumed"
    written: list[int] = []

    class Interrupted(RayEngine):
        def embed(self, *args, **kwargs):
            def stop(shard: int) -> None:   # the driver is killed after its second shard
                written.append(shard)
                if len(written) == 2:
                    raise KeyboardInterrupt
            return super().embed(*args, on_shard=stop, **kwargs)

    with pytest.raises(KeyboardInterrupt):
        index_gallery(loaded_run, source, out, shard_size=SHARD, first_stage="halves",
                      show_progress=False, engine=Interrupted(workers=2))
    shards = sorted((out / "shards").glob("j000-s*.npz"))
    assert [p.name for p in shards] == [f"j000-s{s:05d}.npz" for s in sorted(written)]
    info = json.loads((out / "index.json").read_text())
    assert info["jobs"][0]["complete"] is False and info["counts"] == {"text": 0, "image": 0}
    mtimes = {p.name: p.stat().st_mtime_ns for p in shards}

    engine = RayEngine(workers=2)
    index, report = index_gallery(loaded_run, source, out, shard_size=SHARD,
                                  first_stage="halves", show_progress=False, engine=engine)
    assert engine.report.resumed_shards == 2 and engine.report.embedded_shards == 3
    assert engine.report.embedded_items == 80 - 2 * SHARD
    assert report.resumed_shards == 2 and report.added == {"text": 80, "image": 80}
    # the finished shards were not written again
    assert {n: (out / "shards" / n).stat().st_mtime_ns for n in mtimes} == mtimes
    assert_same_shards(process_index, out)
    assert len(pq.read_table(out / "metadata" / "j000.parquet")) == 80
    assert index.counts() == {"text": 80, "image": 80}

    # the same command again: already indexed, nothing embedded
    again = RayEngine(workers=2)
    _, report = index_gallery(loaded_run, source, out, shard_size=SHARD, first_stage="halves",
                              show_progress=False, engine=again)
    assert report.already_indexed and again.report is None


def test_ray_options_need_the_ray_engine(search_run, tmp_path, capsys):
    code = main(["index", str(search_run), "--gallery", "test", "--out", str(tmp_path / "x"),
                 "--ray-workers", "3"])
    assert code == 2
    assert "--ray-workers only apply with --engine ray" in capsys.readouterr().err
    code = main(["index", str(search_run), "--gallery", "test", "--out", str(tmp_path / "x"),
                 "--engine", "ray", "--ray-workers", "0"])
    assert code == 2
    assert "--ray-workers must be at least 1" in capsys.readouterr().err
