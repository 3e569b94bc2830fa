"""A plugin used by the benchmark tests: synthetic datasets, a counting method, a tiny
image feature extractor. Loaded by name (``load_plugins(load=[...])`` or ``daer -p``)."""
from __future__ import annotations

import numpy as np
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field

from baseline_synthetic import make_pairs
from daer_core.interfaces.data import FeatureDataset, FeatureSplit, PairDataset, PairRecord
from daer_core.interfaces.methods import FeatureExtractor
from plugins.baselines import CCA
from registry import hookimpl

#: fits per method label and an optional failure trigger, inspected by the tests
STATE: dict = {"fits": 0, "fail_at": None, "extractor_fits": 0}


class SynthParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    n: int = 160
    seed: int = 0
    root: str | None = Field(None, description="recorded only (path resolution tests)")


class SynthFeatures(FeatureDataset):
    classes = ["a", "b", "c", "d"]

    def __init__(self, n: int, seed: int, root: str | None):
        self.root = root
        x, y, labels = make_pairs(n=n, seed=seed, noise=1.0)
        cut = int(n * 0.7)
        self._splits = {"train": FeatureSplit(x[:cut], y[:cut], labels[:cut]),
                        "test": FeatureSplit(x[cut:], y[cut:], labels[cut:])}

    def features(self, split):
        return self._splits[split]


WORDS = ["red circle", "blue square", "green triangle", "yellow star"]
COLOURS = [(220, 20, 20), (20, 20, 220), (20, 200, 20), (230, 220, 20)]


class SynthPairs(PairDataset):
    """Coloured images with captions naming the colour; the label is the colour."""

    classes = ["red", "blue", "green", "yellow"]

    def __init__(self, n: int, seed: int, root: str | None):
        rng = np.random.default_rng(seed)
        labels = rng.integers(0, 4, size=n)
        self._records = []
        for i, lab in enumerate(labels):
            colour = tuple(int(np.clip(c + rng.normal(0, 30), 0, 255)) for c in COLOURS[lab])
            text = f"a {WORDS[lab]} picture number {i % 7}"
            self._records.append(PairRecord(f"p{i}", text, _painter(colour), (int(lab),)))
        cut = int(n * 0.7)
        self._parts = {"train": self._records[:cut], "val": [], "test": self._records[cut:]}

    def split(self, name):
        return self._parts[name]


def _painter(colour):
    return lambda: Image.new("RGB", (8, 8), colour)


class CountingCCAParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reg: float = 1e-3
    seed: int = 0


class CountingCCA(CCA):
    """CCA that counts its fits and can be told to fail on the k-th one."""

    def __init__(self, reg: float = 1e-3, seed: int = 0):
        super().__init__(reg=reg)
        self.seed = seed

    def fit(self, image_feats, text_feats, labels=None):
        STATE["fits"] += 1
        if STATE["fail_at"] is not None and STATE["fits"] == STATE["fail_at"]:
            raise RuntimeError("simulated crash")
        return super().fit(image_feats, text_feats, labels)


class MeanColour(FeatureExtractor):
    modality = "image"

    def fit(self, items):
        STATE["extractor_fits"] += 1
        return self

    def transform(self, items):
        return np.array([np.asarray(items[i], dtype=float).mean(axis=(0, 1)) / 255.0
                         for i in range(len(items))])


class NoParams(BaseModel):
    model_config = ConfigDict(extra="forbid")


@hookimpl
def daer_register_components(registry):
    registry.add("dataset", "synthetic-features",
                 factory=lambda p, **_: SynthFeatures(p.n, p.seed, p.root), params=SynthParams)
    registry.add("dataset", "synthetic-pairs",
                 factory=lambda p, **_: SynthPairs(p.n, p.seed, p.root), params=SynthParams)
    registry.add("method", "counting-cca", factory=lambda p, **_: CountingCCA(**p.model_dump()),
                 params=CountingCCAParams)
    registry.add("feature_extractor", "mean-colour", factory=lambda p, **_: MeanColour(),
                 params=NoParams)
