"""The end of a run: test-split metrics, the paper's Table 1 layout, and the pictures."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..evaluation.plots import plot_pr_curves, plot_recall_curves, plot_retrieval_examples
from ..evaluation.protocol import Protocol, evaluate_split, resolve_protocol
from ..evaluation.retrieval import embed_records
from ..interfaces import PairRecord
from .checkpoint import atomic_write_json
from .runtime import resolve_bf16, resolve_workers

log = logging.getLogger(__name__)


def write_evaluation(model, preprocess, records: Sequence[PairRecord], classes: list[str],
                     config, run_dir: Path, *, device: torch.device | str = "cpu",
                     split: str = "test", write: bool = True,
                     protocol: Protocol | None = None) -> dict:
    """Evaluate on ``records`` and write ``metrics.json`` and the pictures.

    Category protocol: ``metrics.json`` has the test-split mAP@all as top-level ``i2t``,
    ``t2i``, ``avg`` and ``chance``, plus mAP@k, precision@k and per-direction chance levels;
    pictures ``pr_curve.png`` and ``examples.png``. Instance protocol (``evaluate.protocol``;
    resolved from the records when ``protocol`` is None): ``protocol: instance`` and an
    ``instance`` block (Recall@K both ways, rsum, median and mean rank, chance), the first
    stage's block when re-ranked, and the class view as top-level mAP when the data has
    classes; picture ``recall_curve.png``. ``run_dir`` is the folder written (``daer
    evaluate`` passes one of its own, never the training's); ``write=False`` writes nothing.
    """
    run_dir = Path(run_dir)
    if protocol is None:
        protocol = resolve_protocol(config.evaluate.protocol, [records], len(classes))
    emb = embed_records(model, preprocess, records, device=device,
                        num_workers=resolve_workers(config.train.num_workers,
                                                    torch.device(device)),
                        bf16=resolve_bf16(config.train.bf16, torch.device(device)),
                        desc=f"embedding {split}")
    rep, ranked = evaluate_split(model, emb, config.evaluate, protocol, device=device)
    rep.pop("score")
    rep = {**rep, "split": split, "pairs": len(emb.ids),
           "skipped": len(records) - len(emb.ids),
           "dataset": config.dataset.name if config.dataset else None,
           "preset": config.preset}
    if not write:  # re-scoring a run one may only read
        return rep
    atomic_write_json(run_dir / "metrics.json", rep)
    title = f"{config.preset or 'run'} on {rep['dataset']} ({split})"
    if protocol == "instance":
        plot_recall_curves(ranked.t2i, ranked.owner, run_dir / "recall_curve.png",
                           scores_i2t=ranked.i2t, first_stage=ranked.first_stage, title=title)
        return rep
    scores = ranked.t2i
    plot_pr_curves(scores, emb.labels, emb.labels, run_dir / "pr_curve.png", title=title)
    if config.evaluate.examples and not isinstance(records[0].image, np.ndarray):
        # (feature vectors have no picture to show)
        by_id = {r.id: r for r in records}
        kept = [by_id[i] for i in emb.ids]
        plot_retrieval_examples(scores, [r.text for r in kept], [r.load_image for r in kept],
                                emb.labels, classes, run_dir / "examples.png",
                                queries=config.evaluate.examples)
    return rep
