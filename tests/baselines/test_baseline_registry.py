"""The baselines are reachable by name through the registry, params validated."""
from __future__ import annotations

import pytest

import registry
from daer_core.interfaces.methods import CrossModalMethod
from plugins.baselines import CCA, JRL, KCCA, SCM, SM, MvDAVC


@pytest.fixture(scope="module")
def reg():
    return registry.load_plugins().registry


@pytest.mark.parametrize("name,cls,params", [
    ("cca", CCA, {"reg": 0.01, "n_components": 3}),
    ("kcca", KCCA, {"rank": 50, "kernel": "linear", "seed": 4}),
    ("mvda-vc", MvDAVC, {"view_consistency": 0.5}),
    ("jrl", JRL, {"sparsity": 0.2, "n_neighbors": 0}),
    ("sm", SM, {"distance": "kl", "C": 5.0}),
    ("scm", SCM, {"distance": "l2", "n_components": 4, "cca_reg": 0.1}),
])
def test_factory_builds_method_from_params(reg, name, cls, params):
    method = reg.create("method", name, params)
    assert isinstance(method, cls) and isinstance(method, CrossModalMethod)
    spec = reg.get("method", name)
    full = spec.params.model_validate(params).model_dump()
    assert {k: getattr(method, k) for k in full} == full      # constructor args are the params


def test_bad_params_are_rejected_with_the_field_name(reg):
    with pytest.raises(registry.ParamsError, match="rank"):
        reg.create("method", "kcca", {"rank": 0})
    with pytest.raises(registry.ParamsError, match="bogus"):
        reg.create("method", "cca", {"bogus": 1})
