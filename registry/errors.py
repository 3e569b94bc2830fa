"""Errors raised by the registry. Each one says what was asked for and what exists."""
from __future__ import annotations


class RegistryError(Exception):
    """Base class for registry problems (bad names, duplicates, invalid params)."""


class UnknownComponentError(RegistryError, KeyError):
    """A component name that no loaded plugin registered for that kind."""

    def __init__(self, kind: str, name: str, available: list[str], suggestions: list[str],
                 failed_plugins: list[str] | None = None,
                 blocked_plugins: list[str] | None = None, unavailable: str | None = None):
        self.kind, self.name = kind, name
        self.available, self.suggestions = available, suggestions
        if unavailable:  # registered, then dropped: a component it builds is missing
            super().__init__(f"{kind} {name!r} is unavailable: {unavailable}")
            return
        msg = f"unknown {kind} {name!r}"
        if suggestions:
            msg += f"; did you mean {' or '.join(repr(s) for s in suggestions)}?"
        msg += f" Available {kind} components: {', '.join(available) if available else '(none)'}."
        if failed_plugins:
            msg += (" Note: these plugins failed to load and may have provided it: "
                    + ", ".join(failed_plugins) + " (see `daer plugins list`).")
        if blocked_plugins:
            msg += (" Note: these plugins are blocked (-p no:NAME or DAER_DISABLE_PLUGINS) and"
                    " may provide it: " + ", ".join(blocked_plugins) + ".")
        super().__init__(msg)

    def __str__(self) -> str:  # KeyError would otherwise repr() the message
        return self.args[0]


class UnknownKindError(RegistryError, KeyError):
    """A component kind that does not exist."""

    def __str__(self) -> str:
        return self.args[0]


class DuplicateComponentError(RegistryError):
    """Two plugins registered the same name for the same kind."""


class ParamsError(RegistryError, ValueError):
    """Component params that fail validation against the component's params model.

    ``problems`` holds each one as ``(key path inside the params, message)``, so that a config
    loader can put its own key path in front without reading the message back.
    """

    def __init__(self, message: str, problems: list[tuple[tuple[str, ...], str]] | None = None):
        super().__init__(message)
        self.problems = list(problems or [])
