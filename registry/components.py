"""The component table: one registry, names as the API (in the spirit of timm).

A *component* is a factory of some *kind* (``text_encoder``, ``fusion``, ``dataset``, ...)
registered under a *name*, together with a pydantic model of its params. The params model is
the single source of truth for defaults, validation and documentation (``daer plugins show``).

This module holds the table (:class:`ComponentRegistry`) and the scope a plugin registers
through (:class:`PluginScope`); the records they hold (:class:`ComponentSpec`,
:class:`PresetSpec`) and the params bases are in :mod:`registry.specs`, re-exported here.
"""
from __future__ import annotations

import difflib
import fnmatch
import inspect
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

from pydantic import BaseModel, ValidationError

from .errors import (DuplicateComponentError, ParamsError, UnknownComponentError,
                     UnknownKindError)
from .kinds import KINDS, FactorySignatureError
from .refs import ComponentRef, RefField, ref_fields
from .specs import ComponentSpec, NoParams, Params, PresetSpec

__all__ = ["ComponentRegistry", "ComponentSpec", "NoParams", "Params", "PluginScope",
           "PresetSpec"]


@dataclass
class ComponentRegistry:
    """All components and presets contributed by the loaded plugins."""

    _table: dict[str, dict[str, ComponentSpec]] = field(
        default_factory=lambda: {k: {} for k in KINDS})
    _presets: dict[str, PresetSpec] = field(default_factory=dict)
    #: plugin names whose import or registration failed (filled by the plugin manager)
    failed_plugins: list[str] = field(default_factory=list)
    blocked_plugins: list[str] = field(default_factory=list)
    #: ``(kind, name) -> why`` of components removed because a requirement is missing
    unavailable: dict[tuple[str, str], str] = field(default_factory=dict)
    #: ``kind -> name``: the component a run config gets where it names none of that kind,
    #: declared by the plugin that provides it (``registry.add(..., default=True)``)
    _defaults: dict[str, str] = field(default_factory=dict)

    # -- registration -------------------------------------------------------------------
    def add(self, spec: ComponentSpec, *, override: bool = False) -> None:
        """Add a spec; the same name twice in one kind is an error naming both providers.

        The factory is checked against its kind first (:meth:`registry.kinds.Kind.check_factory`),
        so a wrong signature is reported when the plugin registers, not when a run is built.
        """
        table = self._kind_table(spec.kind)
        KINDS[spec.kind].check_factory(spec.factory, spec.name,
                                       tuple(r.path[0] for r in spec.refs))
        existing = table.get(spec.name)
        if existing is not None and not override:
            raise DuplicateComponentError(
                f"{spec.kind} {spec.name!r} is registered twice: by plugin {existing.plugin!r}"
                f" ({existing.distribution or 'no distribution'}) and by plugin {spec.plugin!r}"
                f" ({spec.distribution or 'no distribution'}). Rename one, disable a plugin, or"
                " pass override=True in the later registration to replace it on purpose.")
        table[spec.name] = spec

    def set_default(self, kind: str, name: str, plugin: str, *, override: bool = False) -> None:
        """Make ``name`` the component of ``kind`` a run config gets when it names none."""
        self._kind_table(kind)
        current = self._defaults.get(kind)
        if current is not None and current != name and not override:
            owner = self._table[kind].get(current)
            raise DuplicateComponentError(
                f"the default {kind} is claimed twice: {current!r} by plugin"
                f" {owner.plugin if owner else '?'!r} and {name!r} by plugin {plugin!r}. Drop"
                " default=True from one, or pass override=True to replace it on purpose.")
        self._defaults[kind] = name

    def default(self, kind: str) -> str | None:
        """The default component of ``kind`` (None if no loaded plugin declares one)."""
        self._kind_table(kind)
        name = self._defaults.get(kind)
        return name if name is not None and name in self._table[kind] else None

    def defaults(self) -> dict[str, str]:
        """``kind -> default name`` as declared (a declared default may be unavailable)."""
        return dict(self._defaults)

    def add_preset(self, preset: PresetSpec, *, override: bool = False) -> None:
        existing = self._presets.get(preset.name)
        if existing is not None and not override:
            raise DuplicateComponentError(
                f"preset {preset.name!r} is registered twice: by plugin {existing.plugin!r} and"
                f" by plugin {preset.plugin!r}.")
        self._presets[preset.name] = preset

    # -- lookup -------------------------------------------------------------------------
    def get(self, kind: str, name: str) -> ComponentSpec:
        table = self._kind_table(kind)
        if name in table:
            return table[name]
        if (kind, name) in self.unavailable:
            raise UnknownComponentError(kind, name, sorted(table), [], self.failed_plugins,
                                        self.blocked_plugins,
                                        unavailable=self.unavailable[(kind, name)])
        available = sorted(table)
        suggestions = difflib.get_close_matches(name, available, n=3, cutoff=0.5)
        raise UnknownComponentError(kind, name, available, suggestions, self.failed_plugins,
                                    self.blocked_plugins)

    def drop_unmet_requirements(self) -> list[str]:
        """Remove components whose declared requirements no loaded plugin provides (until
        none is left: a removal may leave another one without its requirement); returns one
        line per removal, naming the component, its plugin and what it misses."""
        lines: list[str] = []
        changed = True
        while changed:
            changed = False
            for table in self._table.values():
                for spec in list(table.values()):
                    missing = [(k, n) for k, n in spec.requires
                               if not (self._table.get(k) if n is None
                                       else n in self._table.get(k, {}))]
                    if not missing:
                        continue
                    what = ", ".join(f"{k} {n!r}" if n else f"a {k}" for k, n in missing)
                    why = (f"it needs {what}, which no loaded plugin provides"
                           + (f" (blocked: {', '.join(self.blocked_plugins)})"
                              if self.blocked_plugins else "")
                           + (f" (failed: {', '.join(self.failed_plugins)})"
                              if self.failed_plugins else ""))
                    del table[spec.name]
                    self.unavailable[(spec.kind, spec.name)] = why
                    lines.append(f"{spec.kind} {spec.name!r} of plugin {spec.plugin!r} is"
                                 f" unavailable: {why}")
                    changed = True
        return lines

    def has(self, kind: str, name: str) -> bool:
        return name in self._kind_table(kind)

    def list(self, kind: str | None = None, pattern: str = "*") -> list[ComponentSpec]:
        """Components of one kind (or all kinds) whose name matches a glob pattern."""
        kinds = [kind] if kind else list(KINDS)
        out: list[ComponentSpec] = []
        for k in kinds:
            table = self._kind_table(k)
            out.extend(table[n] for n in sorted(table) if fnmatch.fnmatchcase(n, pattern))
        return out

    def find(self, name: str) -> list[ComponentSpec]:
        """Every kind's component with this exact name (names may repeat across kinds)."""
        return [t[name] for t in self._table.values() if name in t]

    def create(self, kind: str, name: str, params: Mapping[str, Any] | BaseModel | None = None,
               **deps: Any) -> Any:
        """Build a component by kind and name.

        ``params`` are validated against the component's params model; ``deps`` are objects
        the core hands over (an attention factory, a tokenizer, the input width, ...) and must
        be among the kind's deps. The built object is checked against the kind's interface.
        """
        spec = self.get(kind, name)
        contract = KINDS[kind]
        unknown = sorted(set(deps) - set(contract.deps))
        if unknown:
            raise FactorySignatureError(
                f"{kind} {name!r} created with {', '.join(unknown)}, which a {kind} factory"
                f" does not take; it is called as {contract.signature()}")
        validated = spec.validate_params(params)
        referenced = {}
        for ref in spec.refs:  # the components it uses, built first and handed in
            field_name = ref.path[0]
            chosen: ComponentRef | None = getattr(validated, field_name)
            if chosen is None:
                referenced[field_name] = None
                continue
            nested = KINDS[ref.kind]
            nested_deps = {d: None for d in nested.deps if d not in nested.optional_deps}
            nested_deps.update({d: deps[d] for d in ref.forward if d in deps})
            try:
                self.get(ref.kind, chosen.name)
            except UnknownComponentError as exc:
                raise spec.params_error([((field_name, "name"), str(exc))]) from None
            try:
                referenced[field_name] = self.create(ref.kind, chosen.name, chosen.params,
                                                     **nested_deps)
            except ParamsError as exc:
                if not exc.problems:
                    raise
                raise spec.params_error([((field_name, "params", *loc), msg)
                                         for loc, msg in exc.problems]) from None
        built = spec.factory(validated, **deps, **referenced)
        return contract.check_built(built, name)

    def resolve_params(self, kind: str, name: str,
                       params: Mapping[str, Any] | BaseModel | None = None) -> dict[str, Any]:
        """The params of component ``name`` as a run will use them: validated, defaults filled
        in, and every component reference resolved the same way (its name checked, its own
        params completed), as JSON-able data.

        Raises :class:`UnknownComponentError` for ``name`` itself and :class:`ParamsError`
        whose ``problems`` give each problem's key path inside the params (a misspelt
        referenced name is the problem ``backbone.name: unknown image_encoder 'foo'; ...``).
        """
        spec = self.get(kind, name)
        problems: list[tuple[tuple[str, ...], str]] = []
        try:
            validated = spec.validate_params(params)
        except ParamsError as exc:  # still check the references, to report every problem
            problems, validated = list(exc.problems), None
        data = validated.model_dump(mode="json") if validated is not None else {}
        for ref in spec.refs:
            field_name = ref.path[0]
            if validated is not None:
                chosen: ComponentRef | None = getattr(validated, field_name)
            else:
                chosen = _raw_ref(params, field_name, problems)
            if chosen is None:
                continue
            try:
                resolved = self.resolve_params(ref.kind, chosen.name, chosen.params)
            except UnknownComponentError as exc:
                problems.append(((field_name, "name"), str(exc)))
                continue
            except ParamsError as exc:
                problems.extend(((field_name, "params", *loc), msg) for loc, msg in exc.problems)
                continue
            data[field_name] = {"name": chosen.name, "params": resolved}
        if problems:
            raise spec.params_error(problems)
        return data

    def describe(self, kind: str, name: str) -> dict[str, Any]:
        """:meth:`ComponentSpec.describe` with each reference's default resolved: the
        referenced component's params with their own defaults filled in (nested defaults)."""
        spec = self.get(kind, name)
        out = spec.describe()
        refs = {r.path[0]: r for r in spec.refs}
        for entry in out["params"]:
            ref, default = refs.get(entry["name"]), entry["default"]
            if ref is None or not isinstance(default, dict) or "name" not in default:
                continue
            try:
                entry["default"] = {"name": default["name"], "params": self.resolve_params(
                    ref.kind, default["name"], default.get("params"))}
            except (UnknownComponentError, ParamsError):
                pass  # an unavailable default is shown as declared
        return out

    def preset(self, name: str) -> PresetSpec:
        if name in self._presets:
            return self._presets[name]
        available = sorted(self._presets)
        suggestions = difflib.get_close_matches(name, available, n=3, cutoff=0.5)
        raise UnknownComponentError("preset", name, available, suggestions, self.failed_plugins,
                                    self.blocked_plugins)

    def presets(self, pattern: str = "*", *, abstract: bool = False) -> list[PresetSpec]:
        """Presets a run can start from whose names match ``pattern``; ``abstract=True`` adds
        the shared parents."""
        return [self._presets[n] for n in sorted(self._presets) if fnmatch.fnmatchcase(n, pattern)
                and (abstract or not self._presets[n].abstract)]

    def children(self, name: str) -> list[str]:
        """Presets that extend ``name`` directly."""
        return [n for n in sorted(self._presets) if self._presets[n].extends == name]

    def _kind_table(self, kind: str) -> dict[str, ComponentSpec]:
        try:
            return self._table[kind]
        except KeyError:
            close = difflib.get_close_matches(kind, list(KINDS), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise UnknownKindError(
                f"unknown component kind {kind!r}{hint} Kinds: {', '.join(KINDS)}.") from None


@dataclass
class PluginScope:
    """What a plugin's ``daer_register_*`` hook receives: adds entries stamped with the plugin.

    Keeping the provenance here means a plugin never has to say who it is, and a duplicate or
    a failure can always be traced back to a plugin and its distribution.
    """

    registry: ComponentRegistry
    plugin: str
    distribution: str | None = None
    version: str | None = None
    added: list[str] = field(default_factory=list)
    #: ``(kind, name)`` entries added with ``override=True``; kept so that the merge into the
    #: shared registry replaces an earlier plugin's entry instead of failing as a duplicate
    overrides: set[tuple[str, str]] = field(default_factory=set)
    #: kinds whose default this plugin declared (``registry.add(..., default=True)``)
    defaults: list[str] = field(default_factory=list)

    def add(self, kind: str, name: str, *, factory: Callable[..., Any],
            params: type[BaseModel] = NoParams, summary: str | None = None,
            override: bool = False, default: bool = False,
            requires: Sequence[tuple[str, str | None]] = ()) -> None:
        """Register ``factory`` as the ``kind`` component ``name``.

        ``summary`` (the one line ``daer plugins list`` shows) defaults to the first paragraph
        of the factory's docstring, so the text documents the code where it is written.
        ``default=True`` makes it the component a run config gets where it names none of this
        kind (the core keeps no default names). The params model's component references
        (``Ref[...]`` fields, :mod:`registry.refs`) add their default components to
        ``requires``.
        """
        if not (isinstance(params, type) and issubclass(params, BaseModel)):
            raise TypeError(f"plugin {self.plugin}: params for {kind} {name!r} must be a"
                            f" pydantic model class, got {params!r}")
        if summary is None:
            # the factory's own docstring: a class without one must not show its interface's
            summary = inspect.cleandoc(getattr(factory, "__doc__", None) or "").split("\n\n")[0]
        summary = " ".join(summary.split())
        refs = tuple(ref_fields(params, nested=False))
        self._check_refs(kind, name, params, refs)
        needs = [(k, n) for k, n in requires]
        for ref in refs:
            needed = (ref.kind, ref.default.name if ref.default else None)
            if ref.required or ref.default is not None:
                needs.append(needed)
        self.registry.add(ComponentSpec(kind, name, factory, params, summary,
                                        self.plugin, self.distribution, self.version,
                                        tuple(dict.fromkeys(needs)), refs),
                          override=override)
        self.added.append(f"{kind}:{name}")
        if override:
            self.overrides.add((kind, name))
        if default:
            self.defaults.append(kind)
            self.registry.set_default(kind, name, self.plugin, override=override)

    def _check_refs(self, kind: str, name: str, params: type[BaseModel],
                    refs: tuple[RefField, ...]) -> None:
        """A reference names a kind that exists and forwards deps both kinds take; it is a
        direct field of the params model (the registry builds those only)."""
        for ref in refs:
            if ref.kind not in KINDS:
                raise UnknownKindError(f"plugin {self.plugin}: {kind} {name!r}: params field"
                                       f" {ref.dotted!r} refers to unknown kind {ref.kind!r};"
                                       f" kinds: {', '.join(KINDS)}")
            wrong = [d for d in ref.forward
                     if d not in KINDS[kind].deps or d not in KINDS[ref.kind].deps]
            if wrong:
                raise FactorySignatureError(
                    f"plugin {self.plugin}: {kind} {name!r}: params field {ref.dotted!r} forwards"
                    f" {', '.join(wrong)}, which is not a dep of both {kind} and {ref.kind}")
        deeper = [r.dotted for r in ref_fields(params) if len(r.path) > 1]
        if deeper:
            raise TypeError(f"plugin {self.plugin}: {kind} {name!r}: component references must"
                            f" be fields of the params model itself, not of a sub-model"
                            f" ({', '.join(deeper)})")

    def add_preset(self, name: str, config: dict[str, Any], *, summary: str = "",
                   extends: str | None = None, override: bool = False,
                   abstract: bool = False) -> None:
        """Register a named partial run config; ``abstract=True`` makes it a shared parent
        that presets ``extends`` and no run starts from."""
        if extends == name:
            raise ValueError(f"plugin {self.plugin}: preset {name!r} extends itself")
        self.registry.add_preset(PresetSpec(name, config, summary.strip(), self.plugin,
                                            self.distribution, extends, abstract),
                                 override=override)
        self.added.append(f"preset:{name}")
        if override:
            self.overrides.add(("preset", name))


def _raw_ref(params: Any, field_name: str, problems: list) -> ComponentRef | None:
    """The reference ``field_name`` as given in params that failed validation, when it is
    well-formed and has no problem of its own (None otherwise)."""
    if isinstance(params, BaseModel) or any(loc[:1] == (field_name,) for loc, _ in problems):
        return None
    value = dict(params or {}).get(field_name)
    try:
        return ComponentRef.model_validate(value) if isinstance(value, Mapping) else None
    except ValidationError:
        return None

