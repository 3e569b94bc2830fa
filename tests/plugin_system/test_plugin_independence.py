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
