"""The registry the component tests build the paper's model from."""
from __future__ import annotations

import pytest

import registry


@pytest.fixture(scope="module")
def reg() -> registry.ComponentRegistry:
    """The DAER method's plugins only, by module name: what a run config built from a preset
    needs (components, presets and the training recipe), without datasets or baselines."""
    return registry.load_plugins(autoload=False, load=[
        "plugins.text", "plugins.image", "plugins.relation", "plugins.presets",
        "plugins.recipes"]).registry
