"""``daer_core`` and ``registry`` never import the default ``plugins`` package.

The default plugins are found like any third-party plugin, through entry points; a core that
imported them directly could not run without them, and the plugin system would be a fiction.
"""
from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

from daer_testkit import REPO_ROOT

CORE_PACKAGES = ("daer_core", "registry")


def _source_files() -> list[Path]:
    files = [f for pkg in CORE_PACKAGES for f in sorted((REPO_ROOT / pkg).rglob("*.py"))]
    assert len(files) > 10, files  # the scan must actually see the sources
    return files


def _names_plugins(module: str | None) -> bool:
    return bool(module) and (module == "plugins" or module.startswith("plugins."))


def plugin_imports(path: Path) -> list[str]:
    """Every import of ``plugins`` in one file: import statements and import_module calls."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [f"line {node.lineno}: import {a.name}" for a in node.names
                      if _names_plugins(a.name)]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and _names_plugins(node.module):
            found.append(f"line {node.lineno}: from {node.module} import ...")
        elif isinstance(node, ast.Call) and node.args:
            func = node.func
            fname = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            arg = node.args[0]
            if (fname in ("import_module", "__import__") and isinstance(arg, ast.Constant)
                    and isinstance(arg.value, str) and _names_plugins(arg.value)):
                found.append(f"line {node.lineno}: {fname}({arg.value!r})")
    return found


def test_static_no_core_source_imports_plugins():
    offenders = {str(f.relative_to(REPO_ROOT)): hits for f in _source_files()
                 if (hits := plugin_imports(f))}
    assert offenders == {}


def test_static_scan_detects_an_import(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("import os\nfrom plugins.text import x\nimport plugins\n"
                      "import importlib\nimportlib.import_module('plugins.image')\n"
                      "from .plugins import y\n")
    assert plugin_imports(sample) == ["line 2: from plugins.text import ...",
                                      "line 3: import plugins",
                                      "line 5: import_module('plugins.image')"]


SCRIPT = r"""
import importlib, json, sys
from pathlib import Path
root = Path(sys.argv[1])
failed = {}
for pkg in ("registry", "daer_core"):
    for f in sorted((root / pkg).rglob("*.py")):
        parts = f.relative_to(root).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        try:
            importlib.import_module(name)
        except Exception as exc:
            failed[name] = f"{type(exc).__name__}: {exc}"
import registry
loaded = registry.load_plugins()
registry.get_registry()
print(json.dumps({"failed": failed, "plugins_loaded": [p.name for p in loaded.plugins],
                  "leaked": sorted(m for m in sys.modules
                                   if m == "plugins" or m.startswith("plugins."))}))
"""


def test_dynamic_core_imports_without_plugins():
    env = {**os.environ, "DAER_DISABLE_PLUGIN_AUTOLOAD": "1", "PYTHONPATH": str(REPO_ROOT)}
    env.pop("DAER_PLUGINS", None)
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(REPO_ROOT)], env=env,
                          capture_output=True, text=True, timeout=120, cwd=REPO_ROOT)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["failed"] == {}
    assert result["plugins_loaded"] == []
    assert result["leaked"] == []
