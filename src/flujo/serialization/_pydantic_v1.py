"""Derived codecs for ``pydantic.v1`` models, which langchain and older SDKs still carry.

A v1 model is stored as a v2 model is (docs/format.md, "What is stored of an object"): its
``__dict__`` (fields, then the extras of ``extra = "allow"``) in ``v``, and in ``s`` what
else pickle keeps: ``__fields_set__`` when it is not the stored names, fields without a value
(``construct()`` without a required one), private attributes. Reading follows v1's own
``__setstate__``: ``object.__new__``, then ``__dict__``, ``__fields_set__`` and the private
attributes are set; no validator, ``__init__`` or root validator runs.

``pydantic.v1`` is imported by applications that use it, never by flujo (it takes ~100 ms):
a class is a v1 model only when that module is loaded, which it is once one exists.
"""

from __future__ import annotations

import sys
from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING, Any

from ..exceptions import DeserializationError, SerializationError
from ._objects import check_fields, open_object
from ._paths import key_segment, note_path
from ._types import Migration, TypeCodec

if TYPE_CHECKING:
    from ._codec import Decoder, Encoder

_V1_MAIN = "pydantic.v1.main"


def v1_base_model() -> type | None:
    """``pydantic.v1.BaseModel`` when the process has loaded it."""
    module = sys.modules.get(_V1_MAIN)
    base = getattr(module, "BaseModel", None) if module is not None else None
    return base if isinstance(base, type) else None


def is_v1_model(cls: type) -> bool:
    base = v1_base_model()
    return base is not None and cls is not base and issubclass(cls, base)


def _no_default() -> object:
    return sys.modules["pydantic.v1.fields"].Undefined


def v1_model_codec(cls: type, name: str, version: int,
                   migrations: Mapping[int, Migration]) -> TypeCodec:

    model_fields: dict[str, Any] = cls.__fields__  # type: ignore[attr-defined]
    field_names = tuple(model_fields)
    known = frozenset(field_names)
    required = frozenset(n for n, f in model_fields.items() if f.required)
    extra = cls.__config__.extra  # type: ignore[attr-defined]
    allows_extra = getattr(extra, "value", extra) == "allow"
    private_attributes: dict[str, Any] = cls.__private_attributes__  # type: ignore[attr-defined]
    undefined = _no_default()
    set_attribute = object.__setattr__

    def encode_object(enc: Encoder, obj: Any, depth: int) -> tuple[Any, Any]:
        child = depth + 1
        values: dict[str, Any] = obj.__dict__
        out: dict[str, Any] = {}
        others: dict[str, Any] = {}  # in __dict__, not a field, in a model without extras
        key: Any = None
        try:
            for key, value in values.items():
                if allows_extra or key in known:
                    out[key] = enc.encode(value, child)
                else:  # construct(unknown=...) keeps them, as pickle does
                    others[key] = value
        except SerializationError as exc:
            note_path(exc, key_segment(key), None)
            raise
        state: dict[str, Any] = {}
        fields_set = obj.__fields_set__
        if fields_set != out.keys():
            state["set"] = sorted(fields_set)
        if others:
            state["attrs"] = enc.encode(others, child)  # escaped, paths noted by the dict
        missing = [n for n in field_names if n not in values]
        if missing:
            state["missing"] = missing
        private: dict[str, Any] = {}
        for attribute in private_attributes:
            try:
                private[attribute] = object.__getattribute__(obj, attribute)
            except AttributeError:  # never set: pickle leaves it out too
                continue
        if private:
            encoded: dict[str, Any] = {}
            try:
                for key, value in private.items():  # names of identifiers: no escaping
                    encoded[key] = enc.encode(value, child + 1)
            except SerializationError as exc:
                note_path(exc, key_segment(key), None)
                raise
            state["private"] = encoded
        return out, state or None

    def encode_value(enc: Encoder, obj: Any, depth: int) -> Any:
        return encode_object(enc, obj, depth)[0]

    def decode_value(dec: Decoder, body: Any, depth: int) -> Any:
        obj, values, stored = open_object(dec, cls, body, depth, name, True)
        if stored is not None and stored.attrs and (
                allows_extra or not known.isdisjoint(stored.attrs)):
            raise DeserializationError(
                f"{name}: the attributes of a pydantic.v1 model besides its fields are its "
                "extras, except in a model without extras (construct() keeps unknown names)")
        missing: Collection[str] = () if stored is None else stored.missing
        check_fields(values, required, missing, None if allows_extra else known, name)
        attributes: dict[str, Any] = {}
        for key in field_names:  # as v1 orders __dict__: fields, then extras
            if key in values:
                attributes[key] = values[key]
            elif key not in missing:  # a field the class has gained since
                attributes[key] = model_fields[key].get_default()
        for key, value in values.items():
            if key not in known:
                attributes[key] = value
        if stored is not None and stored.attrs:
            attributes.update(stored.attrs)
        set_attribute(obj, "__dict__", attributes)
        fields_set = set(values) if stored is None or stored.fields_set is None \
            else stored.fields_set
        set_attribute(obj, "__fields_set__", fields_set)
        private = stored.private if stored is not None and stored.private else {}
        unknown = set(private).difference(private_attributes)
        if unknown:
            raise DeserializationError(
                f"{name}: stored private attribute(s) {sorted(unknown)} that the class "
                "does not declare")
        for attribute, declared in private_attributes.items():
            if attribute in private:
                set_attribute(obj, attribute, private[attribute])
            else:  # declared since it was stored: its default, as v1's __init__ sets it
                default = declared.get_default()
                if default is not undefined:
                    set_attribute(obj, attribute, default)
        return obj

    return TypeCodec(name, version, "v1model", cls, encode_value, decode_value, None,
                     migrations=migrations,
                     description=f"a pydantic.v1 model: {cls.__qualname__}",
                     encode_object=encode_object)
