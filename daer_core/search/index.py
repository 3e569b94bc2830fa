"""A gallery index on disk: embeddings, relation-head halves, item metadata and FAISS indexes.

Layout of an index folder::

    index.json            schema, the run it belongs to (path + weights fingerprint),
                          first-stage method, ANN settings per side, the jobs, item counts
    first_stage.npz       what the first stage learned (see first_stage.py)
    shards/jJJJ-sSSSSS.npz  one shard of one job: raw embeddings and halves of both sides,
                          item metadata as JSON (written atomically; present = done)
    text.faiss, image.faiss  the first-stage ANN index of each side

A *job* is one ``--gallery`` source added to the index. Its items are embedded in shards of
``shard_size`` items; a build that is interrupted (Ctrl-C, a crash, a full disk) leaves its
finished shards, and running the same command again embeds only the missing ones. Adding
another source adds a job; its rows are appended to the FAISS indexes (or all rows are
re-indexed when the index type chosen for the new size changes, e.g. flat -> IVF).

The *image side* holds every item with an image (searched by text queries), the *text side*
every item with a text (searched by image queries). Side rows are in job, shard, item order,
and row ``r`` of a side is row ``r`` of its FAISS index.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ..errors import ConfigError, DaerError, DataError
from . import ann
from .first_stage import DEFAULT_METHOD, FirstStage, fit_first_stage, load_first_stage
from .gallery import GalleryItem, GallerySource
from .scoring import SIDES, PairScorer, Side

log = logging.getLogger(__name__)

SCHEMA = "daer.search-index/1"
DEFAULT_SHARD_SIZE = 2048
#: training pairs (texts and images each) the distilled first stage is fitted on at most
DEFAULT_FIT_ITEMS = 1024


class SearchIndexError(DaerError):
    """An index folder that is missing, incomplete, or belongs to another model."""


def weights_fingerprint(run_dir: Path) -> str:
    """sha256 over the files of ``checkpoints/final``: an index is only valid for the exact
    weights it was embedded with, and a retrained run in the same folder must be noticed."""
    final = Path(run_dir) / "checkpoints" / "final"
    if not final.is_dir():
        raise SearchIndexError(f"{run_dir}: no checkpoints/final (training has not finished)")
    h = hashlib.sha256()
    for f in sorted(final.iterdir()):
        if f.is_file():
            h.update(f.name.encode())
            with f.open("rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
    return h.hexdigest()


def _atomic_json(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _ids_digest(items: Sequence[GalleryItem]) -> str:
    h = hashlib.sha256()
    for it in items:
        h.update(it.id.encode())
        h.update(b"\0")
    return h.hexdigest()


@dataclass
class SideData:
    """Everything stored about one side, in row order."""

    embedding: torch.Tensor
    half: torch.Tensor | None
    meta: list[dict[str, Any]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.meta)


@dataclass
class BuildReport:
    """What one ``daer index`` call did."""

    job: int
    source: dict[str, Any]
    items: int
    added: dict[str, int]
    skipped: list[tuple[str, str]]
    resumed_shards: int
    already_indexed: bool
    seconds: float
    totals: dict[str, int]
    ann: dict[str, str]


class GalleryIndex:
    """An opened index folder: settings, per-side data and FAISS indexes."""

    def __init__(self, root: Path, info: dict[str, Any], scorer: PairScorer, stage: FirstStage):
        self.root = Path(root)
        self.info = info
        self.scorer = scorer
        self.first_stage = stage
        self.sides: dict[str, SideData] = {}
        self.ann: dict[str, Any] = {}
        self.settings: dict[str, ann.AnnSettings] = {}

    # ---------------------------------------------------------------- creation and opening

    @classmethod
    def create(cls, root: Path, *, run_dir: Path, model, train_text: torch.Tensor | None,
               train_image: torch.Tensor | None, first_stage: str = DEFAULT_METHOD,
               index_type: str = "auto", nlist: int | None = None, nprobe: int | None = None,
               fit_note: str = "", fit_options: dict[str, Any] | None = None
               ) -> "GalleryIndex":
        """A new, empty index for ``model``; the first stage is fitted on the given training
        embeddings (``fit_options`` go to its fit). ``root`` must not hold an index yet."""
        root = Path(root)
        if (root / "index.json").exists():
            raise SearchIndexError(f"{root}: already holds an index (index.json)")
        if index_type not in ann.KINDS:
            raise ConfigError(f"unknown index type {index_type!r}; choose one of"
                              f" {', '.join(ann.KINDS)}")
        scorer = PairScorer(model)
        stage = fit_first_stage(first_stage, scorer, train_text, train_image,
                                **(fit_options or {}))
        root.mkdir(parents=True, exist_ok=True)
        (root / "shards").mkdir(exist_ok=True)
        stage.save(root / "first_stage.npz")
        info = {
            "schema": SCHEMA,
            "run_dir": str(Path(run_dir).resolve()),
            "run_fingerprint": weights_fingerprint(run_dir),
            "model": {"text_dim": scorer.text_dim, "image_dim": scorer.image_dim,
                      "hidden_dim": scorer.hidden_dim, "splits": scorer.splits,
                      "components": dict(getattr(model, "names", {}))},
            "first_stage": {"method": stage.name, "fit": fit_note},
            "ann": {"requested": index_type, "nlist": nlist, "nprobe": nprobe, "sides": {}},
            "jobs": [],
            "counts": {"text": 0, "image": 0},
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        _atomic_json(root / "index.json", info)
        index = cls(root, info, scorer, stage)
        index._load_sides()
        return index

    @classmethod
    def open(cls, root: Path, model, *, run_dir: Path | None = None) -> "GalleryIndex":
        """Open an index for searching (or adding to). With ``run_dir``, check that the index
        was built with that run's current weights."""
        root = Path(root)
        path = root / "index.json"
        if not path.is_file():
            raise SearchIndexError(f"{root}: not a gallery index (index.json missing); build"
                                   f" one with `daer index RUN --gallery ... --out {root}`")
        try:
            info = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise SearchIndexError(f"{path}: unreadable: {exc}") from None
        if info.get("schema") != SCHEMA:
            raise SearchIndexError(f"{path}: schema {info.get('schema')!r}, expected {SCHEMA!r}")
        if run_dir is not None:
            fp = weights_fingerprint(run_dir)
            if fp != info.get("run_fingerprint"):
                raise SearchIndexError(
                    f"{root} was built with the weights of {info.get('run_dir')}, not with"
                    f" those now in {Path(run_dir).resolve()}/checkpoints/final; rebuild it"
                    f" with `daer index {run_dir} --gallery ... --out NEW_DIR`")
        scorer = PairScorer(model)
        m = info.get("model", {})
        if (m.get("text_dim"), m.get("image_dim")) != (scorer.text_dim, scorer.image_dim):
            raise SearchIndexError(f"{path}: embedded with widths {m.get('text_dim')}/"
                                   f"{m.get('image_dim')}, the model has {scorer.text_dim}/"
                                   f"{scorer.image_dim}")
        stage = load_first_stage(root / "first_stage.npz", scorer)
        index = cls(root, info, scorer, stage)
        index._load_sides()
        return index

    def _complete_jobs(self) -> list[dict[str, Any]]:
        return [j for j in self.info["jobs"] if j.get("complete")]

    def _shard_path(self, job: int, shard: int) -> Path:
        return self.root / "shards" / f"j{job:03d}-s{shard:05d}.npz"

    def _load_sides(self) -> None:
        """Read every shard of every complete job and the FAISS files."""
        emb: dict[str, list[torch.Tensor]] = {s: [] for s in SIDES}
        half: dict[str, list[torch.Tensor]] = {s: [] for s in SIDES}
        meta: dict[str, list[dict]] = {s: [] for s in SIDES}
        for job in self._complete_jobs():
            for shard in range(job["shards"]):
                data = self._read_shard(job["job"], shard)
                for side in SIDES:
                    rows = data[f"{side}_pos"]
                    if len(rows) == 0:
                        continue
                    emb[side].append(torch.from_numpy(data[f"{side}_embedding"]))
                    if self.scorer.splits:
                        half[side].append(torch.from_numpy(data[f"{side}_half"]))
                    items = data["items"]
                    meta[side].extend({**items[int(p)], "job": job["job"],
                                       "position": shard * job["shard_size"] + int(p)}
                                      for p in rows)
        for side in SIDES:
            dim = self.scorer.dim(side)
            e = torch.cat(emb[side]) if emb[side] else torch.zeros(0, dim)
            h = None
            if self.scorer.splits:
                h = torch.cat(half[side]) if half[side] else torch.zeros(0, self.scorer.hidden_dim)
            self.sides[side] = SideData(e, h, meta[side])
            if len(meta[side]) != self.info["counts"].get(side, 0):
                raise SearchIndexError(
                    f"{self.root}: index.json counts {self.info['counts'].get(side, 0)} {side}"
                    f" items but the shards hold {len(meta[side])}; the index folder was changed"
                    f" by hand or is damaged — rebuild it")
            settings = self.info["ann"]["sides"].get(side)
            if settings is not None and len(meta[side]):
                self.settings[side] = ann.AnnSettings.from_dict(settings)
                self.ann[side] = ann.load(self.root / f"{side}.faiss", self.settings[side])
                if self.ann[side].ntotal != len(meta[side]):
                    raise SearchIndexError(
                        f"{self.root / (side + '.faiss')}: holds {self.ann[side].ntotal} rows,"
                        f" the index has {len(meta[side])} {side} items; run the same"
                        f" `daer index` command again to repair it")

    def _read_shard(self, job: int, shard: int) -> dict[str, Any]:
        path = self._shard_path(job, shard)
        try:
            with np.load(path) as z:
                data = {k: z[k] for k in z.files}
            data["items"] = json.loads(data.pop("meta").tobytes().decode("utf-8"))
        except FileNotFoundError:
            raise SearchIndexError(f"{path}: shard missing from a finished job; rebuild the"
                                   f" index") from None
        except (OSError, ValueError, KeyError) as exc:
            raise SearchIndexError(f"{path}: unreadable shard: {exc}") from None
        return data

    # ---------------------------------------------------------------- adding a source

    def add_source(self, source: GallerySource, model, preprocess, *,
                   shard_size: int = DEFAULT_SHARD_SIZE, batch_size: int = 64,
                   num_workers: int = 0, device: torch.device | str = "cpu",
                   show_progress: bool = True) -> BuildReport:
        """Embed ``source`` into the index, resuming an interrupted job for the same source."""
        from tqdm.auto import tqdm

        from .embedding import embed_items
        started = time.perf_counter()
        items = source.items
        if shard_size < 1:
            raise ConfigError("--shard-size must be at least 1")
        job = next((j for j in self.info["jobs"] if j["key"] == source.key), None)
        if job is not None and job.get("complete"):
            return BuildReport(job["job"], source.spec, len(items), {"text": 0, "image": 0}, [],
                               0, True, time.perf_counter() - started, self.counts(),
                               self._ann_kinds())
        self._check_ids(items)
        if job is not None and job["ids_sha256"] != _ids_digest(items):
            raise SearchIndexError(
                f"{self.root}: an interrupted job for this gallery ({source.spec}) listed other"
                f" items than the gallery has now; remove its shards"
                f" ({self.root / 'shards'}/j{job['job']:03d}-*) and its entry in index.json, or"
                f" build into a new folder")
        if job is None:
            job = {"job": len(self.info["jobs"]), "key": source.key, "source": source.spec,
                   "count": len(items), "shard_size": shard_size,
                   "shards": (len(items) + shard_size - 1) // shard_size,
                   "ids_sha256": _ids_digest(items), "complete": False, "skipped": []}
            self.info["jobs"].append(job)
            _atomic_json(self.root / "index.json", self.info)
        size = job["shard_size"]
        done = [s for s in range(job["shards"]) if self._shard_path(job["job"], s).is_file()]
        todo = [s for s in range(job["shards"]) if s not in done]
        bar = tqdm(total=len(items), initial=sum(len(items[s * size:(s + 1) * size]) for s in done),
                   desc=f"indexing {len(items)} items", unit="item",
                   # None: frames on a terminal only, never into a redirected stderr
                   disable=None if show_progress else True)
        try:
            for shard in todo:
                chunk = items[shard * size:(shard + 1) * size]
                got = embed_items(model, preprocess, chunk, batch_size=batch_size,
                                  num_workers=num_workers, device=device, progress=bar.update)
                self._write_shard(job["job"], shard, chunk, got)
        finally:
            bar.close()
        # count what the job added and collect its skips from the shards themselves, so a
        # resumed build reports the same as an uninterrupted one
        added = {"text": 0, "image": 0}
        skipped: list[tuple[str, str]] = []
        new_vectors: dict[str, list[np.ndarray]] = {s: [] for s in SIDES}
        for shard in range(job["shards"]):
            data = self._read_shard(job["job"], shard)
            for side in SIDES:
                n = len(data[f"{side}_pos"])
                added[side] += n
                if n:
                    new_vectors[side].append(self.first_stage.item_vectors(
                        side, torch.from_numpy(data[f"{side}_embedding"])))
            skipped.extend((data["items"][int(p)]["id"], r) for p, r in
                           zip(data["skipped_pos"], json.loads(data["skipped_reason"].tobytes())))
        for rid, reason in skipped:
            log.warning("index: skipping image of %s: %s", rid, reason)
        self._extend_ann(added, new_vectors)
        job["complete"] = True
        job["skipped"] = [list(s) for s in skipped[:1000]]
        job["skipped_count"] = len(skipped)
        for side in SIDES:
            self.info["counts"][side] = self.info["counts"].get(side, 0) + added[side]
        _atomic_json(self.root / "index.json", self.info)
        self._load_sides()
        return BuildReport(job["job"], source.spec, len(items), added, skipped, len(done), False,
                           time.perf_counter() - started, self.counts(), self._ann_kinds())

    def _check_ids(self, items: Sequence[GalleryItem]) -> None:
        seen: set[str] = set()
        dup = [it.id for it in items if it.id in seen or seen.add(it.id)]
        if dup:
            raise DataError(f"the gallery lists {len(dup)} ids more than once (first:"
                            f" {', '.join(dup[:5])}); ids must be unique")
        existing = {m["id"] for side in self.sides.values() for m in side.meta}
        clash = [it.id for it in items if it.id in existing]
        if clash:
            raise DataError(f"{self.root}: {len(clash)} ids of this gallery are already in the"
                            f" index (first: {', '.join(clash[:5])}); give --id-prefix to keep"
                            f" both")

    def _write_shard(self, job: int, shard: int, chunk: Sequence[GalleryItem], got) -> None:
        arrays: dict[str, np.ndarray] = {}
        for side in SIDES:
            pos = got.image_pos if side == "image" else got.text_pos
            emb = got.image if side == "image" else got.text
            if emb is None:
                emb = torch.zeros(0, self.scorer.dim(side))
            arrays[f"{side}_pos"] = np.asarray(pos, dtype=np.int64)
            arrays[f"{side}_embedding"] = emb.numpy().astype(np.float32)
            if self.scorer.splits:
                device = next(self.scorer.model.parameters()).device
                arrays[f"{side}_half"] = self.scorer.halves(side, emb.to(device)).float().cpu().numpy()
        arrays["skipped_pos"] = np.asarray([p for p, _ in got.skipped], dtype=np.int64)
        arrays["skipped_reason"] = np.frombuffer(
            json.dumps([r for _, r in got.skipped]).encode("utf-8"), dtype=np.uint8)
        arrays["meta"] = np.frombuffer(json.dumps([it.meta() for it in chunk]).encode("utf-8"),
                                       dtype=np.uint8)
        path = self._shard_path(job, shard)
        tmp = path.with_name(path.stem + ".tmp.npz")
        np.savez(tmp, **arrays)
        os.replace(tmp, path)

    def _extend_ann(self, added: dict[str, int], new_vectors: dict[str, list[np.ndarray]]) -> None:
        """Append the job's rows to each side's FAISS index, or re-index the side when the
        index type for its new size differs (or the file does not match what came before)."""
        a = self.info["ann"]
        for side in SIDES:
            if not added[side]:
                continue
            before = self.info["counts"].get(side, 0)
            total = before + added[side]
            wanted = ann.choose_settings(a["requested"], total, nlist=a.get("nlist"),
                                         nprobe=a.get("nprobe"))
            current = self.settings.get(side)
            vectors = np.concatenate(new_vectors[side])
            path = self.root / f"{side}.faiss"
            reuse = (current is not None and current.kind == wanted.kind and side in self.ann
                     and self.ann[side].ntotal == before)
            if reuse:
                index = self.ann[side]
                ann.add(index, vectors)
                settings = current
            else:
                if before:  # re-index every row of the side with the new settings
                    old = self.first_stage.item_vectors(side, self.sides[side].embedding)
                    vectors = np.concatenate([old, vectors])
                index = ann.build(wanted, vectors)
                settings = wanted
            ann.save(index, path)
            a["sides"][side] = settings.as_dict()

    def replace_first_stage(self, stage: FirstStage, fit_note: str = "",
                            details: dict[str, Any] | None = None) -> None:
        """Swap in another first stage (e.g. refitted with other settings, or refined on the
        gallery): its vectors of the stored embeddings re-index every side. Nothing is
        re-embedded. ``details`` are recorded beside the method in ``index.json``."""
        tmp = self.root / "first_stage.tmp.npz"
        stage.save(tmp)
        a = self.info["ann"]
        built = {}
        for side in SIDES:
            n = len(self.sides[side])
            if not n:
                continue
            settings = ann.choose_settings(a["requested"], n, nlist=a.get("nlist"),
                                           nprobe=a.get("nprobe"))
            built[side] = (settings, ann.build(settings, stage.item_vectors(
                side, self.sides[side].embedding)))
        os.replace(tmp, self.root / "first_stage.npz")
        for side, (settings, index) in built.items():
            ann.save(index, self.root / f"{side}.faiss")
            a["sides"][side] = settings.as_dict()
            self.ann[side], self.settings[side] = index, settings
        self.first_stage = stage
        self.info["first_stage"] = {"method": stage.name, "fit": fit_note, **(details or {})}
        _atomic_json(self.root / "index.json", self.info)

    def record_first_stage(self, **details: Any) -> None:
        """Add facts about the first stage to ``index.json`` (e.g. how it was refined)."""
        self.info["first_stage"].update(details)
        _atomic_json(self.root / "index.json", self.info)

    # ---------------------------------------------------------------- facts

    def counts(self) -> dict[str, int]:
        return {s: len(self.sides[s]) if s in self.sides else 0 for s in SIDES}

    def _ann_kinds(self) -> dict[str, str]:
        return {s: v["kind"] for s, v in self.info["ann"]["sides"].items()}

    def describe(self) -> dict[str, Any]:
        """A JSON-ready summary (for the service's model card and ``--json`` output)."""
        return {"path": str(self.root.resolve()), "counts": self.counts(),
                "first_stage": self.info["first_stage"], "ann": self.info["ann"]["sides"],
                "sources": [j["source"] for j in self._complete_jobs()],
                "run_dir": self.info["run_dir"]}


def source_items(spec: dict[str, Any], registry=None) -> list[GalleryItem]:
    """Re-create the items of a stored job source (to draw images that have no file)."""
    from .gallery import items_from_dataset, items_from_folder
    if registry is None:
        from registry import get_registry
        registry = get_registry()
    kind = spec.get("kind")
    prefix = spec.get("prefix", "")
    if kind in ("split", "dataset"):
        dataset = registry.create("dataset", spec["dataset"], spec["params"])
        return items_from_dataset(dataset, spec["split"], prefix)
    if kind == "folder":
        return items_from_folder(Path(spec["path"]), prefix)
    if kind == "manifest":
        dataset = registry.create("dataset", "manifest", {"root": spec["path"]})
        return items_from_dataset(dataset, "all", prefix)
    raise SearchIndexError(f"unknown gallery source kind {kind!r}")

