"""The component table: duplicates, overrides, unknown names and kinds, params and docs."""
from __future__ import annotations

import pytest
from pydantic import BaseModel

import registry
from daer_testkit import FAKE
from registry import (KINDS, DuplicateComponentError, ParamsError, PluginLoadWarning,
                      UnknownComponentError, UnknownKindError)

PLUGIN = """
    from registry import hookimpl

    def make(params, **deps):
        return "{tag}"

    @hookimpl
    def daer_register_components(registry):
        registry.add("fusion", "{tag}-only", factory=make, summary="only here")
        registry.add("fusion", "shared", factory=make, summary="{tag}", override={override})

    @hookimpl
    def daer_register_presets(registry):
        registry.add_preset("{preset}", {{"seed": 1}}, summary="{tag}")
"""


def write(site, name, *, override=False, preset=None):
    return site.module(name, PLUGIN.format(tag=name, override=override,
                                           preset=preset or f"{name}-preset"))


def test_duplicate_name_fails_the_later_plugin_naming_both(plugin_site):
    write(plugin_site, "first_plug")
    write(plugin_site, "second_plug")
    with pytest.warns(PluginLoadWarning) as caught:
        loaded = registry.load_plugins(autoload=False, load=["first_plug", "second_plug"])
    status = {p.name: p.status for p in loaded.plugins}
    assert status == {"first_plug": "loaded", "second_plug": "failed"}
    second = next(p for p in loaded.plugins if p.name == "second_plug")
    assert "DuplicateComponentError" in second.error
    assert "'first_plug'" in second.error and "'second_plug'" in second.error
    assert any("second_plug" in str(w.message) for w in caught)
    # the earlier plugin keeps its entry; none of the failed plugin's entries remain
    assert loaded.registry.get("fusion", "shared").plugin == "first_plug"
    assert not loaded.registry.has("fusion", "second_plug-only")
    assert [p.name for p in loaded.registry.presets()] == ["first_plug-preset"]


def test_override_flag_replaces_on_purpose(plugin_site):
    write(plugin_site, "base_plug")
    write(plugin_site, "patch_plug", override=True)
    loaded = registry.load_plugins(autoload=False, load=["base_plug", "patch_plug"])
    assert all(p.status == "loaded" for p in loaded.plugins), loaded.plugins
    spec = loaded.registry.get("fusion", "shared")
    assert (spec.plugin, spec.summary) == ("patch_plug", "patch_plug")
    assert loaded.registry.has("fusion", "base_plug-only")
    assert loaded.registry.has("fusion", "patch_plug-only")


def test_rollback_restores_an_overridden_entry(plugin_site):
    write(plugin_site, "orig_plug")
    # overrides 'shared' (allowed) but then clashes on the preset name (not allowed)
    write(plugin_site, "greedy_plug", override=True, preset="orig_plug-preset")
    with pytest.warns(PluginLoadWarning, match="preset 'orig_plug-preset' is registered twice"):
        loaded = registry.load_plugins(autoload=False, load=["orig_plug", "greedy_plug"])
    assert loaded.registry.get("fusion", "shared").plugin == "orig_plug"
    assert not loaded.registry.has("fusion", "greedy_plug-only")


def test_registry_add_duplicate_directly(fake_registry):
    spec = fake_registry.get("fusion", "fake-concat")
    other = registry.ComponentSpec("fusion", "fake-concat", dict, registry.NoParams, "",
                                   "other-plugin", "other-dist")
    with pytest.raises(DuplicateComponentError) as exc:
        fake_registry.add(other)
    assert "daer_fake_pipeline" in str(exc.value) and "other-plugin" in str(exc.value)
    assert "other-dist" in str(exc.value)
    assert fake_registry.get("fusion", "fake-concat") is spec
    fake_registry.add(other, override=True)
    assert fake_registry.get("fusion", "fake-concat").plugin == "other-plugin"


def test_unknown_name_suggests_and_lists(fake_registry):
    with pytest.raises(UnknownComponentError) as exc:
        fake_registry.get("fusion", "fake-concta")
    msg = str(exc.value)
    assert "did you mean 'fake-concat'" in msg
    assert "Available fusion components: fake-concat, fake-fixed." in msg
    assert exc.value.suggestions[0] == "fake-concat"
    assert exc.value.available == ["fake-concat", "fake-fixed"]
    with pytest.raises(UnknownComponentError, match=r"Available loss components: fake-mse"):
        fake_registry.create("loss", "nothing-like-it")


def test_unknown_preset_suggests(fake_registry):
    with pytest.raises(UnknownComponentError, match="did you mean 'fake-base'"):
        fake_registry.preset("fake-bse")


def test_unknown_kind_suggests_and_lists_kinds(fake_registry):
    with pytest.raises(UnknownKindError) as exc:
        fake_registry.get("fusoin", "fake-concat")
    assert "did you mean 'fusion'" in str(exc.value)
    assert all(k in str(exc.value) for k in KINDS)
    with pytest.raises(UnknownKindError):
        fake_registry.list("encoders")


def test_registering_an_unknown_kind_fails_the_plugin(plugin_site):
    plugin_site.module("kindless", """
        from registry import hookimpl

        @hookimpl
        def daer_register_components(registry):
            registry.add("text-encoder", "x", factory=dict)
    """)
    with pytest.warns(PluginLoadWarning, match="did you mean 'text_encoder'"):
        loaded = registry.load_plugins(autoload=False, load=["kindless"])
    assert loaded.plugins[0].status == "failed"


def test_params_must_be_a_pydantic_model(plugin_site):
    plugin_site.module("dict_params", """
        from registry import hookimpl

        @hookimpl
        def daer_register_components(registry):
            registry.add("loss", "bad", factory=dict, params={"a": 1})
    """)
    with pytest.warns(PluginLoadWarning, match="must be a pydantic model class"):
        loaded = registry.load_plugins(autoload=False, load=["dict_params"])
    assert loaded.plugins[0].status == "failed"


def test_create_validates_params_and_fills_defaults(fake_registry):
    head = fake_registry.create("relation", "fake-mlp", {"hidden": 5}, fused_dim=7,
                                text_dim=3, image_dim=4)
    assert head.in_dim == 7 and head.net[0].out_features == 5
    with pytest.raises(ParamsError) as exc:
        fake_registry.create("relation", "fake-mlp", {"hidden": "many", "hiden": 3},
                             fused_dim=7, text_dim=3, image_dim=4)
    msg = str(exc.value)
    assert "relation 'fake-mlp'" in msg and "daer_fake_pipeline" in msg
    assert "hidden:" in msg and "hiden: Extra inputs are not permitted" in msg


def test_describe_is_the_documented_schema(fake_registry):
    d = fake_registry.get("relation", "fake-mlp").describe()
    assert set(d) == {"kind", "name", "summary", "plugin", "distribution", "version", "params",
                      "requires"}
    assert d["requires"] == []                       # builds no other component
    assert (d["kind"], d["name"], d["plugin"]) == ("relation", "fake-mlp", FAKE)
    params = {p["name"]: p for p in d["params"]}
    assert params["hidden"] == {"name": "hidden", "type": "int", "required": False,
                                "default": 16, "doc": "hidden units"}
    assert params["in_dim"]["default"] is None and "null" in params["in_dim"]["doc"]


def test_list_and_find(fake_registry):
    assert [s.name for s in fake_registry.list("fusion")] == ["fake-concat", "fake-fixed"]
    assert [s.name for s in fake_registry.list("fusion", "*fix*")] == ["fake-fixed"]
    assert sorted(s.kind for s in fake_registry.find("fake-identity")) == [
        "enhancement", "text_attention"]
    kinds = [s.kind for s in fake_registry.list()]
    assert kinds == sorted(kinds, key=list(KINDS).index)  # grouped in KINDS order


def test_module_level_api_uses_the_default_plugins(fake_plugins, restore_default_plugins):
    registry.set_default_plugins(fake_plugins)
    assert registry.get_registry() is fake_plugins.registry
    assert registry.list_components("fusion") == ["fake-concat", "fake-fixed"]
    fusion = registry.create("fusion", "fake-concat", text_dim=3, image_dim=5)
    assert fusion.out_dim == 8


def test_plugins_register_in_discovery_order(plugin_site):
    """Explicit modules come after entry points, and in the order given: first one wins."""
    write(plugin_site, "aaa_plug")
    write(plugin_site, "zzz_plug")
    with pytest.warns(PluginLoadWarning):
        loaded = registry.load_plugins(autoload=False, load=["zzz_plug", "aaa_plug"])
    assert loaded.registry.get("fusion", "shared").plugin == "zzz_plug"


def test_no_params_model_rejects_any_param(fake_registry):
    assert issubclass(registry.NoParams, BaseModel)
    with pytest.raises(ParamsError, match="width: Extra inputs are not permitted"):
        fake_registry.create("fusion", "fake-concat", {"width": 3}, text_dim=1, image_dim=1)
