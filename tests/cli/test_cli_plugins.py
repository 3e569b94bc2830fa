"""``daer plugins list|show``: the documented JSON schemas, failed plugins, -p opt-outs."""
from __future__ import annotations

import json

import pytest

import registry
from daer_fake_pipeline import BASE_PRESET
from daer_testkit import FAKE, default_plugin_names


def listing(cli, *extra, **kw) -> dict:
    res = cli("plugins", "list", "--json", *extra, **kw)
    assert res.code == 0, res.err
    return json.loads(res.out)


def test_list_json_schema(cli):
    doc = listing(cli)
    assert list(doc) == ["schema", "components", "presets", "plugins"]
    assert doc["schema"] == "daer.plugins/1"
    assert {"kind": "fusion", "name": "fake-fixed", "plugin": FAKE, "distribution": None,
            "version": None, "summary": "concatenation projected to a fixed width"
            } in doc["components"]
    assert len(doc["components"]) == 11
    assert all(set(c) == {"kind", "name", "summary", "plugin", "distribution", "version"}
               for c in doc["components"])
    assert doc["presets"] == [{"name": "fake-base", "summary": "every component a fake one",
                               "plugin": FAKE, "distribution": None}]
    [plugin] = doc["plugins"]
    assert plugin == {"name": FAKE, "module": FAKE, "distribution": None, "version": None,
                      "status": "loaded", "error": None,
                      "provides": plugin["provides"]}
    assert "relation:fake-mlp" in plugin["provides"] and "preset:fake-base" in plugin["provides"]


def test_list_filters_by_kind(cli):
    doc = listing(cli, "--kind", "fusion")
    assert [c["name"] for c in doc["components"]] == ["fake-concat", "fake-fixed"]
    assert doc["presets"] == [] and len(doc["plugins"]) == 1
    doc = listing(cli, "--kind", "preset")
    assert doc["components"] == [] and [p["name"] for p in doc["presets"]] == ["fake-base"]


def test_list_unknown_kind_is_a_usage_error(cli):
    res = cli("plugins", "list", "--kind", "fusoin")
    assert res.code == 2
    assert "unknown component kind 'fusoin'" in res.err and "did you mean 'fusion'" in res.err


def test_failed_plugin_is_listed_as_failed(cli, plugin_site):
    plugin_site.module("crashy_plugin", "raise ImportError('needs a missing library')\n")
    with pytest.warns(registry.PluginLoadWarning, match="crashy_plugin"):
        res = cli("plugins", "list", plugins=[FAKE, "crashy_plugin"])
    assert res.code == 0
    assert "Plugins (1 loaded, 1 failed, 0 blocked):" in res.out
    line = next(ln for ln in res.out.splitlines() if "crashy_plugin" in ln)
    assert "FAILED" in line and "import: ImportError: needs a missing library" in line
    assert "fake-mlp" in res.out and "fake-base" in res.out

    with pytest.warns(registry.PluginLoadWarning, match="crashy_plugin"):
        doc = listing(cli, plugins=[FAKE, "crashy_plugin"])
    crashy = next(p for p in doc["plugins"] if p["name"] == "crashy_plugin")
    assert crashy["status"] == "failed" and "needs a missing library" in crashy["error"]


def test_dash_p_loads_and_blocks(cli, plugin_site, monkeypatch):
    plugin_site.module("extra_plugin", """
        from registry import hookimpl

        @hookimpl
        def daer_register_components(registry):
            registry.add("loss", "extra-loss", factory=lambda p: None, summary="extra")
    """)
    plugin_site.distribution("extra-dist", {"extra": "extra_plugin"}, version="0.3")
    monkeypatch.setenv(registry.ENV_DISABLE, ",".join(default_plugin_names()))

    registry.set_default_plugins(None)  # autoload: found through its entry point
    extra = next(c for c in listing(cli, plugins=None)["components"] if c["name"] == "extra-loss")
    assert (extra["plugin"], extra["distribution"], extra["version"]) == ("extra", "extra-dist",
                                                                          "0.3")

    res = cli("-p", "no:extra", "-p", FAKE, "plugins", "list", "--json", plugins=None)
    doc = json.loads(res.out)
    status = {p["name"]: p["status"] for p in doc["plugins"]}
    assert status["extra"] == "blocked" and status[FAKE] == "loaded"
    names = {c["name"] for c in doc["components"]}
    assert "fake-mlp" in names and "extra-loss" not in names

    monkeypatch.setenv(registry.ENV_DISABLE_AUTOLOAD, "1")
    res = cli("-p", FAKE, "plugins", "list", "--json", plugins=None)
    assert [p["name"] for p in json.loads(res.out)["plugins"]] == [FAKE]


def test_show_component_text_and_json(cli):
    res = cli("plugins", "show", "fake-mlp")
    assert res.code == 0, res.err
    assert res.out.startswith("relation 'fake-mlp'")
    assert f"plugin:       {FAKE}" in res.out
    assert "chosen at:    pipeline.relation" in res.out
    assert "hidden: int  (default 16)" in res.out and "hidden units" in res.out

    res = cli("plugins", "show", "fake-mlp", "--json")
    doc = json.loads(res.out)
    assert doc["schema"] == "daer.plugin-entry/1"
    assert (doc["kind"], doc["name"], doc["plugin"]) == ("relation", "fake-mlp", FAKE)
    assert doc["config_paths"] == ["pipeline.relation"]
    hidden = next(p for p in doc["params"] if p["name"] == "hidden")
    assert hidden == {"name": "hidden", "type": "int", "required": False, "default": 16,
                      "doc": "hidden units"}


def test_show_name_in_several_kinds_needs_kind(cli):
    res = cli("plugins", "show", "fake-identity")
    assert res.code == 2
    assert "registered in several kinds: text_attention, enhancement" in res.err
    assert "--kind" in res.err
    res = cli("plugins", "show", "fake-identity", "--kind", "text_attention", "--json")
    assert res.code == 0 and json.loads(res.out)["config_paths"] == ["pipeline.text.attention"]


def test_show_unknown_name_suggests(cli):
    res = cli("plugins", "show", "fake-mpl")
    assert res.code == 2 and res.out == ""
    assert "did you mean 'fake-mlp' (relation)" in res.err
    res = cli("plugins", "show", "fake-mpl", "--kind", "relation")
    assert res.code == 2 and "did you mean 'fake-mlp'" in res.err
    assert "Available relation components: fake-mlp" in res.err
    res = cli("plugins", "show", "fake-mlp", "--kind", "relaton")
    assert res.code == 2 and "did you mean 'relation'" in res.err


def test_show_preset(cli):
    res = cli("plugins", "show", "fake-base", "--json")
    doc = json.loads(res.out)
    assert (doc["schema"], doc["kind"], doc["plugin"]) == ("daer.plugin-entry/1", "preset", FAKE)
    assert doc["config"] == BASE_PRESET
    res = cli("plugins", "show", "fake-base", "--kind", "preset")
    assert res.code == 0 and res.out.startswith("preset 'fake-base'")
    assert "name: fake-mlp" in res.out
    res = cli("plugins", "show", "fake-bsae", "--kind", "preset")
    assert res.code == 2 and "did you mean 'fake-base'" in res.err


def test_missing_action_is_a_usage_error(cli):
    assert cli("plugins").code == 2
    assert cli("plugins", "frobnicate").code == 2
