"""What a study leaves in its folder: ``best.yaml``, the trials table, the plots.

``best.yaml`` is a complete run config (the study's config with the best trial's settings)
that ``daer train best.yaml`` trains as is; its header says which trial it came from and
with which validation score. The plots are Optuna's own (matplotlib backend), as PNG.
"""
from __future__ import annotations

import csv
import io
import logging
import math
from pathlib import Path
from typing import Any

from ..config import dump_config, load_run_config
from ..training import checkpoint as ck
from .space import apply_params

log = logging.getLogger(__name__)


def _rows(study) -> list[dict[str, Any]]:
    """One row per trial that ran (surplus trials, never started, are left out)."""
    from optuna.trial import TrialState

    from .study import requeued
    rows = []
    trials = study.get_trials(deepcopy=False)
    again = requeued(trials)
    for t in trials:
        if t.user_attrs.get("surplus"):
            continue
        seconds = (t.datetime_complete - t.datetime_start).total_seconds() \
            if t.datetime_complete and t.datetime_start else None
        state = t.state.name.lower()
        if t.user_attrs.get("interrupted") or t.number in again:
            state = "interrupted"
        steps = sorted(t.intermediate_values)
        rows.append({
            "trial": t.number, "state": state,
            # Optuna gives a pruned trial its last reported score as value; the table
            # keeps values for completed trials (comparable: final validation mAP)
            "value": t.value if t.state == TrialState.COMPLETE else None,
            "epochs_reported": len(steps), "seconds": seconds,
            **{f"param:{k}": v for k, v in t.params.items()},
            "resumes": t.user_attrs.get("resumes"), "run_dir": t.user_attrs.get("run_dir"),
            "error": t.user_attrs.get("error"),
        })
    return rows


def trials_table(study) -> tuple[str, str]:
    """The trials as CSV and as a Markdown table (best first among completed trials)."""
    rows = _rows(study)
    keys: list[str] = []
    for row in rows:
        keys.extend(k for k in row if k not in keys)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=keys, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    done = sorted((r for r in rows if r["value"] is not None), key=lambda r: -r["value"])
    rest = [r for r in rows if r["value"] is None]
    shown = [k for k in keys if k not in ("run_dir", "error")]

    def cell(v: Any) -> str:
        if v is None:
            return ""
        if isinstance(v, float):
            return f"{v:.4g}" if not math.isnan(v) else "nan"
        return str(v)

    md = ["| " + " | ".join(k.removeprefix("param:") for k in shown) + " |",
          "|" + "---|" * len(shown)]
    md += ["| " + " | ".join(cell(r.get(k)) for k in shown) + " |" for r in done + rest]
    return buf.getvalue(), "\n".join(md) + "\n"


def _plots(study, out_dir: Path) -> list[str]:
    """Optuna's optimisation history and parameter importances, as PNG files."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna
    from optuna.trial import TrialState
    from optuna.visualization import matplotlib as ovm

    written = []
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    jobs = [("history.png", ovm.plot_optimization_history)]
    if len(complete) >= 2 and len({tuple(sorted(t.params.items(), key=str)) for t in complete}) >= 2:
        jobs.append(("importance.png", ovm.plot_param_importances))
    import warnings
    for name, plot in jobs:
        try:
            with warnings.catch_warnings():  # Optuna marks its matplotlib backend experimental
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                warnings.simplefilter("ignore", UserWarning)  # "importances will be equal"
                ax = plot(study)
            fig = ax.figure if hasattr(ax, "figure") else ax[0].figure
            fig.set_size_inches(8, 4.5)
            fig.tight_layout()
            fig.savefig(out_dir / name, dpi=110)
            plt.close(fig)
            written.append(name)
        except (ValueError, RuntimeError, ZeroDivisionError) as exc:  # e.g. constant values
            log.warning("%s not drawn: %s", name, exc)
    return written


def write_best_config(study, base: dict[str, Any], path: Path, registry=None) -> None:
    """``best.yaml``: the study's config with the best trial's settings, fully resolved."""
    best = study.best_trial
    data = apply_params(base, best.params)
    data["name"] = f"{study.study_name}-best"
    config = load_run_config(data, registry=registry)
    header = (f"# best trial {best.number} of study {study.study_name!r}: validation mAP"
              f" {best.value:.4f}\n# settings searched: "
              + ", ".join(f"{k}={v!r}" for k, v in best.params.items())
              + "\n# train it (the test split is read here, once): daer train"
              f" {path.name}\n")
    ck.atomic_write_text(path, header + dump_config(config))


def write_report(study, out_dir: Path, base: dict[str, Any], storage: str, registry=None):
    """Write best.yaml, trials.csv/.md, plots and study.json; return a TuneResult."""
    from optuna.trial import TrialState

    from .study import TuneResult

    csv_text, md_text = trials_table(study)
    ck.atomic_write_text(out_dir / "trials.csv", csv_text)
    ck.atomic_write_text(out_dir / "trials.md", md_text)
    counts: dict[str, int] = {}
    for row in _rows(study):
        counts[row["state"]] = counts.get(row["state"], 0) + 1
    result = TuneResult(out_dir=out_dir, study_name=study.study_name, storage=storage,
                        trials=counts)
    if study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        best = study.best_trial
        result.best_number, result.best_value = best.number, best.value
        result.best_params = dict(best.params)
        result.best_config = out_dir / "best.yaml"
        write_best_config(study, base, result.best_config, registry)
    _plots(study, out_dir)
    ck.atomic_write_json(out_dir / "study.json", {
        "study_name": result.study_name, "storage": storage, "trials": counts,
        "best_trial": result.best_number, "best_value": result.best_value,
        "best_params": result.best_params})
    return result
