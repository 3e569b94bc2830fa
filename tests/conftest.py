"""Fixtures shared by every test folder (most live in tests/support/)."""
import sys
from pathlib import Path

import pytest
import torch

_SUPPORT = str(Path(__file__).resolve().parent / "support")
if _SUPPORT not in sys.path:
    sys.path.insert(0, _SUPPORT)

from daer_testkit import (cli, clean_env, fake_plugins, fake_registry,  # noqa: E402,F401
                          plugin_site, restore_default_plugins)


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Tests use small tensors; one torch thread keeps them fast on a shared machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
