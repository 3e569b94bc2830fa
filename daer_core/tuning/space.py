"""The search space of ``daer tune``: key paths of a run config, each with a range.

A space entry names a key of the *run config* (``train.stages.relation.optimizer.lr``), not
an Optuna-specific name, so a trial's settings are an ordinary run config: the trial's
``config.yaml`` and ``best.yaml`` are exactly what ``daer train`` reads.
"""
from __future__ import annotations

import copy
from typing import Any, Mapping

from ..config import RunConfig, load_run_config
from ..config.schema import ParamRange
from ..errors import ConfigError


def set_key(data: dict[str, Any], dotted: str, value: Any) -> None:
    """Set ``dotted`` (``a.b.c``) in a nested dict, creating mappings on the way."""
    node = data
    parts = dotted.split(".")
    for i, part in enumerate(parts[:-1]):
        nxt = node.get(part)
        if nxt is None:
            nxt = node[part] = {}
        if not isinstance(nxt, dict):
            raise ConfigError(f"tune.space.{dotted}: {'.'.join(parts[:i + 1])} is a"
                              f" {type(nxt).__name__}, not a mapping")
        node = nxt
    node[parts[-1]] = value


def apply_params(base: Mapping[str, Any], params: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of the resolved config dict ``base`` with each key path set to its value."""
    out = copy.deepcopy(dict(base))
    for key, value in params.items():
        set_key(out, key, value)
    return out


def suggest_params(trial, space: Mapping[str, ParamRange]) -> dict[str, Any]:
    """One value per space entry, drawn through an Optuna trial (its sampler decides)."""
    out: dict[str, Any] = {}
    for key, rng in space.items():
        if rng.type == "choice":
            out[key] = trial.suggest_categorical(key, rng.choices)
        elif rng.type == "int":
            out[key] = trial.suggest_int(key, int(rng.low), int(rng.high),
                                         step=int(rng.step or 1), log=rng.log)
        else:
            out[key] = trial.suggest_float(key, float(rng.low), float(rng.high),
                                           step=rng.step, log=rng.log)
    return out


def _probe_values(rng: ParamRange) -> list[Any]:
    """Values that exercise a range: its ends (every choice for categoricals)."""
    if rng.type == "choice":
        return list(rng.choices)
    if rng.type == "int":
        return [int(rng.low), int(rng.high)]
    return [float(rng.low), float(rng.high)]


def check_space(config: RunConfig, registry=None) -> dict[str, ParamRange]:
    """Every entry of ``tune.space``, checked: its key path exists in the run config and both
    ends of its range (every choice) give a config ``daer train`` accepts.

    Errors name the entry (``tune.space.<key>``) and what the run config says about the
    value, so a typo in a key path fails before the first trial, not after an hour.
    """
    space = config.tune.active_space()
    if not space:
        raise ConfigError("tune.space: empty; give key paths to search, e.g. tune.space:"
                          " {train.stages.relation.optimizer.lr: {low: 1.0e-3, high: 0.1,"
                          " log: true}} (presets ship a default space: `daer plugins show"
                          " <preset>`)")
    base = config.model_dump(mode="json")
    base.pop("preset", None)  # already merged: the dump holds everything the preset gave
    errors = []
    for key, rng in space.items():
        if key.split(".")[0] in ("tune", "name", "preset"):
            errors.append(f"tune.space.{key}: not a setting of the run (tune, name and preset"
                          " cannot be searched)")
            continue
        if key.split(".")[0] == "dataset":
            errors.append(f"tune.space.{key}: the dataset is fixed during a study (its"
                          " validation split is what the settings are chosen on)")
            continue
        if not _key_exists(base, key):
            errors.append(f"tune.space.{key}: no such key in the run config"
                          f"{_closest(base, key)}")
            continue
        for value in _probe_values(rng):
            try:
                load_run_config(apply_params(base, {key: value}), registry=registry)
            except ConfigError as exc:
                first = str(exc).splitlines()[0]
                errors.append(f"tune.space.{key}: value {value!r} is rejected: {first}")
                break
    if errors:
        raise ConfigError("\n".join(errors))
    return space


def _key_exists(data: Mapping[str, Any], dotted: str) -> bool:
    """The key path exists: every part but the last names a mapping, and the last part is a
    key of it — or the node is a component's ``params`` / a recipe's extra stage, whose keys
    the component's own params model validates (probed by :func:`check_space`)."""
    node: Any = data
    parts = dotted.split(".")
    for i, part in enumerate(parts):
        if not isinstance(node, Mapping):
            return False
        if part not in node:
            parent = parts[i - 1] if i else ""
            # params models and extra recipe stages accept keys the dump may not show
            return parent in ("params", "stages") or (i >= 2 and parts[i - 2] == "stages")
        node = node[part]
    return True


def _closest(data: Mapping[str, Any], dotted: str) -> str:
    import difflib

    keys: list[str] = []

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, Mapping):
            for k, v in node.items():
                walk(v, f"{prefix}.{k}" if prefix else str(k))
        else:
            keys.append(prefix)

    walk(data, "")
    close = difflib.get_close_matches(dotted, keys, n=1, cutoff=0.75)
    return f" (did you mean {close[0]}?)" if close else ""


def get_key(data: Mapping[str, Any], dotted: str) -> Any:
    """The value at ``dotted`` in a nested dict (KeyError when a part is missing)."""
    node: Any = data
    for part in dotted.split("."):
        node = node[part]
    return node


def config_values(base: Mapping[str, Any], space: Mapping[str, ParamRange]) -> dict[str, Any] | None:
    """The config's own value for every space entry, when each lies inside its range (the
    first trial of a new study); None when any is missing or outside."""
    out: dict[str, Any] = {}
    for key, rng in space.items():
        try:
            value = get_key(base, key)
        except (KeyError, TypeError):
            return None
        if rng.type == "choice":
            if value not in rng.choices:
                return None
        elif isinstance(value, bool) or not isinstance(value, (int, float)) \
                or not rng.low <= value <= rng.high or (rng.type == "int" and value != int(value)):
            return None
        out[key] = value
    return out
