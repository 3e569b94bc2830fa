"""Component references (``Ref["kind"]`` params): resolved and built by the registry, their
defaults are requirements, configs check nested choices with their key paths, and `daer
plugins show` prints nested defaults."""
from __future__ import annotations

import warnings

import pytest
import torch

import registry
from daer_core.config import load_run_config
from daer_core.errors import ConfigError, PipelineError
from registry import (FactorySignatureError, ParamsError, PluginLoadWarning,
                      UnknownComponentError)

HOST = """
    from pydantic import Field
    from registry import Params, Ref, hookimpl, ref_field

    class Inner(Params):
        width: int = Field(4, ge=1)

    class Outer(Params):
        part: Ref["fusion"] = ref_field("inner-fusion", {"width": 6})
        spare: Ref["fusion"] | None = None
        scale: int = 2

    def make_inner(params, text_dim, image_dim):
        return ("inner", params.width, text_dim, image_dim)

    BUILT = []

    def make_outer(params, text_dim, image_dim, *, part, spare):
        BUILT.append((part, spare))
        return ("outer", part, spare, params.scale)

    @hookimpl
    def daer_register_components(registry):
        registry.add("fusion", "inner-fusion", factory=make_inner, params=Inner, summary="x")
        registry.add("fusion", "outer-fusion", factory=make_outer, params=Outer, summary="y")
"""


@pytest.fixture
def host(plugin_site, monkeypatch):
    """A plugin whose ``outer-fusion`` references a fusion; interfaces are not checked here
    (the built objects are tuples), only what the registry hands in."""
    plugin_site.module("ref_host", HOST)
    monkeypatch.setattr(registry.kinds.Kind, "check_built", lambda self, obj, name: obj)
    return registry.load_plugins(autoload=False, load=["ref_host"]).registry


def test_the_registry_builds_a_reference_and_hands_it_in(host):
    spec = host.get("fusion", "outer-fusion")
    assert [(r.path, r.kind, r.required) for r in spec.refs] == [
        (("part",), "fusion", False), (("spare",), "fusion", False)]
    assert spec.requires == (("fusion", "inner-fusion"),)   # the reference's default
    built = host.create("fusion", "outer-fusion", {"spare": {"name": "inner-fusion"}},
                        text_dim=3, image_dim=5)
    # not forwarded: the referenced fusion gets None for the deps of its kind
    assert built == ("outer", ("inner", 6, None, None), ("inner", 4, None, None), 2)
    with pytest.raises(ParamsError, match=r"outer-fusion.*: part\.name: unknown fusion"
                                          r" 'inner-fusoin'; did you mean 'inner-fusion'") as err:
        host.create("fusion", "outer-fusion", {"part": {"name": "inner-fusoin"}},
                    text_dim=3, image_dim=5)
    assert err.value.problems[0][0] == ("part", "name")
    with pytest.raises(ParamsError) as err:
        host.create("fusion", "outer-fusion", {"part": {"name": "inner-fusion",
                                                        "params": {"width": 0}}},
                    text_dim=3, image_dim=5)
    assert err.value.problems[0][0] == ("part", "params", "width")


def test_resolving_fills_nested_defaults_and_reports_nested_key_paths(host):
    assert host.resolve_params("fusion", "outer-fusion", {}) == {
        "part": {"name": "inner-fusion", "params": {"width": 6}}, "spare": None, "scale": 2}
    with pytest.raises(ParamsError) as err:
        host.resolve_params("fusion", "outer-fusion", {
            "part": {"name": "inner-fusion", "params": {"widht": 1}},
            "spare": {"name": "nope"}, "scale": "x"})
    locs = [loc for loc, _ in err.value.problems]
    assert ("scale",) in locs and ("part", "params", "widht") in locs
    assert ("spare", "name") in locs


def test_a_reference_is_checked_at_registration(plugin_site):
    plugin_site.module("bad_refs", """
        from registry import Params, Ref, hookimpl, ref_field

        class WrongKind(Params):
            part: Ref["fusoin"] = ref_field("x")

        class NoKeyword(Params):
            part: Ref["fusion"] = ref_field("x")

        class BadForward(Params):
            part: Ref["loss", "text_dim"] = ref_field("x")

        def make(params, text_dim, image_dim):
            return None

        @hookimpl
        def daer_register_components(registry):
            registry.add("fusion", "wrong-kind", factory=make, params=WrongKind, summary="x")
    """)
    with pytest.warns(PluginLoadWarning, match="refers to unknown kind 'fusoin'"):
        registry.load_plugins(autoload=False, load=["bad_refs"])
    from bad_refs import BadForward, NoKeyword, make
    reg = registry.ComponentRegistry()
    scope = registry.PluginScope(reg, "t")
    with pytest.raises(FactorySignatureError, match=r"cannot be called as factory\(params,"
                                                    r" text_dim, image_dim, part=<built>\)"):
        scope.add("fusion", "no-keyword", factory=make, params=NoKeyword, summary="x")
    with pytest.raises(FactorySignatureError, match="forwards text_dim, which is not a dep of"
                                                    " both fusion and loss"):
        scope.add("fusion", "bad-forward", factory=lambda p, text_dim, image_dim, part: None,
                  params=BadForward, summary="x")


def test_config_validate_rejects_a_bad_nested_choice_with_its_key_path(cli):
    res = cli("config", "validate", "--preset", "fgcrossnet-shapes", "--no-build",
              "--set", "pipeline.text.encoder.params.backbone.name=foo", plugins=None)
    assert res.code == 2
    assert ("--set pipeline.text.encoder.params.backbone.name=foo:"
            " pipeline.text.encoder.params.backbone.name: unknown image_encoder 'foo'") in res.err
    assert "[text_encoder 'char-grid' from plugin daer-text]" in res.err
    res = cli("config", "validate", "--preset", "mcsm-shapes", "--no-build",
              "--set", "pipeline.text.encoder.params.words.params.hidden_size=0",
              "--set", "pipeline.image.encoder.params.cnn.name=tim", plugins=None)
    assert res.code == 2
    assert "pipeline.text.encoder.params.words.params.hidden_size: Input should be greater" \
           " than or equal to 1" in res.err
    assert "pipeline.image.encoder.params.cnn.name: unknown image_encoder 'tim'; did you mean" \
           " 'timm'" in res.err


def test_a_nested_choice_is_resolved_with_its_defaults(reg_all):
    cfg = load_run_config({"preset": "fgcrossnet-shapes", "dataset": {"name": "shapes"}},
                          registry=reg_all)
    backbone = cfg.pipeline.text.encoder.params["backbone"]
    assert backbone["name"] == "timm"
    assert backbone["params"]["out_dim"] == 256 and backbone["params"]["size"] == "auto"
    # changing the referenced name drops the params of the one before (as at the top level)
    cfg = load_run_config({"preset": "fgcrossnet-shapes"}, registry=reg_all,
                          overrides=["pipeline.text.encoder.params.backbone.name="
                                     "mobilenetv3-large"])
    assert cfg.pipeline.text.encoder.params["backbone"]["params"]["out_dim"] == 300


def test_plugins_show_prints_nested_defaults(cli):
    res = cli("plugins", "show", "char-grid", plugins=None)
    assert res.code == 0
    out = res.out
    assert "backbone: image_encoder reference  (default mobilenetv3-large)" in out
    assert "backbone.params (image_encoder 'mobilenetv3-large' defaults" in out
    assert "          bn_momentum: 0.1" in out                # mobilenetv3-large's own default
    assert "requires:     image_encoder 'mobilenetv3-large'" in out
    res = cli("plugins", "show", "mcsm-words", "--json", plugins=None)
    import json
    words = {p["name"]: p for p in json.loads(res.out)["params"]}["words"]
    assert words["ref"] == {"kind": "text_encoder", "forward": ["tokenizer"]}
    assert words["default"]["name"] == "word2vec-lstm"
    assert words["default"]["params"]["hidden_size"] == 256      # MCSM's choice
    assert words["default"]["params"]["window"] == 5             # word2vec-lstm's default


def test_requirements_follow_from_references_and_blocking_names_dependents(clean_env):
    with warnings.catch_warnings():
        warnings.simplefilter("error", PluginLoadWarning)
        full = registry.load_plugins().registry
    for kind, name, ref, default in (("text_encoder", "char-grid", "backbone",
                                      "mobilenetv3-large"),
                                     ("image_encoder", "mcsm-image", "cnn", "timm"),
                                     ("text_encoder", "mcsm-words", "words", "word2vec-lstm")):
        spec = full.get(kind, name)
        [r] = spec.refs
        assert r.path == (ref,) and r.default.name == default
        assert (r.kind, default) in spec.requires
    with pytest.warns(PluginLoadWarning) as caught:
        loaded = registry.load_plugins(block=["daer-text"])
    messages = " ".join(str(w.message) for w in caught)
    assert "text_encoder 'mcsm-words' of plugin 'daer-recipes' is unavailable: it needs" \
           " text_encoder 'word2vec-lstm'" in messages
    with pytest.raises(UnknownComponentError, match="'mcsm-words' is unavailable"):
        loaded.registry.get("text_encoder", "mcsm-words")


def test_configs_written_before_the_references_are_read_as_them(reg_all):
    old = load_run_config({"preset": "mcsm-shapes", "pipeline": {
        "text": {"encoder": {"name": "mcsm-words", "params": {
            "dim": 16, "vector_size": 16, "cnn_channels": 8, "min_count": 1}}},
        "image": {"encoder": {"name": "mcsm-image", "params": {
            "model": "mobilenetv3_small_050", "size": 32, "dim": 16}}}}}, registry=reg_all)
    text = old.pipeline.text.encoder.params
    assert "dim" not in text and text["cnn_channels"] == 8
    assert {k: text["words"]["params"][k] for k in ("hidden_size", "out_dim", "vector_size",
                                                    "min_count")} == {
        "hidden_size": 16, "out_dim": 16, "vector_size": 16, "min_count": 1}
    image = old.pipeline.image.encoder.params
    assert image["cnn"]["name"] == "timm" and image["dim"] == 16
    assert (image["cnn"]["params"]["model"], image["cnn"]["params"]["size"]) == (
        "mobilenetv3_small_050", 32)
    grid = reg_all.resolve_params("text_encoder", "char-grid", {
        "backbone": "timm", "backbone_params": {"model": "mobilenetv3_small_050"}})
    assert grid["backbone"]["name"] == "timm" and "backbone_params" not in grid
    assert grid["backbone"]["params"]["model"] == "mobilenetv3_small_050"


@pytest.fixture
def reg_all(clean_env) -> registry.ComponentRegistry:
    return registry.load_plugins().registry


# -- what recipes use of encoders: named members of the interfaces ---------------------------

def test_optional_interface_members_name_the_encoder_that_lacks_them(reg_all):
    enc = reg_all.create("text_encoder", "vector-mlp", {"out_dim": 4})
    with pytest.raises(PipelineError, match="VectorTextEncoder has no per-token states: it"
                                            " does not implement token_states()"):
        enc.token_states({})
    assert enc.image_backbone() is None and enc.layer_stack() is enc.net
    image = reg_all.create("image_encoder", "vector-mlp", {"out_dim": 4})
    with pytest.raises(PipelineError, match="has no spatial feature map"):
        image.feature_map(torch.zeros(1, 3))


def test_shipped_encoders_implement_the_members_recipes_use(reg_all):
    timm = reg_all.create("image_encoder", "timm", {"model": "mobilenetv3_small_050",
                                                   "size": 32, "out_dim": 8}).eval()
    fmap = timm.feature_map(torch.zeros(2, 3, 32, 32))
    assert fmap.dim() == 4 and fmap.shape[0] == 2
    timm.drop_projection()
    assert timm.out_dim == timm.feature_dim and timm(torch.zeros(2, 3, 32, 32)).shape == (
        2, timm.feature_dim)
    mobile = reg_all.create("image_encoder", "mobilenetv3-large", {"size": 32}).eval()
    assert mobile.feature_map(torch.zeros(1, 3, 32, 32)).shape[1] == 960
    mobile.drop_projection()
    assert mobile.out_dim == 960 and mobile(torch.zeros(2, 3, 32, 32)).shape == (2, 960)
    tokenizer = reg_all.create("tokenizer", "words")
    words = reg_all.create("text_encoder", "word2vec-lstm", {
        "vector_size": 8, "hidden_size": 6, "min_count": 1, "w2v_epochs": 1},
        tokenizer=tokenizer, attention=None)
    words.fit(["a red circle", "a blue square"])
    inputs = words.prepare(["a red square"])
    assert words.token_dims() == (8, 6)
    assert words.token_vectors(inputs).shape == (1, 3, 8)
    states, mask = words.token_states(inputs)
    assert states.shape == (1, 3, 6) and mask.all()
    grid = reg_all.create("text_encoder", "char-grid", {
        "length": 32, "backbone": {"name": "timm", "params": {"model": "mobilenetv3_small_050",
                                                              "out_dim": 8}}},
        tokenizer=tokenizer, attention=None)
    assert grid.image_backbone() is grid.backbone
    assert grid.as_images(grid.prepare(["abc"])).shape == (1, 3, 32, 32)
    with pytest.raises(ConfigError, match="not built like the image encoder"):
        grid.share_image_backbone(mobile)
