"""The benchmark config: methods and presets x datasets x runs, read from YAML with ``--set``.

A config file looks like::

    name: wikipedia-features
    runs: 10                      # runs (seeds) per method and dataset
    seed: 0                       # run r uses seed + r
    resample: {mode: subsample, fraction: 0.9}
    reference: JRL                # Table 2 compares this method with every other one
    datasets:
      wikipedia:
        dataset: {name: features, params: {root: ../shared/data/wikipedia}}
        image_features: {name: precomputed}     # default; or backbone-pool, ...
        text_features: {name: precomputed}      # default; or tfidf, lda, doc2vec
    methods:
      CCA: {name: cca, params: {reg: 1.0e-4}}   # a registered `method`
      DAER: {daer: {preset: daer}}              # a run config for the DAER trainer

Relative paths: a config's data paths are resolved against its *project root*, the nearest
directory above the config file that holds ``pyproject.toml`` (the config's own directory if
there is none). The params resolved this way are ``root`` of ``dataset`` and
``daer_dataset``, ``weights`` of the two feature extractors, and any key path listed under a
dataset's ``paths`` (e.g. ``dataset.params.lists_dir``). ``--set`` values follow the same
rule, so ``--set datasets.wikipedia.dataset.params.root=/data/wikipedia`` points elsewhere.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ..config.loading import apply_overrides, format_validation_error, read_config_file
from ..config.schema import ParamRange
from ..errors import ConfigError

#: params resolved against the project root when relative (key paths inside a dataset entry)
DEFAULT_PATH_KEYS: tuple[str, ...] = (
    "dataset.params.root", "daer_dataset.params.root",
    "image_features.params.weights", "text_features.params.weights",
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Ref(_Strict):
    """A registered component by name with its params."""

    name: str = Field(description="registered component name (see `daer plugins list`)")
    params: dict[str, Any] = Field(default_factory=dict, description="the component's params")


class ResampleConfig(_Strict):
    """How runs of the baselines differ: a seeded resample of the training split.

    Baselines are deterministic on a fixed split, so without a resample every run would be
    identical and a signed-rank test meaningless. ``subsample`` draws ``fraction`` of the
    training pairs without replacement, ``bootstrap`` draws N with replacement, ``none``
    keeps the split (runs then differ only through seeded methods such as KCCA's landmarks).
    """

    mode: Literal["subsample", "bootstrap", "none"] = "subsample"
    fraction: float = Field(0.9, gt=0.0, le=1.0, description="share kept by subsample")


class DatasetEntry(_Strict):
    label: str | None = Field(None, description="name shown in tables (default: the key)")
    dataset: Ref = Field(description="the dataset component for the baselines")
    image_features: Ref = Field(default_factory=lambda: Ref(name="precomputed"),
                                description="feature_extractor for images")
    text_features: Ref = Field(default_factory=lambda: Ref(name="precomputed"),
                               description="feature_extractor for texts")
    daer_dataset: Ref | None = Field(None, description="dataset for DAER runs (raw pairs);"
                                                       " default: `dataset`")
    paths: list[str] = Field(default_factory=list, description="extra key paths in this entry"
                                                               " to resolve against the"
                                                               " project root")


class TuneBudget(_Strict):
    """The tuning budget of a benchmark, the same for every method that has settings.

    Each cell (method, dataset, run) searches on its own run's validation rows — for the
    baselines the training rows the run's resample leaves out, for trained methods the split
    their dataset carves with the run's seed (the same rows when paired) — then fits the
    best settings and ranks the test split once. ``trials: 0`` leaves a method untuned.
    """

    trials: int = Field(ge=0, description="trials per cell (0: the method's own settings)")
    minutes: float | None = Field(None, gt=0, allow_inf_nan=False,
                                  description="also stop a cell's search after M minutes")
    seed: int = Field(0, ge=0, description="sampler seed (plus the run's seed)")


class MethodEntry(_Strict):
    """Either a registered baseline (``name`` + ``params``) or a DAER run config (``daer``)."""

    name: str | None = Field(None, description="registered `method` component")
    params: dict[str, Any] = Field(default_factory=dict, description="its params")
    daer: dict[str, Any] | None = Field(None, description="run config (preset, pipeline,"
                                                          " train, ...) for the DAER trainer")
    tune: TuneBudget | None = Field(None, description="this method's tuning budget"
                                                      " (default: the benchmark's `tune`)")
    space: dict[str, ParamRange] = Field(
        default_factory=dict, description="a registered method's searched params: param name"
                                          " -> range or choices (a `daer` method searches its"
                                          " run config's tune.space)")

    @model_validator(mode="after")
    def _one_kind(self) -> "MethodEntry":
        if (self.name is None) == (self.daer is None):
            raise ValueError("give either `name` (a registered method) or `daer` (a run"
                             " config), not both or neither")
        if self.daer is not None and self.params:
            raise ValueError("`params` belong to a registered method; put DAER settings"
                             " inside `daer`")
        if self.daer is not None and self.space:
            raise ValueError("`space` searches a registered method's params; a `daer` method"
                             " searches its run config's tune.space (put it inside `daer`)")
        return self

    @property
    def kind(self) -> Literal["baseline", "daer"]:
        return "daer" if self.daer is not None else "baseline"


class BenchmarkConfig(_Strict):
    name: str | None = Field(None, description="benchmark name (default: the file's stem)")
    runs: int = Field(5, ge=1, description="runs (seeds) per method and dataset")
    seed: int = Field(0, description="run r uses seed + r")
    resample: ResampleConfig = Field(default_factory=ResampleConfig)
    eval_split: Literal["test", "val"] = Field("test", description="split that is ranked")
    reference: str | None = Field(None, description="method compared with all others in"
                                                    " Table 2 (default: the first DAER method,"
                                                    " else the first method)")
    ablation: list[str] | None = Field(None, description="methods in Table 3 (default: every"
                                                         " DAER method)")
    on_error: Literal["stop", "continue"] = Field(
        "stop", description="stop at a failing cell, or record it and go on")
    tune: TuneBudget | None = Field(
        None, description="tune every method with settings on each run's validation rows,"
                          " with this budget (docs/tuning.md); null: no tuning")
    datasets: dict[str, DatasetEntry] = Field(min_length=1)
    methods: dict[str, MethodEntry] = Field(min_length=1)

    def budget(self, method: str) -> TuneBudget | None:
        """The tuning budget of ``method`` (its own, else the benchmark's; None: untuned)."""
        b = self.methods[method].tune or self.tune
        return b if b is not None and b.trials > 0 else None

    @model_validator(mode="after")
    def _names_exist(self) -> "BenchmarkConfig":
        if self.reference is not None and self.reference not in self.methods:
            raise ValueError(f"reference {self.reference!r} is not one of the methods"
                             f" ({', '.join(self.methods)})")
        for name in self.ablation or []:
            if name not in self.methods:
                raise ValueError(f"ablation lists {name!r}, which is not one of the methods")
        return self

    def reference_method(self) -> str:
        if self.reference:
            return self.reference
        daer = [k for k, m in self.methods.items() if m.kind == "daer"]
        return daer[0] if daer else next(iter(self.methods))

    def ablation_methods(self) -> list[str]:
        if self.ablation is not None:
            return list(self.ablation)
        return [k for k, m in self.methods.items() if m.kind == "daer"]


def find_project_root(config_path: Path) -> Path:
    """The nearest directory above ``config_path`` holding ``pyproject.toml``."""
    start = config_path.resolve().parent
    for folder in (start, *start.parents):
        if (folder / "pyproject.toml").is_file():
            return folder
    return start


def _resolve_key(entry: dict[str, Any], dotted: str, root: Path, where: str) -> None:
    node: Any = entry
    parts = dotted.split(".")
    for part in parts[:-1]:
        if not isinstance(node, dict) or part not in node or node[part] is None:
            return
        node = node[part]
    if not isinstance(node, dict) or parts[-1] not in node or node[parts[-1]] is None:
        return
    value = node[parts[-1]]
    if not isinstance(value, (str, Path)):
        raise ConfigError(f"{where}.{dotted}: expected a path, got {type(value).__name__}")
    path = Path(value).expanduser()
    node[parts[-1]] = str(path if path.is_absolute() else (root / path).resolve())


def resolve_paths(data: dict[str, Any], root: Path) -> dict[str, Any]:
    """Make the path params of every dataset entry absolute (see the module docstring)."""
    for key, entry in (data.get("datasets") or {}).items():
        if not isinstance(entry, dict):
            continue
        extra = entry.get("paths") or []
        if not isinstance(extra, list):
            raise ConfigError(f"datasets.{key}.paths: expected a list of key paths")
        for dotted in (*DEFAULT_PATH_KEYS, *extra):
            _resolve_key(entry, str(dotted), root, f"datasets.{key}")
    return data


def load_benchmark_config(path: str | Path, overrides: Iterable[str] = ()
                          ) -> tuple[BenchmarkConfig, Path]:
    """Read, override, resolve paths and validate; returns the config and its project root."""
    path = Path(path)
    data = apply_overrides(read_config_file(path), overrides)
    root = find_project_root(path)
    data = resolve_paths(data, root)
    data.setdefault("name", path.stem)
    try:
        return BenchmarkConfig.model_validate(data), root
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, str(path))) from None
