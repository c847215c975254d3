"""Codecs derived from a class itself: pydantic models, dataclasses, enums, NamedTuples,
subclasses of str, int, float and bytes (``_scalars``), pydantic.v1 models (``_pydantic_v1``).

These need no registration: the class is written under its ``module:qualname`` (or the name
it was registered with) and, when read back, found among the classes already defined in the
running process. Objects come back as unpickling brings them back: ``object.__new__`` and
the instance state as it was stored (fields in ``v``, the rest in ``s``: fields_set, private
and plain attributes, fields without a value); no validator, ``__init__`` or post-init hook
runs (a validator that normalizes would otherwise change the data).
"""

from __future__ import annotations

import dataclasses
import enum
import inspect
import operator
from collections.abc import Callable, Collection, Mapping
from functools import cached_property
from typing import TYPE_CHECKING, Any, Final

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from ..exceptions import DeserializationError, SerializationError, caused
from ._codec import INT_MAX, INT_MIN, NO_DIRECT_PLANS, WithState, is_finite, is_plain_int
from ._generics import parametrized_name
from ._objects import (
    NO_VALUE,
    StoredState,
    check_fields,
    declared_slots,
    open_object,
    slot_readers,
    slot_setter,
)
from ._paths import key_segment, note_path
from ._pydantic_v1 import is_v1_model, v1_model_codec
from ._rows import Shape, parse_header
from ._scalars import scalar_base, scalar_codec
from ._secrets import preview
from ._typed import TypedReader, fill_private_defaults
from ._types import Migration, TypeCodec

if TYPE_CHECKING:
    from ._codec import Decoder, Encoder


def auto_name(cls: type) -> str:
    """``module:QualName``, the name a class is stored under unless registered with another.

    A parametrized generic model is named after its generic, its type arguments written so
    that the name means one class in any process (``_generics``).
    """
    metadata = cls.__dict__.get("__pydantic_generic_metadata__")
    if isinstance(metadata, dict) and isinstance(metadata.get("origin"), type):
        return parametrized_name(cls, metadata["origin"], tuple(metadata.get("args", ())))
    return f"{cls.__module__}:{cls.__qualname__}"


# Read through type's own descriptors: a metaclass's __getattr__ or __getattribute__ never
# runs for a class that stored data names.
_CLASS_DICT: Final = type.__dict__["__dict__"]
_CLASS_MRO: Final = type.__dict__["__mro__"]


def _defines(cls: type, name: str) -> bool:
    return any(name in _CLASS_DICT.__get__(klass) for klass in _CLASS_MRO.__get__(cls))


def auto_kind(cls: type) -> str | None:
    """The derived-codec kind of ``cls``, or None when flujo cannot derive one."""
    if not isinstance(cls, type):
        return None
    if issubclass(cls, BaseModel):
        return "model" if cls is not BaseModel else None
    if issubclass(cls, enum.Enum):
        return "enum" if cls.__members__ else None
    if _defines(cls, "__dataclass_fields__"):
        return "dataclass" if dataclasses.is_dataclass(cls) else None
    if issubclass(cls, tuple) and _defines(cls, "_fields") and _defines(cls, "_make"):
        return "namedtuple"
    if scalar_base(cls) is not None:
        return "scalar"
    if is_v1_model(cls):
        return "v1model"
    return None


def _describe(cls: type) -> str:
    own = cls.__dict__.get("__doc__")
    return inspect.cleandoc(own) if isinstance(own, str) else ""


def _cached_properties(cls: type) -> frozenset[str]:
    """Names of ``functools.cached_property`` attributes: caches the class recomputes, so
    their values in ``__dict__`` are not part of the stored state."""
    return frozenset(name for klass in cls.__mro__ for name, value in vars(klass).items()
                     if isinstance(value, cached_property))


def _field_state(fields: tuple[str, ...], values: dict[str, Any], missing: Collection[str],
                 defaults: Mapping[str, Callable[[dict[str, Any]], Any]]) -> dict[str, Any]:
    """The instance ``__dict__`` of the stored field ``values``, in field order: a field the
    class has gained since gets its default, unless it had no value (``missing``)."""
    attributes: dict[str, Any] = {}
    for key in fields:
        if key in values:
            attributes[key] = values[key]
        elif key not in missing:
            attributes[key] = defaults[key](attributes)
    return attributes


def _dataclass_default(field: dataclasses.Field[Any]) -> Callable[[dict[str, Any]], Any]:
    factory: Any = field.default_factory

    def default(values: dict[str, Any]) -> Any:
        return field.default if field.default is not dataclasses.MISSING else factory()

    return default


def _default_getter(field: Any) -> Callable[[dict[str, Any]], Any]:
    """The field's default (a fresh copy, or its factory's result), as pydantic fills it."""
    def default(values: dict[str, Any]) -> Any:
        return field.get_default(call_default_factory=True, validated_data=values)

    return default


def _pydantic_slot(obj: BaseModel, slot: str, owner: str) -> Any:
    """One of the slots every pydantic instance has; refused where one was deleted (pickle
    fails on such an instance too), instead of taken as empty."""
    value = getattr(obj, slot, NO_VALUE)
    if value is NO_VALUE:
        raise SerializationError(
            f"{owner}: the instance has no {slot} (deleted, or the instance was not built by"
            " pydantic), so its state cannot be stored")
    return value


def model_codec(
    cls: type[BaseModel], name: str, version: int, migrations: Mapping[int, Migration]
) -> TypeCodec:
    model_fields = cls.__pydantic_fields__
    fields = tuple(model_fields)
    required = frozenset(n for n, f in model_fields.items() if f.is_required())
    defaults = {n: _default_getter(f) for n, f in model_fields.items() if not f.is_required()}
    allows_extra = cls.model_config.get("extra") == "allow"
    field_names = frozenset(fields)
    field_count = len(fields)
    known = None if allows_extra else field_names
    private_attributes = dict(cls.__private_attributes__)
    not_state = field_names | _cached_properties(cls)
    slot_getters = slot_readers(cls, declared_slots(
        cls, ("__pydantic_fields_set__", "__pydantic_extra__", "__pydantic_private__")))

    def encode_fields(enc: Encoder, obj: BaseModel, depth: int) -> dict[str, Any]:
        out: dict[str, Any] = {}
        child = depth + 1
        state = obj.__dict__
        extra = _pydantic_slot(obj, "__pydantic_extra__", name)
        key: Any = None
        try:
            direct = enc.direct if child <= enc.limit else NO_DIRECT_PLANS
            for key in fields:
                if key in state:
                    value = state[key]
                    tv = type(value)
                    if (tv is str or tv is bool or value is None
                            or (tv is int and is_plain_int(value))
                            or (tv is float and is_finite(value))):
                        out[key] = value
                    else:
                        leaf = direct.get(tv)
                        out[key] = (leaf(enc, value, child) if leaf is not None
                                    else enc.encode(value, child))
            if extra:
                for key, value in extra.items():
                    if type(key) is not str:
                        raise SerializationError(
                            f"{name}: extra field names must be str, got {key!r}")
                    out[key] = enc.encode(value, child)
        except SerializationError as exc:
            note_path(exc, key_segment(key), None)
            raise
        return out

    def encode_state(enc: Encoder, obj: BaseModel, out: dict[str, Any],
                     depth: int) -> dict[str, Any] | None:
        """What pickle keeps of ``obj`` beyond its field values, or None when that is only
        what reading the fields alone gives back."""
        state: dict[str, Any] = {}
        attributes = obj.__dict__
        extra = obj.__pydantic_extra__
        present = len(out) - len(extra) if extra else len(out)  # fields with a value
        if present != field_count:
            state["missing"] = [key for key in fields if key not in attributes]
        fields_set = _pydantic_slot(obj, "__pydantic_fields_set__", name)
        if fields_set is not None and fields_set != out.keys():
            if any(type(n) is not str for n in fields_set):
                raise SerializationError(f"{name}: model_fields_set holds a name that is not "
                                         f"a str: {sorted(map(repr, fields_set))}")
            state["set"] = sorted(fields_set)
        child = depth + 1
        private = _pydantic_slot(obj, "__pydantic_private__", name)
        if private:
            kept = {k: v for k, v in private.items() if v is not PydanticUndefined}
            if kept:
                state["private"] = enc.encode(kept, child)
        elif private is None and private_attributes:
            state["private"] = None
        if len(attributes) != present or slot_getters:
            plain = {k: v for k, v in attributes.items() if k not in not_state}
            for slot, read in slot_getters:
                value = read(obj)
                if value is not NO_VALUE:
                    plain[slot] = value
            if plain:
                state["attrs"] = enc.encode(plain, child)
        return state or None

    def encode_object(enc: Encoder, obj: BaseModel, depth: int) -> tuple[Any, Any]:
        out = encode_fields(enc, obj, depth)
        return out, encode_state(enc, obj, out, depth)

    def encode_value(enc: Encoder, obj: BaseModel, depth: int) -> Any:
        return encode_fields(enc, obj, depth)

    # A record that holds every field of a class without private attributes or extras, and
    # no state, is the instance state itself: set directly, at a fraction of the cost.
    direct = not allows_extra and not private_attributes
    new = object.__new__
    set_dict = slot_setter(cls, "__dict__")
    set_fields_set = slot_setter(cls, "__pydantic_fields_set__")
    set_extra = slot_setter(cls, "__pydantic_extra__")
    set_private = slot_setter(cls, "__pydantic_private__")
    set_slots = {slot: slot_setter(cls, slot) for slot, _ in slot_getters}

    readers: list[TypedReader] = []  # the class's reader, made on first use

    def reader() -> TypedReader:
        if not readers:
            readers.append(TypedReader(cls, name))
        return readers[0]

    def read_typed(dec: Decoder, body: list[Any], depth: int) -> BaseModel:
        if len(body) == 1:  # the model's own JSON
            return reader().read(body[0])
        if len(body) == 2:  # one row (rows@2): [fields, row]
            stored = parse_header(body[0], depth + 1, dec.limit, dec.max_depth)
            return reader().read_row(body[1], stored)
        raise DeserializationError(
            f"{name}: the typed form holds the model's JSON or [fields, row]")

    def read_typed_list(items: list[Any]) -> list[BaseModel]:
        return reader().read_list(items)

    def read_typed_rows(rows: Any, stored: Shape) -> list[BaseModel]:
        """``rows`` with the stored fields ``stored`` (``_rows``)."""
        return reader().read_rows(rows, stored)

    def restore(dec: Decoder, obj: BaseModel, values: dict[str, Any],
                stored: StoredState | None) -> BaseModel:
        missing: Collection[str] = () if stored is None else stored.missing
        check_fields(values, required, missing, known, name)
        attributes = _field_state(fields, values, missing, defaults)
        extra: dict[str, Any] | None = None
        if allows_extra:
            extra = {k: v for k, v in values.items() if k not in field_names}
        fields_set = set(values) if stored is None or stored.fields_set is None \
            else stored.fields_set
        private: dict[str, Any] | None = None
        if stored is not None and stored.has_private:
            private = stored.private  # a dict decoded for this object alone, or None
        elif private_attributes:
            private = {}
        if private is not None:
            fill_private_defaults(private, private_attributes)
        slots: dict[str, Any] = {}
        if stored is not None and stored.attrs:
            for key, value in stored.attrs.items():
                if key in set_slots:
                    slots[key] = value
                else:
                    attributes[key] = value
        set_dict(obj, attributes)
        set_fields_set(obj, fields_set)
        set_extra(obj, extra)
        set_private(obj, private)
        for key, value in slots.items():
            set_slots[key](obj, value)
        return obj

    def decode_value(dec: Decoder, body: Any, depth: int) -> BaseModel:
        state: Any = None
        if type(body) is WithState:
            if type(body.value) is list:
                raise DeserializationError(f"{name}: the typed form has no object state")
            state = body.state
            body = body.value
        elif type(body) is list:
            return read_typed(dec, body, depth)
        # The instance exists before its contents are read: a reference inside them to it
        # (a cycle) finds it. Fields, then the state: the order they were written in.
        obj = new(cls)
        dec.bind(obj)
        values = dec.decode_object(body, depth, name)
        if state is None and direct and len(values) == field_count and known is not None \
                and known.issuperset(values):
            set_dict(obj, values)
            set_fields_set(obj, set(values))
            set_extra(obj, None)
            set_private(obj, None)
            return obj
        stored = None if state is None else StoredState(dec, state, depth, name, True)
        return restore(dec, obj, values, stored)

    return TypeCodec(name, version, "model", cls, encode_value, decode_value, None,
                     migrations=migrations, description=_describe(cls),
                     encode_object=encode_object, read_typed_list=read_typed_list,
                     read_typed_rows=read_typed_rows)


def dataclass_codec(cls: type, name: str, version: int,
                    migrations: Mapping[int, Migration]) -> TypeCodec:
    all_fields = dataclasses.fields(cls)
    fields = tuple(f.name for f in all_fields)
    defaults = {f.name: _dataclass_default(f) for f in all_fields
                if f.default is not dataclasses.MISSING
                or f.default_factory is not dataclasses.MISSING}
    required = frozenset(fields).difference(defaults)
    known = frozenset(fields)
    not_state = known | _cached_properties(cls)
    slot_names = declared_slots(cls)
    slot_getters = slot_readers(cls, slot_names)

    def instance_state(obj: Any) -> dict[str, Any]:
        """The attributes pickle would save: ``__dict__`` and the filled slots."""
        if not slot_getters:
            attributes: dict[str, Any] = obj.__dict__
            return attributes
        own = getattr(obj, "__dict__", None)  # slots classes may have one too
        state: dict[str, Any] = dict(own) if own is not None else {}
        for slot, read in slot_getters:
            value = read(obj)
            if value is not NO_VALUE:
                state[slot] = value
        return state

    def encode_object(enc: Encoder, obj: Any, depth: int) -> tuple[Any, Any]:
        out: dict[str, Any] = {}
        child = depth + 1
        key: Any = None
        attributes = instance_state(obj)
        missing: list[str] = []
        try:
            for key in fields:
                if key in attributes:
                    out[key] = enc.encode(attributes[key], child)
                else:
                    missing.append(key)
        except SerializationError as exc:
            note_path(exc, key_segment(key), None)
            raise
        state: dict[str, Any] = {}
        if missing:
            state["missing"] = missing
        if len(attributes) != len(out):
            plain = {k: v for k, v in attributes.items() if k not in not_state}
            if plain:
                state["attrs"] = enc.encode(plain, child)
        return out, state or None

    def encode_value(enc: Encoder, obj: Any, depth: int) -> Any:
        return encode_object(enc, obj, depth)[0]

    def decode_value(dec: Decoder, body: Any, depth: int) -> Any:
        obj, values, stored = open_object(dec, cls, body, depth, name, False)
        missing: Collection[str] = () if stored is None else stored.missing
        check_fields(values, required, missing, known, name)
        attributes = _field_state(fields, values, missing, defaults)
        if stored is not None and stored.attrs:
            attributes.update(stored.attrs)
        if slot_getters:
            for key, value in attributes.items():
                object.__setattr__(obj, key, value)  # frozen dataclasses too, no __init__
        else:
            obj.__dict__.update(attributes)
        return obj

    return TypeCodec(name, version, "dataclass", cls, encode_value, decode_value, None,
                     migrations=migrations, description=_describe(cls),
                     encode_object=encode_object)


def enum_codec(cls: type[enum.Enum], name: str, version: int,
               migrations: Mapping[int, Migration]) -> TypeCodec:
    def encode_value(enc: Encoder, member: enum.Enum, depth: int) -> Any:
        return enc.encode(member.value, depth + 1)

    by_value = cls._value2member_map_

    def decode_value(dec: Decoder, v: Any, depth: int) -> enum.Enum:
        value = dec.decode(v, depth)
        try:  # the lookup Enum.__call__ makes first, without its overhead
            member = by_value.get(value)
        except TypeError:  # an unhashable value: Enum's own lookup handles (or refuses) it
            member = None
        if member is not None and type(member._value_) is type(value):  # no descriptor
            return member
        try:
            return cls(value)
        except ValueError:
            raise caused(DeserializationError(f"{name}: {value!r} is not a member value"), None)

    native = all(type(m.value) is str or type(m.value) is bool or m.value is None
                 or (type(m.value) is int and INT_MIN <= m.value <= INT_MAX) for m in cls)
    return TypeCodec(name, version, "enum", cls, encode_value, decode_value, None,
                     migrations=migrations, description=_describe(cls),
                     leaf=operator.attrgetter("_value_") if native else None)


def namedtuple_codec(cls: type, name: str, version: int,
                     migrations: Mapping[int, Migration]) -> TypeCodec:
    width = len(cls._fields)  # type: ignore[attr-defined]

    def encode_value(enc: Encoder, obj: tuple[Any, ...], depth: int) -> list[Any]:
        return enc.encode_items(obj, depth + 1)

    def decode_value(dec: Decoder, v: Any, depth: int) -> Any:
        if type(v) is not list or len(v) != width:
            raise DeserializationError(
                f"{name}: expected a list of {width} items, got {preview(v)}")
        return cls._make(dec.decode_items(v, depth))  # type: ignore[attr-defined]

    return TypeCodec(name, version, "namedtuple", cls, encode_value, decode_value, None,
                     migrations=migrations, description=_describe(cls))


DERIVERS = {
    "model": model_codec,
    "dataclass": dataclass_codec,
    "enum": enum_codec,
    "namedtuple": namedtuple_codec,
    "scalar": scalar_codec,
    "v1model": v1_model_codec,
}


def derive_codec(cls: type, name: str | None = None, version: int = 1,
                 migrations: Mapping[int, Migration] | None = None) -> TypeCodec | None:
    kind = auto_kind(cls)
    if kind is None:
        return None
    derive: Any = DERIVERS[kind]
    codec: TypeCodec = derive(cls, name or auto_name(cls), version, dict(migrations or {}))
    return codec
