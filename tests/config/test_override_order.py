"""Regressions: --dataset keeps --set dataset.params, and --set order does not drop params."""
from __future__ import annotations

from daer_core.config import load_run_config, load_saved_config, dump_config


def test_dataset_shortcut_keeps_params_set_for_it():
    cfg = load_run_config(None, preset="daer", dataset="shapes",
                          overrides=["dataset.params.num_pairs=30"])
    assert cfg.dataset.name == "shapes" and cfg.dataset.params["num_pairs"] == 30
    other = load_run_config({"dataset": {"name": "manifest", "params": {"root": "x"}}},
                            preset="daer", dataset="shapes")
    assert "root" not in other.dataset.params  # another dataset's params are dropped


def test_setting_params_before_the_name_keeps_them():
    for order in (["pipeline.enhancement.params.k=0.5", "pipeline.enhancement.name=signed-power"],
                  ["pipeline.enhancement.name=signed-power", "pipeline.enhancement.params.k=0.5"]):
        cfg = load_run_config(None, preset="daer-c", overrides=order)
        assert cfg.pipeline.enhancement.name == "signed-power"
        assert cfg.pipeline.enhancement.params["k"] == 0.5, order


def test_a_saved_config_reloads_without_merging_its_preset_again(tmp_path):
    cfg = load_run_config(None, preset="daer", dataset="shapes",
                          overrides=["pipeline.text.attention=null"])
    (tmp_path / "config.yaml").write_text(dump_config(cfg))
    import registry
    without_presets = registry.load_plugins(block=["daer-presets"]).registry
    again = load_saved_config(tmp_path / "config.yaml", registry=without_presets)
    assert again.preset == "daer" and again.pipeline.text.attention is None
    assert again.model_dump() == cfg.model_dump()
