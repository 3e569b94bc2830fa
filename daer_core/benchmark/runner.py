"""The cell loop of ``daer benchmark``: every (method, dataset, run), each saved when done.

Order: datasets, then methods, then runs. A dataset's features are loaded only if one of its
baseline cells still has to run, so a finished benchmark re-run only rewrites the report.

Each cell is judged by its run's protocol: category-level mAP (the paper's tables) or
instance-level Recall@K (``evaluate.protocol``; several captions per image). Baselines are
feature-level category methods: on instance-level data they are refused with a config error
(before any cell runs when a trained method of the same dataset sets ``evaluate.protocol:
instance``, else when the baseline cell loads the data), never silently scored by class.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import yaml

from ..errors import ConfigError
from .cells import CellError, Measured, daer_run_config, run_baseline, run_daer
from .config import BenchmarkConfig
from .data import BenchmarkData, load_benchmark_data, resample_indices, spec_hash
from .plots import plot_map_bars, plot_rsum_bars
from .report import ResultIndex, render_markdown
from .results import REQUIRED_COLUMNS, CellResult, ResultsTable, metric_columns

log = logging.getLogger(__name__)

RESULTS_CSV = "results.csv"
RESULTS_MD = "results.md"
FIGURE = "map_bars.png"
#: the instance-level figure (rsum per method and dataset)
RSUM_FIGURE = "rsum_bars.png"


@dataclass
class BenchmarkOutcome:
    out_dir: Path
    results_csv: Path
    results_md: Path
    #: the first figure written (the mAP bars, else the rsum bars of instance cells)
    figure: Path | None
    computed: list[tuple[str, str, int]] = field(default_factory=list)
    skipped: list[tuple[str, str, int]] = field(default_factory=list)
    #: cells whose saved row came from another config and is recomputed (and replaced)
    replaced: list[tuple[str, str, int]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    #: cells neither finished nor computed (``report_only``)
    missing: list[tuple[str, str, int]] = field(default_factory=list)
    markdown: str = ""
    #: every figure written (mAP bars for category cells, rsum bars for instance cells)
    figures: list[Path] = field(default_factory=list)


def check_components(config: BenchmarkConfig, registry) -> None:
    """Every component name and params in the config, checked before any cell runs.

    Raises one :class:`ConfigError` listing each problem with its key path, so a typo in the
    last method does not surface after an hour of computing the first ones.
    """
    from registry import RegistryError

    problems: list[str] = []

    def check(kind: str, ref_name: str, params: dict, where: str) -> None:
        try:
            registry.get(kind, ref_name).validate_params(params)
        except RegistryError as exc:
            problems.append(f"{where}: {exc}")

    for key, d in config.datasets.items():
        check("dataset", d.dataset.name, d.dataset.params, f"datasets.{key}.dataset")
        for slot in ("image_features", "text_features"):
            ref = getattr(d, slot)
            check("feature_extractor", ref.name, ref.params, f"datasets.{key}.{slot}")
    baselines = [key for key, m in config.methods.items() if m.kind == "baseline"]
    for key, m in config.methods.items():
        if m.kind == "baseline":
            check("method", m.name, m.params, f"methods.{key}")
            continue
        from ..config.loading import load_run_config
        if config.eval_split != "test":
            problems.append(f"methods.{key}: DAER runs rank their test split (they select"
                            f" epochs on validation), so they cannot join a benchmark with"
                            f" eval_split: {config.eval_split}; run them in a test benchmark")
            continue
        for dkey, d in config.datasets.items():
            try:
                run_config = load_run_config(daer_run_config(m, d, config.seed,
                                                             config.resample),
                                             registry=registry)
            except ConfigError as exc:
                problems.append(f"methods.{key}.daer (dataset {dkey}): {exc}")
                continue
            if baselines and run_config.evaluate.protocol == "instance":
                # (with protocol auto the data decides; the baseline cell refuses it then)
                problems.append(
                    f"datasets.{dkey}: methods.{key} is judged at instance level"
                    f" (evaluate.protocol: instance) but the baselines"
                    f" ({', '.join(baselines)}) are feature-level category methods; give"
                    f" them a benchmark or dataset entry of their own")
    if problems:
        raise ConfigError("benchmark config problems:\n  " + "\n  ".join(problems))


def cell_hash(config: BenchmarkConfig, method: str, dataset: str, run: int) -> str:
    """What a cell's result depends on; a change makes a resumed benchmark recompute it."""
    entry = config.methods[method]
    spec = {"method": entry.model_dump(), "run": run, "seed": config.seed + run,
            "dataset": config.datasets[dataset].model_dump(exclude={"label"}),
            "eval_split": config.eval_split}
    # trained cells depend on it too: their validation carve pairs them with the baselines'
    # subsample (cells.daer_run_config)
    spec["resample"] = config.resample.model_dump()
    budget = config.budget(method)
    if budget is not None:  # (absent when untuned: results of untuned configs stay valid)
        spec["tune"] = budget.model_dump()
    return spec_hash(spec)


MARKER = ".daer-benchmark.json"


def _written_by_daer(out_dir: Path) -> bool:
    """A benchmark folder: its marker, or (folders from before the marker) a results.csv
    whose header is the one daer writes."""
    if (out_dir / MARKER).is_file():
        return True
    try:
        with (out_dir / RESULTS_CSV).open(encoding="utf-8") as fh:
            header = fh.readline().strip().split(",")
    except (OSError, UnicodeDecodeError):
        return False
    return header[:len(REQUIRED_COLUMNS)] == REQUIRED_COLUMNS


def claim_out_folder(out_dir: Path) -> None:
    """Use ``out_dir`` only if it is new, empty or a daer benchmark folder: a folder of the
    user's own (their results.csv, results.md, notes) is refused untouched."""
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"--out {out_dir}: exists and is not a folder")
    if out_dir.is_dir() and not _written_by_daer(out_dir) and any(out_dir.iterdir()):
        entries = sorted(p.name for p in out_dir.iterdir())
        raise ConfigError(
            f"--out {out_dir}: the folder is not empty and is not a daer benchmark folder (it"
            f" holds {', '.join(entries[:5])}{' …' if len(entries) > 5 else ''}); a benchmark"
            f" writes results.csv, results.md and benchmark.yaml there. Choose a new or empty"
            f" folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    if not (out_dir / MARKER).is_file():
        from ..training.checkpoint import atomic_write_json
        atomic_write_json(out_dir / MARKER, {"written_by": "daer benchmark"})


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "-" for ch in name)


def run_benchmark(config: BenchmarkConfig, out_dir: Path | str, *, registry=None,
                  daer_train_fn: Callable[..., dict] | None = None,
                  progress: bool = True, report_only: bool = False,
                  methods: list[str] | None = None) -> BenchmarkOutcome:
    """Compute every missing cell, then write ``results.md`` and the bar plot.

    ``report_only`` computes nothing: the report is written from the finished cells of the
    current config (a method with fewer runs shows its ``n``; ``outcome.missing`` lists the
    rest), e.g. to read a long benchmark while it runs elsewhere.
    ``methods`` restricts what is computed to those methods' cells (the others are neither
    computed nor reported missing); the report covers every finished cell.
    ``daer_train_fn`` replaces :func:`daer_core.training.api.train_and_evaluate` (tests).
    """
    from registry import get_registry
    registry = get_registry(registry)
    check_components(config, registry)
    out_dir = Path(out_dir)
    claim_out_folder(out_dir)
    (out_dir / "benchmark.yaml").write_text(
        yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False), encoding="utf-8")
    table = ResultsTable(out_dir / RESULTS_CSV)
    outcome = BenchmarkOutcome(out_dir, table.path, out_dir / RESULTS_MD, None)
    sources: dict[str, str] = {}

    if methods is not None:
        unknown = [m for m in methods if m not in config.methods]
        if unknown:
            raise ConfigError(f"--method {unknown[0]!r}: not a method of this benchmark"
                              f" ({', '.join(config.methods)})")
    cells = [(d, m, r) for d in config.datasets for m in config.methods
             for r in range(config.runs) if methods is None or m in methods]
    pending = [c for c in cells
               if not table.done((c[1], c[0], c[2]), cell_hash(config, c[1], c[0], c[2]))]
    outcome.skipped = [(m, d, r) for d, m, r in cells if (d, m, r) not in pending]
    if outcome.skipped:
        log.info("%d of %d cells already in %s; skipping them", len(outcome.skipped),
                 len(cells), table.path)
    if report_only:
        outcome.missing = [(m, d, r) for d, m, r in pending]
        if outcome.missing:
            log.info("report only: %d of %d cells not computed", len(outcome.missing),
                     len(cells))
        _write_report(config, table, outcome, sources)
        return outcome
    outcome.replaced = [(m, d, r) for d, m, r in pending if (m, d, r) in table.rows]
    if outcome.replaced:  # a changed config: say so before old results are overwritten
        methods = sorted({m for m, _, _ in outcome.replaced})
        log.warning("%d cell(s) in %s were computed with another config (methods: %s); they"
                    " are computed again and their rows replaced. Use another --out to keep"
                    " both", len(outcome.replaced), table.path, ", ".join(methods))
    data: dict[str, BenchmarkData] = {}
    bar = _progress(len(pending), progress)
    error: BaseException | None = None
    try:
        for d, m, r in pending:
            bar.set_description(f"{m} / {d} / run {r}")
            try:
                measured = _run_cell(config, registry, d, m, r, data, sources, out_dir,
                                     daer_train_fn)
            except Exception as exc:  # noqa: BLE001 - reported with the cell's name
                msg = f"{m} on {d}, run {r}: {type(exc).__name__}: {exc}"
                if config.on_error == "stop":
                    error = CellError(f"cell failed: {msg} (finished cells are saved in"
                                      f" {table.path}; run the same command to resume)")
                    error.__cause__ = exc
                    break
                log.error("cell failed: %s", msg)
                outcome.failures.append(msg)
                bar.update(1)
                continue
            entry = config.methods[m]
            cell = CellResult(
                method=m, dataset=d, run=r, seed=config.seed + r, kind=entry.kind,
                **metric_columns(measured.metrics),
                fit_seconds=measured.fit_seconds, peak_memory_mb=measured.peak_memory_mb,
                n_train=measured.n_train, n_eval=measured.n_eval,
                tune_trials=measured.tuned.trials, tune_seconds=measured.tuned.seconds,
                tuned_params=json.dumps(measured.tuned.params, sort_keys=True)
                if measured.tuned.trials else "",
                config_hash=cell_hash(config, m, d, r),
                finished_at=time.strftime("%Y-%m-%dT%H:%M:%S"))
            table.add(cell)
            outcome.computed.append((m, d, r))
            log.info("%s / %s / run %d: %s  fit %.2fs  peak %.1f MB", m, d, r,
                     _figures(cell), measured.fit_seconds, measured.peak_memory_mb)
            bar.update(1)
    finally:
        bar.close()
        _write_report(config, table, outcome, sources)
    if error is not None:
        raise error
    return outcome


def _figures(cell: CellResult) -> str:
    """The log line's figures: mAP for category cells; rsum and R@1 both ways (in %) for
    instance cells, with the first stage's rsum when re-ranked."""
    if not cell.instance:
        return f"i2t {cell.i2t:.3f}  t2i {cell.t2i:.3f}  avg {cell.avg:.3f}"
    text = (f"rsum {cell.rsum:.1f}  R@1 i2t {100 * cell.i2t_r1:.1f}"
            f"  t2i {100 * cell.t2i_r1:.1f}")
    if cell.reranked:
        text += f"  (first stage rsum {cell.first_stage_rsum:.1f}, top {cell.rerank_k})"
    return text


def _run_cell(config, registry, d, m, r, data, sources, out_dir, daer_train_fn) -> Measured:
    entry, ds_entry, seed = config.methods[m], config.datasets[d], config.seed + r
    if entry.kind == "daer":
        # the folder carries the cell's hash: a changed method config never resumes the
        # training run of the old one
        cell_dir = (out_dir / "daer" / _safe(m) / _safe(d)
                    / f"run-{r}-{cell_hash(config, m, d, r)[:12]}")
        return run_daer(entry, ds_entry, seed, cell_dir, daer_train_fn, config.resample,
                        config.budget(m))
    if d not in data:
        data[d] = load_benchmark_data(d, ds_entry, config.eval_split, registry,
                                      out_dir / "cache")
        sources[d] = data[d].source
    rows = resample_indices(len(data[d].train.labels), config.resample, seed)
    return run_baseline(registry, entry, data[d], rows, seed, config.budget(m), config.resample)


def _write_report(config, table: ResultsTable, outcome: BenchmarkOutcome, sources) -> None:
    current = [c for c in table.rows.values()
               if c.method in config.methods and c.dataset in config.datasets
               and c.run < config.runs and c.config_hash == cell_hash(config, c.method,
                                                                      c.dataset, c.run)]
    category = [c for c in current if not c.instance]
    instance = [c for c in current if c.instance]
    figure = rsum_figure = None
    if category:  # (a benchmark with instance cells too plots the category cells alone)
        figure = plot_map_bars(ResultIndex(config, category, restrict=bool(instance)),
                               outcome.out_dir / FIGURE)
    if instance:
        rsum_figure = plot_rsum_bars(ResultIndex(config, instance, restrict=True),
                                     outcome.out_dir / RSUM_FIGURE)
    outcome.figures = [f for f in (figure, rsum_figure) if f is not None]
    outcome.figure = outcome.figures[0] if outcome.figures else None
    outcome.markdown = render_markdown(config, current, sources,
                                       figure.name if figure else None, outcome.failures,
                                       rsum_figure=rsum_figure.name if rsum_figure else None)
    tmp = outcome.results_md.with_name(RESULTS_MD + ".tmp")
    tmp.write_text(outcome.markdown, encoding="utf-8")
    tmp.replace(outcome.results_md)


class _NoBar:
    def set_description(self, *_a):
        pass

    def update(self, *_a):
        pass

    def close(self):
        pass


def _progress(total: int, enabled: bool):
    if not enabled or total == 0:
        return _NoBar()
    from tqdm import tqdm
    return tqdm(total=total, unit="cell")
