"""``daer data check PATH --layout NAME``: counts and problems of a dataset, without training.

The layout is a ``dataset`` component name (``daer plugins list --kind dataset``); PATH becomes
its ``root`` param and ``--set key=value`` sets any other param. Factories that accept
``check=True`` collect problems instead of raising and run deeper checks (every image decoded); for
other datasets a :class:`~daer_core.errors.DataError` raised while building is reported as one
problem. Exit codes: 0 usable as is, 1 problems found, 2 usage errors (unknown layout or param).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from ..config.loading import parse_override
from ..errors import ConfigError, DataError
from ..interfaces.data import SPLITS, DataReport, Problem
from .exit_codes import EXIT_OK, EXIT_PROBLEMS

#: ``schema`` value of ``daer data check --json`` (the rest is ``DataReport.as_dict()``)
REPORT_SCHEMA = "daer.data-report/1"
SHOW_IDS = 5


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "data", help="inspect datasets", description="Inspect datasets without training.")
    actions = parser.add_subparsers(dest="data_action", metavar="ACTION", required=True)
    chk = actions.add_parser(
        "check", help="counts per split and class, and every problem found",
        description="Load a dataset as training would and report counts per split and class "
                    "and every problem found. Exit 0 when usable as is, 1 when there are "
                    "problems, 2 on usage errors.")
    chk.add_argument("path", nargs="?", metavar="PATH",
                     help="the dataset's root (its `root` param); omit for generated datasets")
    chk.add_argument("--layout", required=True, metavar="NAME",
                     help="dataset component name, e.g. wikipedia, pascal-sentence, xmedianet, "
                          "manifest, features, shapes")
    chk.add_argument("--set", dest="overrides", action="append", default=[],
                     metavar="KEY=VALUE", help="set a dataset param (repeatable; YAML values)")
    chk.add_argument("--json", action="store_true",
                     help=f"machine-readable report (schema {REPORT_SCHEMA}, docs/datasets.md)")
    chk.add_argument("--show-ids", type=int, default=SHOW_IDS, metavar="N",
                     help="ids listed per problem in the text output (default %(default)s)")
    chk.set_defaults(func=run_check)


def build_params(spec, path: str | None, overrides: list[str]) -> dict[str, Any]:
    """The raw params: PATH as ``root`` plus ``--set`` values (validated by the registry)."""
    fields = spec.params.model_fields
    params: dict[str, Any] = {}
    if "root" in fields:
        if path is None:
            raise ConfigError(f"layout {spec.name!r} needs PATH (its `root` param)")
        params["root"] = path
    elif path is not None:
        raise ConfigError(f"layout {spec.name!r} reads no files; drop PATH "
                          f"(params: {', '.join(fields) or 'none'})")
    for text in overrides:
        keys, value = parse_override(text)
        if len(keys) != 1:
            raise ConfigError(f"--set {text!r}: dataset params are flat, use NAME=VALUE")
        params[keys[0]] = value
    return params


def check_dataset(layout: str, path: str | None, overrides: list[str]) -> DataReport:
    """Build the dataset in check mode and return its report (never raises DataError)."""
    import registry
    spec = registry.get_registry().get("dataset", layout)
    params = spec.validate_params(build_params(spec, path, overrides))
    try:  # every dataset factory takes `check` (registry.KINDS["dataset"], checked at registration)
        dataset = registry.get_registry().create("dataset", layout, params, check=True)
        report = dataset.report()
    except DataError as exc:
        report = DataReport(layout=layout, root=str(path or ""), classes=[],
                            problems=[Problem("unreadable", str(exc))])
    report.layout = layout
    if path is not None:
        report.root = str(path)
    return report


def run_check(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    report = check_dataset(args.layout, args.path, args.overrides)
    elapsed = time.perf_counter() - start
    if args.json:
        json.dump({"schema": REPORT_SCHEMA, **report.as_dict()}, sys.stdout, indent=2,
                  ensure_ascii=False)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(format_report(report, args.show_ids, elapsed))
    return EXIT_OK if report.usable else EXIT_PROBLEMS


def format_report(report: DataReport, show_ids: int = SHOW_IDS,
                  elapsed: float | None = None) -> str:
    """The human-readable report: summary, per-class table, info, problems."""
    out: list[str] = []
    verdict = "usable as is" if report.usable else "NOT usable as is"
    n_err = sum(p.severity == "error" for p in report.problems)
    n_warn = len(report.problems) - n_err
    out.append(f"{report.layout} at {report.root or '(generated)'}: {verdict} "
               f"({n_err} error(s), {n_warn} warning(s))")
    counts = ", ".join(f"{s} {report.counts.get(s, 0)}" for s in SPLITS)
    out.append(f"classes: {len(report.classes)}   pairs: {counts}   "
               f"total {sum(report.counts.values())}")
    if report.classes and report.class_counts:
        width = max(len(c) for c in report.classes)
        out.append("")
        out.append(f"  {'class':<{width}}  " + "  ".join(f"{s:>6}" for s in SPLITS))
        for c in report.classes:
            cells = "  ".join(f"{report.class_counts.get(s, {}).get(c, 0):>6}" for s in SPLITS)
            out.append(f"  {c:<{width}}  {cells}")
    if report.info:
        out.append("")
        out.append("info:")
        for key, value in report.info.items():
            out.append(f"  {key}: {json.dumps(value, ensure_ascii=False)}")
    out.append("")
    if not report.problems:
        out.append("no problems found")
    for p in report.problems:
        count = f" ({len(p.ids)})" if p.ids else ""
        out.append(f"[{p.severity.upper()}] {p.code}{count}: {p.message}")
        if p.ids and show_ids > 0:
            more = f" (+{len(p.ids) - show_ids} more; --json lists all)" \
                if len(p.ids) > show_ids else ""
            out.append(f"    ids: {', '.join(p.ids[:show_ids])}{more}")
    if elapsed is not None:
        out.append(f"\nchecked in {elapsed:.1f}s")
    return "\n".join(out) + "\n"
