"""Kinds as typed contracts: factories checked when they register, objects when they are built."""
from __future__ import annotations

import re
import warnings

import pytest

import registry
from daer_testkit import REPO_ROOT, default_plugin_names
from registry import (KINDS, ComponentRegistry, ComponentSpec, FactorySignatureError,
                      InterfaceError, NoParams, PluginLoadWarning)
from registry.kinds import kinds_table

#: the default plugin modules, loaded by module name (pyproject.toml's `daer` entry points)
DEFAULT_MODULES = ["plugins.text", "plugins.image", "plugins.relation", "plugins.datasets",
                   "plugins.datasets.shapes", "plugins.baselines", "plugins.features",
                   "plugins.recipes"]

WRONG = """
    from registry import hookimpl

    def make_relation(params, in_dim):          # a relation factory gets fused_dim, ...
        raise AssertionError("never called")

    @hookimpl
    def daer_register_components(registry):
        registry.add("relation", "wrong-args", factory=make_relation)
"""

RIGHT = """
    from registry import hookimpl

    def make_relation(params, fused_dim, text_dim, image_dim):
        raise AssertionError("never called")

    @hookimpl
    def daer_register_components(registry):
        registry.add("relation", "right-args", factory=make_relation)
"""


def test_a_wrong_factory_signature_fails_only_its_plugin_naming_the_expected_args(plugin_site):
    plugin_site.module("wrong_sig", WRONG)
    plugin_site.module("right_sig", RIGHT)
    plugin_site.distribution("wrong-sig-dist", {"wrong": "wrong_sig"})
    plugin_site.distribution("right-sig-dist", {"right": "right_sig"})

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded = registry.load_plugins(block=default_plugin_names())

    status = {p.name: p for p in loaded.plugins if p.name in ("wrong", "right")}
    assert status["right"].status == "loaded"
    assert loaded.registry.has("relation", "right-args")
    assert status["wrong"].status == "failed"
    assert not loaded.registry.has("relation", "wrong-args")
    error = status["wrong"].error
    assert error.startswith("registration: FactorySignatureError: relation 'wrong-args'")
    assert "factory(params, fused_dim, text_dim, image_dim)" in error
    assert all(dep in error for dep in KINDS["relation"].deps)
    messages = [str(w.message) for w in caught if issubclass(w.category, PluginLoadWarning)]
    assert len(messages) == 1 and "wrong-sig-dist" in messages[0]


@pytest.mark.parametrize("factory, ok", [
    (lambda params, dim: None, True),
    (lambda params, **deps: None, True),
    (lambda params, dim, extra=1: None, True),
    (lambda params: None, False),                 # does not take `dim`
    (lambda params, dim, extra: None, False),     # wants an argument the core never passes
    (lambda dim: None, False),                    # no params
])
def test_factory_signatures_are_bound_against_the_kind(factory, ok):
    reg = ComponentRegistry()
    spec = ComponentSpec("enhancement", "e", factory, NoParams, "", "test")
    if ok:
        reg.add(spec)
        assert reg.has("enhancement", "e")
    else:
        with pytest.raises(FactorySignatureError, match=r"enhancement 'e'.*factory\(params, dim\)"):
            reg.add(spec)
        assert not reg.has("enhancement", "e")


def test_optional_deps_need_a_default():
    """`check` is left out by most callers of a dataset factory, so it needs a default."""
    reg = ComponentRegistry()
    with pytest.raises(FactorySignatureError, match=r"check=\.\.\..*check \(.*\) with a default"):
        reg.add(ComponentSpec("dataset", "d", lambda params, check: None, NoParams, "", "t"))
    reg.add(ComponentSpec("dataset", "d", lambda params, check=False: None, NoParams, "", "t"))


def test_the_built_object_must_implement_the_kind_interface(fake_registry):
    fake_registry.add(ComponentSpec("fusion", "not-a-module", lambda p, text_dim, image_dim: [],
                                    NoParams, "", "test"))
    with pytest.raises(InterfaceError, match=r"fusion 'not-a-module'.*returned list.*Fusion"):
        fake_registry.create("fusion", "not-a-module", text_dim=2, image_dim=3)
    built = fake_registry.create("fusion", "fake-concat", text_dim=2, image_dim=3)
    assert built.out_dim == 5


def test_creating_with_a_dep_the_kind_does_not_have_names_the_call(fake_registry):
    with pytest.raises(FactorySignatureError, match=r"fusion 'fake-concat' created with dim.*"
                                                   r"factory\(params, text_dim, image_dim\)"):
        fake_registry.create("fusion", "fake-concat", text_dim=2, image_dim=3, dim=5)


def test_every_kind_interface_resolves():
    for kind in KINDS.values():
        assert all(isinstance(c, type) for c in kind.interface_classes()), kind.name


def test_architecture_doc_shows_the_kinds_table():
    """docs/architecture.md holds the table generated from KINDS, between two markers."""
    text = (REPO_ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    found = re.search(r"<!-- kinds-table:start -->\n(.*?)\n<!-- kinds-table:end -->", text, re.S)
    assert found, "docs/architecture.md lost its kinds-table markers"
    assert found.group(1) == kinds_table(), (
        "docs/architecture.md is out of date; paste registry.kinds.kinds_table() between the"
        " markers")


def test_every_default_params_model_derives_from_the_shared_base():
    """registry.Params carries extra="forbid" once; a model outside it could drop it."""
    loaded = registry.load_plugins(autoload=False, load=DEFAULT_MODULES)
    specs = loaded.registry.list()
    assert {s.kind for s in specs} >= {"text_encoder", "image_encoder", "relation", "dataset",
                                       "method", "feature_extractor"}
    outside = [f"{s.kind} {s.name}: {s.params.__qualname__}" for s in specs
               if not issubclass(s.params, registry.Params)]
    assert outside == []


def test_the_summary_defaults_to_the_factory_docstring():
    def make(params, dim):
        """Scales each element.

        More detail that the one-line summary leaves out.
        """

    class Documented:
        """A class factory's own docstring."""

        def __init__(self, params, dim):
            pass

    class Undocumented(Documented):  # must not borrow its base class's docstring
        pass

    scope = registry.PluginScope(ComponentRegistry(), "test")
    scope.add("enhancement", "f", factory=make)
    scope.add("enhancement", "c", factory=Documented)
    scope.add("enhancement", "u", factory=Undocumented)
    scope.add("enhancement", "s", factory=make, summary="  given   explicitly ")
    reg = scope.registry
    assert [reg.get("enhancement", n).summary for n in "fcus"] == [
        "Scales each element.", "A class factory's own docstring.", "", "given explicitly"]
