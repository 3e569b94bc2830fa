"""A complete set of tiny fake components, one per kind the pipeline needs.

Registry, config and CLI tests load this module explicitly
(``registry.load_plugins(autoload=False, load=["daer_fake_pipeline"])``) so that they do not
depend on what the default plugins provide. Widths are params, so tests can provoke
dimension mismatches on purpose (``fake-fixed`` fusion vs ``fake-mlp`` relation ``in_dim``).
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from daer_core.interfaces import (Enhancement, Fusion, ImageEncoder, PairDataset, PairRecord,
                                  RelationHead, RelationLoss, StageSpec, TextAttention,
                                  TextEncoder, Tokenizer, TrainingRecipe)
from registry import hookimpl


class WidthParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    out_dim: int = Field(8, ge=1, description="embedding width")


class ImageParams(WidthParams):
    size: int = Field(16, ge=4, description="square input size in pixels")


class FixedFusionParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    out_dim: int = Field(600, ge=1, description="fused width, whatever the inputs are")


class RelationParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    in_dim: int | None = Field(None, ge=1, description="input width; null takes the fusion's")
    hidden: int = Field(16, ge=1, description="hidden units")


class PairsParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    size: int = Field(10, ge=1, description="number of pairs")


class Words(Tokenizer):
    def __call__(self, text: str) -> list[str]:
        return text.lower().split()


class FakeText(TextEncoder):
    """Token count and mean token length, projected to ``out_dim``."""

    def __init__(self, params: WidthParams, tokenizer=None, attention=None):
        super().__init__()
        self.out_dim = params.out_dim
        self.tokenizer = tokenizer or Words()
        self.proj = nn.Linear(2, self.out_dim)

    def prepare(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        feats = [[len(t), sum(map(len, t)) / max(len(t), 1)] for t in map(self.tokenizer, texts)]
        return {"x": torch.tensor(feats, dtype=torch.float32)}

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.proj(inputs["x"])


class FakeImage(ImageEncoder):
    def __init__(self, params: ImageParams, attention=None, native_image_size=None):
        super().__init__()
        self.out_dim, self.image_size = params.out_dim, params.size
        self.proj = nn.Linear(3, self.out_dim)

    def transform(self, train: bool = False):
        size = self.image_size

        def to_tensor(img) -> torch.Tensor:
            return torch.zeros(3, size, size)
        return to_tensor

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.proj(images.mean(dim=(2, 3)))


class Concat(Fusion):
    def __init__(self, params: BaseModel, text_dim: int, image_dim: int):
        super().__init__()
        self.out_dim = text_dim + image_dim

    def forward(self, text: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        return torch.cat([text, image], dim=1)


class Fixed(Fusion):
    def __init__(self, params: FixedFusionParams, text_dim: int, image_dim: int):
        super().__init__()
        self.out_dim = params.out_dim
        self.proj = nn.Linear(text_dim + image_dim, self.out_dim)

    def forward(self, text: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        return self.proj(torch.cat([text, image], dim=1))


class Identity(Enhancement):
    def __init__(self, params: BaseModel, dim: int):
        super().__init__()
        self.out_dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class IdentityAttention(TextAttention):
    def __init__(self, params: BaseModel, dim: int):
        super().__init__()

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return x


class Mlp(RelationHead):
    def __init__(self, params: RelationParams, fused_dim: int, text_dim: int, image_dim: int):
        super().__init__()
        self.in_dim = params.in_dim or fused_dim
        self.net = nn.Sequential(nn.Linear(self.in_dim, params.hidden), nn.ReLU(),
                                 nn.Linear(params.hidden, 1))

    def forward(self, fused: torch.Tensor) -> torch.Tensor:
        return self.net(fused).squeeze(1)


class Mse(RelationLoss):
    def __init__(self, params: BaseModel):
        super().__init__()

    def forward(self, scores: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return ((scores - target) ** 2).mean()


class Pairs(PairDataset):
    """Numbered texts with two classes, the same pairs in every split; images are never drawn
    (only the config and assembly tests build this dataset)."""

    classes = ["even", "odd"]

    def __init__(self, size: int):
        self.records = [PairRecord(f"p{i}", f"text {i}", f"p{i}.png", (i % 2,))
                        for i in range(size)]

    def split(self, name: str) -> list[PairRecord]:
        return list(self.records)


def make_pairs(params: PairsParams, check: bool = False) -> Pairs:
    return Pairs(params.size)


#: the preset every fake config starts from: a pipeline made only of fake components
BASE_PRESET: dict[str, Any] = {
    "dataset": {"name": "fake-pairs"},
    "pipeline": {
        "text": {"tokenizer": {"name": "fake-words"},
                 "encoder": {"name": "fake-text", "params": {"out_dim": 8}}},
        "image": {"encoder": {"name": "fake-image", "params": {"out_dim": 8, "size": 16}}},
        "fusion": {"name": "fake-concat"},
        "enhancement": {"name": "fake-identity"},
        "relation": {"name": "fake-mlp", "params": {"hidden": 16}},
        "loss": {"name": "fake-mse"},
    },
}


class OneStage(TrainingRecipe):
    """One stage training the whole model with its own loss on the in-batch pair matrix."""

    stages = (StageSpec("relation", "fake relation stage", min_batch=2),)

    def __init__(self, params: BaseModel):
        self.params = params

    def trainable(self, stage, step, model, extras):
        return [model]

    def losses(self, stage, step, model, extras, batch):
        scores = model.pair_scores(model.encode_text(batch.text), model.encode_image(batch.images))
        target = (batch.labels @ batch.labels.T > 0).float()
        return {"loss": model.loss(scores, target)}


@hookimpl
def daer_register_components(registry) -> None:
    # the default recipe (daer's name for it), so that configs built from these fakes
    # validate without naming a recipe
    registry.add("recipe", "daer-three-stage", factory=OneStage, default=True,
                 summary="fake one-stage recipe")
    registry.add("tokenizer", "fake-words", factory=lambda p: Words(), summary="split on spaces")
    registry.add("text_encoder", "fake-text", factory=FakeText, params=WidthParams,
                 summary="token statistics -> linear")
    registry.add("text_attention", "fake-identity", factory=IdentityAttention,
                 summary="leaves tokens as they are")
    registry.add("image_encoder", "fake-image", factory=FakeImage, params=ImageParams,
                 summary="mean colour -> linear")
    registry.add("fusion", "fake-concat", factory=Concat, summary="concatenation")
    registry.add("fusion", "fake-fixed", factory=Fixed, params=FixedFusionParams,
                 summary="concatenation projected to a fixed width")
    registry.add("enhancement", "fake-identity", factory=Identity, summary="no change")
    registry.add("relation", "fake-mlp", factory=Mlp, params=RelationParams,
                 summary="two-layer MLP score")
    registry.add("loss", "fake-mse", factory=Mse, summary="mean squared error")
    registry.add("dataset", "fake-pairs", factory=make_pairs, params=PairsParams,
                 summary="numbered texts")


@hookimpl
def daer_register_presets(registry) -> None:
    registry.add_preset("fake-base", BASE_PRESET, summary="every component a fake one")
