"""Plugin discovery and loading (pluggy + the ``daer`` entry-point group).

Discovery follows pytest: every installed distribution that declares an entry point in the
``daer`` group is a plugin, the default plugins included. Unlike pluggy's
``load_setuptools_entrypoints`` we load entry points one by one, so that a plugin which fails
to import or to register is recorded (and warned about) without taking the others down.

Opt-outs:

* ``DAER_DISABLE_PLUGIN_AUTOLOAD=1`` — do not load entry points at all;
* ``DAER_PLUGINS=mod_a,mod_b`` (or ``daer -p mod_a``) — import and register modules by name;
* ``DAER_DISABLE_PLUGINS=name`` (or ``daer -p no:name``) — skip one plugin by name.
"""
from __future__ import annotations

import importlib
import importlib.metadata as md
import os
import warnings
from dataclasses import dataclass, field
from types import ModuleType
from typing import Iterable, Literal

import pluggy

from . import hookspecs
from .components import ComponentRegistry, PluginScope
from .errors import DuplicateComponentError

ENTRY_POINT_GROUP = "daer"
ENV_DISABLE_AUTOLOAD = "DAER_DISABLE_PLUGIN_AUTOLOAD"
ENV_LOAD = "DAER_PLUGINS"
ENV_DISABLE = "DAER_DISABLE_PLUGINS"


class PluginLoadWarning(UserWarning):
    """A plugin could not be imported or could not register its components."""


@dataclass
class PluginInfo:
    """What ``daer plugins list`` shows about one plugin."""

    name: str
    module: str
    distribution: str | None
    version: str | None
    status: Literal["loaded", "failed", "blocked"]
    error: str | None = None
    provides: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"name": self.name, "module": self.module, "distribution": self.distribution,
                "version": self.version, "status": self.status, "error": self.error,
                "provides": list(self.provides)}


@dataclass
class LoadedPlugins:
    """The result of discovery: the component registry plus a record of every plugin seen."""

    registry: ComponentRegistry
    plugins: list[PluginInfo]
    manager: pluggy.PluginManager
    #: names given to ``block`` that match no plugin found (a typo in ``-p no:NAME``)
    unknown_blocked: list[str] = field(default_factory=list)


def _split_env(var: str) -> list[str]:
    return [p.strip() for p in os.environ.get(var, "").split(",") if p.strip()]


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() not in ("", "0", "false", "no", "off")


def load_plugins(*, autoload: bool | None = None, load: Iterable[str] = (),
                 block: Iterable[str] = ()) -> LoadedPlugins:
    """Discover, import and register plugins; never raises because of one bad plugin.

    ``autoload=None`` reads ``DAER_DISABLE_PLUGIN_AUTOLOAD``; ``load`` and ``block`` add to the
    names given in ``DAER_PLUGINS`` and ``DAER_DISABLE_PLUGINS``.
    """
    if autoload is None:
        autoload = not _truthy(os.environ.get(ENV_DISABLE_AUTOLOAD))
    blocked = set(block) | set(_split_env(ENV_DISABLE))
    explicit = list(dict.fromkeys([*_split_env(ENV_LOAD), *load]))

    pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    infos: list[PluginInfo] = []
    candidates: list[tuple[str, str, str | None, str | None, object]] = []

    if autoload:
        seen: set[tuple[str, str]] = set()
        for ep in sorted(md.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            if (ep.name, ep.value) in seen:  # the same plugin listed twice on sys.path
                continue
            seen.add((ep.name, ep.value))
            dist = getattr(ep, "dist", None)
            candidates.append((ep.name, ep.value, dist.name if dist else None,
                               dist.version if dist else None, ep))
    for modname in explicit:
        candidates.append((modname, modname, None, None, None))

    for name, modpath, dist, version, ep in candidates:
        if name in blocked or modpath in blocked:
            infos.append(PluginInfo(name, modpath, dist, version, "blocked"))
            pm.set_blocked(name)
            continue
        try:
            module = ep.load() if ep is not None else importlib.import_module(modpath)
            if not isinstance(module, ModuleType):
                raise TypeError(f"entry point must name a module, got {type(module).__name__}")
            if pm.is_registered(module):  # e.g. `-p plugins.text` with autoload on: same plugin
                continue
            if pm.has_plugin(name):
                taken = next(i for i in infos if i.name == name)
                raise ValueError(f"plugin name {name!r} is already used by module {taken.module}"
                                 f" (distribution {taken.distribution or 'none'})")
            pm.register(module, name=name)
            try:  # a hook whose name is no hookspec (a typo) would otherwise be ignored
                pm.check_pending()
            except pluggy.PluginValidationError as exc:
                pm.unregister(module)
                raise ValueError(f"{exc}; daer's hooks are"
                                 f" {', '.join(sorted(_hook_names()))}") from None
        except (Exception, SystemExit) as exc:  # noqa: BLE001 - isolation is the point
            # (a module calling sys.exit() at import would otherwise end the whole command)
            infos.append(_failed(name, modpath, dist, version, "import", exc))
            continue
        infos.append(PluginInfo(name, modpath, dist, version, "loaded"))

    registry = ComponentRegistry()
    impls: dict[str, list] = {}  # plugin name -> its hook implementations, components first
    for hook_name in ("daer_register_components", "daer_register_presets"):
        for impl in getattr(pm.hook, hook_name).get_hookimpls():
            impls.setdefault(impl.plugin_name, []).append(impl)
    for info in infos:  # discovery order (pluggy would *call* them last-registered first)
        if info.status == "loaded":
            _register_one(registry, impls.get(info.name, []), info)

    registry.failed_plugins = [i.name for i in infos if i.status == "failed"]
    registry.blocked_plugins = [i.name for i in infos if i.status == "blocked"]
    for line in registry.drop_unmet_requirements():  # at load time, not when a run builds
        warnings.warn(f"daer: {line}", PluginLoadWarning, stacklevel=2)
    seen_names = {n for c in candidates for n in (c[0], c[1])}
    unknown = sorted(b for b in set(block) if b not in seen_names)
    return LoadedPlugins(registry, infos, pm, unknown)


def _hook_names() -> list[str]:
    return [n for n in dir(hookspecs) if n.startswith("daer_")]


def _register_one(registry: ComponentRegistry, impls: list, info: PluginInfo) -> None:
    """Run all of one plugin's hooks into a staging table, then merge all-or-nothing."""
    staging = ComponentRegistry()
    scope = PluginScope(staging, info.name, info.distribution, info.version)
    try:
        for impl in impls:
            impl.function(**({"registry": scope} if "registry" in impl.argnames else {}))
        merged: list = []  # (table, name, entry it replaced or None), for the rollback
        try:
            for spec in staging.list():
                table = registry._table[spec.kind]
                previous = table.get(spec.name)
                registry.add(spec, override=(spec.kind, spec.name) in scope.overrides)
                merged.append((table, spec.name, previous))
            for preset in staging.presets(abstract=True):
                previous = registry._presets.get(preset.name)
                registry.add_preset(preset, override=("preset", preset.name) in scope.overrides)
                merged.append((registry._presets, preset.name, previous))
            for kind, name in staging.defaults().items():
                previous = registry._defaults.get(kind)
                registry.set_default(kind, name, info.name,
                                     override=(kind, name) in scope.overrides)
                merged.append((registry._defaults, kind, previous))
        except DuplicateComponentError:
            for table, name, previous in reversed(merged):  # undo this plugin's partial merge
                if previous is None:
                    table.pop(name, None)
                else:
                    table[name] = previous
            raise
    except Exception as exc:  # noqa: BLE001
        failed = _failed(info.name, info.module, info.distribution, info.version,
                         "registration", exc)
        info.status, info.error = failed.status, failed.error
        return
    info.provides.extend(scope.added)


def _failed(name, modpath, dist, version, stage: str, exc: BaseException) -> PluginInfo:
    error = f"{type(exc).__name__}: {exc}"
    warnings.warn(
        f"daer plugin {name!r} (module {modpath}, distribution {dist or 'none'}) failed during"
        f" {stage} and was skipped: {error}", PluginLoadWarning, stacklevel=3)
    return PluginInfo(name, modpath, dist, version, "failed", f"{stage}: {error}")


_default: LoadedPlugins | None = None


def default_plugins(*, refresh: bool = False) -> LoadedPlugins:
    """Plugins loaded once per process with the environment's opt-outs applied."""
    global _default
    if _default is None or refresh:
        _default = load_plugins()
    return _default


def set_default_plugins(loaded: LoadedPlugins | None) -> None:
    """Replace the process-wide plugin set (the CLI does this after reading ``-p`` options)."""
    global _default
    _default = loaded
