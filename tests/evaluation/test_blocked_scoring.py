"""Scoring is blocked: the full pair tensor never exists, and blocks give the same scores."""
from __future__ import annotations

import torch
from torch import nn

from daer_core.interfaces import Enhancement, Fusion, RelationHead, RelationLoss
from daer_core.pipeline import RetrievalModel


class Concat(Fusion):
    def __init__(self, dt, di):
        super().__init__()
        self.out_dim = dt + di

    def forward(self, t, i):
        return torch.cat([t, i], dim=1)


class Same(Enhancement):
    def __init__(self, d):
        super().__init__()
        self.out_dim = d

    def forward(self, x):
        return x


class Head(RelationHead):
    def __init__(self, d):
        super().__init__()
        self.in_dim = d
        self.lin = nn.Linear(d, 1)
        self.max_rows = 0

    def forward(self, x):
        self.max_rows = max(self.max_rows, x.shape[0])
        return self.lin(x).squeeze(1)


def test_blocks_bound_memory_and_match_the_unblocked_scores():
    torch.manual_seed(0)
    head = Head(8)
    model = RetrievalModel(nn.Identity(), nn.Identity(), Concat(4, 4), Same(8), head,
                           RelationLoss())
    text, image = torch.randn(23, 4), torch.randn(17, 4)
    full = model.pair_scores(text, image).detach()
    head.max_rows = 0
    blocked = model.score_matrix(text, image, block_size=5)
    assert head.max_rows <= 25  # at most block x block pairs at a time
    assert torch.allclose(blocked, full, atol=1e-6)
    # pair (q, p) really is text q with image p
    q, p = 7, 11
    expected = head(torch.cat([text[q], image[p]])[None]).item()
    assert blocked[q, p].item() == __import__("pytest").approx(expected, abs=1e-6)
