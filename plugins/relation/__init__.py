"""The enhanced relation network of the DAER paper (§3.3): ``concat`` fusion (Eq. 7),
``signed-power`` / ``identity`` enhancement (Eq. 8-9), the ``mlp`` relation head (Eq. 10)
and the ``frobenius`` loss (Eq. 11).

Each module named in :data:`MODULES` exposes ``register(registry)``; adding a component is
adding its module name here.
"""
from importlib import import_module

from registry import hookimpl

#: component modules of this plugin, registered in this order
MODULES: list[str] = ["concat", "enhancement", "mlp", "frobenius", "product", "cosine"]


@hookimpl
def daer_register_components(registry) -> None:
    for name in MODULES:
        import_module(f"{__name__}.{name}").register(registry)
