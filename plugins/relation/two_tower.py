"""What the two-tower relations (``cosine``, ``euclidean``, ``class-softmax``) share."""
from __future__ import annotations

from daer_core.errors import DimensionMismatchError


def common_width(name: str, text_dim: int, image_dim: int,
                 needs: str = "compares embeddings directly") -> int:
    """The one width both towers' embeddings must have, or a DimensionMismatchError naming
    relation ``name``, why it ``needs`` one width, and the two config keys that set it."""
    if int(text_dim) != int(image_dim):
        raise DimensionMismatchError(
            f"relation '{name}' {needs}, but the text encoder outputs {text_dim} and the image"
            f" encoder {image_dim}; give both the same width with"
            f" pipeline.text.encoder.params.out_dim and pipeline.image.encoder.params.out_dim")
    return int(text_dim)
