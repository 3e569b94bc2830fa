"""Feature-level encoders: every method can train on precomputed vectors.

Papers in cross-modal retrieval often work on published features (the Wikipedia set's SIFT
and LDA vectors, VGG / BERT features); the ``features`` dataset provides them, and these
encoders (``inputs = "features"``) turn them into embeddings for any recipe and relation side.
"""
from registry import hookimpl

from .mlp import VectorMLPParams, make_image, make_text

VECTOR_MLP = ("precomputed feature vectors -> batch-norm standardisation -> MLP -> out_dim "
              "(input width taken from the data)")


@hookimpl
def daer_register_components(registry) -> None:
    registry.add("text_encoder", "vector-mlp", factory=make_text, params=VectorMLPParams,
                 summary=VECTOR_MLP)
    registry.add("image_encoder", "vector-mlp", factory=make_image, params=VectorMLPParams,
                 summary=VECTOR_MLP)
