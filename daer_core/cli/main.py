"""Entry point of the ``daer`` command.

Exit codes: 0 success, 2 usage or config error, 1 runtime failure. Each command lives in its
own module exposing ``register(subparsers)``; the module sets ``func`` on its parser, a
callable ``(args) -> int``.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import traceback

from ..errors import ConfigError, DaerError
from .exit_codes import EXIT_OK, EXIT_RUNTIME, EXIT_USAGE  # noqa: F401 (re-exported)

#: command modules, in the order they appear in ``daer --help``
COMMAND_MODULES: tuple[str, ...] = (
    "plugins_cmd", "config_cmd", "train_cmd", "tune_cmd", "evaluate_cmd", "search_cmd", "index_cmd",
    "index_edit_cmd", "serve_cmd", "data_cmd", "benchmark_cmd",
)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse exits 2 on usage errors already; keep it
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"daer: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="daer", description="Plugin-based image-text cross-modal retrieval.")
    parser.add_argument("-p", dest="plugin_opts", action="append", default=[], metavar="NAME",
                        help="load plugin module NAME, or block a plugin with no:NAME "
                             "(repeatable; like pytest's -p)")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for modname in COMMAND_MODULES:
        importlib.import_module(f"{__package__}.{modname}").register(sub)
    return parser


def _configure_plugins(opts: list[str]) -> None:
    if not opts:
        return
    import registry
    load = [o for o in opts if not o.startswith("no:")]
    block = [o[3:] for o in opts if o.startswith("no:")]
    loaded = registry.load_plugins(load=load, block=block)
    if loaded.unknown_blocked:
        names = sorted({p.name for p in loaded.plugins})
        raise ConfigError(f"-p no:{loaded.unknown_blocked[0]}: no plugin of that name (plugins:"
                          f" {', '.join(names)})")
    registry.set_default_plugins(loaded)


#: loggers that speak at INFO without -v: daer's own (its plugins log under their modules)
OWN_LOGGERS: tuple[str, ...] = ("daer", "daer_core", "registry", "plugins")


def configure_logging(verbose: bool) -> None:
    """INFO from daer itself (one line per epoch, run directory, resumes); third-party INFO
    chatter (gensim logs every Word2Vec epoch, others their file handling) only with -v.

    Progress bars draw carriage-return frames only on a terminal (``disable=None``), so a
    log redirected to a file or read by CI holds the per-epoch INFO lines instead.
    """
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger().setLevel(logging.DEBUG if verbose else logging.WARNING)
    for name in OWN_LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG if verbose else logging.INFO)


def spelt_subcommands(argv: list[str]) -> list[str]:
    """``daer [-p X] index add ...`` -> ``index-add ...`` (and ``remove``): an index command
    whose first word names an action, not a run directory (a run folder literally named
    ``add`` is given as ``./add``)."""
    from .index_edit_cmd import SUBCOMMANDS
    argv = list(argv)
    i = 0
    while i < len(argv) and argv[i].startswith("-"):  # global options and their values
        i += 2 if argv[i] == "-p" else 1
    if i + 1 < len(argv) and argv[i] == "index" and argv[i + 1] in SUBCOMMANDS:
        argv[i:i + 2] = [SUBCOMMANDS[argv[i + 1]]]
    return argv


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(spelt_subcommands(sys.argv[1:] if argv is None else argv))
    configure_logging(args.verbose)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    from registry import RegistryError
    try:
        _configure_plugins(args.plugin_opts)
        return int(args.func(args) or 0)
    except (ConfigError, RegistryError) as exc:
        print(f"daer: config error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("daer: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into e.g. `head`, which stopped reading: not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except Exception as exc:  # noqa: BLE001 - one line, not a traceback; -v shows it
        if args.verbose or os.environ.get("DAER_DEBUG"):
            traceback.print_exc()
        kind = "error" if isinstance(exc, (DaerError, OSError, ValueError)) else "unexpected error"
        hint = "" if isinstance(exc, DaerError) else " (run with -v for the traceback)"
        print(f"daer: {kind}: {type(exc).__name__}: {exc}{hint}", file=sys.stderr)
        return EXIT_RUNTIME


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
