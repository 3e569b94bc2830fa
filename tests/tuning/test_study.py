"""``daer tune``: a study of training runs — budget, pruning, best.yaml, the test split."""
from __future__ import annotations

import json

import optuna
import pytest
import yaml
from optuna.trial import TrialState
from tune_configs import tiny_tune_config

from daer_core.config import load_run_config
from daer_core.training.api import train_and_evaluate
from daer_core.training.trainer import Trainer
from daer_core.tuning import open_study, tune
from daer_core.tuning.trial import STEPS_PER_STAGE, logged_epochs

LR = "train.stages.relation.optimizer.lr"
K = "pipeline.enhancement.params.k"


def _events(run_dir, kind):
    return [e for e in (json.loads(line) for line in
                        (run_dir / "log.jsonl").read_text().splitlines())
            if e["event"] == kind]


def test_a_study_never_reads_the_test_split(tmp_path, monkeypatch):
    from plugins.datasets.shapes import ShapesDataset
    real_split = ShapesDataset.split
    asked: list[str] = []

    def guarded(self, name):
        asked.append(name)
        if name == "test":
            raise AssertionError("the test split was read during tuning")
        return real_split(self, name)

    monkeypatch.setattr(ShapesDataset, "split", guarded)
    result = tune(load_run_config(tiny_tune_config()), tmp_path / "study", trials=2)
    assert result.trials == {"complete": 2}
    assert set(asked) == {"train", "val"}
    for row in (tmp_path / "study" / "trials").iterdir():
        split = json.loads((row / "split.json").read_text())
        assert "test" not in split and split["val"]
    # the guard is real: an ordinary run reads the test split and trips it
    with pytest.raises(AssertionError, match="test split was read"):
        train_and_evaluate(load_run_config(tiny_tune_config()), tmp_path / "ordinary")


def test_the_value_is_the_final_models_validation_map(tmp_path):
    result = tune(load_run_config(tiny_tune_config()), tmp_path / "study", trials=1)
    run = tmp_path / "study" / "trials" / "trial-0000"
    saved = json.loads((run / "tune_result.json").read_text())
    assert saved["state"] == "complete"
    assert saved["val_avg"] == pytest.approx((saved["val_i2t"] + saved["val_t2i"]) / 2)
    assert result.best_value == pytest.approx(saved["val_avg"])
    # the relation stage keeps its best epoch, so the final score is that epoch's
    relation = [e["val_avg"] for e in _events(run, "epoch") if e["stage"] == "relation"]
    assert saved["val_avg"] == pytest.approx(max(relation), abs=1e-6)
    # finished trials drop their checkpoints (tune.keep_checkpoints: false)
    assert not (run / "checkpoints").exists()


def test_the_pruner_stops_a_scripted_bad_trial_at_its_first_retrieval_epoch(tmp_path, monkeypatch):
    """Two good trials, then one whose validation scores are far below theirs."""
    def scripted(self, stage):
        good = self.config.train.stages.relation.optimizer.lr > 5e-3
        return {"score": 0.9 if good else 0.1}

    monkeypatch.setattr(Trainer, "_validate", scripted)
    out = tmp_path / "study"
    study, _ = open_study(out, "tiny-study")
    for lr in (0.05, 0.08, 0.001):
        study.enqueue_trial({LR: lr, K: 0.6})
    tune(load_run_config(tiny_tune_config()), out, trials=3)  # the study is not new: no start
    trials = {t.number: t for t in open_study(out, "tiny-study")[0].get_trials()}
    assert [trials[n].state for n in range(3)] == [
        TrialState.COMPLETE, TrialState.COMPLETE, TrialState.PRUNED]
    pruned_run = out / "trials" / "trial-0002"
    # the encoder stages' accuracy does not prune (tune.prune_on: retrieval); the relation
    # stage's first epoch does
    assert [(e["stage"], e["epoch"]) for e in _events(pruned_run, "epoch")] == [
        ("text", 1), ("image", 1), ("relation", 1)]
    assert json.loads((pruned_run / "tune_result.json").read_text())["state"] == "pruned"
    assert "pruned" in (out / "trials.md").read_text()


def test_best_yaml_validates_and_trains_with_the_best_settings(tmp_path):
    out = tmp_path / "study"
    result = tune(load_run_config(tiny_tune_config()), out, trials=3)
    best = load_run_config(out / "best.yaml")
    assert best.train.stages.relation.optimizer.lr == pytest.approx(result.best_params[LR])
    assert best.pipeline.enhancement.params["k"] == pytest.approx(result.best_params[K])
    complete = [t for t in open_study(out, "tiny-study")[0].get_trials()
                if t.state == TrialState.COMPLETE]
    assert result.best_value == max(t.value for t in complete)
    header = (out / "best.yaml").read_text().splitlines()[0]
    assert header.startswith(f"# best trial {result.best_number} of study 'tiny-study'")
    metrics = train_and_evaluate(best, tmp_path / "best-run")
    assert 0.0 <= metrics["avg"] <= 1.0
    for name in ("trials.csv", "trials.md", "history.png", "importance.png", "study.json"):
        assert (out / name).is_file(), name
    rows = (out / "trials.csv").read_text().splitlines()
    assert len(rows) == 1 + 3 and f"param:{LR}" in rows[0]


def test_the_sampler_is_seeded(tmp_path):
    """One worker, one seed: the same settings on every machine."""
    drawn = []
    for i in range(2):
        tune(load_run_config(tiny_tune_config()), tmp_path / f"s{i}", trials=2)
        drawn.append([t.params for t in open_study(tmp_path / f"s{i}", "tiny-study")[0]
                      .get_trials()])
    assert drawn[0] == drawn[1]
    other = tiny_tune_config()
    other["tune"]["seed"] = 1
    tune(load_run_config(other), tmp_path / "s-other", trials=2)
    assert open_study(tmp_path / "s-other", "tiny-study")[0].get_trials()[1].params != \
        drawn[0][1]


def test_the_first_trial_runs_the_configs_own_values(tmp_path):
    """So the best of a study is never worse on validation than where it started."""
    tune(load_run_config(tiny_tune_config()), tmp_path / "s", trials=2)
    first = open_study(tmp_path / "s", "tiny-study")[0].get_trials()[0]
    assert first.params == {K: 0.6, LR: 0.01} and first.user_attrs["start"]
    outside = tiny_tune_config()
    outside["train"]["stages"]["relation"]["optimizer"]["lr"] = 0.5   # above the range
    tune(load_run_config(outside), tmp_path / "o", trials=1)
    assert not open_study(tmp_path / "o", "tiny-study")[0].get_trials()[0].user_attrs.get("start")


def test_a_resumed_trial_reports_its_logged_epochs_again(tmp_path):
    log = tmp_path / "log.jsonl"
    log.write_text("\n".join(json.dumps(e) for e in [
        {"event": "start"},
        {"event": "epoch", "stage": "text", "epoch": 1, "val_accuracy": 0.5},
        {"event": "epoch", "stage": "image", "epoch": 1, "val_accuracy": 0.25},
        {"event": "epoch", "stage": "image", "epoch": 2, "val_accuracy": 0.5},
        {"event": "resumed"},
        {"event": "epoch", "stage": "relation", "epoch": 1, "val_avg": 0.7},
    ]) + "\n")
    assert logged_epochs(tmp_path) == [(1, 0.5), (STEPS_PER_STAGE + 1, 0.25),
                                       (STEPS_PER_STAGE + 2, 0.5),
                                       (2 * STEPS_PER_STAGE + 1, 0.7)]


def test_a_folder_of_the_users_is_refused(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    from daer_core.errors import ConfigError
    with pytest.raises(ConfigError, match="not a daer study"):
        tune(load_run_config(tiny_tune_config()), folder, trials=1)
    assert [p.name for p in folder.iterdir()] == ["notes.txt"]


def test_the_cli_tunes_and_prints_the_best(tmp_path, capsys):
    from daer_core.cli.main import main
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(yaml.safe_dump(tiny_tune_config()))
    assert main(["tune", str(cfg), "--trials", "2", "--study", str(tmp_path / "study")]) == 0
    out = capsys.readouterr().out
    assert "study 'tiny-study': 2 complete" in out and "best: trial" in out
    assert str(tmp_path / "study" / "best.yaml") in out
    assert main(["tune", str(cfg), "--study", str(tmp_path / "study"),
                 "--set", "tune.seed=-1"]) == 2
    assert "tune.seed" in capsys.readouterr().err


def test_prune_on_all_lets_an_encoder_stage_prune(tmp_path, monkeypatch):
    def scripted(self, stage):
        return {"score": 0.9 if self.config.train.stages.relation.optimizer.lr > 5e-3 else 0.1}

    monkeypatch.setattr(Trainer, "_validate", scripted)
    out = tmp_path / "study"
    study, _ = open_study(out, "tiny-study")
    for lr in (0.05, 0.08, 0.001):
        study.enqueue_trial({LR: lr, K: 0.6})
    data = tiny_tune_config()
    data["tune"]["prune_on"] = "all"
    tune(load_run_config(data), out, trials=3)
    assert [(e["stage"], e["epoch"]) for e in _events(out / "trials" / "trial-0002", "epoch")] \
        == [("text", 1)]


def test_a_database_storage_beats_and_fails_a_silent_trial(tmp_path):
    """With a storage URL (several machines), a trial whose worker stopped beating is failed
    and its settings queued again; the study then finishes its budget."""
    import datetime

    from optuna.storages._heartbeat import is_heartbeat_enabled
    url = f"sqlite:///{tmp_path / 'study.db'}"
    study, storage = open_study(tmp_path / "study", "tiny-study", url)
    assert is_heartbeat_enabled(study._storage)
    backend = getattr(study._storage, "_backend", study._storage)
    # a trial that started on another machine, which then died (no heartbeat for long)
    with pytest.warns(UserWarning, match="Heartbeat"):   # ask outside optimize, as daer does
        dead = study.ask({LR: optuna.distributions.FloatDistribution(1e-3, 0.1, log=True),
                          K: optuna.distributions.FloatDistribution(0.4, 1.0)})
    dead.set_user_attr("worker", {"host": "elsewhere", "pid": 1})
    backend.record_heartbeat(dead._trial_id)
    old = datetime.datetime.now() - datetime.timedelta(hours=1)
    from optuna.storages._rdb import models
    with backend.scoped_session() as session:
        session.query(models.TrialHeartbeatModel).update({"heartbeat": old})
        session.commit()
    tune(load_run_config(tiny_tune_config()), tmp_path / "study", trials=2, storage=url)
    trials = study._storage.get_all_trials(study._study_id)
    assert trials[0].state == TrialState.FAIL
    assert any(t.user_attrs.get("resumes") == 0 for t in trials)
    assert sum(t.state == TrialState.COMPLETE for t in trials) == 2


def test_train_best_reads_the_test_split_only_after_the_study(tmp_path, capsys, monkeypatch):
    from daer_core.cli.main import main
    from plugins.datasets.shapes import ShapesDataset
    real_split = ShapesDataset.split
    asked: list[str] = []

    def recording(self, name):
        asked.append(name)
        return real_split(self, name)

    monkeypatch.setattr(ShapesDataset, "split", recording)
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(yaml.safe_dump(tiny_tune_config()))
    assert main(["tune", str(cfg), "--trials", "2", "--study", str(tmp_path / "study"),
                 "--train-best"]) == 0
    out = capsys.readouterr().out
    assert "Test mAP@all of best.yaml" in out
    # two trials read train and val only; the test split is first asked for by the final run
    first_test = asked.index("test")
    assert asked[:first_test] == ["train", "val"] * 3
    assert (tmp_path / "study" / "best-run" / "metrics.json").is_file()


def test_three_failing_trials_in_a_row_stop_the_study_with_the_last_error(tmp_path,
                                                                          monkeypatch):
    from daer_core.errors import DataError, TrainingError
    from daer_core.tuning import study as study_mod

    def failing(trial, *a, **k):
        raise DataError(f"no good (trial {trial.number})")

    monkeypatch.setattr(study_mod, "run_trial", failing)
    with pytest.raises(TrainingError, match=r"3 trials in a row failed.*no good \(trial 2\)"):
        tune(load_run_config(tiny_tune_config()), tmp_path / "study", trials=10)
    trials = open_study(tmp_path / "study", "tiny-study")[0].get_trials()
    assert [t.state for t in trials] == [TrialState.FAIL] * 3
    assert trials[0].user_attrs["error"] == "DataError: no good (trial 0)"
