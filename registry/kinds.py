"""The component kinds: the typed contract between the core and a plugin's factory.

A :class:`Kind` says, in one place, everything a plugin author must match for one kind of
component: the interface the built object must satisfy, the dependencies the core hands the
factory (besides the validated params model) and a one-line description. The registry uses it
twice, in the manner of pluggy checking a hook implementation against its spec:

* when a plugin **registers** a factory, :meth:`Kind.check_factory` binds the factory's
  signature to ``(params, **deps)``; a factory that cannot take them fails that plugin's
  registration alone, with a message listing the arguments this kind expects;
* when a component is **created**, :meth:`Kind.check_built` checks the object against the
  interface, so a factory returning the wrong thing is named at once instead of failing deep
  inside training.

Interfaces are named by import path and resolved only when a component is created: the
registry stays importable on its own (no torch, no ``daer_core`` at import time), and the
interfaces keep living next to the code that uses them (``daer_core.interfaces``).

``docs/architecture.md`` shows this table; ``tests/plugin_system/test_kinds.py`` keeps the two
identical.
"""
from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from .errors import RegistryError


class FactorySignatureError(RegistryError, TypeError):
    """A registered factory cannot be called the way the core calls factories of its kind."""


class InterfaceError(RegistryError, TypeError):
    """A factory built an object that does not implement its kind's interface."""


@dataclass(frozen=True)
class Kind:
    """One kind of component and what its factories must accept and return."""

    name: str
    #: ``module:Class`` paths; the built object must be an instance of one of them
    interface: tuple[str, ...]
    #: keyword arguments the core passes to every factory of this kind -> what each one is
    deps: Mapping[str, str]
    description: str
    #: deps the core may leave out (the factory must give them a default)
    optional_deps: frozenset[str] = field(default_factory=frozenset)

    def signature(self, refs: tuple[str, ...] = ()) -> str:
        """How the core calls a factory of this kind, as a plugin author would write it."""
        deps = [f"{d}=..." if d in self.optional_deps else d for d in self.deps]
        deps += [f"{r}=<built>" for r in refs]
        return f"factory(params{''.join(', ' + d for d in deps)})"

    def check_factory(self, factory: Callable[..., Any], component: str,
                      refs: tuple[str, ...] = ()) -> None:
        """Raise :class:`FactorySignatureError` unless ``factory(params, **deps)`` binds.

        Checked twice when some deps are optional: with every dep, and with the required ones
        only, since the core uses both calls. ``refs`` are the params model's component
        references (``Ref[...]`` fields), handed to the factory built, as keywords of their
        own names. A callable without an introspectable signature (some builtins) cannot be
        checked here and is accepted; the call then decides.
        """
        try:
            sig = inspect.signature(factory)
        except (TypeError, ValueError):
            return
        clash = sorted(set(refs) & set(self.deps))
        if clash:
            raise FactorySignatureError(
                f"{self.name} {component!r}: params field {clash[0]!r} is a component reference"
                f" named like a dep the core passes a {self.name} factory; rename the field")
        built = {r: None for r in refs}
        required = {d: None for d in self.deps if d not in self.optional_deps}
        for deps in ({d: None for d in self.deps}, required):
            try:
                sig.bind(None, **deps, **built)
            except TypeError as exc:
                with_refs = (f", and the referenced components {', '.join(refs)} as keywords"
                             if refs else "")
                raise FactorySignatureError(
                    f"{self.name} {component!r}: factory {_qualname(factory)}{sig} cannot be"
                    f" called as {self.signature(refs)} ({exc}). A {self.name} factory takes"
                    f" the validated params model, then "
                    f"{self._deps_phrase()}{with_refs}.") from None

    def check_built(self, obj: Any, component: str) -> Any:
        """Return ``obj`` if it implements this kind's interface, else raise InterfaceError."""
        classes = self.interface_classes()
        if not isinstance(obj, classes):
            wanted = " or ".join(f"{c.__module__}.{c.__qualname__}" for c in classes)
            raise InterfaceError(
                f"{self.name} {component!r}: its factory returned {type(obj).__qualname__}, which"
                f" is not a {wanted}; a {self.name} component must subclass its interface.")
        return obj

    def interface_classes(self) -> tuple[type, ...]:
        """The interface classes, imported on first use."""
        return tuple(_resolve(path) for path in self.interface)

    def _deps_phrase(self) -> str:
        if not self.deps:
            return "no other argument"
        named = [f"{d} ({what})" + (" with a default" if d in self.optional_deps else "")
                 for d, what in self.deps.items()]
        return "the keyword arguments " + ", ".join(named)


def _qualname(obj: Any) -> str:
    return getattr(obj, "__qualname__", type(obj).__qualname__)


def _resolve(path: str) -> type:
    module, _, attr = path.partition(":")
    return getattr(importlib.import_module(module), attr)


_IFACE = "daer_core.interfaces:"


def _kind(name: str, interface: str | tuple[str, ...], description: str,
          deps: Mapping[str, str] | None = None, optional: frozenset[str] = frozenset()) -> Kind:
    names = (interface,) if isinstance(interface, str) else interface
    return Kind(name, tuple(_IFACE + n for n in names), dict(deps or {}), description, optional)


#: Every kind the core knows how to use, in pipeline order (``daer plugins list`` uses it).
KINDS: dict[str, Kind] = {k.name: k for k in (
    _kind("tokenizer", "Tokenizer", "splits raw text into tokens (str -> list[str])"),
    _kind("text_encoder", "TextEncoder", "maps raw texts to embeddings (B texts -> B x out_dim)",
          {"tokenizer": "the pipeline.text.tokenizer component",
           "attention": "dim -> text attention module, or None"}),
    _kind("text_attention", "TextAttention",
          "re-weights a token sequence (B x L x D -> B x L x D)",
          {"dim": "width of the token states it re-weights"}),
    _kind("image_encoder", "ImageEncoder",
          "maps image tensors to embeddings (B x 3 x H x W -> B x out_dim)",
          {"attention": "channels -> image attention module, or None",
           "native_image_size": "the dataset's image size, or None"}),
    _kind("image_attention", "ImageAttention",
          "re-weights a feature map inside a backbone (B x C x H x W -> same)",
          {"channels": "channel count where it is inserted"}),
    _kind("fusion", "Fusion",
          "combines one text and one image embedding per pair (N x Dt, N x Di -> N x Df)",
          {"text_dim": "text embedding width", "image_dim": "image embedding width"}),
    _kind("enhancement", "Enhancement", "reshapes the fused distribution (N x Df -> N x Df)",
          {"dim": "fused width"}),
    _kind("relation", "RelationHead",
          "scores fused pairs (N x Df -> N) or embedding pairs directly",
          {"fused_dim": "fusion output width", "text_dim": "text embedding width",
           "image_dim": "image embedding width"}),
    _kind("loss", "RelationLoss",
          "compares predicted and target similarity matrices (Q x P, Q x P -> scalar)"),
    _kind("dataset", ("PairDataset", "FeatureDataset"),
          "yields labelled image-text pairs or pre-extracted features per split",
          {"check": "True for `daer data check`: collect problems instead of raising"},
          frozenset({"check"})),
    _kind("method", "CrossModalMethod",
          "a baseline cross-modal method with fit / transform_image / transform_text"),
    _kind("feature_extractor", "FeatureExtractor",
          "turns raw images or texts into fixed feature vectors for baselines"),
    _kind("recipe", "TrainingRecipe",
          "how a method is trained on the shared trainer: stages, steps, loss terms, extra "
          "modules (train.recipe)"),
)}


def kinds_table() -> str:
    """The kinds as a Markdown table, the form ``docs/architecture.md`` shows."""
    rows = ["| kind | interface | deps the core passes | what |", "|---|---|---|---|"]
    for k in KINDS.values():
        iface = " or ".join(f"`{p.split(':')[1]}`" for p in k.interface)
        deps = ", ".join(f"`{d}`" + (" (optional)" if d in k.optional_deps else "")
                         for d in k.deps) or "(none)"
        rows.append(f"| `{k.name}` | {iface} | {deps} | {k.description} |")
    return "\n".join(rows)
