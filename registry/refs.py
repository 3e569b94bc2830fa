"""Typed references to components: a component chosen by name, inside a config or a params model.

``Ref["image_encoder"]`` is the type of a field that chooses a component of one kind, written
in a config as ``{name: ..., params: {...}}`` (:class:`ComponentRef`). The same type serves
two places:

* the run config's schema (``pipeline.image.encoder: Ref["image_encoder"]``): where a
  component is chosen in a run config is read from these annotations
  (:func:`ref_fields`), not from a table kept by hand;
* a component's params model (``backbone: Ref["image_encoder"] = ref_field("timm")``): the
  component *uses another component*. The registry resolves the reference when the config
  is checked (the name must exist, its params validate, its defaults are filled in, with the
  key path in every error) and builds the referenced component when it builds this one,
  handing it to the factory as the keyword argument named after the field
  (``factory(params, **deps, backbone=<built image encoder>)``). The reference's default
  name is also a requirement of the component (``ComponentSpec.requires``), checked when
  the plugins load.

``Ref["text_encoder", "tokenizer"]``: the extra names are deps of the outer call handed on to
the referenced component (MCSM's word network builds ``word2vec-lstm`` with the run's
tokenizer); every other dep it takes is given as None (an image encoder built as a backbone
gets no attention slot and no dataset image size).
"""
from __future__ import annotations

import typing
from dataclasses import dataclass
from typing import Annotated, Any, Mapping

from pydantic import BaseModel, ConfigDict, Field
from pydantic.fields import FieldInfo


class ComponentRef(BaseModel):
    """A component chosen by name, with its params (validated against its params model)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    name: str = Field(description="registered component name (see `daer plugins list`)")
    params: dict[str, Any] = Field(default_factory=dict, description="the component's params")


@dataclass(frozen=True)
class RefKind:
    """The marker ``Ref[...]`` attaches to a :class:`ComponentRef` field: the kind it chooses
    from, and the deps of the outer call handed on to the referenced component."""

    kind: str
    forward: tuple[str, ...] = ()


class Ref:
    """``Ref["image_encoder"]`` / ``Ref["text_encoder", "tokenizer"]``: the annotation of a
    field that chooses a component of that kind (see the module docstring)."""

    def __class_getitem__(cls, item: str | tuple[str, ...]) -> Any:
        kind, *forward = item if isinstance(item, tuple) else (item,)
        if not isinstance(kind, str) or not all(isinstance(f, str) for f in forward):
            raise TypeError(f"Ref[kind, *forwarded_deps] takes names, got {item!r}")
        return Annotated[ComponentRef, RefKind(kind, tuple(forward))]


def ref_field(name: str, params: Mapping[str, Any] | None = None, **field_kwargs: Any) -> Any:
    """The default of a ``Ref[...]`` field: component ``name`` with ``params`` (the rest of
    its params keep their own defaults). Other keywords go to ``pydantic.Field``
    (``description=...``)."""
    fixed = dict(params or {})
    return Field(default_factory=lambda: ComponentRef(name=name, params=dict(fixed)),
                 **field_kwargs)


@dataclass(frozen=True)
class RefField:
    """One ``Ref[...]`` field found in a model: where, of which kind, and its default."""

    path: tuple[str, ...]
    kind: str
    forward: tuple[str, ...]
    required: bool
    default: ComponentRef | None

    @property
    def dotted(self) -> str:
        return ".".join(self.path)


def _ref_kind(annotation: Any, metadata: list[Any]) -> RefKind | None:
    """The RefKind of a field typed ``Ref[...]`` or ``Ref[...] | None``."""
    for m in metadata:
        if isinstance(m, RefKind):
            return m
    if typing.get_origin(annotation) is Annotated:
        return _ref_kind(None, list(typing.get_args(annotation)[1:]))
    for arg in typing.get_args(annotation):  # X | None
        found = _ref_kind(arg, []) if typing.get_origin(arg) is Annotated else None
        if found is not None:
            return found
    return None


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """Pydantic models a field holds directly (``Model`` or ``Model | None``)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [a for a in typing.get_args(annotation)
            if isinstance(a, type) and issubclass(a, BaseModel)]


def _default_of(info: FieldInfo) -> ComponentRef | None:
    if info.is_required():
        return None
    value = info.get_default(call_default_factory=True)
    if value is None:
        return None
    return value if isinstance(value, ComponentRef) else ComponentRef.model_validate(value)


def ref_fields(model: type[BaseModel], *, nested: bool = True,
               _prefix: tuple[str, ...] = ()) -> list[RefField]:
    """Every ``Ref[...]`` field of ``model``, with its key path; ``nested`` also walks the
    sub-models it holds (the run config's ``pipeline.text``), never into a reference."""
    found: list[RefField] = []
    for name, info in model.model_fields.items():
        path = (*_prefix, name)
        marker = _ref_kind(info.annotation, list(info.metadata))
        if marker is not None:
            found.append(RefField(path, marker.kind, marker.forward, info.is_required(),
                                  _default_of(info)))
            continue
        if nested:
            for sub in _models_in(info.annotation):
                if sub is not ComponentRef:
                    found.extend(ref_fields(sub, nested=True, _prefix=path))
    return found
