"""Fixtures shared by every test folder (they live in tests/support/)."""
import sys
from pathlib import Path

_SUPPORT = str(Path(__file__).resolve().parent / "support")
if _SUPPORT not in sys.path:
    sys.path.insert(0, _SUPPORT)

from daer_testkit import (cli, clean_env, fake_plugins, fake_registry,  # noqa: E402,F401
                          plugin_site, restore_default_plugins)
