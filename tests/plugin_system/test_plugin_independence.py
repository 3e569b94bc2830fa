"""No default plugin imports another one.

Each default plugin is its own entry point and can be disabled (`daer -p no:daer-image`); a
plugin that reached into another's modules would keep running that code anyway, and could not
be shipped on its own. What several plugins need (weights from files or packages, attention
insertion) is a core service (`daer_core.weights`, `daer_core.attention`).
"""
from __future__ import annotations

import ast
from pathlib import Path

from daer_testkit import REPO_ROOT

PLUGINS = REPO_ROOT / "plugins"


def _absolute(node: ast.ImportFrom, path: Path, root: Path) -> str:
    """The dotted module an ``import from`` names, with relative imports resolved."""
    if node.level == 0:
        return node.module or ""
    package = list(path.relative_to(root).with_suffix("").parts[:-1])
    base = package[:len(package) - (node.level - 1)]
    return ".".join([*base, *([node.module] if node.module else [])])


def foreign_imports(path: Path, root: Path = REPO_ROOT) -> list[str]:
    """Imports in ``<root>/plugins/<a>/...`` of any ``plugins.<b>`` with b != a."""
    own = path.relative_to(root / "plugins").parts[0]
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            names.append((node.lineno, _absolute(node, path, root)))
    return [f"line {line}: {name}" for line, name in names
            if name.split(".")[0] == "plugins" and len(name.split(".")) > 1
            and name.split(".")[1] != own]


def test_no_plugin_imports_another_plugin():
    files = [f for f in sorted(PLUGINS.rglob("*.py")) if f.parent != PLUGINS]
    assert len(files) > 20, files  # the scan must see the plugin sources
    offenders = {str(f.relative_to(REPO_ROOT)): hits for f in files if (hits := foreign_imports(f))}
    assert offenders == {}


def test_the_scan_finds_absolute_and_relative_imports(tmp_path):
    sample = tmp_path / "plugins" / "text" / "sample.py"
    sample.parent.mkdir(parents=True)
    sample.write_text("from plugins.image.weights import x\nimport plugins.relation.mlp\n"
                      "from ..features import backbone\nfrom . import tokenizers\n"
                      "from plugins.text import vectors\n", encoding="utf-8")
    assert foreign_imports(sample, tmp_path) == ["line 1: plugins.image.weights",
                                                 "line 2: plugins.relation.mlp",
                                                 "line 3: plugins.features"]


# -- dependencies between plugins are declared, never taken by name at run time ------------

def _calls_and_attributes(path: Path) -> tuple[list[str], list[str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    builds: list[str] = []
    reaches: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import) and any(a.name == "registry" for a in node.names):
            builds.append(f"line {node.lineno}: import registry")
        elif isinstance(node, ast.ImportFrom) and node.module == "registry":
            names = {a.name for a in node.names} & {"get_registry", "create", "default_plugins"}
            builds += [f"line {node.lineno}: from registry import {n}" for n in sorted(names)]
        elif (isinstance(node, ast.Attribute) and node.attr in ("net", "proj", "fc", "backbone",
                                                                  "grid", "words", "cnn")
              and not (isinstance(node.value, ast.Name) and node.value.id == "self")):
            reaches.append(f"line {node.lineno}: .{node.attr}")
    return builds, reaches


def test_no_plugin_builds_another_component_by_name():
    """A component that uses another one says so in its params (``Ref["kind"]``): the
    registry builds it, and its default is a requirement checked when the plugins load. No
    plugin reaches the registry itself to build one by name at run time."""
    files = [f for f in sorted(PLUGINS.rglob("*.py")) if f.parent != PLUGINS]
    offenders = {str(f.relative_to(REPO_ROOT)): hits for f in files
                 if (hits := _calls_and_attributes(f)[0])}
    assert offenders == {}


def test_recipes_use_encoders_through_their_interfaces():
    """Recipes call the named members of the interfaces (``layer_stack``, ``feature_map``,
    ``token_states``, ``image_backbone``, ...) instead of an encoder's attributes."""
    recipes = sorted((PLUGINS / "recipes").glob("*.py"))
    offenders = {str(f.relative_to(REPO_ROOT)): hits for f in recipes
                 if (hits := _calls_and_attributes(f)[1])}
    assert offenders == {}


def test_declared_requirements_cover_every_reference_and_exist():
    """Each default component's references have their defaults among its requirements, and
    with every default plugin loaded every requirement is provided."""
    import warnings

    import registry
    with warnings.catch_warnings():
        warnings.simplefilter("error", registry.PluginLoadWarning)
        reg = registry.load_plugins().registry
    specs = reg.list()
    with_refs = [s for s in specs if s.refs]
    assert {(s.kind, s.name) for s in with_refs} >= {
        ("text_encoder", "char-grid"), ("image_encoder", "mcsm-image"),
        ("text_encoder", "mcsm-words")}
    for spec in with_refs:
        for ref in spec.refs:
            if ref.default is not None:
                assert (ref.kind, ref.default.name) in spec.requires, (spec.name, ref.path)
    for spec in specs:
        for kind, name in spec.requires:
            assert reg.list(kind) if name is None else reg.has(kind, name), (spec.name, kind,
                                                                             name)
