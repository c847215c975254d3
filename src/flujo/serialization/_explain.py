"""``explain_typed``: whether a class takes the typed form, and why not.

The typed form (docs/format.md) is chosen class by class, silently: a class that cannot take
it is written in the generic form, which is exact too but larger and slower. This says which
one a class gets from a registry, and the first reason it cannot take the typed form,
following the same steps as the registry's choice of an encode plan.
"""

from __future__ import annotations

import inspect
import typing
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, PydanticUserError
from pydantic_core import PydanticUndefined

from ..exceptions import FlujoError, InvalidArgumentError
from ._guard import Ineligible, Uncompilable, build_guards
from ._inspect import inspect_type
from ._registry import TypeRegistry, _refuse_own_pickling
from ._typed import typed_model

__all__ = ["TypedFormReport", "explain_typed"]


@dataclass(frozen=True)
class TypedFormReport:
    """What ``explain_typed`` found: ``typed`` when the class's values are written in the
    typed form (those that pass its guard), ``reason`` says why or why not, and ``guard``
    names the guard's generated source (``linecache`` has it: tracebacks and ``pdb`` show
    it) when there is one."""

    cls: type
    typed: bool
    reason: str
    guard: str | None = None

    def __str__(self) -> str:
        return f"{self.cls.__module__}.{self.cls.__qualname__}: {self.reason}"


def explain_typed(cls: type, *, registry: TypeRegistry | None = None) -> TypedFormReport:
    """Whether ``registry`` (default: the global one) writes ``cls`` in the typed form.

    A class that takes it is written by pydantic-core once its generated guard has checked
    that every value has exactly its declared type; a value that fails the check is written
    in the generic form. A class that does not take it is always written in the generic form,
    and the report says the first reason.
    """
    if not inspect.isclass(cls):
        raise InvalidArgumentError(f"explain_typed(cls): cls must be a class, got {cls!r}")
    if registry is None:
        from . import default_registry

        registry = default_registry()
    if not issubclass(cls, BaseModel) or cls is BaseModel:
        return TypedFormReport(cls, False, "not a pydantic model: only models take the typed"
                                           " form")
    codec = registry.codec_for_type(cls)
    if codec is None or codec.kind != "model":
        how = "no codec" if codec is None else f"the {codec.kind} codec {codec.name!r}"
        return TypedFormReport(cls, False, f"written by {how}, registered for it, not as a"
                                           " model")
    try:
        _refuse_own_pickling(cls)
    except FlujoError as exc:
        return TypedFormReport(cls, False, f"not stored at all: {exc}")
    if not registry.typed_models:
        return TypedFormReport(cls, False, "this registry writes no typed form"
                                           " (TypeRegistry(typed_models=False))")
    try:
        typed = typed_model(cls)  # the registry's own choice, cached per class
    except PydanticUserError as exc:  # e.g. not fully defined: a name it uses is missing
        raise InvalidArgumentError(f"explain_typed({cls.__qualname__}): {exc}") from exc
    holder = _with_private_defaults(cls, set())
    if typed is not None and holder is not None:
        return TypedFormReport(cls, False, (
            f"generic form: {holder.__qualname__} has private attributes with defaults"
            f" ({', '.join(sorted(_private_defaults(holder)))}), so every instance holds private"
            " values, which only the generic form stores"))
    if typed is not None:
        return TypedFormReport(cls, True, "typed form: each value is checked by its guard,"
                                          " then written by pydantic-core",
                               typed.guard.__code__.co_filename)
    try:  # only to say why: the class was found not to take it
        build_guards(cls)
    except Ineligible as exc:
        return TypedFormReport(cls, False, f"generic form: {exc} (the typed form needs every"
                                           " value's exact type to be checkable)")
    except Uncompilable as exc:
        return TypedFormReport(cls, False, f"generic form: its guard does not compile ({exc})")
    raise AssertionError(f"{cls!r}: its guards build now, but did not when first written")


def _private_defaults(cls: type[BaseModel]) -> list[str]:
    """The private attributes of ``cls`` that every instance gets a value of."""
    return [name for name, attribute in cls.__private_attributes__.items()
            if attribute.default is not PydanticUndefined
            or attribute.default_factory is not None]


def _with_private_defaults(cls: type, seen: set[type]) -> type[BaseModel] | None:
    """``cls``, or a model class its fields hold, whose instances always carry private
    values (a guard then never passes for it); None when there is none."""
    if not isinstance(cls, type) or not issubclass(cls, BaseModel) or cls in seen:
        return None
    seen.add(cls)
    if _private_defaults(cls):
        return cls
    for field in inspect_type(cls).fields:
        for held in _classes_in(field.annotation):
            found = _with_private_defaults(held, seen)
            if found is not None:
                return found
    return None


def _classes_in(annotation: Any) -> list[type]:
    """The classes an annotation names (``list[Line] | None``: ``list``, ``Line``)."""
    found: list[type] = []
    stack = [annotation]
    while stack:
        hint = stack.pop()
        origin = typing.get_origin(hint)
        if isinstance(hint, type):
            found.append(hint)
        elif isinstance(origin, type):
            found.append(origin)
        stack.extend(typing.get_args(hint))
    return found
