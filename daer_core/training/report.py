"""The end of a run: test-split metrics, the paper's Table 1 layout, and the pictures."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..evaluation.plots import plot_pr_curves, plot_retrieval_examples
from ..evaluation.retrieval import embed_records, evaluate_embedded
from ..interfaces import PairRecord
from .checkpoint import atomic_write_json
from .runtime import resolve_bf16, resolve_workers

log = logging.getLogger(__name__)


def write_evaluation(model, preprocess, records: Sequence[PairRecord], classes: list[str],
                     config, run_dir: Path, *, device: torch.device | str = "cpu",
                     split: str = "test", write: bool = True) -> dict:
    """Evaluate on ``records`` and write ``metrics.json``, ``pr_curve.png``, ``examples.png``.

    ``metrics.json`` has the test-split mAP@all as top-level ``i2t``, ``t2i``, ``avg`` and
    ``chance``, plus mAP@k, precision@k and per-direction chance levels. ``run_dir`` is the
    folder written (``daer evaluate`` passes one of its own, never the training's);
    ``write=False`` writes nothing.
    """
    run_dir = Path(run_dir)
    emb = embed_records(model, preprocess, records, device=device,
                        num_workers=resolve_workers(config.train.num_workers,
                                                    torch.device(device)),
                        bf16=resolve_bf16(config.train.bf16, torch.device(device)),
                        desc=f"embedding {split}")
    rep, scores = evaluate_embedded(model, emb, block_size=config.evaluate.block_size,
                                    device=device, ks=config.evaluate.ks,
                                    bf16=config.evaluate.bf16)
    rep = {**rep, "split": split, "pairs": len(emb.ids),
           "skipped": len(records) - len(emb.ids),
           "dataset": config.dataset.name if config.dataset else None,
           "preset": config.preset}
    if not write:  # re-scoring a run one may only read
        return rep
    atomic_write_json(run_dir / "metrics.json", rep)
    plot_pr_curves(scores, emb.labels, emb.labels, run_dir / "pr_curve.png",
                   title=f"{config.preset or 'run'} on {rep['dataset']} ({split})")
    if config.evaluate.examples and not isinstance(records[0].image, np.ndarray):
        # (feature vectors have no picture to show)
        by_id = {r.id: r for r in records}
        kept = [by_id[i] for i in emb.ids]
        plot_retrieval_examples(scores, [r.text for r in kept], [r.load_image for r in kept],
                                emb.labels, classes, run_dir / "examples.png",
                                queries=config.evaluate.examples)
    return rep
