"""Named presets: the DAER paper's model and its Table 3 ablations, one YAML file each.

Every ``*.yaml`` file in this package is a preset named after the file (``daer.yaml`` ->
``daer``) with the keys ``summary`` (one line), ``config`` (a partial run config, usually
``pipeline`` and ``train``) and optionally ``extends`` (another preset's name: ``config`` then
holds only the differences, as the Table 3 ablations do with ``extends: daer``) and
``abstract: true`` (a shared parent: the blocks several presets have in common, written once
and extended by them, never a run's starting point: ``two-tower``, ``daer-two-tower``,
``mcsm-spaces``). Adding a preset is adding a file. A file that cannot be used is skipped with a warning naming it, so
one bad file never hides the others.
"""
from __future__ import annotations

import warnings
from importlib import resources
from typing import Any

import yaml

from registry import PluginLoadWarning, hookimpl


def read_preset(name: str, text: str) -> tuple[str, dict[str, Any], str | None]:
    """``(summary, config, extends)`` of one preset file's text; ValueError naming the file if
    unusable. (Whether it is abstract: :func:`is_abstract`.)"""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValueError(f"preset file {name}: cannot parse YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"preset file {name}: top level must be a mapping with 'summary' and "
                         "'config'")
    unknown = sorted(set(data) - {"summary", "config", "extends", "abstract"})
    if unknown:
        raise ValueError(f"preset file {name}: unknown top-level keys {unknown}; only "
                         "'summary', 'config', 'extends' and 'abstract' are allowed")
    if not isinstance(data.get("abstract", False), bool):
        raise ValueError(f"preset file {name}: 'abstract' must be true or false")
    summary, config, extends = data.get("summary"), data.get("config"), data.get("extends")
    if extends is not None and (not isinstance(extends, str) or not extends.strip()):
        raise ValueError(f"preset file {name}: 'extends' must name a preset")
    if not isinstance(summary, str) or not summary.strip():
        raise ValueError(f"preset file {name}: 'summary' must be a non-empty string")
    if not isinstance(config, dict):
        raise ValueError(f"preset file {name}: 'config' must be a mapping (a partial run config)")
    return " ".join(summary.split()), config, extends


def preset_files() -> list[tuple[str, str]]:
    """``(preset name, file text)`` of every ``*.yaml`` shipped in this package, by name."""
    root = resources.files(__name__)
    found = [(entry.name[:-len(".yaml")], entry) for entry in root.iterdir()
             if entry.name.endswith(".yaml") and entry.is_file()]
    return [(name, entry.read_text(encoding="utf-8")) for name, entry in sorted(found)]


def is_abstract(text: str) -> bool:
    """Whether a preset file (already read by :func:`read_preset`) is a shared parent."""
    return yaml.safe_load(text).get("abstract", False) is True


@hookimpl
def daer_register_presets(registry) -> None:
    for name, text in preset_files():
        try:
            summary, config, extends = read_preset(f"{name}.yaml", text)
        except ValueError as exc:
            warnings.warn(f"{__name__}: {exc}; preset {name!r} skipped", PluginLoadWarning,
                          stacklevel=2)
            continue
        registry.add_preset(name, config, summary=summary, extends=extends,
                            abstract=is_abstract(text))
