"""One description of a stored class's fields, read once from the class, for every tool that
describes the class: the JSON Schema of its encoded forms (``_schema``) and its documentation
page (``flujo.schema``), as msgspec's ``inspect`` feeds both its schema generator and others.

Only what the class declares is described (names, annotations, which fields are required,
defaults); how a field's value is encoded is the codec's business, and each tool renders the
annotation its own way.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from typing import Any, Final

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from ._auto import auto_kind

__all__ = ["NO_DEFAULT", "FieldInfo", "TypeInfo", "inspect_type"]


class _NoDefault:
    def __repr__(self) -> str:
        return "NO_DEFAULT"


#: The ``default`` of a field that has none (it is required, or made by a factory).
NO_DEFAULT: Final[Any] = _NoDefault()


@dataclass(frozen=True)
class FieldInfo:
    """One declared field: its name, its annotation (``Any`` where the class has none),
    whether a stored value must hold it, its default (``NO_DEFAULT``: none, or
    ``default_factory``) and its description (pydantic's ``Field(description=...)``)."""

    name: str
    annotation: Any
    required: bool
    default: Any = NO_DEFAULT
    default_factory: bool = False
    description: str | None = None


@dataclass(frozen=True)
class TypeInfo:
    """A class as flujo stores it: its kind (``model``, ``dataclass``, ``namedtuple``,
    ``v1model``, ``enum``, ``scalar``, or None for what flujo does not derive a codec for),
    its fields in declaration order (empty for kinds without fields) and whether it keeps
    fields beyond them (a model's ``extra="allow"``)."""

    cls: type
    kind: str | None
    fields: tuple[FieldInfo, ...] = ()
    extra_allowed: bool = False


def inspect_type(cls: type) -> TypeInfo:
    """The description of ``cls`` that schema export and documentation share."""
    kind = auto_kind(cls)
    if kind == "model" and issubclass(cls, BaseModel):
        return TypeInfo(cls, kind, tuple(
            FieldInfo(name, info.annotation if info.annotation is not None else Any,
                      info.is_required(),
                      NO_DEFAULT if info.default is PydanticUndefined else info.default,
                      info.default_factory is not None, info.description)
            for name, info in cls.__pydantic_fields__.items()),
            cls.model_config.get("extra") == "allow")
    if kind == "v1model":
        v1_fields = cls.__fields__  # type: ignore[attr-defined]
        extra = cls.__config__.extra  # type: ignore[attr-defined]
        return TypeInfo(cls, kind, tuple(
            FieldInfo(name, field.annotation, bool(field.required),
                      NO_DEFAULT if field.required or field.default_factory else field.default,
                      field.default_factory is not None)
            for name, field in v1_fields.items()),
            getattr(extra, "value", extra) == "allow")
    if kind == "namedtuple":
        hints = type_hints(cls)
        defaults: dict[str, Any] = getattr(cls, "_field_defaults", {})
        return TypeInfo(cls, kind, tuple(
            FieldInfo(name, hints.get(name, Any), name not in defaults,
                      defaults.get(name, NO_DEFAULT))
            for name in cls._fields))  # type: ignore[attr-defined]
    if kind == "dataclass":
        hints = type_hints(cls)
        return TypeInfo(cls, kind, tuple(
            FieldInfo(field.name, hints.get(field.name, Any),
                      field.default is dataclasses.MISSING
                      and field.default_factory is dataclasses.MISSING,
                      NO_DEFAULT if field.default is dataclasses.MISSING else field.default,
                      field.default_factory is not dataclasses.MISSING)
            for field in dataclasses.fields(cls)))
    return TypeInfo(cls, kind)


def type_hints(cls: type) -> dict[str, Any]:
    """``cls``'s resolved annotations (``Annotated`` kept), or its raw ones where a name in
    them cannot be resolved."""
    try:
        return typing.get_type_hints(cls, include_extras=True)
    except (NameError, TypeError):
        return dict(getattr(cls, "__annotations__", {}))
