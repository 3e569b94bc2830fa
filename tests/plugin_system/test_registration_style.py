"""One registration style for every default plugin (docs/writing-a-plugin.md).

Each entry point of the ``daer`` group names a *package*; its ``__init__.py`` holds the one
``@hookimpl def daer_register_components(registry)`` (and, for presets,
``daer_register_presets``) that lists the plugin's ``registry.add`` calls. No leaf module is
an entry point, no module registers through a chained ``register()`` function or a list of
modules imported by name, so reading one ``__init__.py`` tells everything a plugin provides.
"""
from __future__ import annotations

import ast
import tomllib
from pathlib import Path

from daer_testkit import REPO_ROOT

PLUGINS = REPO_ROOT / "plugins"


def entry_points() -> dict[str, str]:
    data = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    return data["project"]["entry-points"]["daer"]


def package_init(module: str) -> Path:
    return REPO_ROOT.joinpath(*module.split("."), "__init__.py")


def test_every_entry_point_names_a_plugin_package():
    eps = entry_points()
    assert len(eps) >= 10, eps
    leaves = {name: module for name, module in eps.items() if not package_init(module).is_file()}
    assert leaves == {}, "entry points must name a package, not a leaf module"


def _hook_functions(tree: ast.Module) -> list[str]:
    return [node.name for node in ast.walk(tree)
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and any((isinstance(d, ast.Name) and d.id == "hookimpl")
                    or (isinstance(d, ast.Attribute) and d.attr == "hookimpl")
                    for d in node.decorator_list)]


def _registry_add_calls(tree: ast.Module) -> int:
    return sum(1 for node in ast.walk(tree)
               if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
               and node.func.attr in ("add", "add_preset")
               and isinstance(node.func.value, ast.Name) and node.func.value.id == "registry")


def test_hooks_and_registrations_live_only_in_the_plugin_packages_init():
    """``@hookimpl`` functions and ``registry.add`` calls appear only in the ``__init__.py``
    of an entry-point package; no module defines a ``register`` function or imports plugin
    modules by name (``import_module``)."""
    inits = {package_init(module) for module in entry_points().values()}
    offenders: dict[str, list[str]] = {}
    for path in sorted(PLUGINS.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        problems = []
        if path not in inits:
            problems += [f"@hookimpl {name}" for name in _hook_functions(tree)]
            if _registry_add_calls(tree):
                problems.append("registry.add(...) outside the package hook")
        problems += [f"def {node.name}" for node in tree.body
                     if isinstance(node, ast.FunctionDef) and node.name == "register"]
        problems += ["import_module" for node in ast.walk(tree)
                     if isinstance(node, ast.Name) and node.id == "import_module"
                     or isinstance(node, ast.Attribute) and node.attr == "import_module"]
        if problems:
            offenders[str(path.relative_to(REPO_ROOT))] = problems
    assert offenders == {}


def test_every_plugin_package_registers_in_its_init():
    for name, module in entry_points().items():
        tree = ast.parse(package_init(module).read_text(encoding="utf-8"))
        hooks = _hook_functions(tree)
        assert hooks and set(hooks) <= {"daer_register_components", "daer_register_presets"}, (
            name, hooks)
        assert _registry_add_calls(tree), name
