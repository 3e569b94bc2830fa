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

The tables themselves live in :mod:`.report_tables` (Tables 1-3) and
:mod:`.report_instance` (the instance-level ones); this module assembles ``results.md`` and
adds the costs. Their names are re-exported here, where callers import them from.
"""
from __future__ import annotations

from typing import Iterable

from .config import BenchmarkConfig
from .report_instance import (FIRST_STAGE, RECALL_COLUMNS, _gallery,  # noqa: F401
                              _reference, instance_section, recall_table, rerank_table)
from .report_tables import (METRICS, ResultIndex, _fmt, _run_count_notes,  # noqa: F401
                            performance_table, significance_table)
from .results import CellResult


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
