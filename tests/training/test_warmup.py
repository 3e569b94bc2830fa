"""``train.stages.<stage>.warmup_steps``: the learning rate ramps up over a stage's first
optimizer steps, and a run killed during the ramp resumes on it exactly."""
from __future__ import annotations

import pytest
import torch

from daer_core.config import load_run_config
from daer_core.errors import ConfigError
from daer_core.training.api import resume_run, train_and_evaluate
from daer_core.training.trainer import Trainer
from run_faults import kill_at_epoch_call

LR = 0.01


def _config(tiny_config, warmup: int) -> dict:
    raw = tiny_config()
    for name, stage in raw["train"]["stages"].items():
        stage["optimizer"]["lr"] = LR
        stage["warmup_steps"] = warmup if name == "relation" else 0
    return raw


@pytest.fixture
def learning_rates(monkeypatch):
    """Every SGD step's learning rate (first group), in order."""
    seen: list[float] = []
    real_step = torch.optim.SGD.step

    def recording_step(self, *args, **kwargs):
        seen.append(self.param_groups[0]["lr"])
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.SGD, "step", recording_step)
    return seen


def test_the_rate_rises_linearly_over_the_warmup_steps_then_stays(tmp_path, tiny_config,
                                                                   learning_rates):
    warmup = 4
    train_and_evaluate(load_run_config(_config(tiny_config, warmup)), tmp_path / "run")
    # the three stages take the same number of steps; only stage 3 warms up
    per_stage = len(learning_rates) // 3
    assert len(learning_rates) == 3 * per_stage and per_stage > warmup
    assert learning_rates[:2 * per_stage] == [LR] * (2 * per_stage)
    relation = learning_rates[2 * per_stage:]
    expected = [LR * min(1.0, (k + 1) / warmup) for k in range(per_stage)]
    assert relation == pytest.approx(expected, rel=1e-12)


def test_a_run_killed_during_the_warmup_resumes_on_the_ramp(tmp_path, monkeypatch,
                                                            tiny_config, learning_rates):
    """Killed after stage 3's first epoch, with the warmup longer than that epoch: the
    resumed run must continue the ramp where it stopped, not restart it or skip it."""
    raw = _config(tiny_config, warmup=5)
    cfg = load_run_config(raw)
    reference = train_and_evaluate(cfg, tmp_path / "whole")
    whole = list(learning_rates)
    per_epoch_steps = len(whole) // 6          # three stages of two epochs
    assert per_epoch_steps < 5 < 2 * per_epoch_steps, "the warmup spans the kill"

    learning_rates.clear()
    calls = {"n": 0}
    real_epoch = Trainer._train_epoch

    def dying_epoch(self, stage, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 6:  # stage 3, epoch 2
            raise KeyboardInterrupt
        return real_epoch(self, stage, *args, **kwargs)

    monkeypatch.setattr(Trainer, "_train_epoch", dying_epoch)
    with pytest.raises(KeyboardInterrupt):
        train_and_evaluate(cfg, tmp_path / "killed")
    monkeypatch.setattr(Trainer, "_train_epoch", real_epoch)
    resumed = resume_run(tmp_path / "killed")

    assert learning_rates == pytest.approx(whole, rel=1e-12)
    assert resumed["i2t"] == reference["i2t"] and resumed["t2i"] == reference["t2i"]


def test_warmup_steps_must_not_be_negative(tiny_config):
    raw = tiny_config()
    raw["train"]["stages"]["image"]["warmup_steps"] = -1
    with pytest.raises(ConfigError, match=r"train\.stages\.image\.warmup_steps"):
        load_run_config(raw)


def test_a_step_decay_lowers_the_rate_every_n_epochs_and_resumes_on_it(
        tmp_path, tiny_config, learning_rates, monkeypatch):
    """lr_decay_every / lr_decay_factor: StepLR once per epoch (FGCrossNet's public code:
    every 3 epochs x 0.5), exact after a resume."""
    raw = tiny_config()
    for name, stage in raw["train"]["stages"].items():
        stage["optimizer"]["lr"] = LR
        stage["epochs"] = 4 if name == "relation" else 1
        if name == "relation":
            stage.update(lr_decay_every=2, lr_decay_factor=0.5)
    train_and_evaluate(load_run_config(raw), tmp_path / "run")
    per_epoch = len(learning_rates) // 6           # 1 + 1 + 4 epochs, equal step counts
    relation = learning_rates[2 * per_epoch:]
    expected = [LR * 0.5 ** (e // 2) for e in range(4) for _ in range(per_epoch)]
    assert relation == pytest.approx(expected, rel=1e-12)
    # killed in the relation stage's third epoch: the resumed run keeps the decayed rate
    learning_rates.clear()
    restore = kill_at_epoch_call(monkeypatch, 5)   # text, image, relation 1, 2, then 3
    with pytest.raises(KeyboardInterrupt):
        train_and_evaluate(load_run_config(raw), tmp_path / "killed")
    restore()
    learning_rates.clear()
    resume_run(tmp_path / "killed")
    # epochs 3 and 4 of the stage (0-based 2, 3): 0.5 ** (2 // 2) = 0.5 ** (3 // 2) = 0.5
    assert learning_rates == pytest.approx([LR * 0.5] * (2 * per_epoch), rel=1e-12)
