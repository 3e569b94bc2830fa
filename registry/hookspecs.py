"""Every hook a daer plugin can implement, in one place.

The surface is deliberately small: a plugin contributes *components* (named factories of a
kind) and *presets* (named partial configs). Everything else — building pipelines, training,
evaluation — is done by the core from those names.

A plugin is a plain module with ``@hookimpl`` functions::

    from registry import hookimpl

    @hookimpl
    def daer_register_components(registry):
        registry.add("text_encoder", "my-encoder", factory=MyEncoder, params=MyParams,
                     summary="One line that says what it is.")
"""
from __future__ import annotations

import pluggy

PROJECT_NAME = "daer"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def daer_register_components(registry) -> None:
    """Register this plugin's components.

    ``registry`` is a :class:`registry.components.PluginScope`: call
    ``registry.add(kind, name, factory=..., params=..., summary=...)`` once per component.
    The scope records which plugin and distribution provided each entry, so a plugin never
    names itself. Raising here marks only this plugin as failed; the others still load.
    """


@hookspec
def daer_register_presets(registry) -> None:
    """Register named presets: partial run configs (plain data) selected by name.

    Call ``registry.add_preset(name, config_dict, summary=..., extends=None)``; with
    ``extends="daer"`` the dict holds only the differences from that preset. A preset is
    merged under the user's config, so anything in it can be overridden with ``--set``.
    ``abstract=True`` registers a shared parent: blocks several presets extend, never a run's
    starting point.
    """
