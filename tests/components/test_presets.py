"""Presets: the paper's model and its Table 3 ablations, read from the package's YAML files."""
from __future__ import annotations

import copy

import pytest

from daer_core.config import load_run_config
from plugins.presets import preset_files, read_preset

ABLATIONS = {  # preset: (text attention, image attention, enhancement)
    "daer": ("dual-region", "dual-spatial", "signed-power"),
    "daer-c": (None, None, "identity"),
    "daer-i": (None, "dual-spatial", "identity"),
    "daer-t": ("dual-region", None, "identity"),
    "daer-i-t": ("dual-region", "dual-spatial", "identity"),
}


def test_every_yaml_file_is_a_registered_preset(reg):
    names = [name for name, _ in preset_files()]
    assert set(ABLATIONS) <= set(names)
    from daer_core.config.loading import preset_config
    for name in names:
        spec = reg.preset(name)
        # a derived preset states only its differences; merged with its base it has a pipeline
        assert spec.summary and "pipeline" in preset_config(reg, name), name


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
    assert read_preset("x.yaml", "summary: ok\nconfig: {pipeline: {}}") == (
        "ok", {"pipeline": {}}, None)
    assert read_preset("x.yaml", "summary: ok\nextends: daer\nconfig: {seed: 1}") == (
        "ok", {"seed": 1}, "daer")
    with pytest.raises(ValueError, match="x.yaml: 'extends' must name a preset"):
        read_preset("x.yaml", "summary: ok\nextends: [daer]\nconfig: {}")
    with pytest.raises(ValueError, match="x.yaml.*summary"):
        read_preset("x.yaml", "config: {}")
    with pytest.raises(ValueError, match="x.yaml.*unknown top-level keys \\['pipeline'\\]"):
        read_preset("x.yaml", "summary: s\npipeline: {}\nconfig: {}")
    with pytest.raises(ValueError, match="x.yaml: cannot parse"):
        read_preset("x.yaml", "summary: [unclosed")


def test_the_ablations_are_daer_plus_their_differences(reg):
    """Each Table 3 ablation states only what it changes; daer-pretrained keeps its policy."""
    for name in ("daer-c", "daer-i", "daer-t", "daer-i-t", "daer-pretrained"):
        assert reg.preset(name).extends == "daer", name
    assert reg.preset("daer-i").config == {
        "pipeline": {"text": {"attention": None}, "enhancement": {"name": "identity"}},
        # no signed power in the variant, so its k leaves daer's search space
        "tune": {"space": {"pipeline.enhancement.params.k": None}}}
    cfg = load_run_config(None, preset="daer-pretrained", registry=reg)
    image = cfg.train.stages.image
    assert (image.epochs, image.backbone_lr, image.frozen_backbone_epochs, image.batchnorm) == (
        5, 0.005, 1, "frozen")
    assert cfg.train.stages.relation.epochs == 8          # daer's, not restated
    assert cfg.pipeline.image.encoder.name == "timm"
    assert cfg.pipeline.enhancement.params["k"] == 0.6    # the params model's default


def test_extends_chains_and_its_errors(reg):
    from daer_core.config import preset_config
    from daer_core.errors import ConfigError
    from registry import PresetSpec

    reg = copy.deepcopy(reg)
    reg.add_preset(PresetSpec("mine", {"seed": 7}, "", "test", extends="daer-i"))
    merged = preset_config(reg, "mine")
    assert merged["seed"] == 7 and merged["pipeline"]["text"]["attention"] is None
    assert merged["pipeline"]["image"]["attention"] == {"name": "dual-spatial"}
    reg.add_preset(PresetSpec("orphan", {}, "", "test", extends="daer-x"))
    with pytest.raises(ConfigError, match=r"unknown preset 'daer-x'.*extended by orphan"):
        preset_config(reg, "orphan")
    reg.add_preset(PresetSpec("loop-a", {}, "", "test", extends="loop-b"))
    reg.add_preset(PresetSpec("loop-b", {}, "", "test", extends="loop-a"))
    with pytest.raises(ConfigError, match="cycle: loop-a -> loop-b -> loop-a"):
        load_run_config(None, preset="loop-a", registry=reg)


# -- shared parents -------------------------------------------------------------------------
PARENTS = {"two-tower": {"acmr", "cm-gans", "dscmr", "fgcrossnet", "fgcrossnet-shapes",
                         "mcsm-spaces"},
           "daer-two-tower": {"contrastive-shapes", "vse-shapes"},
           "mcsm-spaces": {"mcsm", "mcsm-shapes"}}


def test_presets_sharing_blocks_share_an_abstract_parent(reg):
    """The blocks two-tower presets have in common are written once, in an abstract parent
    (no attention slot and the cosine relation; daer's components under cosine; MCSM's
    recipe, relation and space); no run starts from a parent."""
    from daer_core.errors import ConfigError

    for parent, children in PARENTS.items():
        assert reg.preset(parent).abstract and set(reg.children(parent)) == children, parent
        assert parent not in {p.name for p in reg.presets()}
        assert parent in {p.name for p in reg.presets(abstract=True)}
        with pytest.raises(ConfigError, match=rf"'{parent}' is abstract, a parent that presets"
                                              r" extend \(its children: "):
            load_run_config(None, preset=parent, registry=reg)
    for name, text in preset_files():
        config = read_preset(f"{name}.yaml", text)[1]
        pipeline = config.get("pipeline", {})
        if (pipeline.get("relation") or {}).get("name") == "cosine":
            assert name in PARENTS, f"{name} restates the cosine relation of a parent"
        if reg.preset(name).extends in ("two-tower", "mcsm-spaces"):
            for side in ("text", "image"):
                assert "attention" not in pipeline.get(side, {}), (name, side)
    # a child resolves with the parent's blocks
    cfg = load_run_config(None, preset="fgcrossnet-shapes", registry=reg)
    assert cfg.pipeline.text.attention is None and cfg.pipeline.image.attention is None
    assert (cfg.pipeline.relation.name, cfg.pipeline.relation.params["mapping"]) == (
        "cosine", "affine")


def test_an_abstract_flag_must_be_a_boolean():
    from plugins.presets import is_abstract
    assert is_abstract("summary: s\nabstract: true\nconfig: {}") is True
    assert is_abstract("summary: s\nconfig: {}") is False
    with pytest.raises(ValueError, match="x.yaml: 'abstract' must be true or false"):
        read_preset("x.yaml", "summary: s\nabstract: maybe\nconfig: {}")
