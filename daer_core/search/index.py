"""A gallery index: embeddings, relation-head halves, item metadata and FAISS indexes,
opened for searching or extended with another gallery source. The files and their layout:
:mod:`.storage`.

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

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from ..errors import ConfigError, DataError
from . import ann, columns, removal
from .first_stage import DEFAULT_METHOD, FirstStage, fit_first_stage, load_first_stage
from .gallery import GalleryItem, GallerySource, source_items
from .scoring import SIDES, PairScorer
from .storage import (SCHEMA, SearchIndexError, SideData, complete_jobs, ids_digest, read_info,
                      read_shard, read_sides, shard_path, shard_sides, weights_fingerprint,
                      write_info, write_shard)

__all__ = ["BuildReport", "DEFAULT_FIT_ITEMS", "DEFAULT_SHARD_SIZE", "GalleryIndex", "SCHEMA",
           "SearchIndexError", "SideData", "source_items", "weights_fingerprint"]

log = logging.getLogger(__name__)

DEFAULT_SHARD_SIZE = 2048
#: training pairs (texts and images each) the distilled first stage is fitted on at most
DEFAULT_FIT_ITEMS = 1024


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

    def __init__(self, root: Path, info: dict[str, Any], scorer: PairScorer, stage: FirstStage,
                 *, mmap: bool = True):
        self.root = Path(root)
        self.info = info
        self.scorer = scorer
        self.first_stage = stage
        #: open rows and FAISS files memory-mapped (see :mod:`.columns`), else in memory
        self.mmap = mmap
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
        write_info(root, info)
        index = cls(root, info, scorer, stage)
        index._load_sides()
        return index

    @classmethod
    def open(cls, root: Path, model, *, run_dir: Path | None = None,
             mmap: bool = True) -> "GalleryIndex":
        """Open an index for searching (or adding to). With ``run_dir``, check that the index
        was built with that run's current weights. ``mmap`` (the default) leaves the rows and
        the FAISS codes in their files (:mod:`.columns`); ``False`` reads them into memory —
        the same results, for an index small enough or a disk too slow."""
        root = Path(root)
        path = root / "index.json"
        info = read_info(root)
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
        index = cls(root, info, scorer, stage, mmap=mmap)
        index._load_sides()
        return index

    def _load_sides(self) -> None:
        """The rows of every complete job (from the column files when they are current, else
        from the shards) and the FAISS files."""
        use_columns = columns.current(self.info)
        damaged = use_columns and columns.damaged(self.root, self.info, self.scorer)
        if damaged:
            log.warning("%s: %s; reading the shards instead (the next `daer index` run on "
                        "this folder writes the columns again)", self.root, damaged)
        if use_columns and not damaged:
            sides = columns.read(self.root, self.scorer, mmap=self.mmap)
        else:
            sides = read_sides(self.root, self.info, self.scorer)
        for side in SIDES:
            self.sides[side] = sides[side]
            n = len(sides[side])
            if n != self.info["counts"].get(side, 0):
                raise SearchIndexError(
                    f"{self.root}: index.json counts {self.info['counts'].get(side, 0)} {side}"
                    f" items but the shards hold {n}; the index folder was changed"
                    f" by hand or is damaged — rebuild it")
            settings = self.info["ann"]["sides"].get(side)
            if settings is not None and n:
                self.settings[side] = ann.AnnSettings.from_dict(settings)
                self.ann[side] = ann.load(self.root / f"{side}.faiss", self.settings[side],
                                          mmap=self.mmap)
                if self.ann[side].ntotal != n:
                    raise SearchIndexError(
                        f"{self.root / (side + '.faiss')}: holds {self.ann[side].ntotal} rows,"
                        f" the index has {n} {side} items; run the same"
                        f" `daer index` command again to repair it")

    # ---------------------------------------------------------------- adding a source

    def add_source(self, source: GallerySource, model, preprocess, *,
                   shard_size: int = DEFAULT_SHARD_SIZE, batch_size: int = 64,
                   num_workers: int = 0, device: torch.device | str = "cpu",
                   show_progress: bool = True,
                   embed: Callable[[Sequence[GalleryItem]], Any] | None = None) -> BuildReport:
        """Embed ``source`` into the index, resuming an interrupted job for the same source.

        ``embed(chunk)`` replaces the model's embedding of one shard's items (it returns what
        :func:`~.embedding.embed_items` does): vectors computed elsewhere — on another
        engine, or synthetic ones for a benchmark — go through the same shards, columns and
        FAISS upkeep."""
        from tqdm.auto import tqdm

        from .embedding import embed_items
        started = time.perf_counter()
        items = source.items
        if shard_size < 1:
            raise ConfigError("--shard-size must be at least 1")
        job = self.prepare_job(source, shard_size)
        if job is None:
            job = next(j for j in self.info["jobs"] if j["key"] == source.key)
            return BuildReport(job["job"], source.spec, len(items), {"text": 0, "image": 0}, [],
                               0, True, time.perf_counter() - started, self.counts(),
                               self._ann_kinds())
        size = job["shard_size"]
        todo = self.missing_shards(job)
        done = [s for s in range(job["shards"]) if s not in todo]
        bar = tqdm(total=len(items), initial=sum(len(items[s * size:(s + 1) * size]) for s in done),
                   desc=f"indexing {len(items)} items", unit="item",
                   # None: frames on a terminal only, never into a redirected stderr
                   disable=None if show_progress else True)
        try:
            for shard in todo:
                chunk = items[shard * size:(shard + 1) * size]
                if embed is not None:
                    got = embed(chunk)
                    bar.update(len(chunk))
                else:
                    got = embed_items(model, preprocess, chunk, batch_size=batch_size,
                                      num_workers=num_workers, device=device,
                                      progress=bar.update)
                self._write_shard(job["job"], shard, chunk, got)
        finally:
            bar.close()
        # count what the job added and collect its skips from the shards themselves, so a
        # resumed build reports the same as an uninterrupted one
        added = {"text": 0, "image": 0}
        skipped: list[tuple[str, str]] = []
        new_vectors: dict[str, list[np.ndarray]] = {s: [] for s in SIDES}
        for shard in range(job["shards"]):
            data = read_shard(self.root, job["job"], shard)
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
        write_info(self.root, self.info)
        self.write_columns()
        self._load_sides()
        return BuildReport(job["job"], source.spec, len(items), added, skipped, len(done), False,
                           time.perf_counter() - started, self.counts(), self._ann_kinds())

    def prepare_job(self, source: GallerySource, shard_size: int) -> dict[str, Any] | None:
        """The job ``source`` is embedded as: an interrupted one for the same source (checked
        to list the same items), or a new one recorded in ``index.json`` before any shard is
        written; None when the source is already indexed. (:meth:`add_source` and the Ray
        engine both start here.)"""
        if shard_size < 1:
            raise ConfigError("--shard-size must be at least 1")
        items = source.items
        job = next((j for j in self.info["jobs"] if j["key"] == source.key), None)
        if job is not None and job.get("complete"):
            return None
        self._check_ids(items)
        digest = ids_digest(items)
        if job is not None and job["ids_sha256"] != digest:
            raise SearchIndexError(
                f"{self.root}: an interrupted job for this gallery ({source.spec}) listed other"
                f" items than the gallery has now; remove its shards"
                f" ({self.root / 'shards'}/j{job['job']:03d}-*) and its entry in index.json, or"
                f" build into a new folder")
        if job is None:
            job = {"job": len(self.info["jobs"]), "key": source.key, "source": source.spec,
                   "count": len(items), "shard_size": shard_size,
                   "shards": (len(items) + shard_size - 1) // shard_size,
                   "ids_sha256": digest, "complete": False, "skipped": []}
            self.info["jobs"].append(job)
            write_info(self.root, self.info)
        return job

    def missing_shards(self, job: dict[str, Any]) -> list[int]:
        """Shards of ``job`` not written yet (a written shard is complete: atomic writes)."""
        return [s for s in range(job["shards"]) if not shard_path(self.root, job["job"], s).is_file()]

    def _check_ids(self, items: Sequence[GalleryItem]) -> None:
        seen: set[str] = set()
        dup = [it.id for it in items if it.id in seen or seen.add(it.id)]
        if dup:
            raise DataError(f"the gallery lists {len(dup)} ids more than once (first:"
                            f" {', '.join(dup[:5])}); ids must be unique")
        gone = {name: set(self.info.get("removed", {}).get(name, [])) for name in self.sides}
        existing = {m["id"] for name, side in self.sides.items()
                    for row, m in enumerate(side.meta) if row not in gone[name]}
        clash = [it.id for it in items if it.id in existing]
        if clash:
            raise DataError(f"{self.root}: {len(clash)} ids of this gallery are already in the"
                            f" index (first: {', '.join(clash[:5])}); give --id-prefix to keep"
                            f" both")

    def _write_shard(self, job: int, shard: int, chunk: Sequence[GalleryItem], got) -> None:
        """Store what :func:`~.embedding.embed_items` returned for ``chunk``, with the halves
        of the embeddings when the model splits."""
        write_shard(self.root, job, shard, shard_sides(self.scorer, got), got.skipped,
                    [it.meta() for it in chunk])

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
                # a memory-mapped FAISS file is read-only: extend a copy in memory
                index = ann.load(path, current) if self.mmap else self.ann[side]
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
        write_info(self.root, self.info)

    def record_first_stage(self, **details: Any) -> None:
        """Add facts about the first stage to ``index.json`` (e.g. how it was refined)."""
        self.info["first_stage"].update(details)
        write_info(self.root, self.info)

    def write_columns(self) -> None:
        """(Re)write the memory-mapped column files from the shards and record them."""
        self.info["columns"] = columns.write(self.root, self.info, self.scorer)
        write_info(self.root, self.info)

    # ---------------------------------------------------------------- removing items

    def removed_rows(self, side: str) -> np.ndarray:
        """Sorted rows of ``side`` removed from the index (:mod:`.removal`)."""
        return removal.removed_rows(self.info, side)

    def remove(self, ids: Sequence[str]) -> dict[str, Any]:
        """Take the items with these ids out of every search, without a rebuild
        (tombstones, :mod:`.removal`); unknown ids are returned, not an error."""
        return {**removal.remove_ids(self, ids), "totals": self.counts()}

    # ---------------------------------------------------------------- facts

    def counts(self) -> dict[str, int]:
        """Items each side can return (rows minus removed ones)."""
        return {s: (len(self.sides[s]) - len(self.removed_rows(s))) if s in self.sides else 0
                for s in SIDES}

    def _ann_kinds(self) -> dict[str, str]:
        return {s: v["kind"] for s, v in self.info["ann"]["sides"].items()}

    def describe(self) -> dict[str, Any]:
        """A JSON-ready summary (for the service's model card and ``--json`` output)."""
        return {"path": str(self.root.resolve()), "counts": self.counts(),
                "first_stage": self.info["first_stage"], "ann": self.info["ann"]["sides"],
                "sources": [j["source"] for j in complete_jobs(self.info)],
                "run_dir": self.info["run_dir"]}

