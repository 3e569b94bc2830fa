"""The search service: a FastAPI app with JSON endpoints and the web page that uses them.

Endpoints (all JSON unless said otherwise):

``GET  /``                         the web page (static HTML + JS, no build step)
``GET  /api/health``               ``{"status": "ok", "items": {"image": N, "text": M}}``;
                                   header ``X-Index-Version`` counts the index versions served
``GET  /api/model``                the model card: run, preset, components, test metrics, index
``POST /api/search/text``          ``{"query": "...", "k": 10, "candidates": null}`` -> images
``POST /api/search/image``         multipart ``file`` (+ optional ``k``, ``candidates``) -> texts
``GET  /api/items/{side}/{row}/thumbnail``  a PNG thumbnail of a gallery item's image

Bad input is answered with a 4xx and ``{"detail": "<what is wrong>"}``: an empty or overlong
query (400), a k out of range (422), an upload that is not multipart (415), empty (400), larger
than the limit (413, checked while the body streams in, before it is parsed), not an image
(415) or with too many pixels (413), a side that the index does not have (409).
"""
from __future__ import annotations

import io
import json
import logging
import threading
from functools import lru_cache
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from PIL import Image, UnidentifiedImageError
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from ..data.images import load_rgb
from ..errors import ConfigError
from ..search import source_items

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"
MAX_QUERY_CHARS = 1000
MAX_K = 100
#: images larger than this many pixels are refused before decoding (decompression bombs)
MAX_PIXELS = 40_000_000
#: multipart framing allowed on top of the file itself
MULTIPART_OVERHEAD = 64 * 1024


class TextQuery(BaseModel):
    """Body of ``POST /api/search/text``."""

    query: str = Field(..., description="what to look for")
    k: int = Field(10, ge=1, le=MAX_K, description="number of results")
    candidates: int | None = Field(None, ge=1, description="items re-ranked exactly")


def model_card(searcher, run_dir: Path, config) -> dict[str, Any]:
    """What the page shows about the model: where it comes from and how good it is."""
    metrics_path = Path(run_dir) / "metrics.json"
    metrics = None
    if metrics_path.is_file():
        try:
            raw = json.loads(metrics_path.read_text(encoding="utf-8"))
            metrics = {k: raw.get(k) for k in ("i2t", "t2i", "avg", "chance") if k in raw}
        except (OSError, ValueError):
            metrics = None
    return {
        # the run's name, not its path: a page on the network need not map the server's disk
        "run_dir": Path(run_dir).resolve().name,
        "name": getattr(config, "name", None),
        "preset": getattr(config, "preset", None),
        "dataset": config.dataset.name if getattr(config, "dataset", None) else None,
        "components": dict(getattr(searcher.model, "names", {})),
        "metrics": metrics,
        "index": _public_index(searcher.index.describe()),
    }


class IndexReloader:
    """Picks up a new version of the served index folder (``daer index`` added or removed
    items): ``index.json`` changed since it was read, so the index is opened again and
    swapped in whole. Called under the query lock, between queries; a version that cannot
    be opened (being written, damaged) is logged and the one in use is kept."""

    def __init__(self, searcher):
        self.searcher = searcher
        self.path = Path(searcher.index.root) / "index.json"
        self.stamp = self._stamp()
        self.version = 1

    def _stamp(self) -> tuple[int, int] | None:
        try:
            st = self.path.stat()
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size)

    def refresh(self) -> bool:
        stamp = self._stamp()
        if stamp is None or stamp == self.stamp:
            return False
        from ..search import GalleryIndex
        old = self.searcher.index
        try:
            new = GalleryIndex.open(old.root, self.searcher.model, mmap=old.mmap)
        except Exception as exc:  # noqa: BLE001 - keep serving the version in use
            log.warning("%s changed but cannot be opened (%s); still serving the previous"
                        " version", self.path, exc)
            return False
        self.searcher.index = new
        self.searcher.scorer = new.scorer
        self.stamp = stamp
        self.version += 1
        log.info("%s: serving version %d (%s)", self.path, self.version, new.counts())
        return True


def _public_index(info: dict[str, Any]) -> dict[str, Any]:
    """The index summary without the server's paths: folder names, the sources' kinds."""
    out = dict(info)
    out["path"] = Path(str(info.get("path", ""))).name
    if info.get("run_dir"):
        out["run_dir"] = Path(str(info["run_dir"])).name
    out["sources"] = [{k: v for k, v in src.items() if k in ("kind", "dataset", "split", "prefix")}
                      for src in info.get("sources", [])]
    return out


def create_app(searcher, *, card: dict[str, Any], max_upload_bytes: int = 10 * 2 ** 20,
               exhaustive: bool = False, registry=None):
    """Build the app around a ready :class:`~daer_core.search.GallerySearcher`.

    ``exhaustive=True`` scores every item for each query (used when no index was given and
    the run's test split is served as is).
    """
    # no /docs or /redoc: their pages load scripts from a CDN that an offline machine cannot
    # reach; the schema itself stays at /openapi.json
    app = FastAPI(title="daer search", description="image<->text search with a DAER model",
                  version="1", docs_url=None, redoc_url=None)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError):
        # FastAPI echoes each rejected input back; NaN, Infinity or 1e400 (json reads them as
        # floats) and lone surrogates cannot be encoded as JSON, which turned a 422 into a 500
        detail = [{"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")),
                   "type": str(e.get("type", ""))} for e in exc.errors()]
        return JSONResponse(status_code=422, content={"detail": detail})
    lock = threading.Lock()  # one query at a time through the model (it is not re-entrant)
    reloader = IndexReloader(searcher)

    def results(res, query: str) -> dict[str, Any]:
        rows = []
        for h in res.hits:
            row = h.as_dict()
            if row.get("image"):  # the file's name only, never the server's folders
                row["image"] = Path(str(row["image"])).name
            row["thumbnail"] = (f"/api/items/{res.side}/{h.row}/thumbnail"
                                if h.item.get("has_image", h.item.get("path") is not None)
                                else None)
            rows.append(row)
        return {"query": query, "results_kind": res.side, "candidates": res.candidates,
                "gallery_size": searcher.index.counts()[res.side], "exhaustive": res.exhaustive,
                "milliseconds": {k: round(v * 1000, 2) for k, v in res.seconds.items()},
                "results": rows}

    def run_search(fn, *args):
        with lock:
            reloader.refresh()  # between queries: none is dropped, none sees half an index
            try:
                return fn(*args)
            except ConfigError as exc:  # e.g. an image query against an image-only index
                raise HTTPException(409, str(exc)) from None

    @app.get("/", include_in_schema=False)
    def page():
        return FileResponse(STATIC / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/api/health")
    def health():
        with lock:
            reloader.refresh()
        # the version the service serves, as a header (the body's schema stays as it was)
        return JSONResponse({"status": "ok", "items": searcher.index.counts()},
                            headers={"X-Index-Version": str(reloader.version)})

    @app.get("/api/model")
    def model():
        return card

    @app.post("/api/search/text")
    async def search_text(q: TextQuery):
        text = q.query.strip()
        if any("\ud800" <= ch <= "\udfff" for ch in text):
            raise HTTPException(400, "the query is not valid Unicode text (it holds a lone"
                                     " surrogate code point)")
        if not text:
            raise HTTPException(400, "the query is empty; type what to look for")
        if len(text) > MAX_QUERY_CHARS:
            raise HTTPException(400, f"the query has {len(text)} characters; at most"
                                     f" {MAX_QUERY_CHARS} are accepted")
        res = await run_in_threadpool(run_search, searcher.search_text, text, q.k,
                                      q.candidates, exhaustive)
        return results(res, text)

    @app.post("/api/search/image")
    async def search_image(request: Request):
        ctype = request.headers.get("content-type", "")
        if not ctype.startswith("multipart/form-data"):
            raise HTTPException(415, "send the image as multipart/form-data with the field"
                                     " 'file'")
        limit = max_upload_bytes + MULTIPART_OVERHEAD
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise HTTPException(413, f"upload of {int(declared)} bytes is larger than the"
                                     f" limit of {max_upload_bytes} bytes")
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise HTTPException(413, f"upload larger than the limit of {max_upload_bytes}"
                                         f" bytes")

        async def replay():
            return {"type": "http.request", "body": bytes(body), "more_body": False}

        try:
            form = await Request(request.scope, replay).form(max_files=1, max_fields=10)
        except Exception as exc:  # noqa: BLE001 - malformed multipart is the client's error
            raise HTTPException(400, f"malformed multipart body: {exc}") from None
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            raise HTTPException(400, "no file in the field 'file'")
        data = await upload.read()
        if not data:
            raise HTTPException(400, "the uploaded file is empty")
        if len(data) > max_upload_bytes:
            raise HTTPException(413, f"upload of {len(data)} bytes is larger than the limit of"
                                     f" {max_upload_bytes} bytes")
        k = _form_int(form.get("k"), "k", 10, 1, MAX_K)
        candidates = _form_int(form.get("candidates"), "candidates", None, 1, None)
        try:
            with Image.open(io.BytesIO(data)) as im:
                w, h = im.size
                if w * h > MAX_PIXELS:
                    raise HTTPException(413, f"the image has {w} x {h} pixels; at most"
                                             f" {MAX_PIXELS} are accepted")
                im.load()
                image = im.convert("RGB")
        except HTTPException:
            raise
        except Image.DecompressionBombError as exc:  # too many pixels for Pillow to open
            raise HTTPException(413, f"the image has too many pixels ({exc}); at most"
                                     f" {MAX_PIXELS} are accepted") from None
        except (UnidentifiedImageError, OSError, ValueError) as exc:
            name = getattr(upload, "filename", None) or "the upload"
            raise HTTPException(415, f"{name} is not an image that can be decoded"
                                     f" ({type(exc).__name__})") from None
        res = await run_in_threadpool(run_search, searcher.search_image, image, k, candidates,
                                      exhaustive)
        return results(res, getattr(upload, "filename", None) or "image")

    @lru_cache(maxsize=8)
    def job_items(job: int):
        spec = next(j["source"] for j in searcher.index.info["jobs"] if j["job"] == job)
        return source_items(spec, registry)

    @app.get("/api/items/{side}/{row}/thumbnail")
    def thumbnail(side: str, row: int, size: int = 160):
        index = searcher.index
        if side not in index.sides:
            raise HTTPException(404, f"no side {side!r}; use image or text")
        data = index.sides[side]
        if not 0 <= row < len(data):
            raise HTTPException(404, f"{side} row {row} does not exist (the index has"
                                     f" {len(data)})")
        if not 16 <= size <= 512:
            raise HTTPException(422, "size must be between 16 and 512")
        meta = data.meta[row]
        ref = meta.get("path")
        if ref is None:
            if not meta.get("has_image"):
                raise HTTPException(404, f"{meta['id']} has no image")
            items = job_items(meta["job"])
            ref = items[meta["position"]].image
        try:
            img = load_rgb(ref)
        except Exception as exc:  # noqa: BLE001 - a file moved or deleted since indexing
            raise HTTPException(404, f"the image of {meta['id']} cannot be read: {exc}") from None
        img.thumbnail((size, size))
        if min(img.size) < size // 2:  # small drawn images: scale up, keep hard edges
            factor = max(1, size // max(img.size))
            img = img.resize((img.width * factor, img.height * factor), Image.NEAREST)
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        return Response(buf.getvalue(), media_type="image/png",
                        headers={"Cache-Control": "max-age=3600"})

    return app


def _form_int(value, name: str, default, low: int, high: int | None):
    if value is None or (isinstance(value, str) and not value.strip()):
        return default
    try:
        n = int(str(value))
    except ValueError:
        raise HTTPException(422, f"{name} must be an integer, got {str(value)[:20]!r}") from None
    if n < low or (high is not None and n > high):
        raise HTTPException(422, f"{name} must be between {low} and {high or 'the gallery size'}")
    return n
