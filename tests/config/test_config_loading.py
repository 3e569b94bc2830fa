"""Run configs: key-path errors (YAML and TOML), overrides, presets and resolved defaults.

All configs here use the fake components of ``daer_fake_pipeline`` (preset ``fake-base``),
so the tests do not depend on what the default plugins provide.
"""
from __future__ import annotations

import textwrap

import pytest
import yaml

from daer_core.config import (RunConfig, apply_overrides, deep_merge, dump_config,
                              load_run_config, read_config_file)
from daer_core.errors import ConfigError
from daer_fake_pipeline import BASE_PRESET
from registry import PresetSpec


def write(tmp_path, name: str, text: str):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def load(source, fake_registry, **kw) -> RunConfig:
    return load_run_config(source, registry=fake_registry, **kw)


def error_of(source, fake_registry, **kw) -> str:
    with pytest.raises(ConfigError) as exc:
        load(source, fake_registry, **kw)
    return str(exc.value)


# -- resolving ------------------------------------------------------------------------------
def test_preset_only_config_is_resolved_with_defaults(tmp_path, fake_registry):
    path = write(tmp_path, "run.yaml", "preset: fake-base\nseed: 5\n")
    cfg = load(path, fake_registry)
    assert cfg.seed == 5 and cfg.preset == "fake-base"
    pipe = cfg.pipeline
    assert pipe.text.encoder.params == {"out_dim": 8}
    assert pipe.image.encoder.params == {"out_dim": 8, "size": 16}
    assert pipe.relation.params == {"in_dim": None, "hidden": 16}  # default filled
    assert pipe.fusion.params == {} and pipe.text.attention is None
    assert cfg.dataset.name == "fake-pairs" and cfg.dataset.params == {"size": 10}
    assert cfg.train.stages.text.epochs == 10  # schema defaults too


def test_file_params_merge_into_preset_params(tmp_path, fake_registry):
    path = write(tmp_path, "run.yaml", """
        preset: fake-base
        pipeline:
          image:
            encoder:
              params: {size: 32}
    """)
    cfg = load(path, fake_registry)
    assert cfg.pipeline.image.encoder.name == "fake-image"
    assert cfg.pipeline.image.encoder.params == {"out_dim": 8, "size": 32}


def test_changing_a_component_name_drops_the_preset_params(tmp_path, fake_registry):
    base = deep_merge(BASE_PRESET, {"pipeline": {
        "fusion": {"name": "fake-fixed", "params": {"out_dim": 24}}}})
    fake_registry.add_preset(PresetSpec("fixed-base", base, "", "test"))
    assert load({"preset": "fixed-base"}, fake_registry).pipeline.fusion.params == {
        "out_dim": 24}
    # fake-concat takes no params: the preset's out_dim must not follow the new name
    path = write(tmp_path, "run.yaml", """
        preset: fixed-base
        pipeline:
          fusion: {name: fake-concat}
          relation: {name: fake-mlp, params: {hidden: 4}}
    """)
    cfg = load(path, fake_registry)
    assert cfg.pipeline.fusion.name == "fake-concat" and cfg.pipeline.fusion.params == {}
    # same name: params merged, the preset's keys stay
    assert cfg.pipeline.relation.params == {"in_dim": None, "hidden": 4}


def test_deep_merge_semantics():
    base = {"a": {"x": 1, "y": {"z": 2}}, "ref": {"name": "one", "params": {"p": 1}},
            "keep": {"name": "k", "params": {"q": 1}}, "lst": [1, 2]}
    over = {"a": {"y": {"w": 3}}, "ref": {"name": "two"}, "keep": {"params": {"r": 2}},
            "lst": [3]}
    merged = deep_merge(base, over)
    assert merged == {"a": {"x": 1, "y": {"z": 2, "w": 3}}, "ref": {"name": "two"},
                      "keep": {"name": "k", "params": {"q": 1, "r": 2}}, "lst": [3]}
    assert base["a"]["y"] == {"z": 2} and base["ref"]["params"] == {"p": 1}  # not mutated
    assert deep_merge(base, {"ref": {"name": "one", "params": {"p": 5}}})["ref"] == {
        "name": "one", "params": {"p": 5}}


def test_dataset_shortcut(fake_registry):
    cfg = load({"preset": "fake-base"}, fake_registry, dataset="fake-pairs")
    assert cfg.dataset.params == {"size": 10}
    msg = error_of({"preset": "fake-base"}, fake_registry, dataset="fake-pears")
    assert "dataset.name" in msg and "did you mean 'fake-pairs'" in msg


def test_preset_argument_and_unknown_preset(tmp_path, fake_registry):
    assert load(None, fake_registry, preset="fake-base").pipeline.loss.name == "fake-mse"
    path = write(tmp_path, "run.yaml", "preset: fake-bsae\n")
    msg = error_of(path, fake_registry)
    assert str(path) in msg and "preset" in msg and "did you mean 'fake-base'" in msg


# -- key-path errors ------------------------------------------------------------------------
def test_misspelt_component_name_yaml(tmp_path, fake_registry):
    path = write(tmp_path, "run.yaml", """
        preset: fake-base
        pipeline:
          text:
            encoder: {name: fake-txet}
    """)
    msg = error_of(path, fake_registry)
    assert f"{path}: pipeline.text.encoder.name: unknown text_encoder 'fake-txet'" in msg
    assert "did you mean 'fake-text'" in msg and "Available text_encoder components" in msg


def test_unknown_nested_key_yaml(tmp_path, fake_registry):
    path = write(tmp_path, "run.yaml", """
        preset: fake-base
        train:
          stages:
            text: {epochs: 2, batchsize: 4}
        pipeline:
          image:
            encoder: {name: fake-image, parms: {}}
    """)
    msg = error_of(path, fake_registry)
    assert f"{path}: train.stages.text.batchsize: unknown key" in msg
    assert f"{path}: pipeline.image.encoder.parms: unknown key" in msg


def test_unknown_nested_key_toml(tmp_path, fake_registry):
    path = write(tmp_path, "run.toml", """
        preset = "fake-base"
        [pipeline.image.encoder]
        name = "fake-image"
        sise = 3
        [evaluate]
        blocksize = 4
    """)
    msg = error_of(path, fake_registry)
    assert f"{path}: pipeline.image.encoder.sise: unknown key" in msg
    assert f"{path}: evaluate.blocksize: unknown key" in msg


def test_bad_param_type_names_the_param_path_toml(tmp_path, fake_registry):
    path = write(tmp_path, "run.toml", """
        preset = "fake-base"
        [pipeline.relation]
        name = "fake-mlp"
        params = {hidden = "lots", dropout = 0.5}
    """)
    msg = error_of(path, fake_registry)
    assert f"{path}: pipeline.relation.params.hidden: Input should be a valid integer" in msg
    assert f"{path}: pipeline.relation.params.dropout: Extra inputs are not permitted" in msg
    assert "relation 'fake-mlp' from plugin daer_fake_pipeline" in msg


def test_bad_param_value_yaml(tmp_path, fake_registry):
    path = write(tmp_path, "run.yaml", """
        preset: fake-base
        pipeline:
          relation: {name: fake-mlp, params: {hidden: 0}}
    """)
    assert "pipeline.relation.params.hidden: Input should be greater than or equal to 1" in (
        error_of(path, fake_registry))


def test_schema_value_errors_name_the_key(tmp_path, fake_registry):
    path = write(tmp_path, "run.yaml", "preset: fake-base\ntrain: {stages: {image: {epochs: -1}}}\n")
    assert "train.stages.image.epochs: Input should be greater than or equal to 0" in (
        error_of(path, fake_registry))


def test_file_problems_name_the_file(tmp_path, fake_registry):
    missing = tmp_path / "nope.yaml"
    assert f"{missing}: config file not found" in error_of(missing, fake_registry)
    broken = write(tmp_path, "broken.yaml", "pipeline: [unclosed\n")
    assert f"{broken}: cannot parse" in error_of(broken, fake_registry)
    broken_toml = write(tmp_path, "broken.toml", "a = \n")
    assert f"{broken_toml}: cannot parse" in error_of(broken_toml, fake_registry)
    listed = write(tmp_path, "list.yaml", "- 1\n- 2\n")
    assert "top level must be a mapping" in error_of(listed, fake_registry)
    assert read_config_file(write(tmp_path, "empty.yaml", "")) == {}


# -- overrides ------------------------------------------------------------------------------
def test_overrides_by_full_key_path(tmp_path, fake_registry):
    path = write(tmp_path, "run.yaml", "preset: fake-base\n")
    cfg = load(path, fake_registry, overrides=[
        "pipeline.image.encoder.params.size=96", "seed=7", "train.bf16=true",
        "evaluate.ks=[1, 3]", "name=my run"])
    assert cfg.pipeline.image.encoder.params == {"out_dim": 8, "size": 96}
    assert (cfg.seed, cfg.train.bf16, cfg.evaluate.ks, cfg.name) == (7, True, [1, 3], "my run")


def test_override_can_set_null_and_add_a_component(fake_registry):
    cfg = load({"preset": "fake-base"}, fake_registry, overrides=[
        "pipeline.text.attention.name=fake-identity"])
    assert cfg.pipeline.text.attention.name == "fake-identity"
    cfg = load({"preset": "fake-base", "pipeline": {"text": {"attention": {
        "name": "fake-identity"}}}}, fake_registry, overrides=["pipeline.text.attention=null"])
    assert cfg.pipeline.text.attention is None


def test_override_changing_a_name_drops_the_files_params(tmp_path, fake_registry):
    path = write(tmp_path, "run.yaml", """
        preset: fake-base
        pipeline:
          fusion: {name: fake-fixed, params: {out_dim: 24}}
    """)
    cfg = load(path, fake_registry, overrides=["pipeline.fusion.name=fake-concat"])
    assert cfg.pipeline.fusion.name == "fake-concat" and cfg.pipeline.fusion.params == {}
    assert apply_overrides({"r": {"name": "a", "params": {"x": 1}}}, ["r.name=a"]) == {
        "r": {"name": "a", "params": {"x": 1}}}


def test_override_errors(fake_registry):
    with pytest.raises(ConfigError, match="must look like key.path=value"):
        load({"preset": "fake-base"}, fake_registry, overrides=["seed"])
    with pytest.raises(ConfigError, match="empty key path"):
        load({"preset": "fake-base"}, fake_registry, overrides=["pipeline..x=1"])
    with pytest.raises(ConfigError, match="seed is a int, not a mapping"):
        load({"preset": "fake-base", "seed": 1}, fake_registry, overrides=["seed.x=1"])
    msg = error_of({"preset": "fake-base"}, fake_registry,
                   overrides=["pipeline.image.encoder.params.colour=1"])
    assert "pipeline.image.encoder.params.colour: Extra inputs are not permitted" in msg
    msg = error_of({"preset": "fake-base"}, fake_registry, overrides=["pipeline.imgae.x=1"])
    assert "pipeline.imgae: unknown key" in msg


def test_dumped_config_loads_back_identically(tmp_path, fake_registry):
    cfg = load({"preset": "fake-base"}, fake_registry,
               overrides=["pipeline.image.encoder.params.size=96"])
    for fmt, suffix in (("yaml", ".yaml"), ("json", ".json")):
        path = tmp_path / f"resolved{suffix}"
        path.write_text(dump_config(cfg, fmt), encoding="utf-8")
        assert load(path, fake_registry) == cfg
    assert yaml.safe_load(dump_config(cfg))["pipeline"]["image"]["encoder"]["params"][
        "size"] == 96
