"""Codecs derived from a class itself: pydantic models, dataclasses, enums, NamedTuples.

These need no registration: the class is written under its ``module:qualname`` (or the name
it was registered with) and, when read back, found among the classes already defined in the
running process. Decoding never runs validators again: the values were valid when written
and come back with their exact types, so ``model_construct`` / ``object.__setattr__`` rebuild
the object as it was (a validator that normalizes would otherwise change the data).
"""

from __future__ import annotations

import dataclasses
import enum
import inspect
import operator
from collections.abc import Callable, Collection, Mapping
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from ..exceptions import DeserializationError, SerializationError, caused
from ._codec import INT_MAX, INT_MIN, NO_DIRECT_PLANS, _note, key_segment
from ._rows import Shape
from ._typed import TypedReader, typed_eligible
from ._types import Migration, TypeCodec

if TYPE_CHECKING:
    from ._codec import Decoder, Encoder


def auto_name(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def auto_kind(cls: type) -> str | None:
    """The derived-codec kind of ``cls``, or None when flujo cannot derive one."""
    if not isinstance(cls, type):
        return None
    if issubclass(cls, BaseModel):
        return "model" if cls is not BaseModel else None
    if issubclass(cls, enum.Enum):
        return "enum" if cls.__members__ else None
    if dataclasses.is_dataclass(cls):
        return "dataclass"
    if issubclass(cls, tuple) and hasattr(cls, "_fields") and hasattr(cls, "_make"):
        return "namedtuple"
    return None


def _describe(cls: type) -> str:
    own = cls.__dict__.get("__doc__")
    return inspect.cleandoc(own) if isinstance(own, str) else ""


def _check_fields(
    values: Mapping[str, Any], required: frozenset[str], known: frozenset[str] | None, name: str
) -> None:
    missing = required.difference(values)
    if missing:
        raise DeserializationError(
            f"{name}: stored data lacks required field(s) {sorted(missing)}; bump the type's "
            "version and register a migration that fills them"
        )
    if known is not None:
        _refuse_unknown(set(values).difference(known), name)


def _refuse_unknown(unknown: Collection[str], name: str) -> None:
    if unknown:
        raise DeserializationError(
            f"{name}: stored field(s) {sorted(unknown)} no longer exist on the class; bump "
            "the type's version and register a migration that moves or drops them"
        )


def _slot_setter(cls: type, name: str) -> Callable[[Any, Any], None]:
    """The setter of the slot ``name`` on instances of ``cls``: the descriptor's own
    ``__set__``, which costs half of ``object.__setattr__`` (no lookup by name)."""
    for klass in cls.__mro__:
        descriptor = klass.__dict__.get(name)
        if descriptor is not None:
            setter: Callable[[Any, Any], None] | None = getattr(descriptor, "__set__", None)
            if setter is not None:
                return setter
            break

    def set_attribute(obj: Any, value: Any) -> None:
        object.__setattr__(obj, name, value)

    return set_attribute


def model_codec(
    cls: type[BaseModel], name: str, version: int, migrations: Mapping[int, Migration]
) -> TypeCodec:
    fields = tuple(cls.__pydantic_fields__)
    required = frozenset(n for n, f in cls.__pydantic_fields__.items() if f.is_required())
    allows_extra = cls.model_config.get("extra") == "allow"
    field_names = frozenset(fields)
    known = None if allows_extra else field_names

    def encode_value(enc: Encoder, obj: BaseModel, depth: int) -> dict[str, Any]:
        out: dict[str, Any] = {}
        child = depth + 1
        state = obj.__dict__
        key: Any = None
        try:
            direct = enc.direct if child <= enc.limit else NO_DIRECT_PLANS
            for key in fields:
                if key in state:
                    value = state[key]
                    tv = type(value)
                    if (tv is str or tv is bool or value is None
                            or (tv is int and INT_MIN <= value <= INT_MAX)
                            or (tv is float and value - value == 0.0)):
                        out[key] = value
                    else:
                        leaf = direct.get(tv)
                        out[key] = (leaf(enc, value, child) if leaf is not None
                                    else enc.encode(value, child))
            extra = obj.__pydantic_extra__
            if extra:
                for key, value in extra.items():
                    out[key] = enc.encode(value, child)
        except SerializationError as exc:
            _note(exc, key_segment(key), None)
            raise
        return out

    # model_construct does, in Python, what is needed only for some classes: defaults for
    # missing fields, extras, private attributes, model_post_init. When a record holds every
    # field of a class that needs none of those, setting the instance state directly gives
    # the same object (model_construct's own steps) at a fraction of the cost.
    direct = (not allows_extra and not cls.__private_attributes__
              and not getattr(cls, "__pydantic_post_init__", None))
    field_count = len(fields)
    new = object.__new__
    set_dict = _slot_setter(cls, "__dict__")
    set_fields_set = _slot_setter(cls, "__pydantic_fields_set__")
    set_extra = _slot_setter(cls, "__pydantic_extra__")
    set_private = _slot_setter(cls, "__pydantic_private__")

    readers: list[TypedReader] = []  # the class's reader, made on first use

    def new_reader() -> TypedReader:
        # Only classes flujo itself would write in the typed form: for the others (sets,
        # tuples, dicts with non-str keys...) pydantic-core would build containers from
        # stored data without flujo's checks (hash flooding, exact types).
        if not typed_eligible(cls):
            raise DeserializationError(
                f"{name}: stored in the typed form, which this class can no longer take (it "
                "gained a validator, a set field, ...); bump its version and register a "
                "migration that returns the generic form")
        readers.append(TypedReader(cls))
        return readers[0]

    def typed_error(exc: ValidationError) -> DeserializationError:
        return caused(DeserializationError(f"{name}: typed form does not fit the class: {exc}"),
                      exc)

    def read_typed(body: list[Any]) -> BaseModel:
        reader = readers[0] if readers else new_reader()
        if len(body) != 1:
            raise DeserializationError(f"{name}: the typed form holds exactly one object")
        _refuse_unknown(reader.unknown_keys(body[0]), name)
        try:
            return reader.read(body[0])
        except ValidationError as exc:
            raise typed_error(exc)

    def read_typed_list(items: list[Any]) -> list[BaseModel]:
        reader = readers[0] if readers else new_reader()
        for item in items:
            _refuse_unknown(reader.unknown_keys(item), name)
        try:
            return reader.read_list(items)
        except ValidationError as exc:
            raise typed_error(exc)

    def read_typed_rows(rows: Any, stored: Shape) -> list[BaseModel]:
        """``rows`` with the stored fields ``stored`` (``_rows``)."""
        reader = readers[0] if readers else new_reader()
        _refuse_unknown(reader.unknown_fields(stored), name)
        try:
            return reader.read_rows(rows, stored)
        except ValidationError as exc:
            raise typed_error(exc)

    def decode_value(dec: Decoder, body: Any, depth: int) -> BaseModel:
        if type(body) is list:
            return read_typed(body)
        values = dec.decode_object(body, depth, name)
        if direct and len(values) == field_count and known is not None \
                and known.issuperset(values):
            obj = new(cls)
            set_dict(obj, values)
            set_fields_set(obj, set(values))
            set_extra(obj, None)
            set_private(obj, None)
            return obj
        _check_fields(values, required, known, name)
        if known is not None:
            return cls.model_construct(**values)
        # extra="allow": extras go in after construction, so an extra named like one of
        # model_construct's own parameters (_fields_set) stays an extra field.
        declared = {k: v for k, v in values.items() if k in field_names}
        obj = cls.model_construct(**declared)
        extras = {k: v for k, v in values.items() if k not in field_names}
        if extras:
            object.__setattr__(obj, "__pydantic_extra__", {**(obj.__pydantic_extra__ or {}),
                                                           **extras})
            obj.__pydantic_fields_set__.update(extras)
        return obj

    decode_value.read_typed_list = read_typed_list  # type: ignore[attr-defined]
    decode_value.read_typed_rows = read_typed_rows  # type: ignore[attr-defined]
    return TypeCodec(name, version, "model", cls, encode_value, decode_value, None,
                     migrations=migrations, description=_describe(cls))


def dataclass_codec(cls: type, name: str, version: int,
                    migrations: Mapping[int, Migration]) -> TypeCodec:
    all_fields = dataclasses.fields(cls)
    fields = tuple(f.name for f in all_fields)
    defaults = {f.name: f for f in all_fields
                if f.default is not dataclasses.MISSING
                or f.default_factory is not dataclasses.MISSING}
    required = frozenset(fields).difference(defaults)
    known = frozenset(fields)

    def encode_value(enc: Encoder, obj: Any, depth: int) -> dict[str, Any]:
        out: dict[str, Any] = {}
        child = depth + 1
        key: Any = None
        try:
            for key in fields:
                out[key] = enc.encode(getattr(obj, key), child)
        except SerializationError as exc:
            _note(exc, key_segment(key), None)
            raise
        return out

    def decode_value(dec: Decoder, body: Any, depth: int) -> Any:
        values = dec.decode_object(body, depth, name)
        _check_fields(values, required, known, name)
        obj: Any = object.__new__(cls)
        for key in fields:
            if key in values:
                value = values[key]
            else:
                spec = defaults[key]
                factory: Any = spec.default_factory
                value = spec.default if spec.default is not dataclasses.MISSING else factory()
            object.__setattr__(obj, key, value)  # frozen dataclasses too, without __init__
        return obj

    return TypeCodec(name, version, "dataclass", cls, encode_value, decode_value, None,
                     migrations=migrations, description=_describe(cls))


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
        if member is not None and type(member.value) is type(value):
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
            raise DeserializationError(f"{name}: expected a list of {width} items, got {v!r:.80}")
        return cls._make(dec.decode_items(v, depth))  # type: ignore[attr-defined]

    return TypeCodec(name, version, "namedtuple", cls, encode_value, decode_value, None,
                     migrations=migrations, description=_describe(cls))


DERIVERS = {
    "model": model_codec,
    "dataclass": dataclass_codec,
    "enum": enum_codec,
    "namedtuple": namedtuple_codec,
}


def derive_codec(cls: type, name: str | None = None, version: int = 1,
                 migrations: Mapping[int, Migration] | None = None) -> TypeCodec | None:
    kind = auto_kind(cls)
    if kind is None:
        return None
    derive: Any = DERIVERS[kind]
    codec: TypeCodec = derive(cls, name or auto_name(cls), version, dict(migrations or {}))
    return codec
