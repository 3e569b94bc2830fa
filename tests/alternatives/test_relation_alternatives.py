"""The ``product`` fusion and the two-tower ``cosine`` relation."""
from __future__ import annotations

import pytest
import torch

from daer_core.errors import DimensionMismatchError
from daer_core.interfaces import TwoTowerRelation
from plugins.relation.cosine import CosineParams, CosineRelation
from plugins.relation.product import ProductFusion, ProductParams


def test_product_projects_then_multiplies():
    torch.manual_seed(0)
    fusion = ProductFusion(ProductParams(width=7), text_dim=5, image_dim=3)
    assert fusion.out_dim == 7
    t, i = torch.randn(4, 5), torch.randn(4, 3)
    out = fusion(t, i)
    assert out.shape == (4, 7)
    torch.testing.assert_close(out, fusion.text_proj(t) * fusion.image_proj(i))
    with pytest.raises(ValueError, match="4 texts and 2 images"):
        fusion(t, i[:2])
    out.sum().backward()
    assert fusion.text_proj.weight.grad is not None and fusion.image_proj.weight.grad is not None


def test_cosine_is_a_two_tower_relation_with_affine_mapping():
    rel = CosineRelation(CosineParams(mapping="affine"), text_dim=4, image_dim=4)
    assert isinstance(rel, TwoTowerRelation) and rel.in_dim == 4
    assert list(rel.parameters()) == []
    text = torch.tensor([[1.0, 0, 0, 0], [0, 2.0, 0, 0]])
    image = torch.tensor([[3.0, 0, 0, 0], [-1.0, 0, 0, 0], [0, 0, 5.0, 0]])
    scores = rel.score(text, image)
    assert scores.shape == (2, 3)
    torch.testing.assert_close(scores, torch.tensor([[1.0, 0.0, 0.5], [0.5, 0.5, 0.5]]))
    torch.testing.assert_close(rel(text, image[:2]), torch.tensor([1.0, 0.5]))


def test_cosine_sigmoid_mapping_learns_scale_and_bias():
    rel = CosineRelation(CosineParams(mapping="sigmoid", scale=4.0, bias=-1.0), 3, 3)
    text, image = torch.randn(5, 3), torch.randn(6, 3)
    cos = torch.nn.functional.normalize(text, dim=-1) @ torch.nn.functional.normalize(
        image, dim=-1).T
    scores = rel.score(text, image)
    torch.testing.assert_close(scores, torch.sigmoid(4.0 * cos - 1.0))
    assert ((scores > 0) & (scores < 1)).all()
    target = (torch.rand(5, 6) > 0.5).float()
    torch.linalg.matrix_norm(scores - target).backward()  # a Frobenius loss
    assert rel.log_scale.grad is not None and rel.bias.grad is not None
    fixed = CosineRelation(CosineParams(learnable=False), 3, 3)
    assert list(fixed.parameters()) == []


def test_cosine_with_mismatched_widths_names_both_and_the_fix():
    with pytest.raises(DimensionMismatchError,
                       match=r"text encoder outputs 300 and the image encoder 512.*"
                             r"pipeline.text.encoder.params.out_dim"):
        CosineRelation(CosineParams(), text_dim=300, image_dim=512)


def test_registered_under_their_names():
    from registry import load_plugins
    reg = load_plugins().registry
    fusion = reg.create("fusion", "product", {"width": 9}, text_dim=4, image_dim=6)
    assert fusion.out_dim == 9
    rel = reg.create("relation", "cosine", {}, fused_dim=9, text_dim=4, image_dim=4)
    assert rel.score(torch.randn(2, 4), torch.randn(3, 4)).shape == (2, 3)


SMALL = ["pipeline.text.encoder.params={vector_size: 8, hidden_size: 8, out_dim: 12}",
         "pipeline.text.attention=null", "pipeline.image.attention=null"]


def test_pipelines_with_product_and_cosine_score_all_pairs():
    from daer_core.config import load_run_config
    from daer_core.pipeline import build_pipeline
    product = load_run_config(None, preset="daer", overrides=[
        *SMALL, "pipeline.image.encoder.params={out_dim: 10}", "pipeline.fusion.name=product",
        "pipeline.fusion.params={width: 20}", "pipeline.relation.params={in_dim: 20, hidden: [8]}"])
    model, _ = build_pipeline(product, native_image_size=32)
    assert model.fusion.out_dim == 20
    assert model.pair_scores(torch.randn(3, 12), torch.randn(4, 10)).shape == (3, 4)

    cosine = load_run_config(None, preset="daer", overrides=[
        *SMALL, "pipeline.image.encoder.params={out_dim: 12}", "pipeline.relation.name=cosine"])
    model, _ = build_pipeline(cosine, native_image_size=32)
    assert model.two_tower and model.fusion is None
    scores = model.score_matrix(torch.randn(5, 12), torch.randn(7, 12), block_size=3)
    assert scores.shape == (5, 7) and ((scores > 0) & (scores < 1)).all()

    mismatched = load_run_config(None, preset="daer", overrides=[
        *SMALL, "pipeline.image.encoder.params={out_dim: 10}", "pipeline.relation.name=cosine"])
    with pytest.raises(DimensionMismatchError, match="outputs 12 and the image encoder 10"):
        build_pipeline(mismatched, native_image_size=32)
