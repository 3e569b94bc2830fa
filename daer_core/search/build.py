"""Creating or extending an index for a finished run (what ``daer index`` calls)."""
from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from ..errors import ConfigError
from .first_stage import DEFAULT_METHOD, STAGES, LearnedStage, teacher_logits
from .gallery import GallerySource
from .index import DEFAULT_FIT_ITEMS, DEFAULT_SHARD_SIZE, BuildReport, GalleryIndex

if TYPE_CHECKING:
    from .ray_embedding import RayEngine

log = logging.getLogger(__name__)

#: first stages that learn from the training split's embeddings
LEARNED = tuple(name for name, cls in STAGES.items() if cls.fitted)
#: when ``index_gallery`` refines a ``learned`` first stage on the gallery
REFINE_CHOICES = ("auto", "always", "never")


def training_embeddings(loaded, *, fit_items: int = DEFAULT_FIT_ITEMS, seed: int = 0,
                        device: torch.device | str = "cpu", batch_size: int = 64,
                        num_workers: int = 0) -> tuple[torch.Tensor, torch.Tensor, str]:
    """Embeddings of (at most ``fit_items``) pairs of the run's training split — what the
    first stage is fitted on — and a note saying which pairs they were."""
    from ..evaluation.retrieval import embed_records
    if loaded.config.dataset is None:
        raise ConfigError(f"{loaded.run_dir}: the run has no dataset; the first stage is"
                          f" fitted on its training split")
    from registry import get_registry
    dataset = get_registry().create("dataset", loaded.config.dataset.name,
                                    loaded.config.dataset.params)
    train = list(dataset.split("train"))
    if not train:
        raise ConfigError(f"{loaded.run_dir}: the dataset's training split is empty")
    if len(train) > fit_items:
        keep = np.sort(np.random.default_rng(seed).choice(len(train), fit_items, replace=False))
        train = [train[i] for i in keep]
    emb = embed_records(loaded.model, loaded.preprocess, train, device=device,
                        batch_size=batch_size, num_workers=num_workers,
                        desc="embedding training pairs for the first stage")
    note = (f"{len(emb.ids)} x {len(emb.ids)} pairs of the training split of"
            f" {loaded.config.dataset.name}")
    return emb.text.to(device), emb.image.to(device), note


#: gallery items (per side) the learned first stage is refined on at most: a seeded sample,
#: so the refinement costs the same for 10^6 items as for 10^8
REFINE_POOL = 65_536
#: past this many items a side the refinement mines from the whole :data:`REFINE_POOL` sample
#: (one shared random draw a round keeps each step on the mined rows); up to it, from 4,096
#: items a side, the setting the 2*10^4-item figures of docs/search.md were measured with. At
#: 10^6 items, 4,096 items a side stand for ~250 gallery items each, too coarse for the
#: order of a query's best few: recall@10 at 4,000 candidates 0.71 -> 0.85 (docs/search.md)
LARGE_GALLERY = 100_000


def _sample_rows(rows: torch.Tensor, limit: int, seed: int = 0) -> torch.Tensor:
    """At most ``limit`` rows, drawn with a fixed seed (all of them when fewer), in row order."""
    if len(rows) <= limit:
        return rows
    keep = np.sort(np.random.default_rng(seed).choice(len(rows), limit, replace=False))
    return rows[torch.from_numpy(keep)]


def refine_on_gallery(index: GalleryIndex, text: torch.Tensor, image: torch.Tensor, *,
                      fit_note: str, teacher: torch.Tensor | None = None) -> None:
    """Continue the index's ``learned`` first stage on its own gallery: for the training
    queries, the gallery items it currently ranks highest (and random ones) are scored by the
    relation head and the towers learn their order too (:meth:`LearnedStage.fit` with
    ``pool``, a seeded sample of at most :data:`REFINE_POOL` items per side). Recall depends on the order among the items candidates are drawn from, and
    those are the gallery's, not the training split's (docs/search.md has the figures)."""
    stage = index.first_stage
    if not isinstance(stage, LearnedStage):
        raise ConfigError(f"{index.root}: gallery refinement needs the 'learned' first stage,"
                          f" the index has {stage.name!r}")
    pool = {side: _sample_rows(index.sides[side].embedding, REFINE_POOL)
            for side in ("text", "image") if side in index.sides and len(index.sides[side])}
    if not pool:
        return
    t0 = time.perf_counter()
    if teacher is None:
        teacher = teacher_logits(index.scorer.model, text, image)
    large = max(len(index.sides[side]) for side in pool) > LARGE_GALLERY
    mining = ({"pool_items": REFINE_POOL, "shared_draw": True} if large
              else {"pool_items": 4096, "shared_draw": False})
    refined = LearnedStage.fit(index.scorer, text, image, scores=teacher, start=stage, steps=0,
                               pool=pool, seed=int(stage.settings.get("seed", 0)), **mining)
    counts = {side: int(len(v)) for side, v in pool.items()}
    index.replace_first_stage(refined, fit_note, details={
        "gallery_refined": {"items": counts, "sample_limit": REFINE_POOL, **mining,
                            "seconds": round(time.perf_counter() - t0, 1)}})
    log.info("%s: first stage refined on %s gallery items in %.1f s", index.root,
             " + ".join(f"{n} {side}" for side, n in counts.items()), time.perf_counter() - t0)


def index_gallery(loaded, source: GallerySource, out: Path, *,
                  first_stage: str = DEFAULT_METHOD, index_type: str = "auto",
                  nlist: int | None = None, nprobe: int | None = None,
                  fit_items: int = DEFAULT_FIT_ITEMS, shard_size: int = DEFAULT_SHARD_SIZE,
                  batch_size: int = 64, num_workers: int = 0,
                  device: torch.device | str = "cpu", show_progress: bool = True,
                  refine: str = "auto", engine: "RayEngine | None" = None
                  ) -> tuple[GalleryIndex, BuildReport]:
    """Embed ``source`` into the index at ``out``, creating it (and fitting its first stage)
    when the folder holds none. ``loaded`` is a :class:`~daer_core.training.run_loading.LoadedRun`
    whose model is already on ``device``.

    ``refine`` (``learned`` first stage only): ``auto`` refines the stage on the gallery once,
    after the first gallery is embedded (an interrupted build refines when it completes);
    ``always`` refines again after this call, on everything the index holds then (e.g. after
    adding a gallery); ``never`` keeps the fit on the training split alone.

    ``engine`` (a :class:`~.ray_embedding.RayEngine`): embed the missing shards on Ray first,
    so ``add_source`` only counts them and fills the FAISS indexes; None embeds in this
    process."""
    if refine not in REFINE_CHOICES:
        raise ConfigError(f"refine={refine!r}: choose one of {', '.join(REFINE_CHOICES)}")
    out = Path(out)
    text = image = teacher = None
    note = ""
    if (out / "index.json").is_file():
        index = GalleryIndex.open(out, loaded.model, run_dir=loaded.run_dir)
        asked = {"first_stage": first_stage, "index_type": index_type}
        have = {"first_stage": index.info["first_stage"]["method"],
                "index_type": index.info["ann"]["requested"]}
        for key in asked:
            if asked[key] != have[key]:
                log.warning("%s: the index was created with %s=%s; keeping it (not %s)",
                            out, key, have[key], asked[key])
    else:
        if out.exists() and any(out.iterdir()):
            raise ConfigError(f"--out {out}: the folder exists, is not empty and holds no index"
                              f" (index.json); choose a new folder")
        options = {}
        if first_stage in LEARNED:
            text, image, note = training_embeddings(loaded, fit_items=fit_items, device=device,
                                                    batch_size=batch_size,
                                                    num_workers=num_workers)
            if first_stage in ("learned", "distilled"):
                teacher = teacher_logits(loaded.model, text, image)
                options["scores"] = teacher
        else:  # derived from the weights alone: nothing to fit
            note = "nothing fitted (derived from the weights)"
        index = GalleryIndex.create(out, run_dir=loaded.run_dir, model=loaded.model,
                                    train_text=text, train_image=image,
                                    first_stage=first_stage, index_type=index_type,
                                    nlist=nlist, nprobe=nprobe, fit_note=note,
                                    fit_options=options)
    ray_report = None
    if engine is not None:
        ray_report = engine.embed(index, source, loaded.run_dir, shard_size=shard_size,
                                  batch_size=batch_size, num_workers=num_workers,
                                  show_progress=show_progress)
    report = index.add_source(source, loaded.model, loaded.preprocess, shard_size=shard_size,
                              batch_size=batch_size, num_workers=num_workers, device=device,
                              show_progress=show_progress)
    if ray_report is not None:  # shards Ray wrote are not ones this build resumed after
        report = dataclasses.replace(report, resumed_shards=ray_report.resumed_shards,
                                     seconds=report.seconds + ray_report.seconds)
    stage_info = index.info["first_stage"]
    if stage_info["method"] != "learned":
        return index, report
    decided = "gallery_refined" in stage_info   # refined, or built with `never`, before
    if refine == "never" and not decided:
        index.record_first_stage(gallery_refined=None)   # so a later `auto` keeps it so
    elif refine == "always" or (refine == "auto" and not decided):
        if text is None:   # an existing index: embed the training pairs it was fitted on
            text, image, _ = training_embeddings(loaded, fit_items=fit_items, device=device,
                                                 batch_size=batch_size,
                                                 num_workers=num_workers)
        refine_on_gallery(index, text, image, fit_note=stage_info.get("fit", note),
                          teacher=teacher)
    return index, report
