"""The ``daer`` preset assembled by the core from these components: shapes at every stage."""
from __future__ import annotations

import pytest
import torch

from daer_core.config import load_run_config
from daer_core.errors import DimensionMismatchError
from daer_core.pipeline import build_pipeline

TEXTS = ["a large red circle left of a small blue square",
         "a big green star above a little red cross", "the blue square", "红色的圆"] * 2
SMALL = ["pipeline.image.encoder.params.size=64"]


def test_daer_pipeline_shapes_and_gradients(reg):
    torch.manual_seed(0)
    cfg = load_run_config(None, preset="daer", registry=reg, overrides=SMALL)
    model, pre = build_pipeline(cfg, reg)
    model.text_encoder.fit(TEXTS)
    q, p = 3, 2
    text = model.encode_text(pre.text(TEXTS[:q]))
    image = model.encode_image(torch.randn(p, 3, 64, 64))
    assert text.shape == (q, 300) and image.shape == (p, 300)
    fused = model.fusion(text[:1].expand(p, -1), image)
    assert fused.shape == (p, 600) and torch.equal(fused[:, :300], text[:1].expand(p, -1))
    assert model.enhancement(fused).shape == (p, 600)
    scores = model.pair_scores(text, image)
    assert scores.shape == (q, p) and torch.all((scores > 0) & (scores < 1))
    loss = model.loss(scores, torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]))
    loss.backward()
    att = model.image_encoder.features[1].block.attention
    assert att.conv_small.weight.grad is not None                  # image attention trained
    assert model.text_encoder.attention.w0.weight.grad is not None  # text attention trained
    assert model.text_encoder.lstm.weight_ih_l0.grad is not None


def test_width_mismatch_is_reported_by_the_core(reg):
    cfg = load_run_config(None, preset="daer-c", registry=reg,
                          overrides=SMALL + ["pipeline.text.encoder.params.out_dim=200"])
    with pytest.raises(DimensionMismatchError, match=r"outputs 500.*in_dim=600"):
        build_pipeline(cfg, reg)
    cfg = load_run_config(None, preset="daer-c", registry=reg, overrides=SMALL + [
        "pipeline.text.encoder.params.out_dim=200", "pipeline.relation.params.in_dim=null"])
    model, _ = build_pipeline(cfg, reg)
    assert model.relation.in_dim == 500
