"""A recipe plugin installed from outside the tree trains through the unchanged trainer:
its own stage, two optimizer steps per batch, its own loss terms, exact resume."""
from __future__ import annotations

import json

import pytest
import torch

import registry
from daer_core.config import load_run_config
from daer_core.errors import ConfigError
from daer_core.training.trainer import Trainer

ALTERNATING = """
    import torch
    from torch import nn

    from daer_core.interfaces import StageSpec, TrainingRecipe
    from registry import Params, hookimpl
    from pydantic import Field


    class AlternatingParams(Params):
        weight: float = Field(1.0, gt=0, description="weight of the relation term")


    class Alternating(TrainingRecipe):
        '''Two optimizer steps per batch: the text side, then the image side + relation.'''

        stages = (StageSpec("joint", "joint training", min_batch=2, steps=("text", "image")),)

        def __init__(self, params):
            self.params = params

        def setup(self, model, num_classes, multi_label):
            return {"text_head": nn.Linear(model.text_encoder.out_dim, num_classes)}

        def trainable(self, stage, step, model, extras):
            if step == "text":
                return [model.text_encoder, extras["text_head"]]
            return [model.image_encoder, model.relation]

        def losses(self, stage, step, model, extras, batch):
            text = model.encode_text(batch.text)
            if step == "text":
                ce = nn.functional.cross_entropy(extras["text_head"](text),
                                                 batch.labels.argmax(1))
                return {"loss": ce, "ce": ce}
            scores = model.pair_scores(text.detach(), model.encode_image(batch.images))
            relation = model.loss(scores.float(), (batch.labels @ batch.labels.T > 0).float())
            return {"loss": self.params.weight * relation, "relation": relation}


    @hookimpl
    def daer_register_components(registry):
        registry.add("recipe", "alternating", factory=Alternating, params=AlternatingParams,
                     summary="text step, then image + relation step, on every batch")
"""


@pytest.fixture
def recipe_registry(plugin_site):
    plugin_site.module("alternating_recipe", ALTERNATING)
    plugin_site.distribution("alternating-recipe", {"alternating": "alternating_recipe"})
    loaded = registry.load_plugins()
    assert loaded.registry.has("recipe", "alternating")
    return loaded.registry


def _config(tiny_config, reg, **joint):
    cfg = tiny_config()
    cfg["train"]["recipe"] = {"name": "alternating", "params": {"weight": 0.5}}
    cfg["train"]["stages"]["joint"] = {"epochs": 2, "batch_size": 8,
                                       "optimizer": {"name": "sgd", "lr": 0.01}, **joint}
    return load_run_config(cfg, registry=reg)


def _epochs(run_dir):
    return [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()
            if json.loads(line)["event"] == "epoch"]


def test_an_out_of_tree_recipe_trains_with_its_own_stages_steps_and_terms(
        tmp_path, tiny_config, recipe_registry, monkeypatch):
    trainer = Trainer(_config(tiny_config, recipe_registry), tmp_path / "run", recipe_registry)
    built = {}
    real = Trainer._optimizers

    def capture(self, stage):
        built.update(real(self, stage))
        return built

    monkeypatch.setattr(Trainer, "_optimizers", capture)
    text_head = trainer.heads["text_head"].weight.detach().clone()
    image_before = [p.detach().clone() for p in trainer.model.image_encoder.parameters()]
    trainer.train()
    epochs = _epochs(tmp_path / "run")
    assert [(e["stage"], e["epoch"]) for e in epochs] == [("joint", 1), ("joint", 2)]
    assert {"train_text_loss", "train_text_ce", "train_image_loss",
            "train_image_relation"} <= set(epochs[0])
    assert epochs[0]["train_image_loss"] == pytest.approx(0.5 * epochs[0]["train_image_relation"])
    # each step's optimizer holds exactly the modules the recipe named for it
    ids = lambda mods: {id(p) for m in mods for p in m.parameters() if p.requires_grad}  # noqa
    text_ids = ids([trainer.model.text_encoder, trainer.heads["text_head"]])
    image_ids = ids([trainer.model.image_encoder, trainer.model.relation])
    assert {id(p) for g in built["text"].param_groups for p in g["params"]} == text_ids
    assert {id(p) for g in built["image"].param_groups for p in g["params"]} == image_ids
    # the extra module trained (it is in checkpoints) and is not part of the final weights
    assert not torch.equal(text_head, trainer.heads["text_head"].weight.detach())
    assert any(not torch.equal(a, b) for a, b in
               zip(image_before, trainer.model.image_encoder.parameters()))
    metrics = trainer.evaluate()
    assert 0.0 <= metrics["avg"] <= 1.0


def test_a_two_optimizer_recipe_resumes_exactly(tmp_path, tiny_config, recipe_registry,
                                                monkeypatch):
    straight = Trainer(_config(tiny_config, recipe_registry, epochs=3), tmp_path / "straight",
                       recipe_registry)
    straight.train()

    calls = {"n": 0}
    real = Trainer._train_epoch

    def dying(self, stage, optimizers):
        calls["n"] += 1
        if calls["n"] == 3:  # after two epochs with momentum built up in both optimizers
            raise KeyboardInterrupt
        return real(self, stage, optimizers)

    monkeypatch.setattr(Trainer, "_train_epoch", dying)
    with pytest.raises(KeyboardInterrupt):
        Trainer(_config(tiny_config, recipe_registry, epochs=3), tmp_path / "killed",
                recipe_registry).train()
    monkeypatch.setattr(Trainer, "_train_epoch", real)
    resumed = Trainer(_config(tiny_config, recipe_registry, epochs=3), tmp_path / "killed",
                      recipe_registry)
    resumed.train(resume=True)
    keys = ("train_text_loss", "train_image_loss")
    by_epoch = {e["epoch"]: [e[k] for k in keys] for e in _epochs(tmp_path / "killed")}
    assert by_epoch == {e["epoch"]: [e[k] for k in keys] for e in _epochs(tmp_path / "straight")}
    for a, b in zip(straight.model.parameters(), resumed.model.parameters()):
        assert torch.equal(a, b)


def test_a_stage_the_recipe_does_not_have_is_a_config_error(tmp_path, tiny_config,
                                                            recipe_registry):
    cfg = tiny_config()
    cfg["train"]["stages"]["jiont"] = {"epochs": 1}
    with pytest.raises(ConfigError, match=r"train.stages.jiont: recipe 'daer-three-stage'"):
        Trainer(load_run_config(cfg, registry=recipe_registry), tmp_path / "run",
                recipe_registry)
