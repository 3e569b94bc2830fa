"""Algorithm 1 end to end on toy sizes: run directory, stages, early stopping, resume."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from daer_core.config import load_run_config
from daer_core.errors import CheckpointError, ConfigError
from daer_core.training import checkpoint as ck
from daer_core.training import trainer as trainer_mod
from daer_core.training.api import resume_run, train_and_evaluate
from daer_core.training.trainer import Trainer


def _events(run_dir):
    return [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]


def test_run_writes_everything_a_user_reads(tmp_path, tiny_config):
    run = tmp_path / "run"
    metrics = train_and_evaluate(load_run_config(tiny_config()), run)
    saved = json.loads((run / "metrics.json").read_text())
    for key in ("i2t", "t2i", "avg", "chance"):
        assert isinstance(saved[key], float) and 0.0 <= saved[key] <= 1.0
    assert saved["avg"] == pytest.approx((saved["i2t"] + saved["t2i"]) / 2)
    assert metrics["i2t"] == saved["i2t"]
    assert "map_at" in saved["i2t_detail"] and "precision_at" in saved["t2i_detail"]
    for name in ("config.yaml", "split.json", "pr_curve.png", "examples.png", "data_report.json"):
        assert (run / name).is_file(), name
    split = json.loads((run / "split.json").read_text())
    assert len(split["train"]) + len(split["val"]) + len(split["test"]) == 40
    assert not set(split["test"]) & set(split["train"])
    events = _events(run)
    epochs = [e for e in events if e["event"] == "epoch"]
    assert [(e["stage"], e["epoch"]) for e in epochs] == [
        ("text", 1), ("text", 2), ("image", 1), ("image", 2), ("relation", 1), ("relation", 2)]
    assert all("val_avg" in e for e in epochs if e["stage"] == "relation")
    assert all("val_accuracy" in e for e in epochs if e["stage"] != "relation")
    # checkpoints hold only safetensors and JSON: nothing is ever unpickled
    files = [p for p in (run / "checkpoints").rglob("*") if p.is_file()]
    assert files and all(p.suffix in (".safetensors", ".json") or p.name == "LATEST" for p in files)
    final = load_file(str(run / "checkpoints" / "final" / "model.safetensors"))
    assert any(k.startswith("model.relation.") for k in final)


def _epoch_results(run_dir) -> dict[tuple[str, int], dict]:
    """Per (stage, epoch): training loss, steps and validation values, from the run log
    (epochs replayed after a resume appear twice; the later record is the one that counted)."""
    out = {}
    for e in _events(run_dir):
        if e["event"] == "epoch":
            out[(e["stage"], e["epoch"])] = {k: v for k, v in e.items()
                                            if k not in ("time", "seconds", "event")}
    return out


def test_resume_after_a_kill_reaches_the_same_result(tmp_path, monkeypatch, tiny_config):
    """Killed in stage 3, epoch 2 — after epoch 1 improved, so its checkpoint holds the
    optimizer's momentum. The resumed run must train every epoch exactly as the uninterrupted
    one (same training losses), not just end with the same selected weights: best-epoch
    selection would hide a lost optimizer state."""
    cfg = load_run_config(tiny_config())
    reference = train_and_evaluate(cfg, tmp_path / "whole")

    calls = {"n": 0}
    real_epoch = Trainer._train_epoch

    def dying_epoch(self, stage, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 6:  # stage 3, epoch 2: epoch 1 was the best so far
            raise KeyboardInterrupt
        return real_epoch(self, stage, *args, **kwargs)

    monkeypatch.setattr(Trainer, "_train_epoch", dying_epoch)
    with pytest.raises(KeyboardInterrupt):
        train_and_evaluate(cfg, tmp_path / "killed")
    assert not (tmp_path / "killed" / "metrics.json").exists()
    monkeypatch.setattr(Trainer, "_train_epoch", real_epoch)

    killed_log = _epoch_results(tmp_path / "killed")
    assert killed_log[("relation", 1)]["best"] is True and ("relation", 2) not in killed_log
    state = json.loads((tmp_path / "killed" / "checkpoints" / "relation-0001" / "state.json"
                        ).read_text())
    saved = state.get("optimizers") or {"main": state.get("optimizer")}
    assert any(meta and meta["state"] for meta in saved.values()), \
        "the checkpoint the run resumes from holds the optimizer's momentum"

    resumed = resume_run(tmp_path / "killed")
    assert _epoch_results(tmp_path / "killed") == _epoch_results(tmp_path / "whole")
    assert resumed["i2t"] == reference["i2t"]
    assert resumed["t2i"] == reference["t2i"]
    a = load_file(str(tmp_path / "whole" / "checkpoints" / "final" / "model.safetensors"))
    b = load_file(str(tmp_path / "killed" / "checkpoints" / "final" / "model.safetensors"))
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(e["event"] == "resumed" for e in _events(tmp_path / "killed"))


def test_a_kill_while_writing_a_checkpoint_leaves_the_previous_one(tmp_path, monkeypatch, tiny_config):
    cfg = load_run_config(tiny_config())
    real_save = ck.save_tensors
    calls = {"n": 0}

    def dying_save(path, tensors):
        calls["n"] += 1
        if calls["n"] == 7:
            raise KeyboardInterrupt
        return real_save(path, tensors)

    monkeypatch.setattr(ck, "save_tensors", dying_save)
    with pytest.raises(KeyboardInterrupt):
        train_and_evaluate(cfg, tmp_path / "run")
    monkeypatch.setattr(ck, "save_tensors", real_save)
    ckdir = tmp_path / "run" / "checkpoints"
    assert not [p for p in ckdir.iterdir() if p.name.startswith(".")], "temporary files left"
    latest = ck.latest_tag(tmp_path / "run")
    ck.read_checkpoint(tmp_path / "run", latest)  # complete and readable
    metrics = resume_run(tmp_path / "run")
    assert 0 <= metrics["avg"] <= 1


def test_early_stopping_uses_validation_and_keeps_the_best_epoch(tmp_path, tiny_config,
                                                                 monkeypatch):
    # the relation stage's validation reports a scripted sequence of scores: the second epoch
    # is the best, the third is worse, so with patience 1 the stage stops after epoch 3 and
    # keeps epoch 2. (A vanishing learning rate does not freeze validation: stage 3 trains the
    # encoders, whose batch-norm running statistics still move.)
    scripted = iter([0.50, 0.70, 0.60, 0.90, 0.95, 0.99])
    real = trainer_mod.evaluate_embedded

    def scripted_validation(*args, **kw):
        rep, scores = real(*args, **kw)
        avg = next(scripted)
        return {**rep, "i2t": avg, "t2i": avg, "avg": avg}, scores

    monkeypatch.setattr(trainer_mod, "evaluate_embedded", scripted_validation)
    cfg = tiny_config()
    cfg["train"]["stages"]["relation"].update(epochs=6, patience=1)
    run = tmp_path / "run"
    train_and_evaluate(load_run_config(cfg), run)
    events = _events(run)
    rel_epochs = [e for e in events if e["event"] == "epoch" and e["stage"] == "relation"]
    assert [e["val_avg"] for e in rel_epochs] == [0.50, 0.70, 0.60]
    assert [e["best"] for e in rel_epochs] == [True, True, False]
    stop = [e for e in events if e["event"] == "early_stop" and e["stage"] == "relation"]
    assert stop and stop[0]["epoch"] == 3 and stop[0]["best_epoch"] == 2
    selected = [e for e in events if e["event"] == "selected"]
    assert selected[0]["best_epoch"] == 2 and selected[0]["val_avg"] == 0.70


def test_validation_never_touches_the_test_split(tmp_path, monkeypatch, tiny_config):
    seen = []
    real = trainer_mod.embed_records

    def spy(model, pre, records, **kw):
        seen.append((kw.get("desc"), {r.id for r in records}))
        return real(model, pre, records, **kw)

    monkeypatch.setattr(trainer_mod, "embed_records", spy)
    cfg = load_run_config(tiny_config())
    t = Trainer(cfg, tmp_path / "run")
    t.train()
    test_ids = {r.id for r in t.splits["test"]}
    assert seen and all(desc == "validation" and not (ids & test_ids) for desc, ids in seen)


def test_skipped_stage_is_logged_and_not_trained(tmp_path, tiny_config):
    cfg = tiny_config()
    cfg["train"]["stages"]["text"]["enabled"] = False
    run = tmp_path / "run"
    train_and_evaluate(load_run_config(cfg), run)
    events = _events(run)
    assert {"event": "stage_skipped", "stage": "text"}.items() <= [
        e for e in events if e["event"] == "stage_skipped"][0].items()
    assert not [e for e in events if e["event"] == "epoch" and e["stage"] == "text"]


def test_feature_datasets_are_refused_with_a_clear_error(tmp_path, tiny_config):
    import numpy as np

    from daer_core.interfaces import FeatureDataset, FeatureSplit
    from registry import NoParams, load_plugins

    class Feats(FeatureDataset):
        classes = ["a", "b"]

        def features(self, split):
            return FeatureSplit(np.zeros((2, 3)), np.zeros((2, 3)), np.array([0, 1]))

    loaded = load_plugins()
    from registry import ComponentSpec
    loaded.registry.add(ComponentSpec("dataset", "feats-only", lambda p, check=False: Feats(),
                                      NoParams, "", "test"))
    cfg = load_run_config({**tiny_config(), "dataset": {"name": "feats-only"}},
                          registry=loaded.registry)
    with pytest.raises(ConfigError, match="pre-extracted features"):
        Trainer(cfg, tmp_path / "run", loaded.registry)


def test_resume_needs_a_run_and_a_new_run_never_overwrites(tmp_path, tiny_config):
    with pytest.raises(CheckpointError, match="not a run directory"):
        resume_run(tmp_path / "nothing")
    cfg = load_run_config(tiny_config(train__stages__relation__epochs=1))
    train_and_evaluate(cfg, tmp_path / "run")
    with pytest.raises(CheckpointError, match="already holds a run"):
        train_and_evaluate(cfg, tmp_path / "run")


def test_the_seed_alone_decides_the_initial_weights(tmp_path, tiny_config):
    cfg = load_run_config(tiny_config())
    a, b = Trainer(cfg, tmp_path / "a"), Trainer(cfg, tmp_path / "b")
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert all(torch.equal(x, y) for x, y in zip(a.heads.parameters(), b.heads.parameters()))
    other = Trainer(load_run_config({**tiny_config(), "seed": 4}), tmp_path / "c")
    key = "relation.net.0.weight"
    assert not torch.equal(other.model.state_dict()[key], sa[key])


def test_rows_skipped_while_loading_land_in_the_run_log(tmp_path, tiny_config):
    from PIL import Image
    root = tmp_path / "data"
    (root / "img").mkdir(parents=True)
    rows = []
    for i in range(12):
        name = f"img/{i}.png"
        if i != 5:  # pair 5's image is missing
            Image.new("RGB", (32, 32), (40 * (i % 3), 90, 200)).save(root / name)
        rows.append(json.dumps({"image": name, "text": f"colour {i % 3} shape",
                                "labels": [f"c{i % 3}"],
                                "split": "train" if i < 8 else ("val" if i < 10 else "test")}))
    (root / "manifest.jsonl").write_text("\n".join(rows) + "\n")
    cfg = tiny_config(train__stages__relation__epochs=1)
    cfg["dataset"] = {"name": "manifest", "params": {"root": str(root), "missing": "skip"}}
    run = tmp_path / "run"
    train_and_evaluate(load_run_config(cfg), run)
    problems = [e for e in _events(run) if e["event"] == "data_problem"]
    assert any(p["code"] == "rows_skipped" and p["count"] == 1 for p in problems)


def test_adam_betas_from_the_config_reach_the_optimizer(tmp_path, monkeypatch, tiny_config):
    """``optimizer.betas`` (e.g. ACMR's beta1 = 0.5) is what Adam trains with; a beta
    outside [0, 1) is refused naming the key."""
    built = []

    class RecordingAdam(torch.optim.Adam):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            built.append(self)

    monkeypatch.setattr(torch.optim, "Adam", RecordingAdam)
    raw = tiny_config()
    for stage in ("text", "image", "relation"):
        raw["train"]["stages"][stage]["epochs"] = 1
    raw["train"]["stages"]["relation"]["optimizer"] = {"name": "adam", "lr": 1e-3,
                                                       "betas": [0.5, 0.99]}
    train_and_evaluate(load_run_config(raw), tmp_path / "run")
    assert len(built) == 1, "only the relation stage uses Adam"
    assert all(g["betas"] == (0.5, 0.99) for g in built[0].param_groups)

    raw["train"]["stages"]["relation"]["optimizer"]["betas"] = [0.9, 1.0]
    with pytest.raises(ConfigError, match=r"train\.stages\.relation\.optimizer\.betas"):
        load_run_config(raw)
