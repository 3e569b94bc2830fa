"""Image-side components of the DAER paper (§3.2): the ``mobilenetv3-large`` encoder and the
``dual-spatial`` attention (Eq. 4-6) it carries inside every bottleneck.

Each module named in :data:`MODULES` exposes ``register(registry)``; adding a component is
adding its module name here.
"""
from importlib import import_module

from registry import hookimpl

#: component modules of this plugin, registered in this order
MODULES: list[str] = ["mobilenet", "dual_spatial", "timm_encoder"]


@hookimpl
def daer_register_components(registry) -> None:
    for name in MODULES:
        import_module(f"{__name__}.{name}").register(registry)
