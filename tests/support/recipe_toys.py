"""Small pieces the recipe tests share: a run's epoch log, and a toy model whose encoders
pass their vectors through (so loss terms can be computed by hand)."""
from __future__ import annotations

import json

import torch
from torch import nn


def epochs_of(run_dir) -> list[dict]:
    """The ``epoch`` events of a run's ``log.jsonl``, in order."""
    events = (json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines())
    return [e for e in events if e.get("event") == "epoch"]


class Identity(nn.Module):
    """An 'encoder' that passes its vectors through (for hand-computed losses)."""

    def __init__(self, out_dim: int):
        super().__init__()
        self.out_dim = out_dim
        self.proj = nn.Linear(out_dim, out_dim, bias=False)
        with torch.no_grad():
            self.proj.weight.copy_(torch.eye(out_dim))

    def forward(self, x):
        return self.proj(x["features"] if isinstance(x, dict) else x)


class ToyModel(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.text_encoder, self.image_encoder = Identity(dim), Identity(dim)

    def encode_text(self, inputs):
        return self.text_encoder(inputs)

    def encode_image(self, images):
        return self.image_encoder(images)

