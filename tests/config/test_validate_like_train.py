"""``daer config validate`` rejects what ``daer train`` would reject, before anything runs."""
from __future__ import annotations

import pytest
import yaml

from daer_core.cli.main import main


@pytest.mark.parametrize("override, key", [
    ("train.stages.bogus.epochs=1", "train.stages.bogus"),
    ("seed=123456789012345678901234567890", "seed"),
    ("seed=-1", "seed"),
    ("train.num_workers=-2", "train.num_workers"),
])
def test_validate_and_train_reject_the_same_config_naming_the_key(tmp_path, capsys, override,
                                                                  key):
    cfg = tmp_path / "run.yaml"
    cfg.write_text(yaml.safe_dump({"preset": "daer", "dataset": {"name": "shapes"}}))
    assert main(["config", "validate", str(cfg), "--set", override]) == 2
    assert key in capsys.readouterr().err
    out = tmp_path / "run"
    assert main(["train", str(cfg), "--set", override, "--out", str(out)]) == 2
    assert key in capsys.readouterr().err
    assert not out.exists()                      # nothing written


def test_a_recipes_own_stage_is_accepted_and_lazy_widths_are_said(capsys):
    assert main(["config", "validate", "--preset", "dscmr", "--dataset", "features",
                 "--set", "dataset.params.root=/nowhere",
                 "--set", "train.stages.joint.epochs=3"]) == 0
    out = capsys.readouterr().out
    # vector-mlp learns its input width from the data: counted at run time, not a crash
    assert "OK: preset dscmr" in out and "sized by the data's widths at run time" in out
