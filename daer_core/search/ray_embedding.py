"""Embedding a gallery on Ray Data (``daer index RUN --gallery ... --out DIR --engine ray``).

The single-process path (:meth:`~.index.GalleryIndex.add_source`) embeds a job's shards one
after the other. Here the missing shards of the job become the rows of a Ray Dataset (one
block per shard), a pool of model actors (``--ray-workers``, each with
``--ray-cpus-per-worker`` CPUs and ``--ray-gpus-per-worker`` GPUs) embeds them — every actor
loads the run from its folder and re-creates the gallery's items from the source's spec, so
neither the model nor the images travel through Ray — and the driver writes each shard it
receives with :func:`.storage.write_shard`, exactly as the single-process path would have:
same file, same numbering, same arrays. :meth:`~.index.GalleryIndex.add_source` then finds
every shard present and only counts them and fills the FAISS indexes. A killed embedding
leaves the shards written so far; the same command embeds only the missing ones.

Beside the shards the driver writes ``metadata/jJJJ.parquet``: one row per item of the job
(id, job, shard, position, has_text, has_image, image_embedded, skipped reason, text, path,
labels), read back from the shards, so a resumed job's table equals an uninterrupted one's.

Ray is local by default (``ray.init(num_cpus=workers x cpus per worker)``) or a running
cluster (``--ray-address``). On a cluster the run folder and the gallery's files must be
readable at the same paths on every node; the shards are written by the driver only.
Needs the ``ray`` extra (``pip install -e '.[ray]'``).
"""
from __future__ import annotations

import io
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..errors import ConfigError
from .gallery import GallerySource
from .scoring import SIDES
from .storage import SearchIndexError, ids_digest, read_shard, shard_sides, write_shard

log = logging.getLogger(__name__)

ENGINES = ("process", "ray")
#: seconds between two progress lines in the log (a bar draws on a terminal as well)
LOG_EVERY_S = 10.0


@dataclass
class RayEmbedReport:
    """What one Ray embedding did (``resumed_shards``: found on disk, not recomputed)."""

    job: int
    shards: int
    resumed_shards: int
    embedded_shards: int
    items: int
    embedded_items: int
    seconds: float
    workers: int
    address: str
    metadata: str | None
    #: from the call to the first shard back: connecting or starting Ray, starting the actors
    #: (each loads the run and the gallery's items) and embedding that shard
    first_shard_s: float = 0.0
    #: seconds the actors spent embedding, summed over the actors
    actor_seconds: float = 0.0

    @property
    def items_per_s(self) -> float:
        """Items per second of wall-clock time, Ray and actor start-up included."""
        return self.embedded_items / self.seconds if self.seconds > 0 else 0.0

    @property
    def actor_items_per_s(self) -> float:
        """Items per second of one actor while it embeds (start-up excluded)."""
        return self.embedded_items / self.actor_seconds if self.actor_seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"engine": "ray", "job": self.job, "shards": self.shards,
                "resumed_shards": self.resumed_shards, "embedded_shards": self.embedded_shards,
                "items": self.items, "embedded_items": self.embedded_items,
                "seconds": round(self.seconds, 3), "items_per_s": round(self.items_per_s, 2),
                "first_shard_s": round(self.first_shard_s, 3),
                "actor_seconds": round(self.actor_seconds, 3),
                "actor_items_per_s": round(self.actor_items_per_s, 2),
                "workers": self.workers, "address": self.address, "metadata": self.metadata}


# ------------------------------------------------------------------ the job and its shards

def encode_shard(sides, skipped: Sequence[tuple[int, str]], items: list[dict]) -> bytes:
    """One embedded shard as npz bytes (numbers and JSON only: nothing is pickled), for the
    trip from an actor to the driver."""
    arrays: dict[str, np.ndarray] = {}
    for side, (pos, emb, half) in sides.items():
        arrays[f"{side}_pos"], arrays[f"{side}_embedding"] = pos, emb
        if half is not None:
            arrays[f"{side}_half"] = half
    arrays["skipped"] = np.frombuffer(json.dumps([[int(p), r] for p, r in skipped]).encode(),
                                      dtype=np.uint8)
    arrays["items"] = np.frombuffer(json.dumps(items).encode(), dtype=np.uint8)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def decode_shard(payload: bytes):
    """The arguments of :func:`.storage.write_shard` back from :func:`encode_shard`."""
    with np.load(io.BytesIO(payload), allow_pickle=False) as z:
        data = {k: z[k] for k in z.files}
    sides = {side: (data[f"{side}_pos"], data[f"{side}_embedding"], data.get(f"{side}_half"))
             for side in SIDES}
    skipped = [(int(p), str(r)) for p, r in json.loads(data["skipped"].tobytes())]
    return sides, skipped, json.loads(data["items"].tobytes())


class ShardEmbedder:
    """A Ray Data actor: loads the run and the gallery's items once, then embeds whole
    shards (``batch["shard"]``) and returns them encoded (:func:`encode_shard`)."""

    def __init__(self, *, run_dir: str, spec: dict[str, Any], ids_sha256: str,
                 shard_size: int, batch_size: int, num_workers: int, device: str,
                 threads: int, plugin_opts: Sequence[str] = ()):
        import torch

        from ..training.run_loading import load_run
        from .gallery import source_items
        from .scoring import PairScorer
        if plugin_opts:
            import registry
            registry.set_default_plugins(registry.load_plugins(
                load=[o for o in plugin_opts if not o.startswith("no:")],
                block=[o[3:] for o in plugin_opts if o.startswith("no:")]))
        torch.set_num_threads(max(1, threads))
        loaded = load_run(run_dir)
        self.model = loaded.model.to(device)
        self.preprocess = loaded.preprocess
        self.scorer = PairScorer(self.model)
        self.items = source_items(spec)
        if ids_digest(self.items) != ids_sha256:
            raise SearchIndexError(
                f"the gallery {spec} re-created on a Ray worker lists other items than on the"
                f" driver; its files must be readable at the same paths on every node")
        self.shard_size, self.batch_size = shard_size, batch_size
        self.num_workers, self.device = num_workers, device

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from .embedding import embed_items
        shards, counts, payloads, seconds = [], [], [], []
        for s in batch["shard"]:
            t0 = time.perf_counter()
            s = int(s)
            chunk = self.items[s * self.shard_size:(s + 1) * self.shard_size]
            got = embed_items(self.model, self.preprocess, chunk, batch_size=self.batch_size,
                              num_workers=self.num_workers, device=self.device)
            payloads.append(encode_shard(shard_sides(self.scorer, got), got.skipped,
                                         [it.meta() for it in chunk]))
            shards.append(s)
            counts.append(len(chunk))
            seconds.append(time.perf_counter() - t0)
        payload = np.empty(len(payloads), dtype=object)
        payload[:] = payloads
        return {"shard": np.asarray(shards, dtype=np.int64),
                "items": np.asarray(counts, dtype=np.int64), "payload": payload,
                "seconds": np.asarray(seconds, dtype=np.float64)}


# ------------------------------------------------------------------ metadata table

def write_metadata(root: Path, job: dict[str, Any]) -> Path:
    """``metadata/jJJJ.parquet`` of a job whose shards are all written: one row per item."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    cols: dict[str, list] = {k: [] for k in (
        "id", "job", "shard", "position", "has_text", "has_image", "image_embedded",
        "skipped", "text", "path", "labels")}
    size = job["shard_size"]
    for s in range(job["shards"]):
        data = read_shard(root, job["job"], s)
        embedded = {int(p) for p in data["image_pos"]}
        reasons = dict(zip((int(p) for p in data["skipped_pos"]),
                           json.loads(data["skipped_reason"].tobytes())))
        for p, meta in enumerate(data["items"]):
            cols["id"].append(meta["id"])
            cols["job"].append(job["job"])
            cols["shard"].append(s)
            cols["position"].append(s * size + p)
            cols["has_text"].append(meta.get("text") is not None)
            cols["has_image"].append(bool(meta.get("has_image")))
            cols["image_embedded"].append(p in embedded)
            cols["skipped"].append(reasons.get(p))
            cols["text"].append(meta.get("text"))
            cols["path"].append(meta.get("path"))
            cols["labels"].append(list(meta.get("labels") or []))
    schema = pa.schema([("id", pa.string()), ("job", pa.int32()), ("shard", pa.int32()),
                        ("position", pa.int64()), ("has_text", pa.bool_()),
                        ("has_image", pa.bool_()), ("image_embedded", pa.bool_()),
                        ("skipped", pa.string()), ("text", pa.string()),
                        ("path", pa.string()), ("labels", pa.list_(pa.string()))])
    table = pa.table(cols, schema=schema)
    folder = Path(root) / "metadata"
    folder.mkdir(exist_ok=True)
    path = folder / f"j{job['job']:03d}.parquet"
    tmp = path.with_name(path.stem + ".tmp.parquet")
    pq.write_table(table, tmp)
    tmp.replace(path)
    return path


# ------------------------------------------------------------------ the engine

def _import_ray():
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise ConfigError("--engine ray needs Ray Data: pip install -e '.[ray]'") from None
    return ray


def connect(*, address: str | None, num_cpus: float, num_gpus: float) -> str:
    """Start a local Ray with ``num_cpus`` CPUs (no address) or join the cluster at
    ``address``; reuse a Ray this process already started. Returns where it runs. Ray stops
    with the process."""
    ray = _import_ray()
    if not ray.is_initialized():
        if address:
            ray.init(address=address, include_dashboard=False)
        else:
            ray.init(num_cpus=max(1, int(np.ceil(num_cpus))), include_dashboard=False)
    where = address or "local"
    have = ray.cluster_resources()
    for name, need in (("CPU", num_cpus), ("GPU", num_gpus)):
        if need > have.get(name, 0) + 1e-9:
            msg = (f"--engine ray: the workers need {need:g} {name}s, the Ray cluster"
                   f" ({where}) has {have.get(name, 0):g}")
            if not address:
                raise ConfigError(msg)
            log.warning("%s; they wait until it has them", msg)
    return where


@dataclass
class RayEngine:
    """How ``--engine ray`` embeds: where Ray runs and the shape of the actor pool. After
    :meth:`embed`, ``report`` says what it did."""

    address: str | None = None
    workers: int = 2
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0
    plugin_opts: Sequence[str] = ()
    report: RayEmbedReport | None = field(default=None, init=False)

    def __post_init__(self):
        if self.workers < 1:
            raise ConfigError("--ray-workers must be at least 1")
        if self.cpus_per_worker <= 0:
            raise ConfigError("--ray-cpus-per-worker must be more than 0")
        if self.gpus_per_worker < 0:
            raise ConfigError("--ray-gpus-per-worker must be 0 or more")

    def embed(self, index, source: GallerySource, run_dir: Path, *,
              shard_size: int, batch_size: int = 64, num_workers: int = 0,
              show_progress: bool = True,
              on_shard: Callable[[int], None] | None = None) -> RayEmbedReport | None:
        """Write every missing shard of ``source``'s job into ``index`` (and the job's
        metadata table). None when the source is already indexed. ``on_shard(s)`` is called
        after shard ``s`` is written."""
        from tqdm.auto import tqdm
        started = time.perf_counter()
        job = index.prepare_job(source, shard_size)
        if job is None:
            return None
        items, size, root = source.items, job["shard_size"], Path(index.root)
        todo = index.missing_shards(job)
        done = [s for s in range(job["shards"]) if s not in set(todo)]
        shard_items = {s: len(items[s * size:(s + 1) * size]) for s in range(job["shards"])}
        embedded, first, busy = 0, 0.0, 0.0
        where = "local"
        if todo:
            where = connect(address=self.address, num_cpus=self.workers * self.cpus_per_worker,
                            num_gpus=self.workers * self.gpus_per_worker)
            log.info("embedding %d items (%d of %d shards; %d done before) on Ray (%s) with %d"
                     " workers", sum(shard_items[s] for s in todo), len(todo), job["shards"],
                     len(done), where, self.workers)
            bar = tqdm(total=len(items), initial=sum(shard_items[s] for s in done),
                       desc=f"embedding {len(items)} items on Ray", unit="item",
                       disable=None if show_progress else True)
            t0 = last = time.perf_counter()
            rows = self._dataset(job, todo, run_dir, batch_size, num_workers).iter_rows()
            try:
                for row in rows:
                    s = int(row["shard"])
                    sides, skipped, metas = decode_shard(row["payload"])
                    write_shard(root, job["job"], s, sides, skipped, metas)
                    embedded += int(row["items"])
                    busy += float(row["seconds"])
                    first = first or time.perf_counter() - started
                    bar.update(int(row["items"]))
                    if on_shard is not None:
                        on_shard(s)
                    now = time.perf_counter()
                    if now - last >= LOG_EVERY_S:
                        last = now
                        log.info("embedded %d of %d items, %.1f items/s", embedded,
                                 sum(shard_items[s] for s in todo), embedded / (now - t0))
            finally:
                bar.close()
                close = getattr(rows, "close", None)
                if close is not None:  # stop the actors of an abandoned run
                    close()
        metadata = write_metadata(root, job)
        seconds = time.perf_counter() - started
        self.report = RayEmbedReport(job["job"], job["shards"], len(done), len(todo),
                                     len(items), embedded, seconds, self.workers, where,
                                     str(metadata), first, busy)
        log.info("Ray embedding: %d items in %.1f s, %.1f items/s (%d workers, %s; first shard"
                 " after %.1f s, %.1f items/s per actor while embedding); %d shards were"
                 " already written", embedded, seconds, self.report.items_per_s, self.workers,
                 where, first, self.report.actor_items_per_s, len(done))
        return self.report

    def _dataset(self, job, todo: list[int], run_dir: Path, batch_size: int,
                 num_workers: int):
        ray = _import_ray()
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False      # the driver draws one bar over items
        ctx.print_on_execution_start = False
        ds = ray.data.from_items([{"shard": s} for s in todo], override_num_blocks=len(todo))
        device = "cuda" if self.gpus_per_worker > 0 else "cpu"
        kwargs = dict(run_dir=str(Path(run_dir).resolve()), spec=job["source"],
                      ids_sha256=job["ids_sha256"], shard_size=job["shard_size"],
                      batch_size=batch_size, num_workers=num_workers, device=device,
                      threads=max(1, int(self.cpus_per_worker)),
                      plugin_opts=list(self.plugin_opts))
        pool = ray.data.ActorPoolStrategy(size=min(self.workers, len(todo)))
        return ds.map_batches(ShardEmbedder, fn_constructor_kwargs=kwargs, batch_size=1,
                              compute=pool,
                              num_cpus=self.cpus_per_worker,
                              num_gpus=self.gpus_per_worker or None)
