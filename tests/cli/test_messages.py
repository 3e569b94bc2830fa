"""Issue 14, case 8: inputs that gave exit 1 "unexpected error", or were accepted by
`config validate` and then rejected by `train`, are exit-2 errors naming the file, key or
option — and a `--set` mistake is blamed on the `--set`, not on the config file."""
from __future__ import annotations

import pytest

from daer_core.cli.main import main

NO_BUILD = ["--no-build"]


def _run(capsys, *argv: str) -> tuple[int, str]:
    capsys.readouterr()
    code = main(list(argv))
    return code, capsys.readouterr().err


def test_a_utf16_config_names_the_file(tmp_path, capsys):
    cfg = tmp_path / "run.yaml"
    cfg.write_text("preset: daer\ndataset: {name: shapes}\n", encoding="utf-16")
    code, err = _run(capsys, "config", "validate", str(cfg), *NO_BUILD)
    assert code == 2
    assert f"{cfg}: not UTF-8 text" in err and "UTF-16" in err
    assert "unexpected" not in err


def test_duplicate_yaml_keys_are_an_error_with_their_lines(tmp_path, capsys):
    cfg = tmp_path / "run.yaml"
    cfg.write_text("preset: daer\ndataset: {name: shapes}\ntrain:\n  stages:\n    relation:\n"
                   "      epochs: 3\n      epochs: 30\n")
    code, err = _run(capsys, "config", "validate", str(cfg), *NO_BUILD)
    assert code == 2
    assert str(cfg) in err and "duplicate key 'epochs' (first given on line 6)" in err
    assert "line 7" in err


def test_set_errors_blame_the_set_not_the_config_file(tmp_path, capsys):
    cfg = tmp_path / "run.yaml"
    cfg.write_text("preset: daer\ndataset: {name: shapes}\n")
    code, err = _run(capsys, "config", "validate", str(cfg), *NO_BUILD,
                     "--set", "train.stages.relation.epochs=-1")
    assert code == 2 and f"{cfg}:" not in err
    assert err.startswith("daer: config error: --set train.stages.relation.epochs=-1:"
                          " train.stages.relation.epochs:"), err
    # component params are checked after the structure: the same rule applies there
    code, err = _run(capsys, "config", "validate", str(cfg), *NO_BUILD,
                     "--set", "pipeline.relation.params.hidden=oops")
    assert code == 2 and f"{cfg}:" not in err
    assert err.startswith("daer: config error: --set pipeline.relation.params.hidden=oops:"
                          " pipeline.relation.params.hidden:"), err
    # a mistake in the file itself is still the file's
    cfg.write_text("preset: daer\ndataset: {name: shapes}\ntrain: {threads: 0}\n")
    code, err = _run(capsys, "config", "validate", str(cfg), *NO_BUILD,
                     "--set", "train.stages.relation.epochs=2")
    assert code == 2 and f"{cfg}: train.threads:" in err


@pytest.mark.parametrize("override, key", [
    ("train.stages.relation.batch_size=1", "train.stages.relation"),
    ("train.stages.image.batch_size=1", "train.stages.image"),
    ("train.stages.text.optimizer.lr=.inf", "train.stages.text.optimizer.lr"),
    ("dataset.params.num_pairs=1000000000000", "dataset.params.num_pairs"),
])
def test_config_validate_rejects_what_train_would_reject(capsys, override, key):
    code, err = _run(capsys, "config", "validate", "--preset", "daer", "--dataset", "shapes",
                     *NO_BUILD, "--set", override)
    assert code == 2, err
    assert f"--set {override}: {key}" in err


def test_split_fractions_are_checked_by_config_validate(capsys, tmp_path):
    code, err = _run(capsys, "config", "validate", "--preset", "daer", "--dataset", "manifest",
                     *NO_BUILD, "--set", f"dataset.params.root={tmp_path}",
                     "--set", "dataset.params.split_fractions=[-0.5, 1, 0.5]")
    assert code == 2 and "dataset.params.split_fractions" in err and "non-negative" in err


@pytest.mark.parametrize("command", ["evaluate", "search"])
def test_a_bad_device_option_is_a_usage_error_naming_the_option(tmp_path, capsys, command):
    extra = ["--text", "a red circle"] if command == "search" else []
    code, err = _run(capsys, command, str(tmp_path), "--device", "gpu", *extra)
    assert code == 2
    assert "--device: 'gpu' is not a device" in err and "unexpected" not in err
