"""Stage 3 with ``negatives: gathered`` under two processes (gloo on CPU): each process scores
its texts against every process's images, and the gradients the processes produce together
are exactly those of one process scoring the whole 2B x 2B batch."""
from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from plugins.recipes.daer_three_stage import DAERThreeStage, DAERThreeStageParams, gather_images
from daer_core.interfaces import TrainBatch

B, D, C = 3, 5, 2


class TwoTowers(nn.Module):
    """Linear encoders, dot-product scores, the Frobenius loss (sum of squares)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.text_encoder, self.image_encoder = nn.Linear(D, 4), nn.Linear(D, 4)

    def encode_text(self, text):
        return self.text_encoder(text["x"])

    def encode_image(self, images):
        return self.image_encoder(images)

    def pair_scores(self, t, i):
        return t @ i.T

    def loss(self, scores, target):
        return (scores - target).pow(2).sum()


def _batch(rows: slice) -> TrainBatch:
    g = torch.Generator().manual_seed(1)
    text, image = torch.randn(2 * B, D, generator=g), torch.randn(2 * B, D, generator=g)
    labels = nn.functional.one_hot(torch.tensor([0, 1, 1, 0, 1, 0]), C).float()
    return TrainBatch(ids=[], text={"x": text[rows]}, images=image[rows], labels=labels[rows])


def _grads(model: nn.Module) -> torch.Tensor:
    return torch.cat([p.grad.flatten() for p in model.parameters()])


def _worker(rank: int, port: int, negatives: str, out: dict) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        model = TwoTowers()
        recipe = DAERThreeStage(DAERThreeStageParams(negatives=negatives))
        loss = recipe.losses("relation", "main", model, nn.ModuleDict(),
                             _batch(slice(rank * B, (rank + 1) * B)))["loss"]
        loss.backward()
        grads = _grads(model)
        dist.all_reduce(grads)             # what DDP sums (before dividing by the world)
        total = loss.detach().clone()
        dist.all_reduce(total)
        out[rank] = (float(total), grads)
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("negatives", ["gathered", "local"])
def test_gathered_negatives_match_one_process_scoring_the_whole_batch(negatives):
    manager = mp.Manager()
    out = manager.dict()
    mp.spawn(_worker, args=(_free_port(), negatives, out), nprocs=2, join=True)

    whole = TwoTowers()
    batch = _batch(slice(0, 2 * B))
    t, i = whole.encode_text(batch.text), whole.encode_image(batch.images)
    target = (batch.labels @ batch.labels.T > 0).float()
    scores = whole.pair_scores(t, i)
    if negatives == "local":   # each process only sees its own B x B block
        mask = torch.block_diag(torch.ones(B, B), torch.ones(B, B)).bool()
        loss = (scores - target).pow(2)[mask].sum()
    else:
        loss = whole.loss(scores, target)
    loss.backward()
    for rank in (0, 1):
        total, grads = out[rank]
        assert total == pytest.approx(float(loss.detach()), rel=1e-5)
        assert torch.allclose(grads, _grads(whole), rtol=1e-4, atol=1e-5)


def test_outside_a_job_gathering_returns_the_batch_itself():
    images, labels = torch.randn(4, 3), torch.eye(4)
    got_images, got_labels = gather_images(images, labels)
    assert got_images is images and got_labels is labels
