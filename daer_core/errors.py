"""Errors the core raises on purpose. The CLI maps them to exit codes (docs/cli.md).

* :class:`ConfigError` and registry errors -> exit code 2 (usage or config problem);
* :class:`DataError`, :class:`PipelineError` and anything else at run time -> exit code 1.
"""
from __future__ import annotations


class DaerError(Exception):
    """Base class of the errors daer raises deliberately."""


class ConfigError(DaerError, ValueError):
    """A config file or override that is malformed; the message names the file and key path."""


class PipelineError(DaerError):
    """Components that cannot be assembled together (e.g. dimensions that do not line up)."""


class DimensionMismatchError(PipelineError, ConfigError):
    """Two connected components disagree on a width; reported before any data flows.

    It is also a :class:`ConfigError` because the fix is always in the config.
    """


class DataError(DaerError):
    """Data that cannot be used as is; the message names the file, id or row."""


class CheckpointError(DaerError):
    """A run directory or checkpoint that is missing, partial or unsafe to load."""


class TrainingError(DaerError):
    """Training that cannot go on (a non-finite loss, an epoch without a single step)."""
