"""daer's plugin system: pluggy hookspecs, entry-point discovery and the component registry.

Python API (names are the API, as in timm)::

    import registry
    enc = registry.create("text_encoder", "word2vec-lstm", {"hidden_size": 300})
    registry.list_components("image_encoder", "mobilenet*")
"""
from __future__ import annotations

from typing import Any, Mapping

from .components import ComponentRegistry, ComponentSpec, NoParams, Params, PluginScope, PresetSpec
from .refs import ComponentRef, Ref, RefField, RefKind, ref_field, ref_fields
from .errors import (DuplicateComponentError, ParamsError, RegistryError,
                     UnknownComponentError, UnknownKindError)
from .hookspecs import hookimpl, hookspec
from .kinds import KINDS, FactorySignatureError, InterfaceError, Kind
from .manager import (ENTRY_POINT_GROUP, ENV_DISABLE, ENV_DISABLE_AUTOLOAD, ENV_LOAD,
                      LoadedPlugins, PluginInfo, PluginLoadWarning, default_plugins,
                      load_plugins, set_default_plugins)


def get_registry(registry: ComponentRegistry | None = None) -> ComponentRegistry:
    """``registry`` if one is given, else the process-wide registry of every loaded plugin's
    components: the one line a function taking ``registry=None`` needs
    (``registry = get_registry(registry)``)."""
    return registry if registry is not None else default_plugins().registry


def create(kind: str, name: str, params: Mapping[str, Any] | None = None, **deps: Any) -> Any:
    """Build a registered component by kind and name (params are validated)."""
    return get_registry().create(kind, name, params, **deps)


def list_components(kind: str | None = None, pattern: str = "*") -> list[str]:
    """Names of components of ``kind`` matching a glob pattern, like ``timm.list_models``."""
    return [s.name for s in get_registry().list(kind, pattern)]


__all__ = [
    "KINDS", "Kind", "FactorySignatureError", "InterfaceError", "ComponentRegistry",
    "ComponentSpec", "NoParams", "Params", "PluginScope", "PresetSpec", "ComponentRef", "Ref",
    "RefField", "RefKind", "ref_field", "ref_fields",
    "DuplicateComponentError", "ParamsError", "RegistryError", "UnknownComponentError",
    "UnknownKindError", "hookimpl", "hookspec", "ENTRY_POINT_GROUP", "ENV_DISABLE",
    "ENV_DISABLE_AUTOLOAD", "ENV_LOAD", "LoadedPlugins", "PluginInfo", "PluginLoadWarning",
    "default_plugins", "load_plugins", "set_default_plugins", "get_registry", "create",
    "list_components",
]
