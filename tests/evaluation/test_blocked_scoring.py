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


class Unused(RelationLoss):
    """Scoring never calls the loss; the model still needs one."""

    def forward(self, scores, target):
        raise AssertionError("scoring must not compute a loss")


def test_blocks_bound_memory_and_match_the_unblocked_scores():
    torch.manual_seed(0)
    head = Head(8)
    model = RetrievalModel(nn.Identity(), nn.Identity(), Concat(4, 4), Same(8), head,
                           Unused())
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


def test_the_split_first_layer_gives_the_same_scores_without_fusing_pairs():
    """concat + element-wise enhancement + MLP: each item is projected once (the fast path)
    and the scores equal running the head on every fused pair."""
    import registry

    from daer_core.pipeline import RetrievalModel
    reg = registry.get_registry()
    torch.manual_seed(0)
    fusion = reg.create("fusion", "concat", {}, text_dim=6, image_dim=5)
    for enhancement in (reg.create("enhancement", "signed-power", {"k": 0.6}, dim=11),
                        reg.create("enhancement", "identity", {}, dim=11)):
        head = reg.create("relation", "mlp", {"in_dim": 11, "hidden": [16, 8]}, fused_dim=11)
        model = RetrievalModel(nn.Identity(), nn.Identity(), fusion, enhancement, head,
                               Unused()).eval()
        text, image = torch.randn(13, 6), torch.randn(9, 5)
        reference = model.pair_scores(text, image).detach()
        fused_calls = []
        hook = fusion.register_forward_hook(lambda *a: fused_calls.append(1))
        fast = model.score_matrix(text, image, block_size=4)
        hook.remove()
        assert not fused_calls, "the fast path must not fuse pairs"
        assert torch.allclose(fast, reference, atol=1e-5)
