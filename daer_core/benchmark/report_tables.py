"""The mAP tables of ``results.md``: the paper's Table 1/3 layout (mean ± std per method and
dataset) and Table 2 layout (Wilcoxon signed-rank p-values against the reference), over the
cells grouped by :class:`ResultIndex`.

Split out of :mod:`.report` so that each module has one job: this one lays out tables of
cells, :mod:`.report_instance` the instance-level (Recall@K) tables, and :mod:`.report`
assembles ``results.md``. Every name here is still importable from :mod:`.report`.
"""
from __future__ import annotations

import math
from collections import defaultdict
from typing import Iterable, Sequence

from .config import BenchmarkConfig
from .results import CellResult
from .stats import Summary, runs_needed, smallest_exact_p, summarise, wilcoxon_paired

METRICS = (("i2t", "Image → Text"), ("t2i", "Text → Image"), ("avg", "Average"))


class ResultIndex:
    """Cells grouped by method and dataset, in config order.

    ``restrict`` keeps only the methods and datasets that have cells: a table of one
    protocol's cells then has no rows or columns of dashes for the other protocol's.
    """

    def __init__(self, config: BenchmarkConfig, cells: Iterable[CellResult],
                 restrict: bool = False):
        self.config = config
        self.by: dict[tuple[str, str], dict[int, CellResult]] = defaultdict(dict)
        for c in cells:
            if c.method in config.methods and c.dataset in config.datasets:
                self.by[(c.method, c.dataset)][c.run] = c
        self.methods = [m for m in config.methods
                        if not restrict or any(k[0] == m for k in self.by)]
        self.datasets = [d for d in config.datasets
                         if not restrict or any(k[1] == d for k in self.by)]

    def label(self, dataset: str) -> str:
        return self.config.datasets[dataset].label or dataset

    def values(self, method: str, dataset: str, metric: str) -> dict[int, float]:
        return {r: getattr(c, metric) for r, c in self.by.get((method, dataset), {}).items()}

    def summary(self, method: str, dataset: str, metric: str) -> Summary:
        return summarise(self.values(method, dataset, metric).values())


    def cells(self, method: str, dataset: str) -> list[CellResult]:
        return list(self.by.get((method, dataset), {}).values())


def _fmt(s: Summary, runs: int, bold: bool = False, digits: int = 3,
         scale: float = 1.0) -> str:
    """``mean ± std`` (std omitted for one run), bold when best, ``(n=…)`` when runs are
    missing; ``scale`` turns fractions into percent."""
    if s.n == 0:
        return "—"
    mean, std = s.mean * scale, s.std * scale
    text = f"{mean:.{digits}f}" if math.isnan(std) else f"{mean:.{digits}f} ± {std:.{digits}f}"
    if bold:
        text = f"**{text}**"
    if s.n < runs:
        text += f" (n={s.n})"
    return text


def performance_table(index: ResultIndex, methods: list[str]) -> str:
    """Table 1 / Table 3 layout."""
    ds = index.datasets
    head = ["Method"] + [f"{title}: {index.label(d)}" for _, title in METRICS for d in ds]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    best: dict[tuple[str, str], float] = {}
    for metric, _ in METRICS:
        for d in ds:
            means = [index.summary(m, d, metric).mean for m in methods]
            means = [v for v in means if not math.isnan(v)]
            if means:
                best[(metric, d)] = max(means)
    for m in methods:
        cells = [m]
        for metric, _ in METRICS:
            for d in ds:
                s = index.summary(m, d, metric)
                is_best = len(methods) > 1 and s.n > 0 and s.mean == best.get((metric, d))
                cells.append(_fmt(s, index.config.runs, is_best))
        lines.append("| " + " | ".join(cells) + " |")
    chance = ["chance"]
    for metric, _ in METRICS:
        for d in ds:
            vals = [c.chance for m in methods for c in index.by.get((m, d), {}).values()]
            chance.append(f"{sum(vals) / len(vals):.3f}" if vals else "—")
    lines.append("| " + " | ".join(chance) + " |")
    return "\n".join(lines)


def significance_table(index: ResultIndex, reference: str,
                       metrics: Sequence[tuple[str, str]] = METRICS[:2]) -> str:
    """Table 2 layout with the notes on run counts and the exact test's floor (the mAP of
    both directions by default; the instance tables test ``rsum``)."""
    others = [m for m in index.methods if m != reference]
    if not others:
        return "_Only one method: nothing to compare._"
    m_tests = len(others)
    threshold = 0.05 / m_tests
    ds = index.datasets
    head = ["Method"] + [f"{title}: {index.label(d)}" for metric, title in metrics
                         for d in ds]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    min_n = None
    for other in others:
        row = [other]
        for metric, _ in metrics:
            for d in ds:
                test = wilcoxon_paired(index.values(reference, d, metric),
                                       index.values(other, d, metric))
                if test.p is None:
                    row.append(f"n/a ({test.note})")
                    continue
                min_n = test.n if min_n is None else min(min_n, test.n)
                mark = " *" if test.p < threshold else ""
                row.append(f"{test.p:.4g}{mark}")
        lines.append("| " + " | ".join(row) + " |")
    lines.append("")
    lines.append(f"Reference: **{reference}**. Two-sided Wilcoxon signed-rank test over paired"
                 f" runs (same seed and training resample). Bonferroni threshold 0.05 / {m_tests}"
                 f" = {threshold:.4g}; `*` marks p below it.")
    lines.extend(_run_count_notes(index.config.runs, threshold, min_n))
    return "\n".join(lines)


def _run_count_notes(runs: int, threshold: float, min_n: int | None) -> list[str]:
    """The exact signed-rank test's floor for ``runs`` pairs, and what it means here."""
    floor = smallest_exact_p(runs)
    lines = [f"Runs per cell: {runs}; with n paired runs the exact test's smallest"
             f" two-sided p-value is 2 / 2^n = {floor:.4g} for n = {runs}."]
    notes: set[str] = set()
    if floor >= threshold:
        notes.add(f"**Too few runs:** with {runs} runs no difference can reach the corrected"
                  f" threshold; at least {runs_needed(threshold)} runs are needed.")
    if min_n is not None and min_n < runs:
        notes.add(f"Some comparisons had tied runs (equal scores are dropped), leaving as few"
                  f" as {min_n} informative pairs (floor {smallest_exact_p(min_n):.4g}).")
    return lines + sorted(notes)

