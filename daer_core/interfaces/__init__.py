"""The contracts between the core and plugins, one module per side of the model."""
from .data import (SPLITS, DataReport, FeatureDataset, FeatureSplit, ImageRef, PairDataset,
                   PairRecord, Problem, SplitName)
from .image import ImageAttention, ImageAttentionFactory, ImageEncoder
from .methods import CrossModalMethod, FeatureExtractor
from .recipe import StageSpec, TrainBatch, TrainingRecipe
from .relation import Enhancement, Fusion, RelationHead, RelationLoss, TwoTowerRelation
from .text import TextAttention, TextAttentionFactory, TextEncoder, Tokenizer

__all__ = [
    "SPLITS", "DataReport", "FeatureDataset", "FeatureSplit", "ImageRef", "PairDataset",
    "PairRecord", "Problem", "SplitName", "ImageAttention", "ImageAttentionFactory",
    "ImageEncoder", "CrossModalMethod", "FeatureExtractor", "Enhancement", "Fusion",
    "RelationHead", "RelationLoss", "TwoTowerRelation", "TextAttention",
    "TextAttentionFactory", "TextEncoder", "Tokenizer", "StageSpec", "TrainBatch",
    "TrainingRecipe",
]
