"""Creating or extending an index for a finished run (what ``daer index`` calls)."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from ..errors import ConfigError
from .first_stage import DEFAULT_METHOD
from .gallery import GallerySource
from .index import DEFAULT_FIT_ITEMS, DEFAULT_SHARD_SIZE, BuildReport, GalleryIndex

log = logging.getLogger(__name__)

#: first stages that learn from the training split's embeddings
LEARNED = ("learned", "distilled", "taylor")


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


def index_gallery(loaded, source: GallerySource, out: Path, *,
                  first_stage: str = DEFAULT_METHOD, index_type: str = "auto",
                  nlist: int | None = None, nprobe: int | None = None,
                  fit_items: int = DEFAULT_FIT_ITEMS, shard_size: int = DEFAULT_SHARD_SIZE,
                  batch_size: int = 64, num_workers: int = 0,
                  device: torch.device | str = "cpu", show_progress: bool = True
                  ) -> tuple[GalleryIndex, BuildReport]:
    """Embed ``source`` into the index at ``out``, creating it (and fitting its first stage)
    when the folder holds none. ``loaded`` is a :class:`~daer_core.training.run_loading.LoadedRun`
    whose model is already on ``device``."""
    out = Path(out)
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
        if first_stage in LEARNED:
            text, image, note = training_embeddings(loaded, fit_items=fit_items, device=device,
                                                    batch_size=batch_size,
                                                    num_workers=num_workers)
        else:  # derived from the weights alone: nothing to fit
            text, image, note = None, None, "nothing fitted (derived from the weights)"
        index = GalleryIndex.create(out, run_dir=loaded.run_dir, model=loaded.model,
                                    train_text=text, train_image=image,
                                    first_stage=first_stage, index_type=index_type,
                                    nlist=nlist, nprobe=nprobe, fit_note=note)
    report = index.add_source(source, loaded.model, loaded.preprocess, shard_size=shard_size,
                              batch_size=batch_size, num_workers=num_workers, device=device,
                              show_progress=show_progress)
    return index, report
