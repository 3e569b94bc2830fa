"""Helpers shared by the registry, config and CLI tests.

* :class:`PluginSite` — a temporary directory on ``sys.path`` where a test writes plugin
  modules and ``<name>.dist-info`` folders; ``importlib.metadata`` finds those exactly as it
  finds an installed distribution, so discovery is tested without installing anything.
* ``fake_plugins`` / ``fake_registry`` — the components of :mod:`daer_fake_pipeline`, loaded
  with autoload off so tests never depend on what the default plugins provide.
* ``cli`` — runs ``daer`` in-process against a chosen plugin set and captures its output.
"""
from __future__ import annotations

import importlib
import importlib.metadata as md
import re
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import pytest

import registry
from registry import manager

FAKE = "daer_fake_pipeline"
SUPPORT_DIR = Path(__file__).resolve().parent
REPO_ROOT = SUPPORT_DIR.parents[1]
ENV_VARS = (registry.ENV_DISABLE_AUTOLOAD, registry.ENV_LOAD, registry.ENV_DISABLE)


def default_plugin_names() -> list[str]:
    """Entry-point names declared by the ``daer`` distribution itself (the default plugins).

    Discovery tests block them, so that they exercise discovery of *their* distributions
    without importing (or depending on) the default plugins.
    """
    return sorted({ep.name for ep in md.entry_points(group=registry.ENTRY_POINT_GROUP)
                   if getattr(ep, "dist", None) is not None and ep.dist.name == "daer"})


class PluginSite:
    """A directory on ``sys.path`` holding plugin modules and distribution metadata."""

    def __init__(self, root: Path):
        self.root = root

    def module(self, name: str, source: str) -> str:
        """Write ``name.py`` (source is dedented) and return the module name."""
        (self.root / f"{name}.py").write_text(textwrap.dedent(source), encoding="utf-8")
        importlib.invalidate_caches()
        return name

    def distribution(self, name: str, entry_points: dict[str, str], *, version: str = "1.0",
                     summary: str = "", group: str = registry.ENTRY_POINT_GROUP) -> Path:
        """Write ``<name>-<version>.dist-info`` with METADATA and ``entry_points.txt``."""
        folder = self.root / f"{re.sub(r'[-_.]+', '_', name)}-{version}.dist-info"
        folder.mkdir()
        (folder / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\nSummary: {summary}\n",
            encoding="utf-8")
        lines = [f"[{group}]"] + [f"{k} = {v}" for k, v in entry_points.items()]
        (folder / "entry_points.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
        importlib.invalidate_caches()
        return folder


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No DAER_* plugin variables from the caller's shell leak into a test."""
    for var in ENV_VARS:
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def plugin_site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clean_env) -> PluginSite:
    root = tmp_path / "site"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    yield PluginSite(root)
    for modname, mod in list(sys.modules.items()):  # forget modules imported from the site
        if str(getattr(mod, "__file__", None) or "").startswith(str(root)):
            del sys.modules[modname]
    importlib.invalidate_caches()


@pytest.fixture
def fake_plugins(clean_env) -> registry.LoadedPlugins:
    loaded = registry.load_plugins(autoload=False, load=[FAKE])
    assert [p.status for p in loaded.plugins] == ["loaded"], loaded.plugins
    return loaded


@pytest.fixture
def fake_registry(fake_plugins) -> registry.ComponentRegistry:
    return fake_plugins.registry


@pytest.fixture
def restore_default_plugins():
    """Put back the process-wide plugin set after a test replaced it."""
    saved = manager._default
    yield
    manager._default = saved


@dataclass
class CliResult:
    code: int
    out: str
    err: str


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, clean_env,
        restore_default_plugins) -> Callable[..., CliResult]:
    """``cli(*argv, plugins=[...])`` runs ``daer`` in-process with only the given modules.

    Only the plugins/config command modules are registered, so these tests do not depend on
    the other commands importing cleanly.
    """
    from daer_core.cli import main as cli_main

    monkeypatch.setattr(cli_main, "COMMAND_MODULES", ("plugins_cmd", "config_cmd"))

    def run(*argv: str, plugins: Iterable[str] | None = (FAKE,)) -> CliResult:
        if plugins is not None:
            registry.set_default_plugins(registry.load_plugins(autoload=False, load=plugins))
        capsys.readouterr()
        try:
            code = cli_main.main(list(argv))
        except SystemExit as exc:  # argparse usage errors
            code = exc.code
        captured = capsys.readouterr()
        return CliResult(int(code), captured.out, captured.err)

    return run
