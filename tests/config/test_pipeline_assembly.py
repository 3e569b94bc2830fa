"""build_pipeline: components connected by width, mismatches reported before data flows."""
from __future__ import annotations

import pytest
import torch

from daer_core.config import load_run_config
from daer_core.errors import ConfigError, DimensionMismatchError
from daer_core.pipeline import build_pipeline, load_model_and_preprocess


def resolved(fake_registry, *overrides: str):
    return load_run_config({"preset": "fake-base"}, overrides=overrides, registry=fake_registry)


def test_widths_flow_from_encoders_to_relation(fake_registry):
    cfg = resolved(fake_registry, "pipeline.text.encoder.params.out_dim=5",
                   "pipeline.image.encoder.params.out_dim=7")
    model, pre = build_pipeline(cfg, fake_registry)
    assert (model.text_encoder.out_dim, model.image_encoder.out_dim) == (5, 7)
    assert model.fusion.out_dim == 12 and model.relation.in_dim == 12
    assert model.names["relation"] == "fake-mlp"
    text = model.encode_text(pre.text(["a b", "c", "d e f"]))
    image = model.encode_image(torch.rand(4, 3, 16, 16))
    scores = model.pair_scores(text, image)
    assert scores.shape == (3, 4)
    assert torch.allclose(model.score_matrix(text, image, block_size=2), scores.detach())


def test_fusion_600_vs_relation_512_is_a_dimension_mismatch(fake_registry):
    cfg = resolved(fake_registry, "pipeline.fusion.name=fake-fixed",
                   "pipeline.fusion.params.out_dim=600", "pipeline.relation.params.in_dim=512")
    with pytest.raises(DimensionMismatchError) as exc:
        build_pipeline(cfg, fake_registry)
    msg = str(exc.value)
    assert "fusion 'fake-fixed' outputs 600" in msg
    assert "relation 'fake-mlp' expects in_dim=512" in msg
    assert "pipeline.relation.params.in_dim" in msg
    assert isinstance(exc.value, ConfigError)  # the CLI maps it to exit code 2


def test_matching_fixed_widths_build(fake_registry):
    cfg = resolved(fake_registry, "pipeline.fusion.name=fake-fixed",
                   "pipeline.fusion.params.out_dim=600", "pipeline.relation.params.in_dim=600")
    model, _ = build_pipeline(cfg, fake_registry)
    assert model.relation.in_dim == 600


def test_load_model_and_preprocess_by_preset_name(fake_registry):
    model, pre, cfg = load_model_and_preprocess("fake-base", registry=fake_registry,
                                                overrides=["pipeline.relation.params.hidden=3"])
    assert cfg.preset == "fake-base" and model.relation.net[0].out_features == 3
    assert pre.image_eval(None).shape == (3, 16, 16)
