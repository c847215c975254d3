"""The instance state of objects, as the derived codecs read and write it: slots (their
getters and setters), the stored state ``s`` of a model or dataclass (``StoredState``), the
check of stored field names, and opening a tagged object before its fields are read.

Below the codecs that share it (``_auto``, ``_typed``, ``_scalars``, ``_pydantic_v1``), so
that none of them imports another to reach it.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from functools import partial
from typing import TYPE_CHECKING, Any, Final

from ..exceptions import DeserializationError
from ._codec import WithState
from ._rows import refuse_unknown
from ._secrets import preview

if TYPE_CHECKING:
    from ._codec import Decoder

__all__ = ["NO_VALUE", "StoredState", "check_fields", "declared_slots", "open_object",
           "slot_readers", "slot_setter"]


NO_VALUE: Final = object()  # a field without a value (never set, or deleted)
_STATE_KEYS: Final = frozenset({"set", "missing", "private", "attrs"})


def check_fields(values: Collection[str], required: frozenset[str], missing: Collection[str],
                 known: frozenset[str] | None, name: str) -> None:
    lacking = required.difference(values).difference(missing)
    if lacking:
        raise DeserializationError(
            f"{name}: stored data lacks required field(s) {sorted(lacking)}; bump the type's "
            "version and register a migration that fills them"
        )
    if known is not None:
        refuse_unknown(set(values).difference(known), name)


def declared_slots(cls: type, skip: Collection[str] = ()) -> list[str]:
    """The instance slots ``cls`` and its bases declare (``__dict__``/``__weakref__`` and
    ``skip`` aside), outermost class first."""
    names: list[str] = []
    for klass in reversed(cls.__mro__):
        slots = klass.__dict__.get("__slots__", ())
        for slot in (slots,) if isinstance(slots, str) else slots:
            if (type(slot) is str and slot not in ("__dict__", "__weakref__")
                    and slot not in skip and slot not in names):
                names.append(slot)
    return names


def slot_readers(cls: type, names: list[str]) -> list[tuple[str, Callable[[Any], Any]]]:
    getters: list[tuple[str, Callable[[Any], Any]]] = []
    for name in names:
        for klass in cls.__mro__:
            descriptor = klass.__dict__.get(name)
            if descriptor is not None and hasattr(descriptor, "__get__"):
                getters.append((name, partial(_read_slot, descriptor)))
                break
    return getters


def _read_slot(descriptor: Any, obj: Any) -> Any:
    try:
        return descriptor.__get__(obj, type(obj))
    except AttributeError:  # an empty slot: pickle skips it too
        return NO_VALUE


def _state_names(state: Any, key: str, owner: str) -> list[str]:
    names = state.get(key, [])
    if type(names) is not list or any(type(n) is not str for n in names):
        raise DeserializationError(f"{owner}: state {key!r} must be a list of names, got "
                                   f"{preview(names)}")
    return names


class StoredState:
    """The ``s`` of a model's or dataclass's tagged object, read (docs/format.md)."""

    __slots__ = ("attrs", "fields_set", "has_private", "missing", "private")

    def __init__(self, dec: Decoder, state: Any, depth: int, owner: str,
                 has_private: bool) -> None:
        if type(state) is not dict or not state or not _STATE_KEYS.issuperset(state):
            raise DeserializationError(
                f"{owner}: an object state must be an object with some of the keys "
                f"{sorted(_STATE_KEYS)}, got {preview(state)}")
        self.fields_set: set[str] | None = (
            set(_state_names(state, "set", owner)) if "set" in state else None)
        self.missing: list[str] = _state_names(state, "missing", owner)
        self.has_private = "private" in state
        self.private: Any = None
        if self.has_private:
            if not has_private:
                raise DeserializationError(f"{owner}: only pydantic models have private "
                                           "attributes")
            self.private = _attribute_dict(dec, state["private"], depth, owner, "private",
                                           nullable=True)
        self.attrs: dict[str, Any] | None = None
        if "attrs" in state:
            self.attrs = _attribute_dict(dec, state["attrs"], depth, owner, "attrs",
                                         nullable=False)


def open_object(dec: Decoder, cls: type, body: Any, depth: int, owner: str,
                has_private: bool) -> tuple[Any, dict[str, Any], StoredState | None]:
    """A dataclass's or pydantic.v1 model's tagged object, opened: the new instance (bound
    to its anchor before its contents are read, so that a cycle through it finds it), its
    stored field values and its state (``s``), if any."""
    state: Any = None
    if type(body) is WithState:
        state = body.state
        body = body.value
    obj: Any = object.__new__(cls)
    dec.bind(obj)
    values = dec.decode_object(body, depth, owner)
    stored = None if state is None else StoredState(dec, state, depth, owner, has_private)
    return obj, values, stored


def _attribute_dict(dec: Decoder, data: Any, depth: int, owner: str, key: str, *,
                    nullable: bool) -> Any:
    if data is None and nullable:
        return None
    value = dec.decode(data, depth)
    if type(value) is not dict or any(type(k) is not str for k in value):
        raise DeserializationError(f"{owner}: state {key!r} must be an object of attributes, "
                                   f"got {preview(data)}")
    return value


def slot_setter(cls: type, name: str) -> Callable[[Any, Any], None]:
    """The setter of the slot ``name`` on instances of ``cls`` (the descriptor's own)."""
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
