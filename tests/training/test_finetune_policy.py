"""The fine-tuning policy of a stage: backbone learning rate, frozen warm-up, batch-norm
statistics — what a user with pretrained weights relies on."""
from __future__ import annotations

import pytest
import torch
from torch import nn
from torchvision.models import mobilenet_v3_large

from daer_core.config import load_run_config
from daer_core.training.finetune import frozen, hold_batchnorm, parameter_groups
from daer_core.training.trainer import Trainer


def test_parameter_groups_separate_the_backbone_only_when_asked():
    a, b, c = (nn.Parameter(torch.zeros(1)) for _ in range(3))
    assert parameter_groups([a, b, c], [b], None) == [{"params": [a, b, c]}]
    assert parameter_groups([a, b, c], [], 0.1) == [{"params": [a, b, c]}]
    assert parameter_groups([a, b, c], [b], 0.1) == [{"params": [a, c]},
                                                     {"params": [b], "lr": 0.1}]


def test_frozen_restores_each_parameters_own_flag():
    a, b = nn.Parameter(torch.zeros(1)), nn.Parameter(torch.zeros(1), requires_grad=False)
    with frozen([a, b]):
        assert not a.requires_grad and not b.requires_grad
    assert a.requires_grad and not b.requires_grad
    with frozen([a], enabled=False):
        assert a.requires_grad


def test_hold_batchnorm_only_touches_pretrained_layers():
    net = nn.Sequential(nn.BatchNorm2d(2), nn.BatchNorm2d(2)).train()
    assert hold_batchnorm(net, list(net[0].parameters())) == 1
    assert not net[0].training and net[1].training


@pytest.fixture
def pretrained_run(tmp_path, tiny_config, monkeypatch):
    """Stage 2 only, on a mobilenetv3-large that loads a weight file, two epochs, the first
    with the backbone frozen; records the encoder's weights after every epoch."""
    weights = tmp_path / "mnv3.pth"
    torch.manual_seed(0)
    torch.save(mobilenet_v3_large(weights=None).state_dict(), weights)
    cfg = tiny_config(train__stages__text__enabled=False,
                      train__stages__relation__enabled=False)
    cfg["pipeline"]["image"]["encoder"]["params"]["weights_path"] = str(weights)
    cfg["pipeline"]["image"]["attention"] = {"name": "dual-spatial"}
    cfg["train"]["stages"]["image"].update(
        {"epochs": 2, "backbone_lr": 0.001, "frozen_backbone_epochs": 1, "batchnorm": "frozen",
         "optimizer": {"name": "sgd", "lr": 0.05, "momentum": 0.9}})
    trainer = Trainer(load_run_config(cfg), tmp_path / "run")
    snapshots, optimizers = [], []
    train_epoch = Trainer._train_epoch

    def recording(self, stage, stage_optimizers):
        out = train_epoch(self, stage, stage_optimizers)
        snapshots.append({k: v.clone() for k, v in self.model.image_encoder.state_dict().items()})
        optimizers.append(stage_optimizers["main"])
        return out

    monkeypatch.setattr(Trainer, "_train_epoch", recording)
    monkeypatch.setattr(Trainer, "_validate", lambda self, stage: {})  # keep the last epoch
    loaded = {k: v.clone() for k, v in trainer.model.image_encoder.state_dict().items()}
    trainer.train()
    return trainer, loaded, snapshots, optimizers


def test_warm_up_trains_only_new_layers_then_the_backbone_at_its_own_rate(pretrained_run):
    trainer, loaded, (after_1, after_2), (opt, _) = pretrained_run
    enc = trainer.model.image_encoder
    assert [g["lr"] for g in opt.param_groups] == [0.05, 0.001]
    assert {id(p) for p in opt.param_groups[1]["params"]} == {
        id(p) for p in enc.pretrained_parameters()}
    ids = {id(p) for p in enc.pretrained_parameters()}
    backbone = [n for n, p in enc.named_parameters() if id(p) in ids]
    gate = "features.2.block.gate"         # an inserted attention gate: new
    assert all(torch.equal(after_1[k], loaded[k]) for k in backbone)   # frozen in epoch 1
    assert not torch.equal(after_1["fc.weight"], loaded["fc.weight"])
    assert float(after_1[gate]) != 0.0                       # the attention starts to learn
    changed = [k for k in backbone if not torch.equal(after_2[k], after_1[k])]
    # epoch 2 fine-tunes the backbone (its last layer at least; the first ones of a randomly
    # initialised toy net get gradients too small to move a float32 weight)
    assert any(k.startswith("features.16.") for k in changed)
    stats = [k for k in loaded if k.endswith("running_mean") and ".attention." not in k]
    assert stats and all(torch.equal(after_2[k], loaded[k]) for k in stats)  # batchnorm: frozen
