"""Image decoding that trusts the bytes, not the file name."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

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


def undecodable(records: Iterable[Any], desc: str = "decoding images") -> list[tuple[str, str]]:
    """``(id, reason)`` of each record whose image file cannot be fully decoded.

    Every pixel is decoded (not just the header): a JPEG cut short after an intact header
    opens fine and fails only here. Images drawn by a callable (generated data) are not
    files and are skipped. A progress bar is shown on a terminal, since this reads every
    image once.
    """
    from tqdm import tqdm
    files = [r for r in records if not callable(r.image)]
    bad: list[tuple[str, str]] = []
    for rec in tqdm(files, desc=desc, unit="img", leave=False, disable=None):
        try:
            with Image.open(rec.image) as im:
                im.load()
        except FileNotFoundError:
            bad.append((rec.id, f"image file not found: {rec.image}"))
        except (UnidentifiedImageError, OSError, ValueError) as exc:
            bad.append((rec.id, f"cannot decode image {rec.image}: {exc}"))
    return bad
