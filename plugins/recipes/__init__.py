"""Training recipes (kind ``recipe``): how a method's parameters are trained on the shared
trainer. ``daer-three-stage`` is Algorithm 1 of the DAER paper, the default of every run.

Each module named in :data:`MODULES` exposes ``register(registry)``; adding a recipe is
adding its module name here.
"""
from importlib import import_module

from registry import hookimpl

#: recipe modules of this plugin, registered in this order
MODULES: list[str] = ["daer_three_stage"]


@hookimpl
def daer_register_components(registry) -> None:
    for name in MODULES:
        import_module(f"{__name__}.{name}").register(registry)
