"""The instance-level section of ``results.md``: Recall@K cells (several captions per image;
:mod:`.results`), which get tables of their own since mAP over classes and Recall@K of
one's own image are different questions (see :mod:`.report` for the list of tables).

Split out of :mod:`.report` so that each module has one job: this one lays out the
Recall@K, re-ranking and rsum-significance tables; the mAP layouts it reuses live in
:mod:`.report_tables`. Every name here is still importable from :mod:`.report`.
"""
from __future__ import annotations

import math
from typing import Callable

from .config import BenchmarkConfig
from .report_tables import (ResultIndex, _fmt, _run_count_notes, performance_table,
                            significance_table)
from .results import RECALL_KS, CellResult
from .stats import Summary, summarise, wilcoxon_paired

#: the instance table's columns: (CellResult attribute without prefix, title, lower is better)
RECALL_COLUMNS: tuple[tuple[str, str, bool], ...] = (
    *((f"i2t_r{k}", f"I→T R@{k}", False) for k in RECALL_KS),
    *((f"t2i_r{k}", f"T→I R@{k}", False) for k in RECALL_KS),
    ("rsum", "rsum", False), ("i2t_medr", "I→T medr", True), ("t2i_medr", "T→I medr", True))
#: prefix of the first-stage figures of a re-ranked cell
FIRST_STAGE = "first_stage_"


def recall_table(index: ResultIndex, dataset: str) -> str:
    """One dataset's instance-level figures: a row per method (mean ± std over runs, in %
    except rsum and ranks), a ``<method> (first stage)`` row under each re-ranked method,
    and a ``chance`` row. Best mean of each column in bold (lowest for median ranks)."""
    runs = index.config.runs
    rows: list[tuple[str, Callable[[str], Summary]]] = []
    for m in index.methods:
        cells = index.cells(m, dataset)
        if not cells:
            continue
        rows.append((m, lambda a, cs=cells: summarise(getattr(c, a) for c in cs)))
        if any(c.reranked for c in cells):
            rows.append((f"{m} (first stage)", lambda a, cs=cells: summarise(
                getattr(c, FIRST_STAGE + a) for c in cs if c.reranked)))
    head = ["Method"] + [title for _, title, _ in RECALL_COLUMNS]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    summaries = [[get(attr) for attr, _, _ in RECALL_COLUMNS] for _, get in rows]
    best = []
    for j, (_, _, lower) in enumerate(RECALL_COLUMNS):
        means = [row[j].mean for row in summaries if row[j].n]
        best.append((min if lower else max)(means) if means else None)
    for (name, _), row in zip(rows, summaries):
        texts = [name]
        for j, (attr, _, _) in enumerate(RECALL_COLUMNS):
            percent = attr != "rsum" and not attr.endswith("medr")   # R@K: fractions
            texts.append(_fmt(row[j], runs, len(rows) > 1 and row[j].n > 0
                              and row[j].mean == best[j], digits=1,
                              scale=100.0 if percent else 1.0))
        lines.append("| " + " | ".join(texts) + " |")
    every = [c for m in index.methods for c in index.cells(m, dataset)]
    chance = ["chance"]
    for attr, _, _ in RECALL_COLUMNS:
        vals = [getattr(c, "chance_" + attr) for c in every
                if not attr.endswith("medr")]
        vals = [v for v in vals if math.isfinite(v)]
        scale = 1.0 if attr == "rsum" else 100.0
        chance.append(f"{scale * sum(vals) / len(vals):.1f}" if vals else "—")
    lines.append("| " + " | ".join(chance) + " |")
    return "\n".join(lines)


def rerank_table(index: ResultIndex) -> str:
    """Every re-ranked method against its own first stage: the rsum over runs, the paired
    difference, and the two-sided Wilcoxon signed-rank test (:func:`wilcoxon_paired`),
    Bonferroni-corrected over the comparisons shown. Empty when nothing re-ranks."""
    pairs = [(m, d) for d in index.datasets for m in index.methods
             if any(c.reranked for c in index.cells(m, d))]
    if not pairs:
        return ""
    runs = index.config.runs
    threshold = 0.05 / len(pairs)
    head = ["Method", "Dataset", "top k", "rsum re-ranked", "rsum first stage",
            "difference", "runs better", "p"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    min_n = None
    for m, d in pairs:
        cells = [c for c in index.cells(m, d) if c.reranked]
        final = {c.run: c.rsum for c in cells}
        first = {c.run: c.first_stage_rsum for c in cells}
        diff = summarise(final[r] - first[r] for r in final)
        better = sum(final[r] > first[r] for r in final)
        test = wilcoxon_paired(final, first)
        if test.p is None:
            p = f"n/a ({test.note})"
        else:
            min_n = test.n if min_n is None else min(min_n, test.n)
            p = f"{test.p:.4g}{' *' if test.p < threshold else ''}"
        ks = sorted({c.rerank_k for c in cells})
        sign = "+" if diff.n and diff.mean > 0 else ""
        lines.append("| " + " | ".join([
            m, index.label(d), "/".join(map(str, ks)),
            _fmt(summarise(final.values()), runs, digits=1),
            _fmt(summarise(first.values()), runs, digits=1),
            sign + _fmt(diff, runs, digits=1), f"{better} / {len(final)}", p]) + " |")
    lines.append("")
    lines.append(f"Each run's re-ranked and first-stage figures come from the same trained"
                 f" model and test split (the relation head re-scores the cosine first"
                 f" stage's top k of every query), so the runs are paired. Two-sided Wilcoxon"
                 f" signed-rank test of the rsum; Bonferroni threshold 0.05 / {len(pairs)}"
                 f" = {threshold:.4g}; `*` marks p below it.")
    lines.extend(_run_count_notes(runs, threshold, min_n))
    return "\n".join(lines)


def _gallery(index: ResultIndex, dataset: str) -> str:
    """``40 images, 200 captions`` of a dataset's instance cells (ranges if they differ)."""
    cells = [c for m in index.methods for c in index.cells(m, dataset)]

    def span(values: set[int]) -> str:
        return str(min(values)) if len(values) == 1 else f"{min(values)}–{max(values)}"
    images = {c.n_images for c in cells if c.n_images}
    texts = {c.n_eval for c in cells if c.n_eval}
    parts = ([f"{span(images)} images"] if images else []) + (
        [f"{span(texts)} captions"] if texts else [])
    return ", ".join(parts)


def instance_section(config: BenchmarkConfig, cells: list[CellResult]) -> list[str]:
    """The markdown of the instance-level cells (see the module docstring)."""
    index = ResultIndex(config, cells, restrict=True)
    out = ["## Recall@K — instance level (mean ± std over runs)", "",
           "Recall@K in % (image → text: an image is found when any of its captions is in"
           " the top K; text → image: a caption's own image), rsum (the sum of the six, in"
           " %; higher is better) and median rank of the first relevant item (lower is"
           " better). Best mean of each column in bold. A re-ranked method's `(first stage)`"
           " row is the cosine ranking it re-scores, from the same runs.", ""]
    for d in index.datasets:
        gallery = _gallery(index, d)
        out += [f"### {index.label(d)}" + (f" — {gallery}" if gallery else ""), "",
                recall_table(index, d), ""]
    reranked = rerank_table(index)
    if reranked:
        out += ["### Re-ranking against its first stage (rsum)", "", reranked, ""]
    out += ["### Significance of the rsum against the reference", "",
            significance_table(index, _reference(config, index), (("rsum", "rsum"),)), ""]
    class_view = [c for c in cells if math.isfinite(c.avg)]
    if class_view:
        view = ResultIndex(config, class_view, restrict=True)
        out += ["### Class view — mAP of the same rankings (each image once in the gallery)",
                "", performance_table(view, view.methods), ""]
    return out


def _reference(config: BenchmarkConfig, index: ResultIndex) -> str:
    """The benchmark's reference when it has cells in ``index``, else its first trained
    method there, else its first method."""
    ref = config.reference_method()
    if ref in index.methods:
        return ref
    daer = [m for m in index.methods if config.methods[m].kind == "daer"]
    return (daer or index.methods)[0]

