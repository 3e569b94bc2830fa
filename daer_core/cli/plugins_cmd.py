"""``daer plugins list|show``: what the loaded plugins provide, and which plugins failed.

Both actions read the process-wide plugin set (:func:`registry.default_plugins`), so the
global ``-p NAME`` / ``-p no:NAME`` options and the ``DAER_*`` environment variables apply.
The ``--json`` outputs are a stable, versioned schema documented in ``docs/cli.md``.
"""
from __future__ import annotations

import argparse
import difflib
import json
import sys
from typing import Any

import yaml

from ..config.schema import COMPONENT_PATHS

from .exit_codes import EXIT_OK, EXIT_USAGE

#: ``schema`` value of ``daer plugins list --json``; bump the suffix on incompatible changes
LIST_SCHEMA = "daer.plugins/1"
#: ``schema`` value of ``daer plugins show --json`` (one component or preset)
SHOW_SCHEMA = "daer.plugin-entry/1"
#: the pseudo-kind under which ``--kind`` selects presets
PRESET_KIND = "preset"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "plugins", help="list loaded plugins and their components, or show one component",
        description="Inspect the plugin registry: every component (kind, name, provider), "
                    "every preset, and every plugin with its load status.")
    actions = parser.add_subparsers(dest="plugins_action", metavar="ACTION", required=True)

    lst = actions.add_parser("list", help="list components, presets and plugins",
                             description="List every registered component and preset, and "
                                         "every plugin with its status (loaded/failed/blocked).")
    lst.add_argument("--kind", metavar="KIND",
                     help="only components of this kind ('preset' lists only presets)")
    lst.add_argument("--json", action="store_true",
                     help=f"machine-readable output (schema {LIST_SCHEMA}, see docs/cli.md)")
    lst.set_defaults(func=run_list)

    show = actions.add_parser("show", help="params, defaults and docs of one component or preset",
                              description="Show one component's params (types, defaults, docs) "
                                          "and provider, or one preset's config.")
    show.add_argument("name", metavar="NAME", help="component or preset name")
    show.add_argument("--kind", metavar="KIND",
                      help="needed when NAME is registered in several kinds; 'preset' for presets")
    show.add_argument("--json", action="store_true",
                      help=f"machine-readable output (schema {SHOW_SCHEMA}, see docs/cli.md)")
    show.set_defaults(func=run_show)


# -- list -----------------------------------------------------------------------------------
def list_payload(kind: str | None = None) -> dict[str, Any]:
    """The ``daer plugins list --json`` document for the current plugin set."""
    import registry

    loaded = registry.default_plugins()
    reg = loaded.registry
    if kind == PRESET_KIND:
        specs = []
    else:
        specs = reg.list(kind)  # raises UnknownKindError (exit 2) with a did-you-mean
    presets = reg.presets(abstract=True) if kind in (None, PRESET_KIND) else []
    return {
        "schema": LIST_SCHEMA,
        "components": [
            {"kind": s.kind, "name": s.name, "summary": s.summary, "plugin": s.plugin,
             "distribution": s.distribution, "version": s.version} for s in specs],
        "presets": [
            {"name": p.name, "summary": p.summary, "plugin": p.plugin,
             "distribution": p.distribution, **({"abstract": True} if p.abstract else {})}
            for p in presets],
        "plugins": [info.as_dict() for info in loaded.plugins],
    }


def run_list(args: argparse.Namespace) -> int:
    payload = list_payload(args.kind)
    if args.json:
        print(json.dumps(payload, indent=2))
        return EXIT_OK
    out: list[str] = []
    if args.kind != PRESET_KIND:
        comps = payload["components"]
        title = f"Components of kind {args.kind}" if args.kind else "Components"
        out.append(f"{title} ({len(comps)}):")
        out.extend(_table([[c["kind"], c["name"], _provider(c), c["summary"]] for c in comps])
                   or ["  (none)"])
    if args.kind in (None, PRESET_KIND):
        presets = payload["presets"]
        out.append(f"\nPresets ({len(presets)}):" if out else f"Presets ({len(presets)}):")
        out.extend(_table([[p["name"] + (" (abstract)" if p.get("abstract") else ""),
                             _provider(p), p["summary"]] for p in presets]) or ["  (none)"])
    plugins = payload["plugins"]
    counts = {s: sum(p["status"] == s for p in plugins) for s in ("loaded", "failed", "blocked")}
    out.append(f"\nPlugins ({counts['loaded']} loaded, {counts['failed']} failed,"
               f" {counts['blocked']} blocked):")
    rows = []
    for p in plugins:
        dist = f"{p['distribution']} {p['version'] or ''}".strip() if p["distribution"] else "-"
        detail = p["error"] if p["status"] == "failed" else (
            _entries(len(p["provides"])) if p["status"] == "loaded" else "disabled by request")
        rows.append([p["name"], p["status"].upper() if p["status"] == "failed" else p["status"],
                     p["module"], dist, detail])
    out.extend(_table(rows) or ["  (none: autoload is off and no -p/DAER_PLUGINS module given)"])
    print("\n".join(out))
    return EXIT_OK


def _entries(n: int) -> str:
    return f"{n} entry" if n == 1 else f"{n} entries"


def _provider(entry: dict[str, Any]) -> str:
    dist = entry.get("distribution")
    if not dist:
        return entry["plugin"]
    version = entry.get("version")
    return f"{entry['plugin']} ({dist}{' ' + version if version else ''})"


def _table(rows: list[list[str]]) -> list[str]:
    """Left-aligned columns, two-space indent; the last column is not padded."""
    if not rows:
        return []
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]) - 1)]
    return ["  " + "  ".join(str(c).ljust(w) for c, w in zip(r, widths)) + "  " + str(r[-1])
            for r in rows]


# -- show -----------------------------------------------------------------------------------
def config_paths(kind: str) -> list[str]:
    """Where a component of ``kind`` is chosen in a run config (e.g. ``pipeline.fusion``)."""
    return [".".join(path) for path, k in COMPONENT_PATHS.items() if k == kind]


def show_payload(name: str, kind: str | None = None) -> dict[str, Any]:
    """The ``daer plugins show --json`` document; raises RegistryError on a bad name/kind."""
    import registry
    from registry import RegistryError, UnknownComponentError

    reg = registry.get_registry()
    if kind == PRESET_KIND:
        return _preset_payload(reg.preset(name))
    if kind is not None:
        return _component_payload(reg, reg.get(kind, name))
    matches = reg.find(name)
    try:
        preset = reg.preset(name)
    except UnknownComponentError:
        preset = None
    found = len(matches) + (preset is not None)
    if found == 0:
        entries = [(s.name, s.kind) for s in reg.list()] + [
            (p.name, PRESET_KIND) for p in reg.presets(abstract=True)]
        close = difflib.get_close_matches(name, sorted({n for n, _ in entries}), n=3, cutoff=0.5)
        msg = f"no component or preset is named {name!r}"
        if close:
            kinds_of = {n: sorted(k for m, k in entries if m == n) for n in close}
            msg += "; did you mean " + " or ".join(
                f"{n!r} ({', '.join(kinds_of[n])})" for n in close) + "?"
        msg += f" {len(entries)} names are registered; see `daer plugins list`."
        if reg.failed_plugins:
            msg += (" Note: these plugins failed to load and may have provided it: "
                    + ", ".join(reg.failed_plugins) + ".")
        raise RegistryError(msg)
    if found > 1:
        kinds = [s.kind for s in matches] + ([PRESET_KIND] if preset else [])
        raise RegistryError(f"{name!r} is registered in several kinds: {', '.join(kinds)};"
                            f" pass --kind KIND to choose one (e.g. --kind {kinds[0]})")
    return _component_payload(reg, matches[0]) if matches else _preset_payload(preset)


def _component_payload(reg, spec) -> dict[str, Any]:
    """``describe()`` with each component reference's default resolved by the registry (the
    referenced component's params with their defaults: nested defaults)."""
    return {"schema": SHOW_SCHEMA, **reg.describe(spec.kind, spec.name),
            "config_paths": config_paths(spec.kind)}


def _preset_payload(preset) -> dict[str, Any]:
    return {"schema": SHOW_SCHEMA, "kind": PRESET_KIND, "name": preset.name,
            "summary": preset.summary, "plugin": preset.plugin,
            "distribution": preset.distribution, "extends": preset.extends,
            "abstract": preset.abstract, "config": preset.config}


def run_show(args: argparse.Namespace) -> int:
    from registry import RegistryError

    try:
        payload = show_payload(args.name, args.kind)
    except RegistryError as exc:
        print(f"daer plugins show: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.json:
        print(json.dumps(payload, indent=2, default=str))
        return EXIT_OK
    print("\n".join(_render_preset(payload) if payload["kind"] == PRESET_KIND
                    else _render_component(payload)))
    return EXIT_OK


def _render_header(d: dict[str, Any]) -> list[str]:
    """What a component and a preset both show: name, summary and provider."""
    lines = [f"{d['kind']} {d['name']!r}"]
    if d["summary"]:
        lines.append(f"  {d['summary']}")
    lines.append(f"  plugin:       {d['plugin']}")
    if d["distribution"]:
        lines.append(f"  distribution: {d['distribution']} {d.get('version') or ''}".rstrip())
    return lines


def _render_component(d: dict[str, Any]) -> list[str]:
    lines = _render_header(d)
    if d["config_paths"]:
        lines.append(f"  chosen at:    {', '.join(d['config_paths'])}"
                     f" (name: {d['name']}, params: {{...}})")
    if d.get("requires"):
        lines.append("  requires:     " + ", ".join(
            f"{r['kind']} {r['name']!r}" if r["name"] else f"a {r['kind']}"
            for r in d["requires"]) + " (checked when the plugins load)")
    if not d["params"]:
        lines.append("  params: (none)")
        return lines
    lines.append("  params:")
    for p in d["params"]:
        ref = p.get("ref")
        nested = ref is not None and isinstance(p["default"], dict)
        if p["required"]:
            default = "required"
        elif nested:
            default = f"default {p['default']['name']}"
        else:
            default = f"default {json.dumps(p['default'])}"
        lines.append(f"    {p['name']}: {p['type']}  ({default})")
        if p["doc"]:
            lines.append(f"        {p['doc']}")
        if nested:  # the referenced component's params, defaults filled in
            lines.append(f"        {p['name']}.params ({ref['kind']} {p['default']['name']!r}"
                         f" defaults; `daer plugins show {p['default']['name']}` documents"
                         " them):")
            lines.extend(f"          {line}" for line in _yaml_lines(
                p["default"].get("params") or {}))
    return lines


def _yaml_lines(data: dict[str, Any]) -> list[str]:
    if not data:
        return ["(none)"]
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False).rstrip().splitlines()


def _render_preset(d: dict[str, Any]) -> list[str]:
    lines = _render_header(d)
    if d["extends"]:
        lines.append(f"  extends:      {d['extends']} (the config below is what differs)")
    if d.get("abstract"):
        lines.append("  abstract:     a shared parent that presets extend; no run starts from it")
    lines.append("  config (merged under yours; `daer config show --preset NAME` resolves it):")
    dumped = yaml.safe_dump(d["config"], sort_keys=False, default_flow_style=False).rstrip()
    lines.extend("    " + line for line in dumped.splitlines())
    return lines
