"""``results.md``: the paper's Table 1, 2 and 3 layouts from the finished cells, plus costs.

* Table 1 — mean ± standard deviation over runs of image->text, text->image and average mAP,
  one column per dataset in each group; the best mean of each column in bold.
* Table 2 — two-sided Wilcoxon signed-rank p-values of the reference method against each
  other method over the runs, with the Bonferroni threshold 0.05 / m (m = the number of
  comparisons). With n runs the exact test cannot go below 2 / 2^n; the report says when
  that floor is above the threshold.
* Table 3 — the Table 1 layout for the DAER variants (the ablation).
"""
from __future__ import annotations

import math
from collections import defaultdict
from typing import Iterable

from .config import BenchmarkConfig
from .results import CellResult
from .stats import Summary, runs_needed, smallest_exact_p, summarise, wilcoxon_paired

METRICS = (("i2t", "Image → Text"), ("t2i", "Text → Image"), ("avg", "Average"))


class ResultIndex:
    """Cells grouped by method and dataset, in config order."""

    def __init__(self, config: BenchmarkConfig, cells: Iterable[CellResult]):
        self.config = config
        self.methods = list(config.methods)
        self.datasets = list(config.datasets)
        self.by: dict[tuple[str, str], dict[int, CellResult]] = defaultdict(dict)
        for c in cells:
            if c.method in config.methods and c.dataset in config.datasets:
                self.by[(c.method, c.dataset)][c.run] = c

    def label(self, dataset: str) -> str:
        return self.config.datasets[dataset].label or dataset

    def values(self, method: str, dataset: str, metric: str) -> dict[int, float]:
        return {r: getattr(c, metric) for r, c in self.by.get((method, dataset), {}).items()}

    def summary(self, method: str, dataset: str, metric: str) -> Summary:
        return summarise(self.values(method, dataset, metric).values())


def _fmt(s: Summary, runs: int, bold: bool = False) -> str:
    if s.n == 0:
        return "—"
    text = f"{s.mean:.3f}" if math.isnan(s.std) else f"{s.mean:.3f} ± {s.std:.3f}"
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


def significance_table(index: ResultIndex, reference: str) -> str:
    """Table 2 layout with the notes on run counts and the exact test's floor."""
    others = [m for m in index.methods if m != reference]
    if not others:
        return "_Only one method: nothing to compare._"
    m_tests = len(others)
    threshold = 0.05 / m_tests
    ds = index.datasets
    head = ["Method"] + [f"{title}: {index.label(d)}" for metric, title in METRICS[:2]
                         for d in ds]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    notes: set[str] = set()
    min_n = None
    for other in others:
        row = [other]
        for metric, _ in METRICS[:2]:
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
    runs = index.config.runs
    floor = smallest_exact_p(runs)
    lines.append(f"Runs per cell: {runs}; with n paired runs the exact test's smallest"
                 f" two-sided p-value is 2 / 2^n = {floor:.4g} for n = {runs}.")
    if floor >= threshold:
        notes.add(f"**Too few runs:** with {runs} runs no difference can reach the corrected"
                  f" threshold; at least {runs_needed(threshold)} runs are needed.")
    if min_n is not None and min_n < runs:
        notes.add(f"Some comparisons had tied runs (equal scores are dropped), leaving as few"
                  f" as {min_n} informative pairs (floor {smallest_exact_p(min_n):.4g}).")
    lines.extend(sorted(notes))
    return "\n".join(lines)


def cost_table(index: ResultIndex) -> str:
    """Mean fit time and peak memory per run; with tuning, also the trials and the search
    time per run (the budget each method actually used)."""
    attrs = ["fit_seconds", "peak_memory_mb"]
    names = {"fit_seconds": "fit s", "peak_memory_mb": "peak MB", "tune_trials": "trials",
             "tune_seconds": "tuning s"}
    if any(c.tune_trials for runs in index.by.values() for c in runs.values()):
        attrs += ["tune_trials", "tune_seconds"]
    head = ["Method"] + [f"{index.label(d)}: {names[a]}" for a in attrs for d in index.datasets]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for m in index.methods:
        row = [m]
        for attr in attrs:
            for d in index.datasets:
                s = index.summary(m, d, attr)
                row.append("—" if s.n == 0 else f"{s.mean:.3g}")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def tuning_note(config: BenchmarkConfig) -> str:
    """One sentence stating who was tuned with which budget (empty without tuning)."""
    budgets: dict[str, list[str]] = {}
    untuned = []
    for m, entry in config.methods.items():
        b = config.budget(m)
        has_space = entry.kind == "daer" or bool(entry.space)
        if b is None or not has_space:
            untuned.append(m)
            continue
        text = f"{b.trials} trials" + (f" or {b.minutes:g} minutes" if b.minutes else "")
        budgets.setdefault(text, []).append(m)
    if not budgets:
        return ""
    parts = [f"{text} per run for {', '.join(ms)}" for text, ms in budgets.items()]
    note = ("**Tuning:** settings searched on each run's validation rows (Optuna TPE; the"
            " first trial is the method's own settings; the test split is ranked once, after"
            " the search): " + "; ".join(parts) + ".")
    if untuned:
        note += f" Not tuned (no budget or no settings to search): {', '.join(untuned)}."
    return note


def render_markdown(config: BenchmarkConfig, cells: Iterable[CellResult],
                    sources: dict[str, str], figure: str | None,
                    failures: list[str] | None = None) -> str:
    index = ResultIndex(config, cells)
    rs = config.resample
    resample = {"subsample": f"a seeded {rs.fraction:.0%} subsample of the training split",
                "bootstrap": "a seeded bootstrap resample of the training split",
                "none": "the full training split (no resample)"}[rs.mode]
    out = [f"# Benchmark: {config.name}", "",
           f"{config.runs} runs per method and dataset (seeds {config.seed}…"
           f"{config.seed + config.runs - 1}); baselines are fitted on {resample}; trained"
           f" (DAER-style) runs use the run's seed, and train on the same rows when their"
           f" dataset carves its validation split (paired runs). mAP over the whole {config.eval_split} gallery (Eq. 12),"
           " ranked in each method's common space by its similarity (cosine unless the"
           " method defines its own).", ""]
    tuning = tuning_note(config)
    if tuning:
        out += [tuning, ""]
    for d in index.datasets:
        out.append(f"- {index.label(d)}: {sources.get(d, config.datasets[d].dataset.name)}")
    out += ["", "## Table 1 — mAP (mean ± std over runs)", "",
            performance_table(index, index.methods), "",
            "## Table 2 — significance against the reference", "",
            significance_table(index, config.reference_method()), "",
            "## Table 3 — DAER variants", ""]
    ablation = config.ablation_methods()
    if ablation:
        out.append(performance_table(index, ablation))
    else:
        out.append("_No DAER variants in this benchmark: add methods with a `daer:` run config"
                   " (e.g. presets daer-c, daer-i, daer-t, daer-i-t and daer) to fill this"
                   " table._")
    out += ["", "## Cost — mean fit time and peak traced memory per run", "", cost_table(index)]
    if figure:
        out += ["", "## Figure", "", f"![mAP per method and dataset]({figure})"]
    if failures:
        out += ["", "## Failed cells", ""] + [f"- {f}" for f in failures]
    return "\n".join(out) + "\n"
