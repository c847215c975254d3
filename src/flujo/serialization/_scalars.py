"""Derived codecs for subclasses of ``str``, ``int``, ``float`` and ``bytes``.

Libraries give values a class of their own by subclassing a builtin: pydantic-extra-types'
``CountryAlpha2``, ``PhoneNumber`` and ``PaymentCardNumber`` are ``str`` subclasses,
langchain's ``TextAccessor`` is one too. Pickle stores such a value as its builtin value
(the base class's ``__getnewargs__``) and its instance ``__dict__``, and rebuilds it with
``base.__new__(cls, value)`` and that dict; flujo does the same, so no code of the class
(``__init__``, a validator, its own ``__str__``) runs when writing or reading.

The tagged object holds the builtin value in ``v`` (as the builtin is written) and the
instance attributes (``__dict__`` and filled slots), when it has any, in ``s``
(``{"attrs": {...}}``, docs/format.md). Like strings and numbers, these values keep no
identity.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from ..exceptions import DeserializationError
from ._codec import WithState
from ._objects import NO_VALUE, declared_slots, slot_readers, slot_setter
from ._pickling import SCALAR_BASES
from ._secrets import preview
from ._types import Migration, TypeCodec

if TYPE_CHECKING:
    from ._codec import Decoder, Encoder

# Checked in this order: a class deriving from two of them (none in the standard library)
# is stored as the first.


def scalar_base(cls: type) -> type | None:
    """The builtin ``cls`` derives from, when it is a proper subclass of one defined outside
    the builtins (``bool`` has a codec of its own; enums are derived as enums before this is
    asked)."""
    if cls.__module__ == "builtins":
        return None
    for base in SCALAR_BASES:
        if cls is not base and issubclass(cls, base):
            return base
    return None


def scalar_codec(cls: type, name: str, version: int,
                 migrations: Mapping[int, Migration]) -> TypeCodec:
    base = scalar_base(cls)
    assert base is not None
    # A float subclass may declare slots (str, int and bytes ones cannot have non-empty
    # ones): pickle keeps the filled ones with the __dict__, and so does flujo.
    slot_getters = slot_readers(cls, declared_slots(cls))
    slot_setters = {slot: slot_setter(cls, slot) for slot, _ in slot_getters}
    # What pickle stores: the base's __getnewargs__, never the subclass's own __str__.
    builtin_value: Callable[[Any], tuple[Any]] = getattr(base, "__getnewargs__")  # noqa: B009
    make: Callable[[type, Any], Any] = base.__new__
    has_dict = cls.__dictoffset__ != 0  # its instances have a __dict__
    base_name = base.__name__

    def encode_object(enc: Encoder, obj: Any, depth: int) -> tuple[Any, Any]:
        value = enc.encode(builtin_value(obj)[0], depth + 1)
        attributes: dict[str, Any] = dict(obj.__dict__) if has_dict else {}
        for slot, read in slot_getters:
            slot_value = read(obj)
            if slot_value is not NO_VALUE:
                attributes[slot] = slot_value
        if not attributes:
            return value, None
        return value, {"attrs": enc.encode(attributes, depth + 1)}

    def encode_value(enc: Encoder, obj: Any, depth: int) -> Any:
        return encode_object(enc, obj, depth)[0]

    def decode_value(dec: Decoder, body: Any, depth: int) -> Any:
        attributes = None
        if type(body) is WithState:  # "s" present: it must hold attributes
            attributes = _attributes(dec, body.state, depth, name)
            body = body.value
        value = dec.decode(body, depth)
        if type(value) is not base:
            raise DeserializationError(
                f"{name}: expected a stored {base_name}, got {type(value).__name__} "
                f"{preview(value, 60)}")
        obj = make(cls, value)
        if attributes:
            for key, item in attributes.items():
                setter = slot_setters.get(key)
                if setter is not None:
                    setter(obj, item)  # the slot's own descriptor: no code of the class
                elif has_dict:
                    obj.__dict__[key] = item
                else:
                    raise DeserializationError(
                        f"{name}: its instances have no attribute {key!r:.60}, but the "
                        "stored value has one")
        return obj

    return TypeCodec(name, version, "scalar", cls, encode_value, decode_value, None,
                     migrations=migrations,
                     description=f"a {cls.__qualname__}, a {base_name} subclass: its "
                                 f"{base_name} value and instance attributes",
                     encode_object=encode_object)


def _attributes(dec: Decoder, state: Any, depth: int, owner: str) -> dict[str, Any]:
    if type(state) is not dict or set(state) != {"attrs"}:
        raise DeserializationError(
            f"{owner}: the state of a {owner} must be {{\"attrs\": {{...}}}}, got "
            f"{preview(state)}")
    attributes = dec.decode(state["attrs"], depth)
    if type(attributes) is not dict or any(type(k) is not str for k in attributes):
        raise DeserializationError(f"{owner}: state 'attrs' must be an object of attributes, "
                                   f"got {preview(state['attrs'])}")
    return attributes
