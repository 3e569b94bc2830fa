"""Feature-level encoders: every method can train on precomputed vectors.

Papers in cross-modal retrieval often work on published features (the Wikipedia set's SIFT
and LDA vectors, VGG / BERT features); the ``features`` dataset provides them, and these
encoders (``inputs = "features"``) turn them into embeddings for any recipe and relation side.

Each module named in :data:`MODULES` exposes ``register(registry)``.
"""
from importlib import import_module

from registry import hookimpl

#: component modules of this plugin, registered in this order
MODULES: list[str] = ["mlp"]


@hookimpl
def daer_register_components(registry) -> None:
    for name in MODULES:
        import_module(f"{__name__}.{name}").register(registry)
