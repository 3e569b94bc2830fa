"""The registry owns every name table: default components, where kinds are chosen, params
problems. The core names no component and never reads an error message back."""
from __future__ import annotations

import ast
import warnings

import pytest

import registry
from daer_core.config import load_run_config
from daer_core.config.schema import COMPONENT_PATHS, RunConfig
from daer_core.errors import ConfigError
from daer_testkit import REPO_ROOT
from registry import PluginLoadWarning, ref_fields


@pytest.fixture
def reg(clean_env) -> registry.ComponentRegistry:
    """Every default plugin, loaded afresh."""
    return registry.load_plugins().registry


def test_where_kinds_are_chosen_is_read_from_the_schema_annotations():
    assert COMPONENT_PATHS == {f.path: f.kind for f in ref_fields(RunConfig)}
    assert COMPONENT_PATHS[("pipeline", "image", "encoder")] == "image_encoder"
    assert COMPONENT_PATHS[("train", "recipe")] == "recipe"
    assert set(COMPONENT_PATHS.values()) <= set(registry.KINDS)
    optional = {f.dotted for f in ref_fields(RunConfig) if not f.required}
    assert optional == {"dataset", "pipeline.text.attention", "pipeline.image.attention"}


def test_the_config_package_names_no_component(reg):
    """No string in daer_core/config is the name of a registered component (the defaults
    came from there once)."""
    names = {s.name for s in reg.list()}
    found = {}
    for path in sorted((REPO_ROOT / "daer_core" / "config").glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        docstrings = {id(n.body[0].value) for n in ast.walk(tree)
                      if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef))
                      and n.body and isinstance(n.body[0], ast.Expr)}
        hits = sorted({n.value for n in ast.walk(tree) if isinstance(n, ast.Constant)
                       and isinstance(n.value, str) and n.value in names
                       and id(n) not in docstrings})
        if hits:
            found[path.name] = hits
    assert found == {}


def test_a_config_naming_no_component_gets_the_defaults_plugins_declare(reg):
    cfg = load_run_config({}, registry=reg)
    pipe = cfg.pipeline
    assert (pipe.text.tokenizer.name, pipe.text.encoder.name, pipe.image.encoder.name,
            pipe.fusion.name, pipe.enhancement.name, pipe.relation.name, pipe.loss.name,
            cfg.train.recipe.name) == (
        "words", "word2vec-lstm", "mobilenetv3-large", "concat", "identity", "mlp",
        "frobenius", "daer-three-stage")
    assert pipe.text.attention is None and pipe.image.attention is None and cfg.dataset is None
    assert {k: reg.default(k) for k in ("tokenizer", "recipe", "text_attention")} == {
        "tokenizer": "words", "recipe": "daer-three-stage", "text_attention": None}
    assert reg.get("image_encoder", "mobilenetv3-large").plugin == "daer-image"


def test_a_missing_default_is_an_error_naming_the_key_path_and_the_blocked_plugin(clean_env):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PluginLoadWarning)
        reg = registry.load_plugins(block=["daer-image"]).registry
    assert reg.default("image_encoder") is None
    with pytest.raises(ConfigError) as err:
        load_run_config({}, registry=reg)
    msg = str(err.value)
    assert "config: pipeline.image.encoder: no image_encoder is chosen and no loaded plugin" \
           " declares a default one (blocked plugins: daer-image)" in msg
    # naming one is enough
    cfg = load_run_config({"pipeline": {"image": {"encoder": {"name": "vector-mlp"}}}},
                          registry=reg)
    assert cfg.pipeline.image.encoder.name == "vector-mlp" and cfg.pipeline.fusion.name == "concat"


def test_two_plugins_claiming_one_default_fail_the_later_one(plugin_site):
    source = """
        from registry import hookimpl

        def make(params, text_dim, image_dim):
            raise AssertionError("not built")

        @hookimpl
        def daer_register_components(registry):
            registry.add("fusion", "{name}", factory=make, summary="x", default=True)
    """
    plugin_site.module("first_default", source.replace("{name}", "first-fusion"))
    plugin_site.module("second_default", source.replace("{name}", "second-fusion"))
    with pytest.warns(PluginLoadWarning, match="the default fusion is claimed twice:"
                                               " 'first-fusion' by plugin 'first_default'"
                                               " and 'second-fusion' by plugin"):
        loaded = registry.load_plugins(autoload=False,
                                       load=["first_default", "second_default"])
    assert [p.status for p in loaded.plugins] == ["loaded", "failed"]
    assert loaded.registry.default("fusion") == "first-fusion"
    assert not loaded.registry.has("fusion", "second-fusion")  # all or nothing


def test_params_problems_reach_the_config_whole_with_their_key_paths(plugin_site):
    """A message holding '; ' and ': ' is not cut apart (the loader once split the
    ParamsError text to find key paths)."""
    plugin_site.module("picky_plugin", """
        from pydantic import Field, field_validator
        from registry import Params, hookimpl

        class P(Params):
            width: int = Field(4)

            @field_validator("width")
            @classmethod
            def _even(cls, v):
                if v % 2:
                    raise ValueError("odd width; use 2: or 4")
                return v

        def make(params, text_dim, image_dim):
            raise AssertionError("not built")

        @hookimpl
        def daer_register_components(registry):
            registry.add("fusion", "picky", factory=make, params=P, summary="x")
    """)
    reg = registry.load_plugins(load=["picky_plugin"]).registry
    with pytest.raises(ConfigError) as err:
        load_run_config({"pipeline": {"fusion": {"name": "picky", "params": {"width": 3}}}},
                        registry=reg)
    assert ("config: pipeline.fusion.params.width: Value error, odd width; use 2: or 4"
            "  [fusion 'picky' from plugin picky_plugin]") in str(err.value)
    with pytest.raises(registry.ParamsError) as perr:
        reg.resolve_params("fusion", "picky", {"width": 3, "colour": 1})
    assert perr.value.problems == [(("width",), "Value error, odd width; use 2: or 4"),
                                   (("colour",), "Extra inputs are not permitted")]


def test_get_registry_returns_the_given_registry_or_the_default(fake_registry):
    assert registry.get_registry(fake_registry) is fake_registry
    assert registry.get_registry() is registry.default_plugins().registry
