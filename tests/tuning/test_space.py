"""``tune.space``: key paths of the run config with ranges, checked before any trial."""
from __future__ import annotations

import pytest
from pydantic import ValidationError
from tune_configs import tiny_tune_config

from daer_core.config import load_run_config
from daer_core.config.schema import ParamRange
from daer_core.errors import ConfigError
from daer_core.tuning import apply_params, check_space


def test_a_range_keeps_integers_and_names_its_form():
    assert ParamRange(low=4, high=12).type == "int"
    assert ParamRange(low=4, high=12.0).type == "float"
    assert ParamRange(low=1e-4, high=1e-1, log=True).type == "float"
    assert ParamRange(choices=["sgd", "adam"]).type == "choice"
    for bad, why in (({"low": 0, "high": 1, "log": True}, "log range needs low > 0"),
                     ({"low": 2, "high": 1}, "low <= high"),
                     ({"low": 1}, "needs both low and high"),
                     ({"low": 1, "high": 2, "choices": [1]}, "not both")):
        with pytest.raises(ValidationError, match=why):
            ParamRange(**bad)


def test_every_shipped_preset_ships_a_valid_space():
    """A preset's default space names keys its own config has, with accepted values (the
    space is checked against the config alone; no data is read)."""
    import registry
    reg = registry.get_registry()
    names = [p.name for p in reg.presets()]
    assert {"daer", "daer-pretrained", "daer-features", "dscmr", "acmr", "mcsm"} <= set(names)
    for name in names:
        cfg = load_run_config(None, preset=name, dataset="shapes", registry=reg)
        assert check_space(cfg, reg), name
    # the ablation without signed power does not search its k
    cfg = load_run_config(None, preset="daer-c", dataset="shapes")
    assert "pipeline.enhancement.params.k" not in check_space(cfg)


def test_a_misspelt_key_path_is_named_with_a_suggestion():
    data = tiny_tune_config()
    data["tune"]["space"]["train.stages.relation.optimizer.lrr"] = {"low": 0.1, "high": 1.0}
    with pytest.raises(ConfigError) as err:
        check_space(load_run_config(data))
    msg = str(err.value)
    assert "tune.space.train.stages.relation.optimizer.lrr: no such key" in msg
    assert "did you mean train.stages.relation.optimizer.lr" in msg


def test_a_range_the_run_config_rejects_is_named_with_the_reason():
    data = tiny_tune_config()
    data["tune"]["space"]["train.stages.relation.optimizer.lr"] = {"low": 0, "high": 0.1}
    data["tune"]["space"]["pipeline.relation.params.dropout_typo"] = {"low": 0.0, "high": 0.5}
    with pytest.raises(ConfigError) as err:
        check_space(load_run_config(data))
    msg = str(err.value)
    assert "tune.space.train.stages.relation.optimizer.lr: value 0.0 is rejected" in msg
    assert "greater than 0" in msg
    assert "tune.space.pipeline.relation.params.dropout_typo: value 0.0 is rejected" in msg


def test_the_dataset_and_the_study_itself_cannot_be_searched():
    data = tiny_tune_config()
    data["tune"]["space"] = {"dataset.params.seed": {"low": 0, "high": 3},
                             "tune.seed": {"low": 0, "high": 3}}
    with pytest.raises(ConfigError) as err:
        check_space(load_run_config(data))
    assert "tune.space.dataset.params.seed: the dataset is fixed" in str(err.value)
    assert "tune.space.tune.seed: not a setting of the run" in str(err.value)


def test_an_empty_space_says_how_to_write_one():
    data = tiny_tune_config()
    data["tune"]["space"] = {key: None for key in load_run_config(
        tiny_tune_config()).tune.space}  # null drops an entry, the preset's ones included
    with pytest.raises(ConfigError, match="tune.space: empty"):
        check_space(load_run_config(data))


def test_settings_are_applied_at_their_key_paths():
    base = load_run_config(tiny_tune_config()).model_dump(mode="json")
    out = apply_params(base, {"train.stages.relation.optimizer.lr": 0.02,
                              "pipeline.enhancement.params.k": 0.5})
    cfg = load_run_config(out)
    assert cfg.train.stages.relation.optimizer.lr == 0.02
    assert cfg.pipeline.enhancement.params["k"] == 0.5
    assert base["train"]["stages"]["relation"]["optimizer"]["lr"] == 0.01  # a copy
