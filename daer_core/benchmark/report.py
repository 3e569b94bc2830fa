"""``results.md``: the paper's Table 1, 2 and 3 layouts from the finished cells, plus costs.

* Table 1 — mean ± standard deviation over runs of image->text, text->image and average mAP,
  one column per dataset in each group; the best mean of each column in bold.
* Table 2 — two-sided Wilcoxon signed-rank p-values of the reference method against each
  other method over the runs, with the Bonferroni threshold 0.05 / m (m = the number of
  comparisons). With n runs the exact test cannot go below 2 / 2^n; the report says when
  that floor is above the threshold.
* Table 3 — the Table 1 layout for the DAER variants (the ablation).

Instance-level cells (Recall@K, several captions per image; :mod:`.results`) get tables of
their own, since mAP over classes and Recall@K of one's own image are different questions:

* Recall@K — per dataset, mean ± std over runs of R@1/5/10 both ways (in %), rsum and the
  median ranks, a ``chance`` row, and for a re-ranked method a ``<method> (first stage)`` row
  from the same runs, so whether re-ranking helps is read off side by side;
* re-ranking against its first stage — the paired signed-rank test of the rsum over runs;
* significance of the rsum against the reference (the Table 2 layout);
* the class view — the Table 1 layout of the instance cells' mAP, when their data has classes.

Tables 1-3 then cover the category cells only (and are left out when there are none).
"""
from __future__ import annotations

import math
from collections import defaultdict
from typing import Callable, Iterable, Sequence

from .config import BenchmarkConfig
from .results import RECALL_KS, CellResult
from .stats import Summary, runs_needed, smallest_exact_p, summarise, wilcoxon_paired

METRICS = (("i2t", "Image → Text"), ("t2i", "Text → Image"), ("avg", "Average"))
#: the instance table's columns: (CellResult attribute without prefix, title, lower is better)
RECALL_COLUMNS: tuple[tuple[str, str, bool], ...] = (
    *((f"i2t_r{k}", f"I→T R@{k}", False) for k in RECALL_KS),
    *((f"t2i_r{k}", f"T→I R@{k}", False) for k in RECALL_KS),
    ("rsum", "rsum", False), ("i2t_medr", "I→T medr", True), ("t2i_medr", "T→I medr", True))
#: prefix of the first-stage figures of a re-ranked cell
FIRST_STAGE = "first_stage_"


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
                    failures: list[str] | None = None, *,
                    rsum_figure: str | None = None) -> str:
    """``results.md``: Tables 1-3 of the category cells, the instance-level tables of the
    instance cells (when there are any), costs, figures and failed cells."""
    cells = list(cells)
    index = ResultIndex(config, cells)
    instance = [c for c in cells if c.instance]
    category = [c for c in cells if not c.instance]
    rs = config.resample
    resample = {"subsample": f"a seeded {rs.fraction:.0%} subsample of the training split",
                "bootstrap": "a seeded bootstrap resample of the training split",
                "none": "the full training split (no resample)"}[rs.mode]
    out = [f"# Benchmark: {config.name}", "",
           f"{config.runs} runs per method and dataset (seeds {config.seed}…"
           f"{config.seed + config.runs - 1}); baselines are fitted on {resample}; trained"
           f" (DAER-style) runs use the run's seed, and train on the same rows when their"
           f" dataset carves its validation split (paired runs)."]
    mean_ap = (f" mAP over the whole {config.eval_split} gallery (Eq. 12), ranked in each"
               " method's common space by its similarity (cosine unless the method defines"
               " its own).")
    if not instance:
        out[-1] += mean_ap
    else:  # an instance-only benchmark's intro says nothing of mAP
        out[-1] += (mean_ap + " Instance-level cells are" if category else " Every cell is")
        out[-1] += (" judged by Recall@K (several captions per image, or no classes:"
                    " `evaluate.protocol`), Flickr30k / COCO style: the"
                    f" {config.eval_split} gallery holds each image once and only a query's"
                    " own image or captions are relevant." + (
                        " Tables 1–3 cover the category-level cells." if category else ""))
    out.append("")
    tuning = tuning_note(config)
    if tuning:
        out += [tuning, ""]
    for d in index.datasets:
        out.append(f"- {index.label(d)}: {sources.get(d, config.datasets[d].dataset.name)}")
    out.append("")
    if instance:
        out += instance_section(config, instance)
    if category or not instance:
        table = ResultIndex(config, category, restrict=bool(instance))
        out += ["## Table 1 — mAP (mean ± std over runs)", "",
                performance_table(table, table.methods), "",
                "## Table 2 — significance against the reference", "",
                significance_table(table, _reference(config, table) if instance
                                   else config.reference_method()), "",
                "## Table 3 — DAER variants", ""]
        ablation = [m for m in config.ablation_methods() if not instance or m in table.methods]
        if ablation:
            out.append(performance_table(table, ablation))
        else:
            out.append("_No DAER variants in this benchmark: add methods with a `daer:` run"
                       " config (e.g. presets daer-c, daer-i, daer-t, daer-i-t and daer) to"
                       " fill this table._")
        out.append("")
    out += ["## Cost — mean fit time and peak traced memory per run", "", cost_table(index)]
    if figure or rsum_figure:
        out += ["", "## Figure", ""]
        if figure:
            out.append(f"![mAP per method and dataset]({figure})")
        if rsum_figure:
            out.append(f"![rsum per method and dataset, first stages hatched]({rsum_figure})")
    if failures:
        out += ["", "## Failed cells", ""] + [f"- {f}" for f in failures]
    return "\n".join(out) + "\n"
