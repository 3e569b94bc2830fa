"""Small image-text data on disk, shared by the dataset and the training tests."""
from __future__ import annotations

import json
from pathlib import Path

from PIL import Image


def write_image_manifest(root: Path, n: int = 12) -> Path:
    """``root/manifest.jsonl`` with n pairs of 32 px JPEGs in three classes, splits 8/2/2
    (for n = 12): ids are ``row-<line>``, image k is ``img/<k>.jpg``."""
    rows = []
    for k in range(n):
        name = f"img/{k}.jpg"
        (root / "img").mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (32, 32), (20 * k % 256, 60, 120)).save(root / name, format="JPEG")
        rows.append({"image": name, "text": f"colour {k % 3} shape", "labels": [f"c{k % 3}"],
                     "split": "train" if k < 2 * n // 3 else ("val" if k < 5 * n // 6
                                                              else "test")})
    (root / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root
