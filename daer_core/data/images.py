"""Image decoding that trusts the bytes, not the file name."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError


class ImageDecodeError(ValueError):
    """An image file that cannot be decoded; the message names the file."""


def load_rgb(ref: Any) -> Image.Image:
    """Open ``ref`` (a path, or a callable returning a PIL image) as an RGB image.

    PIL identifies the format from the file's content, so a PNG or BMP saved as ``.jpg`` is
    read correctly. The image is fully decoded and the file closed before returning.
    """
    if callable(ref):
        img = ref()
        return img if img.mode == "RGB" else img.convert("RGB")
    path = Path(ref)
    try:
        with Image.open(path) as im:
            im.load()
            return im.convert("RGB")
    except FileNotFoundError:
        raise ImageDecodeError(f"image file not found: {path}") from None
    except (UnidentifiedImageError, OSError) as exc:
        raise ImageDecodeError(f"cannot decode image {path}: {exc}") from None
