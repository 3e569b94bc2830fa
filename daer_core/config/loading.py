"""Reading configs: YAML or TOML files, presets, ``--set`` overrides, and key-path errors.

Resolution order (later wins): preset -> file -> ``--set`` overrides. Then the whole tree is
validated by :class:`~daer_core.config.schema.RunConfig` (unknown keys rejected with their
path) and every component reference is checked against the registry: its name must exist
(did-you-mean otherwise) and its params must validate against that component's params
model. Validated params are stored back with their defaults filled in, so ``daer config
show`` prints exactly what a run will use.
"""
from __future__ import annotations

import copy
import tomllib
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import yaml
from pydantic import ValidationError

from registry import ParamsError, UnknownComponentError, get_registry, ref_fields

from ..errors import ConfigError
from .schema import RunConfig


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, except that a key given twice in one mapping is an error.

    Plain YAML keeps the last value silently, so a config with ``epochs`` set twice would
    train with whichever came last without a word.
    """


def _no_duplicate_keys(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False):
    first_line: dict[Any, int] = {}
    for key_node, _value in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *anchor` may be overridden
            continue
        key = loader.construct_object(key_node, deep=True)
        try:
            if key in first_line:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (first given on line"
                    f" {first_line[key]}); remove one of them", key_node.start_mark)
            first_line[key] = key_node.start_mark.line + 1
        except TypeError:  # an unhashable key: the base constructor reports it
            pass
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
                                 _no_duplicate_keys)


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Parse a ``.yaml``/``.yml``/``.toml``/``.json`` file into a dict, naming the file on errors."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        utf16 = raw[:2] in (b"\xff\xfe", b"\xfe\xff")
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start} cannot be decoded"
                          + ("; the file is UTF-16" if utf16 else "")
                          + "); save it as UTF-8") from None
    try:
        if path.suffix == ".toml":
            data = tomllib.loads(text)
        else:  # YAML is a superset of JSON
            data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader
    except (yaml.YAMLError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: cannot parse: {exc}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping, got {type(data).__name__}")
    return data


def deep_merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """Recursively merge ``over`` into a copy of ``base``; ``over`` wins on conflicts.

    A component reference that changes ``name`` replaces the base's params instead of
    merging them, because params of one component mean nothing to another. An entry keyed
    by a dotted key path (``tune.space``'s ``train.stages.text.optimizer.lr: {...}``) is
    replaced whole: a range given as ``choices`` must not inherit the base's ``low``/``log``.
    """
    out = copy.deepcopy(dict(base))
    for key, value in over.items():
        if ("." not in str(key) and isinstance(value, Mapping) and isinstance(out.get(key), Mapping)
                and not ("name" in value and value.get("name") != out[key].get("name"))):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def parse_override(text: str) -> tuple[list[str], Any]:
    """``a.b.c=value`` -> (["a","b","c"], value parsed as a YAML scalar/flow value)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like key.path=value")
    key, _, raw = text.partition("=")
    parts = [p for p in key.strip().split(".")]
    if not key.strip() or any(not p for p in parts):
        raise ConfigError(f"override {text!r}: empty key path")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return parts, value


def apply_overrides(data: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Apply ``key.path=value`` overrides in order to a copy of ``data``.

    Setting a component's ``name`` to a different one drops the params given for the old
    one (as :func:`deep_merge` does), so ``--set pipeline.relation.name=other`` works even
    when the file configures the old relation's params.
    """
    out = copy.deepcopy(data)
    for text in overrides:
        parts, value = parse_override(text)
        node = out
        for i, part in enumerate(parts[:-1]):
            nxt = node.get(part)
            if nxt is None:
                nxt = node[part] = {}
            if not isinstance(nxt, dict):
                raise ConfigError(f"override {text!r}: {'.'.join(parts[:i + 1])} is a"
                                  f" {type(nxt).__name__}, not a mapping")
            node = nxt
        if (parts[-1] == "name" and "params" in node and node.get("name") is not None
                and node.get("name") != value):
            # same rule as deep_merge: another component's params mean nothing to this one
            node.pop("params")
        node[parts[-1]] = value
    return out


Blame = Callable[[tuple[str, ...]], str]


def override_blame(source: str, overrides: Iterable[str]) -> Blame:
    """Who set a key path: the ``--set`` that set it (or set a mapping above or below it),
    else ``source`` (the config file). Errors then point at what the user has to fix."""
    paths = []
    for text in overrides:
        try:
            paths.append((tuple(parse_override(text)[0]), text))
        except ConfigError:
            continue

    def blame(loc: tuple[str, ...]) -> str:
        for path, text in reversed(paths):  # the last --set of a key wins
            n = min(len(path), len(loc))
            if n and tuple(loc[:n]) == path[:n]:
                return f"--set {text}"
        return source
    return blame


def format_validation_error(exc: ValidationError, source: str, prefix: tuple = (),
                            blame: Blame | None = None) -> str:
    lines = []
    for err in exc.errors():
        parts = tuple(str(p) for p in (*prefix, *err["loc"]))
        loc = ".".join(parts) or "(root)"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        lines.append(f"{blame(parts) if blame else source}: {loc}: {msg}")
    return "\n".join(lines)


def fill_default_components(data: dict[str, Any], registry, source: str = "config"
                            ) -> dict[str, Any]:
    """``data`` with every required component choice it leaves out set to the default its
    kind has in the registry (declared by a plugin: ``registry.add(..., default=True)``).

    Optional choices (``pipeline.text.attention``, ``dataset``) stay out. A required choice
    with no default (its plugin is blocked, say) is a ConfigError naming the key path.
    """
    out = copy.deepcopy(data)
    errors: list[str] = []
    for ref in ref_fields(RunConfig):
        if not ref.required:
            continue
        node: Any = out
        for part in ref.path[:-1]:
            if not isinstance(node, dict):
                break
            node = node.setdefault(part, {})
        if not isinstance(node, dict) or ref.path[-1] in node:
            continue  # not a mapping (the schema reports it) or chosen by the config
        name = registry.default(ref.kind)
        if name is None:
            notes = "".join(f" ({what}: {', '.join(names)})" for what, names in (
                ("blocked plugins", registry.blocked_plugins),
                ("failed plugins", registry.failed_plugins)) if names)
            errors.append(f"{source}: {ref.dotted}: no {ref.kind} is chosen and no loaded plugin"
                          f" declares a default one{notes}; set {ref.dotted}.name (see `daer"
                          f" plugins list --kind {ref.kind}`)")
            continue
        node[ref.path[-1]] = {"name": name}
    if errors:
        raise ConfigError("\n".join(errors))
    return out


def resolve_components(config: RunConfig, registry, source: str = "config",
                       blame: Blame | None = None) -> RunConfig:
    """Check every component reference against the registry and fill in params defaults,
    references inside a component's params included (``pipeline.text.encoder.params.backbone``:
    its name is checked and its params completed, with the key path in every error)."""
    def who(*parts: str) -> str:
        return blame(parts) if blame else source

    errors: list[str] = []
    data = config.model_dump()
    for ref in ref_fields(RunConfig):
        node: Any = data
        for p in ref.path:
            node = node.get(p) if isinstance(node, dict) else None
        if node is None:
            continue
        dotted = ref.dotted
        try:
            spec = registry.get(ref.kind, node["name"])
            node["params"] = registry.resolve_params(ref.kind, node["name"],
                                                     node.get("params") or {})
        except UnknownComponentError as exc:
            errors.append(f"{who(*ref.path, 'name')}: {dotted}.name: {exc}")
        except ParamsError as exc:
            if not exc.problems:
                errors.append(f"{who(*ref.path, 'params')}: {dotted}.params: {exc}")
            for loc, msg in exc.problems:
                errors.append(f"{who(*ref.path, 'params', *loc)}: {dotted}.params."
                              f"{'.'.join(loc) or '(root)'}: {msg}"
                              f"  [{ref.kind} {spec.name!r} from plugin {spec.plugin}]")
    if errors:
        raise ConfigError("\n".join(errors))
    resolved = RunConfig.model_validate(data)
    _check_recipe_stages(resolved, registry, who)
    return resolved


def _check_recipe_stages(config: RunConfig, registry, who) -> None:
    """``train.stages.<name>`` keys the run's recipe does not have are errors here, where
    ``daer config validate`` sees them, not only when the trainer starts."""
    extra = sorted((config.train.stages.model_extra or {}))
    if not extra:
        return
    recipe = registry.create("recipe", config.train.recipe.name, config.train.recipe.params)
    names = [spec.name for spec in recipe.stages]
    unknown = [k for k in extra if k not in names]
    if unknown:
        raise ConfigError(
            f"{who('train', 'stages', unknown[0])}: train.stages.{unknown[0]}: recipe"
            f" {config.train.recipe.name!r} has no stage {unknown[0]!r} (its stages:"
            f" {', '.join(names)})")


def preset_config(registry, name: str) -> dict[str, Any]:
    """A preset's whole config: the presets it ``extends`` merged first, base to derived.

    Merging uses :func:`deep_merge`, so a derived preset that renames a component (``identity``
    for ``signed-power``) drops the base's params for it. An unknown base or a cycle is a
    ConfigError naming the chain of presets.
    """
    chain: list[str] = []
    configs: list[dict[str, Any]] = []
    current: str | None = name
    while current is not None:
        if current in chain:
            raise ConfigError(f"presets extend each other in a cycle: "
                              f"{' -> '.join([*chain, current])}")
        try:
            spec = registry.preset(current)
        except UnknownComponentError as exc:
            via = f" (extended by {' -> '.join(chain)})" if chain else ""
            raise ConfigError(f"{exc}{via}") from None
        chain.append(current)
        configs.append(spec.config)
        current = spec.extends
    merged: dict[str, Any] = {}
    for config in reversed(configs):
        merged = deep_merge(merged, config)
    return merged


def load_run_config(source: str | Path | Mapping[str, Any] | None = None, *,
                    overrides: Iterable[str] = (), preset: str | None = None,
                    dataset: str | None = None, registry=None) -> RunConfig:
    """Build a fully resolved :class:`RunConfig` from a file or dict, a preset and overrides.

    ``preset`` (or the file's own ``preset`` key) names the base config; ``dataset`` is a
    shortcut for ``dataset.name``.
    """
    registry = get_registry(registry)
    if source is None:
        data, label = {}, "config"
    elif isinstance(source, Mapping):
        data, label = copy.deepcopy(dict(source)), "config"
    else:
        data, label = read_config_file(source), str(source)
    overrides = list(overrides)
    data = apply_overrides(data, overrides)
    preset_name = preset or data.get("preset")
    if preset_name:
        try:
            base = preset_config(registry, preset_name)
        except ConfigError as exc:
            raise ConfigError(f"{label}: preset: {exc}") from None
        if registry.preset(preset_name).abstract:
            children = ", ".join(registry.children(preset_name)) or "none"
            raise ConfigError(f"{label}: preset: {preset_name!r} is abstract, a parent that"
                              f" presets extend (its children: {children}); start from one of"
                              " them, or write `extends:` in a preset of your own")
        data = deep_merge(base, data)
        data["preset"] = preset_name
    if dataset:
        current = data.get("dataset") or {}
        # params given for this dataset (or for no named one, e.g. --set dataset.params.x=1)
        # stay; params of another dataset mean nothing to this one
        data["dataset"] = ({**current, "name": dataset} if current.get("name") in (None, dataset)
                           else {"name": dataset})
    blame = override_blame(label, overrides)
    data = fill_default_components(data, registry, label)
    try:
        config = RunConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, label, blame=blame)) from None
    return resolve_components(config, registry, label, blame)


def load_saved_config(path: str | Path, *, registry=None) -> RunConfig:
    """Reload the fully resolved ``config.yaml`` a run wrote.

    The preset it names is *not* merged again: the file already holds everything the preset
    contributed, so a run can be evaluated, searched or resumed even where the plugin that
    provided the preset is absent or has changed since.
    """
    data = read_config_file(path)
    preset_name = data.pop("preset", None)
    config = load_run_config(data, registry=registry)
    config.preset = preset_name
    return config


def dump_config(config: RunConfig, fmt: str = "yaml") -> str:
    data = config.model_dump(mode="json")
    if fmt == "json":
        import json
        return json.dumps(data, indent=2)
    return yaml.safe_dump(data, sort_keys=False)
