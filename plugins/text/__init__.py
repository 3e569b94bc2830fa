"""Text-side components of the DAER paper (§3.1): the ``words`` tokenizer, the
``word2vec-lstm`` encoder and the ``dual-region`` attention (Eq. 1-3).

Each module named in :data:`MODULES` exposes ``register(registry)``; adding a component is
adding its module name here.
"""
from importlib import import_module

from registry import hookimpl

#: component modules of this plugin, registered in this order
MODULES: list[str] = ["tokenizers", "word2vec_lstm", "dual_region", "hf_text"]


@hookimpl
def daer_register_components(registry) -> None:
    for name in MODULES:
        import_module(f"{__name__}.{name}").register(registry)
