"""The built-in ``shapes`` dataset, a plugin of its own (``daer-shapes``) so that it can be
disabled or loaded alone: synthetic image-caption pairs that need word order. The generator
is :mod:`plugins.datasets.shapes.scenes`; its public names are re-exported here.
"""
from registry import hookimpl

from .scenes import (COLOUR_NAMES, COLOURS, INVERSE, MAIN_SIZE_WORDS, RELATION_WORDS, SHAPES,
                     SMALL_SIZE_WORDS, LabelScheme, ShapeObject, ShapeScene, ShapesDataset,
                     ShapesParams, class_combos, class_name, make_shapes, relation_of)

__all__ = ["COLOUR_NAMES", "COLOURS", "INVERSE", "MAIN_SIZE_WORDS", "RELATION_WORDS", "SHAPES",
           "SMALL_SIZE_WORDS", "LabelScheme", "ShapeObject", "ShapeScene", "ShapesDataset",
           "ShapesParams", "class_combos", "class_name", "make_shapes", "relation_of"]


@hookimpl
def daer_register_components(registry) -> None:
    registry.add("dataset", "shapes", factory=make_shapes, params=ShapesParams)
