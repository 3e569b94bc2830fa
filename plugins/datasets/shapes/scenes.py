"""The built-in ``shapes`` dataset: synthetic image-caption pairs that need word order.

Each pair shows a *main* object (large) and usually a small *distractor* object on a dark
background; the caption names both, with their colours, sizes and spatial relation, in one of
several sentence forms. The class is an attribute of the main object (by default its shape and
colour), so a model must bind each colour word to the right shape word and tell the main object
from the distractor. A bag of words is not enough: "a large red circle left of a small blue
square" and "a large blue square right of a small red circle" use the same words but belong to
different classes, and the distractor is often itself an object of another class.

**Instance-level mode** (``captions_per_image`` N > 1). Category-level retrieval counts any
pair of the query's class as relevant; instance-level retrieval (Recall@K as on Flickr30k or
COCO) counts only the query's own image or its own captions. ``shapes`` supports both without
a download: with N > 1 each scene (image) gets N truthful captions, and the class stays the
main object's attribute, so the class alone does not identify the image — only the full
description (both objects, their colours, sizes and relation) does, and learning to read it
is exactly the compositional skill the captions test. Caption 0 of a scene is the caption it
has with N = 1; captions 1..N-1 are paraphrases (other sentence forms, size synonyms, the
inverse relation) drawn from rngs of their own, so N changes neither the scenes nor caption 0,
and N = 1 gives exactly the pairs, ids and splits of before. Several captions of one image
share the record's ``image_id`` (and its drawing); splits are made by scene, so every caption
of an image lands in the split its image is in.

Everything is derived from ``seed`` with numpy ``Generator`` objects, so the same params give
the same pairs on any machine. Captions are built eagerly (they are short); each image is
drawn on demand by a small picklable :class:`ShapeScene` stored in ``PairRecord.image``, so
nothing big is held in memory and DataLoader workers can receive records.

This module makes the scenes and their captions; how a scene is drawn (the colours' RGB, the
shapes' outlines, the noise) is :mod:`plugins.datasets.shapes.drawing`. The caption code
stays here with its word tables, which tests patch on this module.
"""
from __future__ import annotations

import math
from typing import Literal, Sequence

import numpy as np
from pydantic import Field, model_validator

from daer_core.data.splits import SplitFractions, sizes_from_fractions
from daer_core.interfaces.data import SPLITS, DataReport, PairDataset, PairRecord, SplitName
from registry import Params

# the drawing of a scene lives in .drawing; its names are re-exported here, where the package
# and older code import them from
from .drawing import COLOURS, ShapeObject, ShapeScene, _draw_shape, _polygon  # noqa: F401

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "diamond", "cross", "star")
COLOUR_NAMES: tuple[str, ...] = tuple(COLOURS)

#: caption words: main object sizes, distractor sizes, and each relation's phrasings
MAIN_SIZE_WORDS = ("large", "big")
SMALL_SIZE_WORDS = ("small", "little")
RELATION_WORDS: dict[str, tuple[str, ...]] = {
    "left": ("left of", "to the left of"),
    "right": ("right of", "to the right of"),
    "above": ("above", "over"),
    "below": ("below", "under", "beneath"),
}
INVERSE = {"left": "right", "right": "left", "above": "below", "below": "above"}

LabelScheme = Literal["shape_colour", "shape", "colour"]

#: draws of a paraphrase before a duplicate caption of its image is accepted: a lone object
#: has only 10 distinct captions (2 size words x 5 forms), so an image asking for more, or an
#: unlucky run of draws, must not loop forever
PARAPHRASE_TRIES = 100


class ShapesParams(Params):
    """Params of the synthetic ``shapes`` dataset."""

    num_pairs: int = Field(1200, ge=3, le=1_000_000,
                           description="number of scenes (images) generated, each one pair "
                                       "with captions_per_image 1 (images are drawn on demand;"
                                       " the records are held in memory); with "
                                       "captions_per_image N the dataset has N * num_pairs "
                                       "pairs")
    captions_per_image: int = Field(
        1, ge=1, le=10, description="captions of each scene: 1 = one pair per image "
        "(category level); N > 1 = N pairs per scene (instance-level retrieval, as Flickr30k/"
        "COCO) with distinct paraphrases sharing one image_id, caption 0 being the scene's "
        "caption at 1")
    num_classes: int = Field(
        10, ge=2, description="number of classes; with label_scheme shape_colour at most "
        f"{len(SHAPES) * len(COLOURS)}, shape at most {len(SHAPES)}, colour at most "
        f"{len(COLOURS)}")
    label_scheme: LabelScheme = Field(
        "shape_colour", description="what the class is: the main object's (shape, colour) "
        "pair, its shape only, or its colour only")
    image_size: int = Field(64, ge=16, le=1024,
                            description="side of the square RGB images in pixels "
                                        "(exposed as native_image_size)")
    split_fractions: SplitFractions = Field(
        (0.8, 0.1, 0.1), description="train / val / test fractions of the scenes (normalised "
                                     "to sum to 1); ignored when split_sizes is given")
    split_sizes: tuple[int, int, int] | None = Field(
        None, description="explicit train / val / test sizes in scenes (images); must add up "
                          "to num_pairs (every caption of a scene is in its scene's split)")
    distractor_prob: float = Field(
        0.9, ge=0.0, le=1.0, description="probability that a pair has a small second object")
    hard_distractor_prob: float = Field(
        0.5, ge=0.0, le=1.0, description="probability that a distractor is itself an object "
        "of another class (so only size and word order tell which object is the class)")
    seed: int = Field(0, ge=0, description="seed of everything random; same seed -> same data")

    @model_validator(mode="after")
    def _check(self) -> "ShapesParams":
        limit = {"shape_colour": len(SHAPES) * len(COLOURS), "shape": len(SHAPES),
                 "colour": len(COLOURS)}[self.label_scheme]
        if self.num_classes > limit:
            raise ValueError(f"num_classes={self.num_classes} exceeds the {limit} classes "
                             f"available with label_scheme={self.label_scheme!r}")
        if self.split_sizes is not None:
            if any(s < 0 for s in self.split_sizes) or sum(self.split_sizes) != self.num_pairs:
                unit = (f" (sizes count scenes; each has captions_per_image="
                        f"{self.captions_per_image} captions)"
                        if self.captions_per_image > 1 else "")
                raise ValueError(f"split_sizes {list(self.split_sizes)} must be non-negative "
                                 f"and add up to num_pairs={self.num_pairs}{unit}")
        return self


def class_combos(num_classes: int, scheme: LabelScheme) -> list[tuple[str | None, str | None]]:
    """The (shape, colour) defining each class; ``None`` where the scheme ignores it.

    For ``shape_colour`` the combos walk the shape x colour grid diagonally, so shapes and
    colours both repeat across classes and neither alone identifies a class.
    """
    if scheme == "shape":
        return [(SHAPES[k], None) for k in range(num_classes)]
    if scheme == "colour":
        return [(None, COLOUR_NAMES[k]) for k in range(num_classes)]
    n_s, n_c = len(SHAPES), len(COLOURS)
    combos = [(SHAPES[k % n_s], COLOUR_NAMES[(k + k // n_s) % n_c]) for k in range(num_classes)]
    assert len(set(combos)) == len(combos), "shape/colour grid walk must not repeat"
    return combos


def class_name(combo: tuple[str | None, str | None]) -> str:
    shape, colour = combo
    return " ".join(w for w in (colour, shape) if w)


def relation_of(main: ShapeObject, other: ShapeObject) -> str:
    """Where ``main`` is relative to ``other``: left / right / above / below."""
    dx, dy = main.cx - other.cx, main.cy - other.cy
    if abs(dx) >= abs(dy):
        return "left" if dx < 0 else "right"
    return "above" if dy < 0 else "below"


def _caption(rng: np.random.Generator, main: ShapeObject, other: ShapeObject | None) -> str:
    """One caption in a randomly chosen sentence form; the main object always carries a
    'large'-type size word and the distractor a 'small'-type one."""
    m = f"{_pick(rng, MAIN_SIZE_WORDS)} {main.colour} {main.shape}"
    if other is None:
        forms = (f"a {m}", f"a single {m}", f"there is a {m}", f"a {m} on its own",
                 f"only a {m} is shown")
        return str(_pick(rng, forms))
    d = f"{_pick(rng, SMALL_SIZE_WORDS)} {other.colour} {other.shape}"
    rel = relation_of(main, other)
    r = _pick(rng, RELATION_WORDS[rel])
    inv = _pick(rng, RELATION_WORDS[INVERSE[rel]])
    forms = (
        f"a {m} {r} a {d}",
        f"there is a {m} {r} a {d}",
        f"the {m} is {r} the {d}",
        f"{r} a {d} sits a {m}",
        f"{r} the {d} there is a {m}",
        f"a {d} is {inv} a {m}",
        f"a {d} {inv} the {m}",
    )
    return str(_pick(rng, forms))


def _pick(rng: np.random.Generator, options: Sequence[str]) -> str:
    return options[int(rng.integers(len(options)))]


def _random_object(rng: np.random.Generator, shape: str, colour: str,
                   radius: float) -> ShapeObject:
    cx, cy = rng.uniform(radius + 0.02, 1 - radius - 0.02, size=2)
    return ShapeObject(shape, colour, float(cx), float(cy), radius, float(rng.uniform(0, 360)))


def _clear(a: ShapeObject, b: ShapeObject) -> bool:
    """True when two objects do not touch and one axis clearly dominates their offset, so
    the caption's relation word is unambiguous."""
    dx, dy = abs(a.cx - b.cx), abs(a.cy - b.cy)
    return math.hypot(dx, dy) >= a.radius + b.radius + 0.04 and max(dx, dy) >= 1.5 * min(dx, dy)


def _place_pair(rng: np.random.Generator, main: tuple[str, str],
                other: tuple[str, str] | None) -> tuple[ShapeObject, ShapeObject | None]:
    """Positions for the main object and the optional distractor (rejection sampling; a
    valid layout exists for every radius drawn, so this ends after a few tries)."""
    main_r = float(rng.uniform(0.17, 0.23))
    if other is None:
        return _random_object(rng, *main, main_r), None
    other_r = float(rng.uniform(0.08, 0.11))
    for _ in range(1000):
        m = _random_object(rng, *main, main_r)
        o = _random_object(rng, *other, other_r)
        if _clear(m, o):
            return m, o
    raise RuntimeError("could not place two shapes apart")  # pragma: no cover


def _paraphrases(seed: int, index: int, count: int, main: ShapeObject,
                 other: ShapeObject | None, first: str) -> list[str]:
    """``first`` and ``count - 1`` further captions of one scene, distinct where possible.

    Caption ``c`` is drawn from its own rng ``[seed, 2, index, c]``: neither the scene's rng
    nor an earlier caption's draws are consumed, so asking for more captions changes neither
    the scene nor the captions already there. A draw equal to an earlier caption of the scene
    is redrawn (from the same rng) up to :data:`PARAPHRASE_TRIES` times; after that the
    duplicate is kept — a lone object has only 10 distinct captions, and the form space must
    not turn into an endless loop.
    """
    captions = [first]
    for c in range(1, count):
        rng = np.random.default_rng([seed, 2, index, c])
        text = _caption(rng, main, other)
        for _ in range(PARAPHRASE_TRIES - 1):
            if text not in captions:
                break
            text = _caption(rng, main, other)
        captions.append(text)
    return captions


class ShapesDataset(PairDataset):
    """Deterministic synthetic pairs; see the module docstring for the task's design."""

    def __init__(self, params: ShapesParams):
        self.params = params
        self.native_image_size = params.image_size
        combos = class_combos(params.num_classes, params.label_scheme)
        self.classes = [class_name(c) for c in combos]
        self._combos = combos
        # one list of records per scene, so that a split never separates an image's captions
        scenes = [self._make(i, lab) for i, lab in enumerate(self._labels())]
        sizes = (params.split_sizes if params.split_sizes is not None
                 else sizes_from_fractions(params.num_pairs, params.split_fractions))
        self._splits: dict[str, list[PairRecord]] = {}
        start = 0
        for name, size in zip(SPLITS, sizes):
            self._splits[name] = [r for scene in scenes[start:start + size] for r in scene]
            start += size

    def _labels(self) -> np.ndarray:
        """Balanced labels in a seeded random order (every class as often as possible)."""
        labels = np.arange(self.params.num_pairs) % self.params.num_classes
        return np.random.default_rng([self.params.seed, 0]).permutation(labels)

    def _make(self, index: int, label: int) -> list[PairRecord]:
        """The pairs of scene ``index``: one pair with id ``shapes-{index:05d}`` at
        ``captions_per_image`` 1 (the records of before, byte for byte), else one pair per
        caption, ids ``shapes-{index:05d}-{c}``, all with ``image_id`` ``shapes-{index:05d}``
        and the same drawing."""
        p = self.params
        rng = np.random.default_rng([p.seed, 1, index])
        shape, colour = self._combos[label]
        shape = shape or _pick(rng, SHAPES)
        colour = colour or _pick(rng, COLOUR_NAMES)
        second = (self._distractor(rng, label, shape, colour)
                  if rng.random() < p.distractor_prob else None)
        main, other = _place_pair(rng, (shape, colour), second)
        background = tuple(int(v) for v in rng.integers(0, 60, size=3))
        objects = (main,) if other is None else (main, other)
        if other is not None and rng.random() < 0.5:
            objects = (other, main)  # drawing order carries no information
        scene = ShapeScene(p.image_size, background, objects, int(rng.integers(2**31)))
        key = f"shapes-{index:05d}"
        first = _caption(rng, main, other)  # last draw of the scene's rng: caption 0
        if p.captions_per_image == 1:
            return [PairRecord(id=key, text=first, image=scene, labels=(int(label),))]
        texts = _paraphrases(p.seed, index, p.captions_per_image, main, other, first)
        return [PairRecord(id=f"{key}-{c}", text=t, image=scene, labels=(int(label),),
                           image_id=key) for c, t in enumerate(texts)]

    def _distractor(self, rng: np.random.Generator, label: int, shape: str,
                    colour: str) -> tuple[str, str]:
        """A distractor differing from the main object in whatever defines the class."""
        scheme = self.params.label_scheme

        def differs(s: str, c: str) -> bool:
            if scheme == "shape":
                return s != shape
            if scheme == "colour":
                return c != colour
            return (s, c) != (shape, colour)

        if rng.random() < self.params.hard_distractor_prob:
            others = [k for k in range(len(self._combos)) if k != label]
            s, c = self._combos[int(rng.choice(others))]
            s, c = s or _pick(rng, SHAPES), c or _pick(rng, COLOUR_NAMES)
            if differs(s, c):
                return s, c
        while True:
            s, c = _pick(rng, SHAPES), _pick(rng, COLOUR_NAMES)
            if differs(s, c):
                return s, c

    def split(self, name: SplitName) -> Sequence[PairRecord]:
        if name not in self._splits:
            raise KeyError(f"unknown split {name!r}; splits are {', '.join(SPLITS)}")
        return self._splits[name]

    def report(self) -> DataReport:
        rep = super().report()
        rep.class_counts = {s: {c: per.get(c, 0) for c in self.classes}
                            for s, per in rep.class_counts.items()}
        rep.layout, rep.root = "shapes", "(generated)"
        # keep what the base report found (images per split with several captions each)
        rep.info = {"generated": True, "params": self.params.model_dump(mode="json"),
                    **rep.info}
        return rep


def make_shapes(params: ShapesParams, check: bool = False) -> ShapesDataset:
    """Synthetic shape/colour scenes with word-order-sensitive captions (deterministic from a seed;
    no files needed); several captions per image with ``captions_per_image`` (instance level).

    ``check`` changes nothing: generated pairs have no files that could be broken.
    """
    return ShapesDataset(params)
