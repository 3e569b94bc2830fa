"""Runs on data with several captions per image: the instance protocol end to end."""
from __future__ import annotations

import json
import math

import pytest

from daer_core.config import load_run_config
from daer_core.training.api import train_and_evaluate


def instance_config(tiny_config, preset: str, stages: list[str]) -> dict:
    cfg = tiny_config()
    cfg["preset"] = preset
    cfg["dataset"]["params"].update(num_pairs=24, captions_per_image=3)
    cfg["train"]["stages"] = {s: {"epochs": 2, "batch_size": 8, "warmup_steps": 0,
                                  "optimizer": {"name": "adam", "lr": 1e-3}} for s in stages}
    return cfg


def events(run) -> list[dict]:
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]


def test_contrastive_on_several_captions_per_image_reports_recall(tmp_path, tiny_config):
    cfg = instance_config(tiny_config, "contrastive-shapes", ["contrastive"])
    cfg["pipeline"]["relation"] = {"name": "cosine", "params": {"mapping": "affine"}}
    metrics = train_and_evaluate(load_run_config(cfg), tmp_path / "run")
    inst = metrics["instance"]
    assert metrics["protocol"] == "instance"  # auto: images have several captions
    # the test split holds whole images with all their captions
    assert inst["texts"] == 3 * inst["images"]
    for d in ("i2t", "t2i"):
        assert set(inst[d]) == {"r@1", "r@5", "r@10", "medr", "meanr"}
        assert all(0.0 <= inst[d][f"r@{k}"] <= 1.0 for k in (1, 5, 10))
    assert inst["rsum"] == pytest.approx(100 * sum(inst[d][f"r@{k}"] for d in ("i2t", "t2i")
                                                   for k in (1, 5, 10)))
    assert (tmp_path / "run" / "recall_curve.png").stat().st_size > 0
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert saved["instance"]["rsum"] == pytest.approx(inst["rsum"])
    epochs = [e for e in events(tmp_path / "run") if e["event"] == "epoch"]
    # validation scores the run by mean Recall@K, and picks its best epoch by it
    assert all("val_rsum" in e and 0 <= e["val_score"] <= 1 for e in epochs)


def test_rerank_recipe_reports_first_stage_and_reranked_figures(tmp_path, tiny_config):
    cfg = instance_config(tiny_config, "daer-rerank-shapes", ["contrastive", "relation"])
    cfg["evaluate"]["rerank_k"] = 4
    metrics = train_and_evaluate(load_run_config(cfg), tmp_path / "run")
    assert metrics["rerank_k"] == 4
    first, final = metrics["instance_first_stage"], metrics["instance"]
    assert first["images"] == final["images"]
    # re-ranking moves only the top 4: beyond them both rankings hold the same items
    for d in ("i2t", "t2i"):
        assert final[d]["r@10"] >= first[d]["r@10"] - 1e-9 or final["images"] <= 4
    log = events(tmp_path / "run")
    stages = [e["stage"] for e in log if e["event"] == "epoch"]
    assert stages == ["contrastive"] * 2 + ["relation"] * 2
    assert all(math.isfinite(e["train_loss"]) for e in log if e["event"] == "epoch")


def test_rerank_relation_stage_leaves_the_first_stage_untouched(tmp_path, tiny_config):
    """The relation stage trains the head only: the encoders' weights and batch-norm
    statistics after it are those the contrastive stage ended with."""
    import torch

    from daer_core.training.trainer import Trainer
    cfg = instance_config(tiny_config, "daer-rerank-shapes", ["contrastive", "relation"])
    cfg["train"]["stages"]["contrastive"]["epochs"] = 1
    trainer = Trainer(load_run_config(cfg), tmp_path / "run")
    after_stage1: dict = {}

    def keep(report) -> None:
        if report.stage == "contrastive":  # its one epoch is also its best
            after_stage1.update({k: v.clone() for k, v in trainer.model.state_dict().items()
                                 if k.startswith(("text_encoder.", "image_encoder."))})

    trainer.epoch_hooks.append(keep)
    trainer.train()
    final = trainer.model.state_dict()
    for k, v in after_stage1.items():
        assert torch.equal(v, final[k]), f"{k} changed in the relation stage"
    assert any(k.startswith("running_mean") or "running_mean" in k for k in after_stage1)
    assert trainer.state.finished_training
