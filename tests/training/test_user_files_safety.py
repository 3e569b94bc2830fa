"""A user's files in and around a run are never deleted, moved or overwritten, and damaged
checkpoint data is named instead of loaded (issue 27)."""
from __future__ import annotations

import json

import pytest

from daer_core.cli.main import main
from daer_core.config import load_run_config
from daer_core.errors import CheckpointError
from daer_core.training import checkpoint as ck
from daer_core.training.api import resume_run, train_and_evaluate
from run_faults import kill_at_epoch_call


def _user_files(run):
    """Folders and files of a user's own inside a run: a git repository, notebook
    checkpoints, backups hidden and not hidden in checkpoints/."""
    made = {}
    for rel in (".git/HEAD", ".ipynb_checkpoints/notes-checkpoint.ipynb",
                "checkpoints/.mybackup/model.safetensors", "checkpoints/mybackup/weights.bin",
                ".notes.tmp"):
        path = run / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"mine: {rel}")
        made[rel] = path.read_text()
    return made


def test_resume_and_pruning_leave_a_users_folders_alone(tmp_path, tiny_config, monkeypatch):
    run = tmp_path / "run"
    cfg = load_run_config(tiny_config(train__stages__relation__epochs=1))
    restore = kill_at_epoch_call(monkeypatch, 3)
    with pytest.raises(KeyboardInterrupt):
        train_and_evaluate(cfg, run)
    restore()
    mine = _user_files(run)
    # what a kill during daer's own writes leaves: these two are daer's and go
    (run / ".config.yaml.ab12cd34.tmp").write_text("half")
    partial = run / "checkpoints" / ".text-0002.zz9_x1y2"
    partial.mkdir()
    (partial / "model.safetensors").write_bytes(b"half")
    resume_run(run)   # prunes old epoch checkpoints and cleans partial writes on the way
    for rel, text in mine.items():
        assert (run / rel).read_text() == text, rel
    assert not (run / ".config.yaml.ab12cd34.tmp").exists() and not partial.exists()
    assert {d.name for d in ck.checkpoint_dirs(run)} >= {"final"}
    assert "mybackup" not in {d.name for d in ck.checkpoint_dirs(run)}


def test_resume_of_a_users_folder_with_a_config_changes_nothing(tmp_path, tiny_config):
    folder = tmp_path / "mine"
    folder.mkdir()
    import yaml
    (folder / "config.yaml").write_text(yaml.safe_dump(tiny_config()))
    (folder / "split.json").write_text('{"mine": true}')
    (folder / "checkpoints").mkdir()          # even with a folder of that name
    before = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    with pytest.raises(CheckpointError, match="is not a daer run directory"):
        resume_run(folder)
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == before
    assert (folder / "split.json").read_text() == '{"mine": true}'


def test_flipped_bytes_in_tensor_data_are_named_not_loaded(tmp_path, tiny_config, capsys):
    run = tmp_path / "run"
    train_and_evaluate(load_run_config(tiny_config(train__stages__relation__epochs=1)), run)
    metrics_before = (run / "metrics.json").read_bytes()
    weights = run / "checkpoints" / "final" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-100] ^= 0xFF                      # inside the last tensor, not the header
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"final: model.safetensors is damaged"):
        ck.read_checkpoint(run, "final")
    assert main(["evaluate", str(run)]) == 1
    assert "model.safetensors is damaged" in capsys.readouterr().err
    assert (run / "metrics.json").read_bytes() == metrics_before


def test_evaluate_writes_beside_training_and_needs_no_write_access(tmp_path, tiny_config,
                                                                   capsys, monkeypatch):
    run = tmp_path / "run"
    train_and_evaluate(load_run_config(tiny_config(train__stages__relation__epochs=1)), run)
    saved = (run / "metrics.json").read_bytes()
    assert main(["evaluate", str(run), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (run / "metrics.json").read_bytes() == saved          # training's figures kept
    [written] = (run / "evaluations").iterdir()
    assert json.loads((written / "metrics.json").read_text())["avg"] == out["avg"]
    # a run one may only read (simulated: these tests may run as root, which writes anyway)
    from pathlib import Path
    real_mkdir = Path.mkdir

    def read_only(self, *a, **k):
        if run in self.parents or self == run:
            raise PermissionError(13, "Permission denied")
        return real_mkdir(self, *a, **k)

    monkeypatch.setattr(Path, "mkdir", read_only)
    assert main(["evaluate", str(run), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["avg"] == pytest.approx(out["avg"])
    assert len(list((run / "evaluations").iterdir())) == 1       # nothing new written


def test_checkpoint_files_are_readable_like_the_rest_of_the_run(tmp_path, tiny_config):
    run = tmp_path / "run"
    train_and_evaluate(load_run_config(tiny_config(train__stages__relation__epochs=1)), run)
    state_mode = (run / "checkpoints" / "final" / "state.json").stat().st_mode & 0o777
    for name in ("model.safetensors", "extra.safetensors"):
        assert (run / "checkpoints" / "final" / name).stat().st_mode & 0o777 == state_mode


def test_a_half_cut_config_on_resume_is_a_checkpoint_error_with_its_hint(tmp_path, tiny_config,
                                                                          monkeypatch):
    run = tmp_path / "run"
    cfg = load_run_config(tiny_config(train__stages__relation__epochs=1))
    kill_at_epoch_call(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        train_and_evaluate(cfg, run)
    text = (run / "config.yaml").read_text()
    (run / "config.yaml").write_text(text[: len(text) // 2])
    with pytest.raises(CheckpointError, match=r"damaged or edited.*config_yaml.*state.json"):
        resume_run(run)


def test_a_corrupt_state_json_is_named_and_healthy_weights_are_not_called_damaged(
        tmp_path, tiny_config, monkeypatch):
    run = tmp_path / "run"
    cfg = load_run_config(tiny_config(train__stages__relation__epochs=1))
    restore = kill_at_epoch_call(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        train_and_evaluate(cfg, run)
    restore()
    resumable = [d for d in ck.checkpoint_dirs(run) if not d.name.startswith("best-")]
    for d in resumable:
        (d / "state.json").write_text('{"trainer": ')          # cut short
    with pytest.raises(CheckpointError) as err:
        resume_run(run)
    msg = str(err.value)
    for d in resumable:
        assert f"{d.name} (state.json cannot be read)" in msg
    assert "weights only, which cannot continue a run: best-text" in msg
    assert "damaged: best-text" not in msg
