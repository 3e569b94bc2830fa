"""Plugin discovery: separately installed distributions, failure isolation and opt-outs.

Every distribution here is a ``<name>.dist-info`` folder with METADATA and
``entry_points.txt`` in a temporary ``sys.path`` entry, which ``importlib.metadata`` reads
exactly like an installed one. The default plugins are blocked so that only these count.
"""
from __future__ import annotations

import warnings

import pytest

import registry
from daer_testkit import default_plugin_names
from registry import PluginLoadWarning, UnknownComponentError

DEFAULTS = default_plugin_names()

GOOD = """
    from pydantic import BaseModel, ConfigDict, Field
    from registry import hookimpl

    class P(BaseModel):
        model_config = ConfigDict(extra="forbid")
        width: int = Field(4, description="output width")

    def make(params, **deps):
        return ("{name}", params.width)

    @hookimpl
    def daer_register_components(registry):
        registry.add("{kind}", "{name}", factory=make, params=P, summary="test component")

    @hookimpl
    def daer_register_presets(registry):
        registry.add_preset("{name}-preset", {{"seed": 3}}, summary="test preset")
"""


def good(name: str, kind: str = "fusion") -> str:
    return GOOD.format(name=name, kind=kind)


def info_of(loaded: registry.LoadedPlugins, name: str) -> registry.PluginInfo:
    matches = [p for p in loaded.plugins if p.name == name]
    assert len(matches) == 1, loaded.plugins
    return matches[0]


def load(**kw) -> registry.LoadedPlugins:
    return registry.load_plugins(block=[*DEFAULTS, *kw.pop("block", ())], **kw)


def test_separately_installed_distribution_is_discovered(plugin_site):
    plugin_site.module("acme_daer", good("acme-fusion"))
    plugin_site.distribution("acme-daer", {"acme": "acme_daer"}, version="2.3.1")

    loaded = load()

    info = info_of(loaded, "acme")
    assert (info.status, info.module, info.distribution, info.version) == (
        "loaded", "acme_daer", "acme-daer", "2.3.1")
    assert info.provides == ["fusion:acme-fusion", "preset:acme-fusion-preset"]
    spec = loaded.registry.get("fusion", "acme-fusion")
    assert (spec.plugin, spec.distribution, spec.version) == ("acme", "acme-daer", "2.3.1")
    assert spec.factory(spec.validate_params({"width": 9})) == ("acme-fusion", 9)
    assert loaded.registry.preset("acme-fusion-preset").distribution == "acme-daer"
    # the default plugins were seen and blocked, not imported
    assert {p.name for p in loaded.plugins if p.status == "blocked"} == set(DEFAULTS)


def test_failing_plugins_are_isolated_and_reported(plugin_site):
    plugin_site.module("boom_import", "raise RuntimeError('kaboom at import')\n")
    plugin_site.module("boom_register", """
        from registry import hookimpl

        @hookimpl
        def daer_register_components(registry):
            registry.add("fusion", "half-done", factory=dict)
            raise ValueError("registration went wrong")
    """)
    plugin_site.module("fine_plugin", good("fine-fusion"))
    plugin_site.distribution("boom-import-dist", {"boom-i": "boom_import"})
    plugin_site.distribution("boom-register-dist", {"boom-r": "boom_register"})
    plugin_site.distribution("fine-dist", {"fine": "fine_plugin"})

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded = load()

    messages = [str(w.message) for w in caught if issubclass(w.category, PluginLoadWarning)]
    assert len(messages) == 2, messages
    imp = next(m for m in messages if "'boom-i'" in m)
    assert "boom-import-dist" in imp and "kaboom at import" in imp and "import" in imp
    reg = next(m for m in messages if "'boom-r'" in m)
    assert "boom-register-dist" in reg and "registration went wrong" in reg

    assert info_of(loaded, "fine").status == "loaded"
    assert loaded.registry.has("fusion", "fine-fusion")
    for name, stage, text in [("boom-i", "import", "kaboom"),
                              ("boom-r", "registration", "registration went wrong")]:
        info = info_of(loaded, name)
        assert info.status == "failed"
        assert info.error.startswith(f"{stage}: ") and text in info.error
    # what the failing hook added before raising is not kept
    assert not loaded.registry.has("fusion", "half-done")
    assert info_of(loaded, "boom-r").provides == []
    # an unknown name points at the plugins that failed
    with pytest.raises(UnknownComponentError) as exc:
        loaded.registry.get("fusion", "half-done")
    assert "boom-i" in str(exc.value) and "boom-r" in str(exc.value)
    assert sorted(loaded.registry.failed_plugins) == ["boom-i", "boom-r"]


def test_entry_point_must_name_a_module(plugin_site):
    plugin_site.module("not_a_module", "def hook():\n    pass\n")
    plugin_site.distribution("odd-dist", {"odd": "not_a_module:hook"})
    with pytest.warns(PluginLoadWarning, match="odd"):
        loaded = load()
    assert info_of(loaded, "odd").status == "failed"
    assert "must name a module" in info_of(loaded, "odd").error


def test_env_disables_autoload_and_loads_named_modules(plugin_site, monkeypatch):
    plugin_site.module("auto_plugin", good("auto-fusion"))
    plugin_site.module("manual_plugin", good("manual-fusion"))
    plugin_site.distribution("auto-dist", {"auto": "auto_plugin"})

    monkeypatch.setenv(registry.ENV_DISABLE_AUTOLOAD, "1")
    loaded = registry.load_plugins()
    assert loaded.plugins == []
    assert loaded.registry.list() == []

    monkeypatch.setenv(registry.ENV_LOAD, "manual_plugin")
    loaded = registry.load_plugins()
    assert [(p.name, p.status) for p in loaded.plugins] == [("manual_plugin", "loaded")]
    assert loaded.registry.get("fusion", "manual-fusion").plugin == "manual_plugin"
    assert loaded.registry.get("fusion", "manual-fusion").distribution is None

    # autoload back on: the distribution's plugin and the explicit module both load
    monkeypatch.setenv(registry.ENV_DISABLE_AUTOLOAD, "0")
    loaded = load()
    assert info_of(loaded, "auto").status == "loaded"
    assert info_of(loaded, "manual_plugin").status == "loaded"


def test_blocking_one_plugin_by_name(plugin_site, monkeypatch):
    plugin_site.module("keep_plugin", good("keep-fusion"))
    plugin_site.module("drop_plugin", "raise RuntimeError('must never be imported')\n")
    plugin_site.distribution("two-dist", {"keep": "keep_plugin", "drop": "drop_plugin"})

    loaded = load(block=["drop"])
    assert info_of(loaded, "drop").status == "blocked"
    assert info_of(loaded, "drop").error is None
    assert info_of(loaded, "keep").status == "loaded"

    monkeypatch.setenv(registry.ENV_DISABLE, ",".join([*DEFAULTS, "drop"]))
    loaded = registry.load_plugins()
    assert info_of(loaded, "drop").status == "blocked"
    assert loaded.registry.has("fusion", "keep-fusion")


def test_explicit_module_that_cannot_be_imported_fails_alone(plugin_site):
    plugin_site.module("ok_plugin", good("ok-fusion"))
    with pytest.warns(PluginLoadWarning, match="no_such_daer_module"):
        loaded = registry.load_plugins(autoload=False,
                                       load=["no_such_daer_module", "ok_plugin"])
    assert info_of(loaded, "no_such_daer_module").status == "failed"
    assert "ModuleNotFoundError" in info_of(loaded, "no_such_daer_module").error
    assert loaded.registry.has("fusion", "ok-fusion")


def test_same_module_by_entry_point_and_by_name_registers_once(plugin_site):
    plugin_site.module("twice_plugin", good("twice-fusion"))
    plugin_site.distribution("twice-dist", {"twice": "twice_plugin"})
    loaded = load(load=["twice_plugin"])
    assert [p.name for p in loaded.plugins if p.module == "twice_plugin"] == ["twice"]
    assert loaded.registry.get("fusion", "twice-fusion").plugin == "twice"


def test_two_distributions_claiming_one_plugin_name(plugin_site):
    plugin_site.module("first_impl", good("first-fusion"))
    plugin_site.module("second_impl", good("second-fusion"))
    plugin_site.distribution("dist-a", {"clash": "first_impl"})
    plugin_site.distribution("dist-b", {"clash": "second_impl"})
    with pytest.warns(PluginLoadWarning, match="already used by module"):
        loaded = load()
    clash = [p for p in loaded.plugins if p.name == "clash"]
    assert sorted(p.status for p in clash) == ["failed", "loaded"]
    winner = next(p for p in clash if p.status == "loaded")
    assert loaded.registry.has("fusion", "first-fusion" if winner.module == "first_impl"
                               else "second-fusion")
    loser = next(p for p in clash if p.status == "failed")
    assert winner.module in loser.error


def test_a_misspelt_hook_is_an_error_naming_the_plugin_and_the_hook(plugin_site):
    """pluggy would ignore an implementation of a hook that does not exist; a typo in
    `daer_register_components` then registers nothing, silently."""
    plugin_site.module("typo_plugin", """
        from registry import hookimpl

        @hookimpl
        def daer_register_componets(registry):
            raise AssertionError("never called")
    """)
    plugin_site.module("fine_plugin", good("fine-fusion"))
    plugin_site.distribution("typo-dist", {"typo": "typo_plugin", "fine": "fine_plugin"})
    with pytest.warns(PluginLoadWarning, match="daer_register_componets"):
        loaded = load()
    info = info_of(loaded, "typo")
    assert info.status == "failed" and "daer_register_componets" in info.error
    assert "daer_register_components" in info.error       # the hooks that exist are listed
    assert info_of(loaded, "fine").status == "loaded"      # the others still load


def test_blocking_an_unknown_name_is_reported_and_blocked_plugins_are_named(plugin_site):
    plugin_site.module("shape_plugin", good("shape-fusion"))
    plugin_site.distribution("shape-dist", {"shapey": "shape_plugin"})
    loaded = load(block=["shapee"])
    assert loaded.unknown_blocked == ["shapee"]
    loaded = load(block=["shapey"])
    assert loaded.unknown_blocked == []
    with pytest.raises(UnknownComponentError, match=r"blocked .* shapey"):
        loaded.registry.get("fusion", "shape-fusion")


def test_cli_refuses_blocking_a_plugin_that_does_not_exist(capsys, restore_default_plugins,
                                                           clean_env):
    from daer_core.cli.main import main
    assert main(["-p", "no:daer-imagee", "plugins", "list"]) == 2
    err = capsys.readouterr().err
    assert "-p no:daer-imagee: no plugin of that name" in err and "daer-image" in err


def test_a_plugin_calling_sys_exit_at_import_fails_alone(plugin_site):
    plugin_site.module("exiting_plugin", "import sys\nsys.exit(3)\n")
    plugin_site.module("fine_plugin2", good("fine2-fusion"))
    plugin_site.distribution("exit-dist", {"exiting": "exiting_plugin", "fine2": "fine_plugin2"})
    with pytest.warns(PluginLoadWarning, match="SystemExit"):
        loaded = load()
    assert info_of(loaded, "exiting").status == "failed"
    assert loaded.registry.has("fusion", "fine2-fusion")


def test_blocking_the_image_plugin_names_its_dependents_at_load_time(clean_env):
    """char-grid builds an image encoder and MCSM's image network a timm one: with the
    image plugin blocked they are unavailable as soon as the plugins load, and asking for
    one names what is missing and which plugin is blocked."""
    with pytest.warns(PluginLoadWarning) as caught:
        loaded = registry.load_plugins(block=["daer-image"])
    messages = " ".join(str(w.message) for w in caught)
    assert "text_encoder 'char-grid' of plugin 'daer-text' is unavailable" in messages
    assert "image_encoder 'mcsm-image' of plugin 'daer-recipes' is unavailable" in messages
    assert "blocked: daer-image" in messages
    reg = loaded.registry
    assert not reg.has("text_encoder", "char-grid") and reg.has("text_encoder", "word2vec-lstm")
    with pytest.raises(UnknownComponentError, match=r"'char-grid' is unavailable: it needs"
                                                    r" image_encoder 'mobilenetv3-large'.*"
                                                    r"blocked: daer-image"):
        reg.get("text_encoder", "char-grid")
    # with every plugin loaded nothing is missing
    with warnings.catch_warnings():
        warnings.simplefilter("error", PluginLoadWarning)
        full = registry.load_plugins()
    assert full.registry.has("text_encoder", "char-grid")
    assert full.registry.get("image_encoder", "mcsm-image").requires == (("image_encoder", "timm"),)
