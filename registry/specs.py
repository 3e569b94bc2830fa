"""What one registry entry is: the params base models and the spec records.

Split from :mod:`registry.components` so the records a plugin registers (a component with
its params model, a preset) and their JSON description live apart from the table that
stores and builds them; :mod:`registry.components` re-exports every name here.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

from pydantic import BaseModel, ConfigDict, ValidationError

from .errors import ParamsError
from .refs import RefField

class Params(BaseModel):
    """Base of every params model: an unknown key is an error, never silently ignored.

    A typo in a config (``vocab_sise``) then fails validation with its key path instead of
    leaving the default in place. Subclass it and give every field its default and a
    ``description`` here: the params model is the only place a component's defaults live.
    """

    model_config = ConfigDict(extra="forbid")


class NoParams(Params):
    """Params model for components that take no parameters."""


@dataclass(frozen=True)
class ComponentSpec:
    """One registered component: everything needed to build, validate and document it."""

    kind: str
    name: str
    factory: Callable[..., Any]
    params: type[BaseModel]
    summary: str
    plugin: str
    distribution: str | None = None
    version: str | None = None
    #: components this one builds when it is built, as ``(kind, name)``; ``name`` None means
    #: "some component of that kind" (one chosen by a param). Checked once every plugin has
    #: loaded: a component whose requirement is missing is unavailable, with a warning. The
    #: default of each component reference (:attr:`refs`) is one, added at registration.
    requires: tuple[tuple[str, str | None], ...] = ()
    #: the params model's component references (``Ref[...]`` fields): the registry builds
    #: each and hands it to the factory as the keyword named after the field
    refs: tuple[RefField, ...] = ()

    def validate_params(self, params: Mapping[str, Any] | BaseModel | None) -> BaseModel:
        """Validate raw params against this component's params model."""
        if isinstance(params, self.params):
            return params
        try:
            return self.params.model_validate(dict(params or {}))
        except ValidationError as exc:
            problems = [(tuple(str(p) for p in err["loc"]), err["msg"]) for err in exc.errors()]
            raise self.params_error(problems) from None

    def params_error(self, problems: list[tuple[tuple[str, ...], str]]) -> ParamsError:
        text = "; ".join(f"{'.'.join(loc) or '(root)'}: {msg}" for loc, msg in problems)
        return ParamsError(f"invalid params for {self.kind} {self.name!r} (plugin {self.plugin}):"
                           f" {text}", problems)

    def describe(self) -> dict[str, Any]:
        """A JSON-friendly description, the stable schema of ``daer plugins show --json``
        (:meth:`ComponentRegistry.describe` adds the referenced components' defaults)."""
        refs = {r.path[0]: r for r in self.refs}
        fields = []
        for fname, finfo in self.params.model_fields.items():
            default = None if finfo.is_required() else finfo.get_default(call_default_factory=True)
            ref = refs.get(fname)
            fields.append({
                "name": fname,
                "type": f"{ref.kind} reference" if ref else _type_name(finfo.annotation),
                "required": finfo.is_required(),
                "default": _jsonable(default),
                "doc": finfo.description or "",
                **({"ref": {"kind": ref.kind, "forward": list(ref.forward)}} if ref else {}),
            })
        return {
            "kind": self.kind, "name": self.name, "summary": self.summary,
            "plugin": self.plugin, "distribution": self.distribution, "version": self.version,
            "params": fields,
            "requires": [{"kind": k, "name": n} for k, n in self.requires],
        }


@dataclass(frozen=True)
class PresetSpec:
    """A named partial run config, registered by a plugin.

    With ``extends`` the config holds only the differences from another preset, merged over
    it when a run config is loaded (``daer_core.config.loading.preset_config``); the base may
    come from another plugin, so it is looked up then, not at registration. An ``abstract``
    preset is a shared parent only: other presets extend it, a run cannot start from it, and
    :meth:`ComponentRegistry.presets` leaves it out unless asked.
    """

    name: str
    config: dict[str, Any]
    summary: str
    plugin: str
    distribution: str | None = None
    extends: str | None = None
    abstract: bool = False


def _type_name(annotation: Any) -> str:
    if annotation is None:
        return "None"
    if isinstance(annotation, type):
        return annotation.__name__
    return str(annotation).replace("typing.", "")


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    return str(value)
