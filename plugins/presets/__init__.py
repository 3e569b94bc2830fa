"""Named presets: the DAER paper's model and its Table 3 ablations, one YAML file each.

Every ``*.yaml`` file in this package is a preset named after the file (``daer.yaml`` ->
``daer``) with two keys: ``summary`` (one line) and ``config`` (a partial run config, usually
``pipeline`` and ``train``). Adding a preset is adding a file. A file that cannot be used is
skipped with a warning naming it, so one bad file never hides the others.
"""
from __future__ import annotations

import warnings
from importlib import resources
from typing import Any

import yaml

from registry import PluginLoadWarning, hookimpl


def read_preset(name: str, text: str) -> tuple[str, dict[str, Any]]:
    """``(summary, config)`` of one preset file's text; ValueError naming the file if unusable."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValueError(f"preset file {name}: cannot parse YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"preset file {name}: top level must be a mapping with 'summary' and "
                         "'config'")
    unknown = sorted(set(data) - {"summary", "config"})
    if unknown:
        raise ValueError(f"preset file {name}: unknown top-level keys {unknown}; only "
                         "'summary' and 'config' are allowed")
    summary, config = data.get("summary"), data.get("config")
    if not isinstance(summary, str) or not summary.strip():
        raise ValueError(f"preset file {name}: 'summary' must be a non-empty string")
    if not isinstance(config, dict):
        raise ValueError(f"preset file {name}: 'config' must be a mapping (a partial run config)")
    return " ".join(summary.split()), config


def preset_files() -> list[tuple[str, str]]:
    """``(preset name, file text)`` of every ``*.yaml`` shipped in this package, by name."""
    root = resources.files(__name__)
    found = [(entry.name[:-len(".yaml")], entry) for entry in root.iterdir()
             if entry.name.endswith(".yaml") and entry.is_file()]
    return [(name, entry.read_text(encoding="utf-8")) for name, entry in sorted(found)]


@hookimpl
def daer_register_presets(registry) -> None:
    for name, text in preset_files():
        try:
            summary, config = read_preset(f"{name}.yaml", text)
        except ValueError as exc:
            warnings.warn(f"{__name__}: {exc}; preset {name!r} skipped", PluginLoadWarning,
                          stacklevel=2)
            continue
        registry.add_preset(name, config, summary=summary)
