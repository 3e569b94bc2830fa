"""Run-directory safety: one writer at a time, no foreign folders, an intact log and config.

A run directory is written by exactly one ``daer train`` process at a time. The guarantees,
and why each exists:

* **An exclusive lock** (:class:`RunLock`): ``<run>/run.lock`` is created with
  ``O_CREAT | O_EXCL`` — atomic on every local file system — and holds the owner's pid, host
  and start time. A second run with the same ``--out`` fails at once, naming the owner,
  instead of interleaving its config, weights and log with the first one's. A lock left by a
  process that no longer exists on this host is detected, named in a warning and taken over;
  a lock from another host cannot be checked and is an error naming that host.
* **Only daer runs are written into** (:func:`refuse_foreign_folder`): a non-empty folder
  without the marker a run writes first (``.daer-run``) is refused, so ``--out`` pointing at
  a folder of the user's own files never overwrites them.
* **A torn last log line is repaired** (:func:`repair_log`): a kill in the middle of a write
  can leave half a JSON line in ``log.jsonl``; it is cut off (and the repair logged), so every
  line stays one JSON object.
* **The config a checkpoint was trained with is pinned** (:func:`config_digest`): each
  checkpoint stores the SHA-256 of ``config.yaml``; resume compares it, so a damaged or edited
  config is refused instead of silently resuming with defaults.

A new run's own files (``config.yaml``, ``split.json``, ``data_report.json``) are written by
:func:`write_run_files`.
"""
from __future__ import annotations

import datetime as _dt
import errno
import hashlib
import json
import logging
import os
import socket
import threading
from pathlib import Path
from types import TracebackType

from ..errors import CheckpointError, ConfigError

log = logging.getLogger(__name__)

LOCK_NAME = "run.lock"
MARKER_NAME = ".daer-run"
#: what ``daer train`` writes itself; a folder holding other things was not made by daer
RUN_FILES = frozenset({LOCK_NAME, MARKER_NAME, "config.yaml", "split.json", "data_report.json",
                       "log.jsonl", "checkpoints", "metrics.json", "pr_curve.png",
                       "examples.png"})

#: locks held by this process, by (resolved run directory, thread): nested holders in one
#: thread share one lock file, while another thread of the same process is refused like
#: another process (a run takes its lock in one place, ``Trainer.locked``)
_held: dict[tuple[Path, int], int] = {}


def _pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this host (signal 0 checks, sends nothing)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    except OSError:
        return True
    return True


class RunLock:
    """An exclusive, re-entrant (within one process) lock on a run directory.

    Use as a context manager. The lock file is removed on exit, also on exceptions and
    Ctrl-C; after ``kill -9`` it stays behind and the next run detects that its owner is
    gone.
    """

    def __init__(self, run_dir: Path | str):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_NAME
        self._key: tuple[Path, int] | None = None

    def __enter__(self) -> "RunLock":
        self.run_dir.mkdir(parents=True, exist_ok=True)
        key = (self.run_dir.resolve(), threading.get_ident())
        if _held.get(key):
            _held[key] += 1
            self._key = key
            return self
        for _attempt in range(3):  # a stale lock removed by us or a racing run: try again
            if self._create():
                _held[key] = 1
                self._key = key
                return self
            self._handle_existing()
        raise CheckpointError(f"{self.path}: could not take the run lock (another run keeps"
                              " taking it); is a second `daer train` using this directory?")

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        key = self._key
        if key is None:
            return
        self._key = None
        _held[key] -= 1
        if _held[key] == 0:
            del _held[key]
            owner = self._read()
            if owner is not None and owner.get("pid") == os.getpid() \
                    and owner.get("host") == socket.gethostname():
                self.path.unlink(missing_ok=True)

    def _create(self) -> bool:
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
        except FileExistsError:
            return False
        except OSError as exc:
            raise CheckpointError(f"{self.path}: cannot create the run lock: {exc.strerror}"
                                  ) from None
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump({"pid": os.getpid(), "host": socket.gethostname(),
                       "started": _dt.datetime.now(_dt.timezone.utc).isoformat(
                           timespec="seconds")}, fh)
            fh.write("\n")
        return True

    def _read(self) -> dict | None:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _handle_existing(self) -> None:
        """Raise for a live owner; remove (with a warning naming it) a dead owner's lock."""
        owner = self._read()
        if owner is None:  # released between our attempt and now
            return
        pid, host = owner.get("pid"), owner.get("host")
        since = owner.get("started", "an unknown time")
        if not isinstance(pid, int) or not host:
            # a lock file being written right now is briefly empty; an unreadable one after
            # that is damage: name it rather than guess
            raise CheckpointError(f"{self.path}: run lock of unknown owner (unreadable file);"
                                  " if no `daer train` is using this directory, delete it")
        if host != socket.gethostname():
            raise CheckpointError(
                f"{self.run_dir} is in use by process {pid} on host {host} (since {since},"
                f" lock file {self.path}); it cannot be checked from here. If that run has"
                " ended, delete the lock file")
        if pid == os.getpid() or _pid_alive(pid):
            raise CheckpointError(
                f"{self.run_dir} is in use by another `daer train` (process {pid} on {host},"
                f" since {since}); wait for it or choose another --out. If process {pid} is"
                f" not a `daer train` (its pid was reused), delete {self.path}")
        log.warning("%s: removing a stale run lock left by process %d on %s (started %s),"
                    " which no longer exists", self.path, pid, host, since)
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


def is_run_dir(run_dir: Path | str) -> bool:
    """True for a folder ``daer train`` created: it holds the run marker, a checkpoint
    daer wrote, or (runs made before the marker existed) a log whose first event is
    ``start``."""
    from .checkpoint import checkpoint_dirs
    run_dir = Path(run_dir)
    # (a bare `checkpoints/` folder is not enough: a user's folder may have one of its own)
    if (run_dir / MARKER_NAME).is_file() or (run_dir / "checkpoints" / "LATEST").is_file() \
            or checkpoint_dirs(run_dir):
        return True
    try:
        with open(run_dir / "log.jsonl", encoding="utf-8") as fh:
            first = json.loads(fh.readline())
    except (OSError, ValueError):
        return False
    return isinstance(first, dict) and first.get("event") == "start"


def refuse_foreign_folder(run_dir: Path | str) -> None:
    """Raise :class:`ConfigError` for an existing, non-empty folder that is not a daer run.

    Training writes ``config.yaml``, ``log.jsonl`` and more into its folder; a folder of the
    user's own files (say their ``config.yaml``) would be overwritten.
    """
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"{run_dir}: exists and is not a folder; choose another --out")
    if not run_dir.is_dir() or is_run_dir(run_dir):
        return
    entries = sorted(p.name for p in run_dir.iterdir() if p.name != LOCK_NAME)
    if entries:
        shown = ", ".join(entries[:5]) + (f" (+{len(entries) - 5} more)" if len(entries) > 5
                                          else "")
        raise ConfigError(f"{run_dir}: the folder is not empty and is not a daer run directory"
                          f" (it holds {shown}); training would overwrite files there. Choose"
                          " a new or empty folder for --out")


def mark_run_dir(run_dir: Path | str) -> None:
    """Write the marker that makes a folder recognisable as a daer run (see
    :func:`is_run_dir`); called before anything else is written into a new run."""
    from .checkpoint import atomic_write_json
    marker = Path(run_dir) / MARKER_NAME
    if not marker.is_file():
        atomic_write_json(marker, {"schema": "daer.run/1"})


def repair_log(path: Path | str) -> int:
    """Cut a torn last line (no final newline: a kill mid-write) off a JSONL log.

    Returns the number of bytes removed (0 when the log is intact or absent). Only the
    unterminated tail is removed: complete lines — the history — are never touched.
    """
    path = Path(path)
    try:
        with open(path, "rb+") as fh:
            data = fh.read()
            if not data or data.endswith(b"\n"):
                return 0
            keep = data.rfind(b"\n") + 1
            fh.truncate(keep)
            return len(data) - keep
    except FileNotFoundError:
        return 0
    except OSError as exc:
        if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise CheckpointError(f"{path}: cannot repair the run log: {exc.strerror}") from None
        raise


def config_digest(path: Path | str) -> str | None:
    """SHA-256 (hex) of a run's ``config.yaml`` bytes; None when the file is absent."""
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except FileNotFoundError:
        return None


def check_config_digest(run_dir: Path | str, tag: str, state: dict) -> None:
    """Refuse to resume when ``config.yaml`` differs from the one checkpoint ``tag`` was
    trained with (damaged, cut short or edited): resuming would silently train on another
    config. Checkpoints written before digests existed are accepted as they are."""
    expected = state.get("config_sha256")
    if not expected:
        return
    cfg = Path(run_dir) / "config.yaml"
    if config_digest(cfg) != expected:
        raise CheckpointError(
            f"{cfg}: does not match the config checkpoint {tag!r} was trained with (it was"
            " damaged or edited since); resuming would train on another config. The original"
            f" is kept as `config_yaml` in {Path(run_dir) / 'checkpoints' / tag / 'state.json'}:"
            " restore config.yaml from it to resume")


def write_run_files(run_dir: Path, config, dataset, classes: list[str],
                    splits: dict[str, list], split_names: tuple[str, ...]) -> dict:
    """Write a new run's ``config.yaml``, ``split.json`` (the ids of every split) and
    ``data_report.json``; returns the data report."""
    from ..config import dump_config
    from .checkpoint import atomic_write_json, atomic_write_text
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / "config.yaml", dump_config(config))
    atomic_write_json(run_dir / "split.json",
                      {"dataset": config.dataset.model_dump(), "classes": classes,
                       **{s: [r.id for r in recs] for s, recs in splits.items()}})
    if "test" not in splits:  # a dataset's report walks every split, test included
        report = {"note": "no data report: this run reads only the splits "
                          + ", ".join(split_names) + " (a tuning trial)"}
    else:
        try:
            report = dataset.report().as_dict()
        except Exception as exc:  # noqa: BLE001 - a report is informative, not required
            report = {"error": f"{type(exc).__name__}: {exc}"}
    atomic_write_json(run_dir / "data_report.json", report)
    return report
