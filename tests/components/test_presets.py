"""Presets: the paper's model and its Table 3 ablations, read from the package's YAML files."""
from __future__ import annotations

import pytest

import registry
from daer_core.config import load_run_config
from plugins.presets import preset_files, read_preset

ABLATIONS = {  # preset: (text attention, image attention, enhancement)
    "daer": ("dual-region", "dual-spatial", "signed-power"),
    "daer-c": (None, None, "identity"),
    "daer-i": (None, "dual-spatial", "identity"),
    "daer-t": ("dual-region", None, "identity"),
    "daer-i-t": ("dual-region", "dual-spatial", "identity"),
}


@pytest.fixture(scope="module")
def reg():
    return registry.load_plugins(autoload=False, load=[
        "plugins.text", "plugins.image", "plugins.relation", "plugins.presets"]).registry


def test_every_yaml_file_is_a_registered_preset(reg):
    names = [name for name, _ in preset_files()]
    assert set(ABLATIONS) <= set(names)
    for name in names:
        spec = reg.preset(name)
        assert spec.summary and "pipeline" in spec.config


@pytest.mark.parametrize("name", sorted(ABLATIONS))
def test_presets_resolve_to_the_paper_variants(reg, name):
    cfg = load_run_config(None, preset=name, registry=reg)
    pipe = cfg.pipeline
    text_att, image_att, enh = ABLATIONS[name]
    assert (pipe.text.attention.name if pipe.text.attention else None) == text_att
    assert (pipe.image.attention.name if pipe.image.attention else None) == image_att
    assert pipe.enhancement.name == enh
    if enh == "signed-power":
        assert pipe.enhancement.params["k"] == 0.6
    assert (pipe.text.tokenizer.name, pipe.text.encoder.name, pipe.image.encoder.name,
            pipe.fusion.name, pipe.relation.name, pipe.loss.name) == (
        "words", "word2vec-lstm", "mobilenetv3-large", "concat", "mlp", "frobenius")
    assert pipe.relation.params["in_dim"] == 600
    stages = cfg.train.stages
    assert {stages.text.optimizer.name, stages.image.optimizer.name,
            stages.relation.optimizer.name} == {"sgd"}


def test_unusable_preset_files_are_explained():
    assert read_preset("x.yaml", "summary: ok\nconfig: {pipeline: {}}") == ("ok", {"pipeline": {}})
    with pytest.raises(ValueError, match="x.yaml.*summary"):
        read_preset("x.yaml", "config: {}")
    with pytest.raises(ValueError, match="x.yaml.*unknown top-level keys \\['pipeline'\\]"):
        read_preset("x.yaml", "summary: s\npipeline: {}\nconfig: {}")
    with pytest.raises(ValueError, match="x.yaml: cannot parse"):
        read_preset("x.yaml", "summary: [unclosed")
