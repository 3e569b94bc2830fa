"""``daer config validate|show``: exit codes, key paths, overrides, resolved output."""
from __future__ import annotations

import json
import textwrap

import pytest
import yaml

import registry


def write(tmp_path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return str(path)


MISMATCH = """
    preset: fake-base
    pipeline:
      fusion: {name: fake-fixed, params: {out_dim: 600}}
      relation: {name: fake-mlp, params: {in_dim: 512}}
"""


def test_validate_ok(cli, tmp_path):
    path = write(tmp_path, "run.yaml", "preset: fake-base\n")
    res = cli("config", "validate", path)
    assert res.code == 0, res.err
    assert res.out.startswith(f"OK: {path} (keys, names, params and widths checked)")
    assert "fake-words -> fake-text (8)" in res.out
    assert "fusion fake-concat (16) -> enhancement fake-identity -> fake-mlp" in res.out
    assert "dataset:  fake-pairs" in res.out and "parameters:" in res.out


def test_validate_misspelt_name_exit_2_with_key_path(cli, tmp_path):
    path = write(tmp_path, "run.yaml", """
        preset: fake-base
        pipeline:
          text:
            encoder: {name: fake-txet}
    """)
    res = cli("config", "validate", path)
    assert res.code == 2 and res.out == ""
    assert f"{path}: pipeline.text.encoder.name: unknown text_encoder 'fake-txet'" in res.err
    assert "did you mean 'fake-text'" in res.err


def test_validate_unknown_key_exit_2(cli, tmp_path):
    path = write(tmp_path, "run.toml", """
        preset = "fake-base"
        [pipeline.relation.params]
        hiddden = 3
    """)
    res = cli("config", "validate", path)
    assert res.code == 2
    assert f"{path}: pipeline.relation.params.hiddden: Extra inputs are not permitted" in res.err


def test_validate_reports_dimension_mismatch_before_training(cli, tmp_path):
    path = write(tmp_path, "mismatch.yaml", MISMATCH)
    res = cli("config", "validate", path)
    assert res.code == 2
    assert res.err.startswith(f"daer: config error: {path}: fusion 'fake-fixed' outputs 600")
    assert "relation 'fake-mlp' expects in_dim=512" in res.err

    # --no-build checks names and params only; an override fixes the width
    assert cli("config", "validate", path, "--no-build").code == 0
    res = cli("config", "validate", path, "--set", "pipeline.relation.params.in_dim=600")
    assert res.code == 0 and "fusion fake-fixed (600)" in res.out


def test_validate_with_preset_only_and_without_anything(cli):
    res = cli("config", "validate", "--preset", "fake-base")
    assert res.code == 0 and res.out.startswith("OK: preset fake-base")
    res = cli("config", "validate")
    assert res.code == 2 and "give a config FILE, a --preset NAME, or both" in res.err


def test_validate_missing_file_and_bad_override(cli, tmp_path):
    missing = str(tmp_path / "absent.yaml")
    res = cli("config", "validate", missing)
    assert res.code == 2 and f"{missing}: config file not found" in res.err
    res = cli("config", "validate", "--preset", "fake-base", "--set", "seed")
    assert res.code == 2 and "key.path=value" in res.err


def test_a_crashing_component_is_a_runtime_failure(cli, plugin_site, tmp_path):
    plugin_site.module("broken_fusion", """
        from registry import hookimpl

        def make(params, text_dim, image_dim):
            raise RuntimeError("cannot allocate the fusion")

        @hookimpl
        def daer_register_components(registry):
            registry.add("fusion", "broken", factory=make)
    """)
    path = write(tmp_path, "run.yaml", "preset: fake-base\npipeline: {fusion: {name: broken}}\n")
    res = cli("config", "validate", path, plugins=["daer_fake_pipeline", "broken_fusion"])
    assert res.code == 1
    assert "assembling the pipeline failed: RuntimeError: cannot allocate the fusion" in res.err
    assert "Traceback" not in res.err


def test_show_prints_the_resolved_config(cli, tmp_path):
    path = write(tmp_path, "run.yaml", "preset: fake-base\n")
    res = cli("config", "show", path, "--set", "pipeline.image.encoder.params.size=96")
    assert res.code == 0, res.err
    data = yaml.safe_load(res.out)
    assert data["pipeline"]["image"]["encoder"] == {"name": "fake-image",
                                                    "params": {"out_dim": 8, "size": 96}}
    assert data["pipeline"]["relation"]["params"] == {"in_dim": None, "hidden": 16}
    assert data["train"]["stages"]["relation"]["batch_size"] == 32

    res_json = cli("config", "show", path, "--json", "--set",
                   "pipeline.image.encoder.params.size=96")
    assert json.loads(res_json.out) == data

    # what show prints is itself a valid config that resolves to the same thing
    again = write(tmp_path, "resolved.yaml", res.out)
    assert cli("config", "validate", again).code == 0
    assert yaml.safe_load(cli("config", "show", again).out) == data


def test_show_with_config_error_exits_2(cli, tmp_path):
    path = write(tmp_path, "run.yaml", "preset: fake-base\nsede: 1\n")
    res = cli("config", "show", path)
    assert res.code == 2 and f"{path}: sede: unknown key" in res.err


@pytest.mark.parametrize("argv", [["config"], ["config", "check", "x.yaml"]])
def test_config_usage_errors(cli, argv):
    assert cli(*argv).code == 2


def test_dash_p_block_makes_components_unknown(cli, tmp_path, monkeypatch):
    monkeypatch.setenv(registry.ENV_DISABLE_AUTOLOAD, "1")
    path = write(tmp_path, "run.yaml", "preset: fake-base\n")
    res = cli("-p", "daer_fake_pipeline", "-p", "no:daer_fake_pipeline", "config", "validate",
              path, plugins=None)
    assert res.code == 2 and "unknown preset 'fake-base'" in res.err
