"""The search service through FastAPI's test client: endpoints, page, and bad input as 4xx."""
from __future__ import annotations

import io

import pytest
from PIL import Image

pytest.importorskip("fastapi", reason="the search extra is not installed")
pytest.importorskip("httpx", reason="FastAPI's test client needs httpx (search extra)")

from fastapi.testclient import TestClient  # noqa: E402

from daer_core.search import GalleryIndex, GallerySearcher, index_gallery, resolve_gallery  # noqa: E402
from daer_core.service import app as app_module  # noqa: E402
from daer_core.service import create_app, model_card  # noqa: E402

UPLOAD_LIMIT = 64 * 1024


@pytest.fixture(scope="module")
def client(loaded_run, built_index):
    index = GalleryIndex.open(built_index, loaded_run.model, run_dir=loaded_run.run_dir)
    searcher = GallerySearcher(loaded_run.model, loaded_run.preprocess, index)
    app = create_app(searcher, card=model_card(searcher, loaded_run.run_dir, loaded_run.config),
                     max_upload_bytes=UPLOAD_LIMIT)
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def png_bytes(loaded_run, size=None) -> bytes:
    item = resolve_gallery("test", loaded_run.config).items[0]
    from daer_core.data.images import load_rgb
    img = load_rgb(item.image)
    if size:
        img = img.resize(size)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def test_health_and_model_card(client, loaded_run):
    r = client.get("/api/health")
    assert r.status_code == 200 and r.json() == {"status": "ok",
                                                 "items": {"text": 80, "image": 80}}
    card = client.get("/api/model").json()
    assert card["preset"] == "daer" and card["dataset"] == "shapes"
    assert card["components"]["relation"] == "mlp"
    assert card["components"]["image_encoder"] == "timm"
    assert set(card["metrics"]) >= {"i2t", "t2i", "avg", "chance"}
    assert card["index"]["counts"] == {"text": 80, "image": 80}
    assert card["index"]["first_stage"]["method"] == "learned"


def test_page_and_its_script_are_served(client):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    for element in ('id="query"', 'id="image-file"', 'id="results"', "/static/app.js"):
        assert element in page.text
    js = client.get("/static/app.js")
    assert js.status_code == 200 and "/api/search/text" in js.text


def test_text_search_returns_ranked_images_with_thumbnails(client):
    r = client.post("/api/search/text", json={"query": "a big green square", "k": 7})
    assert r.status_code == 200, r.text
    data = r.json()
    assert data["results_kind"] == "image" and len(data["results"]) == 7
    logits = [h["logit"] for h in data["results"]]
    assert logits == sorted(logits, reverse=True)
    assert [h["rank"] for h in data["results"]] == list(range(1, 8))
    hit = data["results"][0]
    assert hit["labels"] and hit["thumbnail"] == f"/api/items/image/{hit['row']}/thumbnail"
    thumb = client.get(hit["thumbnail"])
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(thumb.content)).size[0] >= 80
    assert data["candidates"] == 80 and data["gallery_size"] == 80  # max(100, 1%) capped at N
    r2 = client.post("/api/search/text", json={"query": "a big green square", "k": 3,
                                                "candidates": 10})
    assert r2.json()["candidates"] == 10 and not r2.json()["exhaustive"]


def test_image_upload_returns_ranked_texts(client, loaded_run):
    r = client.post("/api/search/image", files={"file": ("q.png", png_bytes(loaded_run),
                                                         "image/png")}, data={"k": "4"})
    assert r.status_code == 200, r.text
    data = r.json()
    assert data["results_kind"] == "text" and len(data["results"]) == 4
    assert all(h["text"] for h in data["results"])
    assert data["query"] == "q.png"


@pytest.mark.parametrize("body,status,message", [
    ({"query": ""}, 400, "empty"),
    ({"query": "   \n "}, 400, "empty"),
    ({"query": "x" * 1001}, 400, "at most 1000"),
    ({"query": "red", "k": 0}, 422, None),
    ({"query": "red", "k": 101}, 422, None),
    ({"k": 5}, 422, None),
    ({"query": "red", "candidates": -3}, 422, None),
])
def test_bad_text_queries_are_4xx(client, body, status, message):
    r = client.post("/api/search/text", json=body)
    assert r.status_code == status, r.text
    if message:
        assert message in r.json()["detail"]


def test_bad_uploads_are_4xx(client, loaded_run, monkeypatch):
    not_image = client.post("/api/search/image",
                            files={"file": ("notes.png", b"plain text, not pixels", "image/png")})
    assert not_image.status_code == 415 and "notes.png is not an image" in not_image.json()["detail"]
    empty = client.post("/api/search/image", files={"file": ("e.png", b"", "image/png")})
    assert empty.status_code == 400 and "empty" in empty.json()["detail"]
    huge = client.post("/api/search/image",
                       files={"file": ("big.png", b"\x89PNG" + b"0" * (UPLOAD_LIMIT * 2),
                                       "image/png")})
    assert huge.status_code == 413 and "limit" in huge.json()["detail"]
    raw = client.post("/api/search/image", content=png_bytes(loaded_run),
                      headers={"content-type": "image/png"})
    assert raw.status_code == 415 and "multipart" in raw.json()["detail"]
    no_file = client.post("/api/search/image", data={"k": "3"},
                          files={"other": ("a.png", png_bytes(loaded_run), "image/png")})
    assert no_file.status_code == 400 and "'file'" in no_file.json()["detail"]
    bad_k = client.post("/api/search/image", data={"k": "many"},
                        files={"file": ("a.png", png_bytes(loaded_run), "image/png")})
    assert bad_k.status_code == 422 and "integer" in bad_k.json()["detail"]
    monkeypatch.setattr(app_module, "MAX_PIXELS", 100)
    too_many = client.post("/api/search/image",
                           files={"file": ("a.png", png_bytes(loaded_run, (20, 20)), "image/png")})
    assert too_many.status_code == 413 and "pixels" in too_many.json()["detail"]


def test_thumbnail_errors_are_404(client):
    assert client.get("/api/items/image/80/thumbnail").status_code == 404
    assert client.get("/api/items/sound/0/thumbnail").status_code == 404
    assert client.get("/api/items/image/0/thumbnail?size=5000").status_code == 422


def test_image_query_against_an_image_only_index_is_409(loaded_run, tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    (folder / "a.png").write_bytes(png_bytes(loaded_run))
    index, _ = index_gallery(loaded_run, resolve_gallery(str(folder), loaded_run.config),
                             tmp_path / "idx", first_stage="halves", show_progress=False)
    searcher = GallerySearcher(loaded_run.model, loaded_run.preprocess, index)
    app = create_app(searcher, card={})
    with TestClient(app, raise_server_exceptions=False) as c:
        r = c.post("/api/search/image", files={"file": ("q.png", png_bytes(loaded_run),
                                                        "image/png")})
        assert r.status_code == 409 and "no texts" in r.json()["detail"]
        hit = c.post("/api/search/text", json={"query": "red"}).json()["results"][0]
        assert hit["image"].endswith("a.png")
        assert c.get(hit["thumbnail"]).status_code == 200


@pytest.mark.parametrize("raw", [b'{"query": "red", "k": NaN}', b'{"query": "red", "k": Infinity}',
                                 b'{"query": "red", "k": 1e400}',
                                 b'{"query": "red", "k": -Infinity}'])
def test_non_finite_numbers_are_422_not_500(client, raw):
    r = client.post("/api/search/text", content=raw,
                    headers={"content-type": "application/json"})
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["loc"][-1] == "k"


def test_a_lone_surrogate_in_the_query_is_400(client):
    r = client.post("/api/search/text", content=b'{"query": "red \\ud800 circle"}',
                    headers={"content-type": "application/json"})
    assert r.status_code == 400 and "surrogate" in r.json()["detail"]


def test_k_bounds_on_the_image_endpoint(client, loaded_run):
    """Mutation gap: the upper bound of k on /api/search/image was untested."""
    png = png_bytes(loaded_run)
    for k in ("0", "101"):
        r = client.post("/api/search/image", data={"k": k},
                        files={"file": ("a.png", png, "image/png")})
        assert r.status_code == 422 and "k" in r.json()["detail"], (k, r.text)
    r = client.post("/api/search/image", data={"k": "100"},
                    files={"file": ("a.png", png, "image/png")})
    assert r.status_code == 200 and 0 < len(r.json()["results"]) <= 100


def test_a_decompression_bomb_png_is_413(client, monkeypatch):
    """A PNG whose header declares 20000 x 20000 pixels: too many pixels, not 'not an image'."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    header = struct.pack(">IIBBBBB", 20000, 20000, 8, 2, 0, 0, 0)
    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
           + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))
    r = client.post("/api/search/image", files={"file": ("bomb.png", png, "image/png")})
    assert r.status_code == 413 and "pixels" in r.json()["detail"], r.text


def test_no_page_needs_a_cdn(client):
    """/docs and /redoc load Swagger / ReDoc from a CDN: an offline user gets a blank page."""
    assert client.get("/docs").status_code == 404 and client.get("/redoc").status_code == 404
    assert client.get("/openapi.json").status_code == 200


def test_serve_rejects_nan_upload_limit_and_a_busy_port_before_loading(tmp_path, capsys):
    import socket

    from daer_core.cli.main import main
    assert main(["serve", str(tmp_path / "nowhere"), "--max-upload-mb", "nan"]) == 2
    assert "--max-upload-mb nan: must be a positive number" in capsys.readouterr().err
    from daer_core.cli.serve_cmd import _check_port_free
    from daer_core.errors import DaerError
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        with pytest.raises(DaerError, match=f"--port {port}: cannot listen"):
            _check_port_free("127.0.0.1", port)


def test_no_server_path_leaves_the_service(client, loaded_run):
    card = client.get("/api/model").json()
    assert card["run_dir"] == loaded_run.run_dir.resolve().name
    hits = client.post("/api/search/text", json={"query": "a red circle", "k": 5}).json()
    server_root = str(loaded_run.run_dir.resolve().parents[1])
    for text in [str(card), str(hits)]:
        assert server_root not in text
