"""Drawing of ``shapes`` scenes: the RGB of each colour name and the picklable
:class:`ShapeScene` that renders one image on demand from a few numbers.

Split out of :mod:`plugins.datasets.shapes.scenes` so that making scenes and captions and
drawing pixels are one job each; every name here is still importable from ``scenes``.
Drawing is a pure function of a scene's fields, so images are unchanged byte for byte.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40), "green": (40, 190, 60), "blue": (50, 90, 230),
    "yellow": (235, 215, 40), "magenta": (210, 50, 200), "cyan": (40, 205, 215),
    "orange": (245, 140, 30), "white": (235, 235, 235),
}


@dataclass(frozen=True)
class ShapeObject:
    """One drawn object: centre and radius as fractions of the image side."""

    shape: str
    colour: str
    cx: float
    cy: float
    radius: float
    angle: float  # rotation in degrees (stars, triangles, crosses)


@dataclass(frozen=True)
class ShapeScene:
    """Everything needed to draw one image; calling it returns the RGB PIL image.

    Holding only a few numbers keeps records small and picklable; drawing is a pure function
    of these fields, so an image is identical however often or wherever it is drawn.
    """

    size: int
    background: tuple[int, int, int]
    objects: tuple[ShapeObject, ...]
    noise_seed: int

    def __call__(self) -> Image.Image:
        scale = max(1, min(4, 256 // self.size))  # supersample for smooth edges
        side = self.size * scale
        img = Image.new("RGB", (side, side), self.background)
        draw = ImageDraw.Draw(img)
        rng = np.random.default_rng(self.noise_seed)
        for obj in self.objects:
            jitter = rng.integers(-25, 26, size=3)
            fill = tuple(int(np.clip(c + j, 0, 255)) for c, j in zip(COLOURS[obj.colour], jitter))
            _draw_shape(draw, obj, side, fill)
        img = img.resize((self.size, self.size), Image.LANCZOS) if scale > 1 else img
        arr = np.asarray(img, dtype=np.int16)
        arr = arr + rng.integers(-8, 9, size=arr.shape, dtype=np.int16)  # sensor-like noise
        return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")


def _polygon(cx: float, cy: float, r: float, n: int, angle: float,
             inner: float | None = None) -> list[tuple[float, float]]:
    """Vertices of a regular polygon (or a star when ``inner`` radius ratio is given)."""
    pts = []
    steps = n * 2 if inner else n
    for k in range(steps):
        rad = r * (inner if inner and k % 2 else 1.0)
        a = math.radians(angle) + 2 * math.pi * k / steps - math.pi / 2
        pts.append((cx + rad * math.cos(a), cy + rad * math.sin(a)))
    return pts


def _draw_shape(draw: ImageDraw.ImageDraw, obj: ShapeObject, side: int, fill) -> None:
    cx, cy, r = obj.cx * side, obj.cy * side, obj.radius * side
    if obj.shape == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
    elif obj.shape == "square":
        s = r * 0.85
        draw.rectangle([cx - s, cy - s, cx + s, cy + s], fill=fill)
    elif obj.shape == "triangle":
        draw.polygon(_polygon(cx, cy, r, 3, obj.angle), fill=fill)
    elif obj.shape == "diamond":
        draw.polygon(_polygon(cx, cy, r, 4, 0.0), fill=fill)
    elif obj.shape == "cross":
        w = r * 0.33
        draw.rectangle([cx - r, cy - w, cx + r, cy + w], fill=fill)
        draw.rectangle([cx - w, cy - r, cx + w, cy + r], fill=fill)
    elif obj.shape == "star":
        draw.polygon(_polygon(cx, cy, r, 5, obj.angle, inner=0.45), fill=fill)
    else:  # pragma: no cover - SHAPES is closed
        raise ValueError(f"unknown shape {obj.shape!r}")

