"""Everything the repository ships validates against the real default plugins: the configs
under configs/ and the listing of `daer plugins list/show` (issue 14: untested paths)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from daer_core.cli.main import main
from daer_core.config import load_run_config, read_config_file

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = sorted(p for p in (ROOT / "configs").rglob("*")
                 if p.suffix in (".yaml", ".yml", ".toml", ".json"))


def test_the_repository_ships_configs():
    assert CONFIGS and {p.parent.name for p in CONFIGS} >= {"benchmarks"}


@pytest.mark.parametrize("path", CONFIGS, ids=[str(p.relative_to(ROOT)) for p in CONFIGS])
def test_every_shipped_config_loads_and_validates(path):
    data = read_config_file(path)
    if "methods" in data:  # a `daer benchmark` config
        from daer_core.benchmark.config import load_benchmark_config
        bench, _root = load_benchmark_config(path)
        for name, method in bench.methods.items():
            if method.kind != "daer":
                continue
            for ds in bench.datasets.values():  # each DAER method's run config, per dataset
                if ds.dataset is not None:
                    load_run_config({**method.daer, "dataset": ds.dataset.model_dump()})
    else:
        cfg = load_run_config(path)
        assert cfg.dataset is not None, f"{path}: a run config names its dataset"


def test_plugins_list_shows_the_default_plugins_components_and_presets(capsys):
    assert main(["plugins", "list", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    components = {(c["kind"], c["name"]) for c in doc["components"]}
    for entry in [("text_encoder", "word2vec-lstm"), ("text_attention", "dual-region"),
                  ("image_encoder", "mobilenetv3-large"), ("image_attention", "dual-spatial"),
                  ("fusion", "concat"), ("enhancement", "signed-power"), ("relation", "mlp"),
                  ("loss", "frobenius"), ("dataset", "shapes"), ("method", "cca")]:
        assert entry in components, entry
    shipped = {p.stem for p in (ROOT / "plugins" / "presets").glob("*.yaml")}
    assert shipped <= {p["name"] for p in doc["presets"]}
    assert all(p["status"] == "loaded" for p in doc["plugins"] if p["distribution"] == "daer")


def test_plugins_show_describes_a_default_component_and_a_preset(capsys):
    assert main(["plugins", "show", "signed-power", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["kind"] == "enhancement" and doc["config_paths"] == ["pipeline.enhancement"]
    k = {p["name"]: p for p in doc["params"]}["k"]
    assert k["default"] == 0.6 and not k["required"]
    assert main(["plugins", "show", "daer"]) == 0
    out = capsys.readouterr().out
    assert "dual-region" in out and "signed-power" in out
