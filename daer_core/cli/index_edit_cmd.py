"""``daer index add`` and ``daer index remove``: change an existing index without a rebuild.

``daer index add RUN_DIR --index DIR --gallery SPEC [any option of daer index]`` embeds
another gallery into the index at DIR (never creates one: a typo in DIR is an error, not a
new index) and measures how well the index's first stage finds the relation head's best
items among the new ones (:mod:`daer_core.search.drift`), warning below
``drift.WARN_BELOW``. ``daer index remove RUN_DIR --index DIR --ids ID [ID ...]`` (or
``--ids-file``) takes items out of every search. A running ``daer serve`` on the folder picks
up the new version between two queries.

(Registered as ``index-add`` / ``index-remove``; ``daer index add ...`` is rewritten to
them by :func:`daer_core.cli.main.main`.)
"""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from .exit_codes import EXIT_OK

log = logging.getLogger("daer")

#: ``daer index <word>`` spellings and the commands they run
SUBCOMMANDS = {"add": "index-add", "remove": "index-remove"}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("index-add", help="add a gallery to an existing index (also spelt"
                                         " `daer index add`)")
    p.add_argument("run_dir", type=Path)
    p.add_argument("rest", nargs=argparse.REMAINDER, metavar="--index DIR ...",
                   help="--index DIR (the existing index folder), --gallery SPEC and any other"
                        " option of `daer index`")
    p.set_defaults(func=run_add)
    r = sub.add_parser("index-remove", help="remove items from an index by id (also spelt"
                                            " `daer index remove`)")
    r.add_argument("run_dir", type=Path)
    r.add_argument("--index", type=Path, required=True, help="the index folder")
    r.add_argument("--ids", nargs="+", default=[], metavar="ID", help="ids to remove")
    r.add_argument("--ids-file", type=Path, help="a file with one id per line")
    r.add_argument("--json", action="store_true", help="print the result as JSON")
    r.set_defaults(func=run_remove)


def _require_index(folder: Path) -> None:
    from ..errors import ConfigError
    if not (folder / "index.json").is_file():
        raise ConfigError(f"--index {folder}: no index there (index.json); build one with"
                          f" `daer index RUN --gallery ... --out {folder}`")


def run_add(args: argparse.Namespace) -> int:
    from ..search import GalleryIndex
    from ..search.drift import WARN_BELOW, first_stage_recall
    from ..search.storage import write_info
    from ..training.run_loading import load_run
    from . import index_cmd
    from .main import _Parser

    own = _Parser(prog="daer index add", add_help=False)
    own.add_argument("--index", type=Path, required=True)
    own.add_argument("--out", type=Path)
    known, rest = own.parse_known_args(args.rest)
    if known.out is not None:
        from ..errors import ConfigError
        raise ConfigError("daer index add takes --index DIR, not --out")
    args.index = known.index
    _require_index(args.index)
    parser = _Parser(prog="daer index add")
    index_cmd.register(parser.add_subparsers())
    inner = parser.parse_args(["index", str(args.run_dir), "--out", str(args.index), *rest])
    inner.plugin_opts = getattr(args, "plugin_opts", [])
    code = index_cmd.run(inner)
    if code != EXIT_OK:
        return code
    loaded = load_run(args.run_dir)
    index = GalleryIndex.open(args.index, loaded.model, run_dir=loaded.run_dir)
    job = index.info["jobs"][-1]
    if len(index.info["jobs"]) < 2:
        return code  # the first gallery: the first stage was fitted on it
    recall = first_stage_recall(index, job["job"])
    job["first_stage_recall"] = recall
    write_info(index.root, index.info)
    for side, r in recall.items():
        line = (f"first stage on the added items: recall@{r['k']} {r['recall_at_k']:.3f} of"
                f" the relation head's best {side}s among its {r['candidates']} candidates"
                f" ({r['queries']} queries, {r['universe']} {side}s)")
        if r["recall_at_k"] < WARN_BELOW:
            log.warning("%s — below %.2f: the first stage was fitted on other items; run"
                        " `daer index %s --gallery ... --out %s --refine-first-stage always`"
                        " to refit it on everything the index holds", line, WARN_BELOW,
                        args.run_dir, args.index)
        else:
            log.info(line)
    return code


def run_remove(args: argparse.Namespace) -> int:
    from ..errors import ConfigError
    from ..search import GalleryIndex
    from ..training.run_loading import load_run

    _require_index(args.index)
    ids = list(args.ids)
    if args.ids_file is not None:
        try:
            ids += [line.strip() for line in args.ids_file.read_text(encoding="utf-8")
                    .splitlines() if line.strip()]
        except OSError as exc:
            raise ConfigError(f"--ids-file {args.ids_file}: {exc.strerror or exc}") from None
    if not ids:
        raise ConfigError("give the ids to remove: --ids ID [ID ...] or --ids-file FILE")
    loaded = load_run(args.run_dir)
    index = GalleryIndex.open(args.index, loaded.model, run_dir=loaded.run_dir)
    result = index.remove(ids)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"removed {result['removed']['image']} image and {result['removed']['text']}"
              f" text rows; the index now serves {result['totals']['image']} images and"
              f" {result['totals']['text']} texts")
        if result["unknown"]:
            print(f"not in the index: {', '.join(result['unknown'][:10])}"
                  + (" ..." if len(result["unknown"]) > 10 else ""))
    return EXIT_OK
