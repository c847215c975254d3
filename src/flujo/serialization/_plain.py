"""``mode="json"``: plain, human-facing JSON for logs and APIs (not reversible).

Matches what earlier flujo releases produced: datetimes/dates/times as ISO strings, UUID and
Decimal as strings, enums as their value, models and dataclasses as field dicts, sets and
tuples as lists, bytes as base64, IP addresses, networks and interfaces as ``str()``, a
``ZoneInfo`` as its key, a ``timezone`` as its ``tzname``, a compiled regular expression as
its pattern (bytes ones in base64), non-finite floats as "nan"/"inf"/"-inf", a circular
reference as "<circular-ref>", a shared object written out in each place it is reached (a
value that would expand past ``MAX_EXPANDED_VALUES`` is refused). Unknown types still fail
loudly (or go to ``default_serializer``): nothing is silently replaced by its ``repr``.
"""

from __future__ import annotations

import array
import base64
import dataclasses
import enum
import ipaddress
import math
import re
from collections import deque
from collections.abc import Callable
from datetime import date, time, timedelta, timezone
from decimal import Decimal
from pathlib import PurePath
from typing import TYPE_CHECKING, Any
from uuid import UUID
from zoneinfo import ZoneInfo

from pydantic import BaseModel, NameEmail, SecretBytes, SecretStr
from pydantic.networks import _BaseMultiHostUrl, _BaseUrl
from pydantic_core import MultiHostUrl, Url

from ..exceptions import (
    FlujoError,
    NestingTooDeepError,
    SerializationError,
    UnserializableTypeError,
)
from ._library_types import LIBRARY_CODEC_NAMES
from ._numpy import ARRAY, SCALAR
from ._paths import finish_path, key_segment, note_path
from ._pydantic_v1 import is_v1_model
from ._scalars import scalar_base
from ._secrets import MASK, SECRET_NAMES

if TYPE_CHECKING:
    from ._registry import TypeRegistry

CIRCULAR_PLACEHOLDER = "<circular-ref>"
_IP_TYPES = (ipaddress.IPv4Address, ipaddress.IPv6Address, ipaddress.IPv4Network,
             ipaddress.IPv6Network, ipaddress.IPv4Interface, ipaddress.IPv6Interface)


# A stored value may hold one object in many places (references): written out as a tree,
# a few kilobytes can stand for more values than any memory holds. Plain JSON and printing
# refuse a value beyond this many.
MAX_EXPANDED_VALUES = 10_000_000


def expanded_size(value: Any, limit: int = MAX_EXPANDED_VALUES) -> int:
    """How many values ``value`` holds when written out as a tree (each shared object once
    per place it is reached, a cycle cut where it closes), counted up to just past ``limit``
    in time linear in its distinct objects, without recursion (any depth)."""
    sizes: dict[int, int] = {}
    active: set[int] = set()
    frames: list[list[Any]] = []  # [id, its children's iterator, its size so far]

    def start(obj: Any) -> int | None:
        """The size of ``obj`` when known at once; None when a frame was pushed for it."""
        children = _children(obj)
        if children is None:
            return 1
        key = id(obj)
        known = sizes.get(key)
        if known is not None:
            return known
        if key in active:  # a cycle closes here
            return 1
        active.add(key)
        frames.append([key, iter(children), 1])
        return None

    first = start(value)
    if first is not None:
        return first
    while True:
        frame = frames[-1]
        if frame[2] > limit:
            return limit + 1
        child = next(frame[1], _DONE)
        if child is not _DONE:
            size = start(child)
            if size is not None:
                frame[2] += size
            continue
        frames.pop()
        active.discard(frame[0])
        sizes[frame[0]] = frame[2]
        if not frames:
            return int(frame[2])
        frames[-1][2] += frame[2]


_DONE = object()


def _children(obj: Any) -> Any:
    if isinstance(obj, dict):
        return [*obj.keys(), *obj.values()]
    if isinstance(obj, (list, tuple, set, frozenset, deque)):
        return obj
    if isinstance(obj, BaseModel):
        return [*obj.__dict__.values(), *(obj.__pydantic_extra__ or {}).values()]
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return [getattr(obj, f.name, None) for f in dataclasses.fields(obj)]
    return None


def check_expanded_size(value: Any) -> None:
    """Refuse a value too large to write out as a tree (plain JSON, printing)."""
    if expanded_size(value) > MAX_EXPANDED_VALUES:
        raise SerializationError(
            f"the value holds more than {MAX_EXPANDED_VALUES:,} values when written out: "
            "shared objects are written out once per place they are reached, and this one "
            "reaches some very many times; keep it in the tagged form")


def to_plain(obj: Any, registry: TypeRegistry, default: Callable[[Any], Any] | None) -> Any:
    check_expanded_size(obj)
    walker = _PlainWalker(registry, default)
    try:
        return walker.walk(obj, 0)
    except SerializationError as exc:
        raise finish_path(exc) from exc.__cause__
    except RecursionError:  # the Python stack ran out before max_depth
        raise NestingTooDeepError(
            f"nested too deeply: the Python stack ran out before "
            f"max_depth={registry.max_depth}") from None


class _PlainWalker:
    def __init__(self, registry: TypeRegistry, default: Callable[[Any], Any] | None) -> None:
        self.registry = registry
        self.default = default
        self.active: set[int] = set()

    def walk(self, obj: Any, depth: int) -> Any:
        t = type(obj)
        if t is str or t is int or t is bool or obj is None:
            return obj
        if t is float:
            if math.isnan(obj):
                return "nan"
            if math.isinf(obj):
                return "inf" if obj > 0 else "-inf"
            return obj
        if depth > self.registry.max_depth:
            raise NestingTooDeepError(
                f"value nested deeper than max_depth={self.registry.max_depth}")
        ident = id(obj)
        if ident in self.active:
            return CIRCULAR_PLACEHOLDER
        self.active.add(ident)
        try:
            return self._walk_container(obj, t, depth + 1)
        finally:
            self.active.discard(ident)

    def _pairs(self, items: Any, depth: int) -> dict[str, Any]:
        out: dict[str, Any] = {}
        key: Any = None
        try:
            for key, value in items:
                name = key if type(key) is str else str(self.walk(key, depth))
                if name in out:  # e.g. 1 and "1": keeping one would silently drop the other
                    raise SerializationError(
                        f"keys {key!r} and another key both become {name!r} in plain JSON")
                out[name] = self.walk(value, depth)
        except SerializationError as exc:
            note_path(exc, key_segment(key), None)
            raise
        return out

    def _items(self, items: Any, depth: int) -> list[Any]:
        out: list[Any] = []
        try:
            for item in items:
                out.append(self.walk(item, depth))
        except SerializationError as exc:
            note_path(exc, f"[{len(out)}]", None)
            raise
        return out

    def _walk_container(self, obj: Any, t: type, depth: int) -> Any:
        codec = self.registry.codec_for_type(t)
        if codec is not None and codec.kind == "custom":
            try:
                return self.walk(codec.serializer(obj), depth)  # type: ignore[misc]
            except FlujoError:
                raise
            except Exception as exc:
                raise SerializationError(f"serializer for {t.__qualname__} raised {exc!r}") from exc
        if isinstance(obj, dict):
            return self._pairs(obj.items(), depth)
        if is_v1_model(t):  # its __dict__: the fields, then the extras
            return self._pairs(obj.__dict__.items(), depth)
        if isinstance(obj, BaseModel):
            fields = {k: v for k, v in obj.__dict__.items() if k in type(obj).__pydantic_fields__}
            return self._pairs([*fields.items(), *(obj.__pydantic_extra__ or {}).items()], depth)
        if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
            return self._pairs(((f.name, getattr(obj, f.name))
                                for f in dataclasses.fields(obj)), depth)
        if isinstance(obj, enum.Enum):
            return self.walk(obj.value, depth)
        if isinstance(obj, (list, tuple, deque)):
            return self._items(obj, depth)
        if isinstance(obj, (set, frozenset)):
            items = self._items(obj, depth)
            try:
                return sorted(items)
            except TypeError:
                return items
        if isinstance(obj, (date, time)):
            return obj.isoformat()
        if isinstance(obj, timedelta):
            return obj.total_seconds()
        if isinstance(obj, (UUID, Decimal, PurePath, *_IP_TYPES)):
            return str(obj)
        if isinstance(obj, ZoneInfo) and obj.key is not None:
            return obj.key
        if isinstance(obj, timezone):
            return obj.tzname(None)
        if isinstance(obj, re.Pattern):
            source = obj.pattern
            return source if isinstance(source, str) else base64.b64encode(source).decode("ascii")
        if isinstance(obj, (SecretStr, SecretBytes)):
            return MASK  # a secret is never shown
        if isinstance(obj, (_BaseUrl, _BaseMultiHostUrl, Url, MultiHostUrl, NameEmail)):
            return str(obj)
        if isinstance(obj, (bytes, bytearray, memoryview)):
            raw = obj.tobytes() if isinstance(obj, memoryview) else obj
            return base64.b64encode(raw).decode("ascii")
        if isinstance(obj, array.array):
            return self._items(obj.tolist(), depth)
        if isinstance(obj, complex):
            return {"real": self.walk(obj.real, depth), "imag": self.walk(obj.imag, depth)}
        base = scalar_base(t)
        if base is not None:  # a str, int or float subclass: its builtin value, as pickle
            return self.walk(getattr(base, "__getnewargs__")(obj)[0], depth)  # noqa: B009
        if codec is not None and codec.name == ARRAY:
            return self.walk(obj.tolist(), depth)  # nested lists of Python values
        if codec is not None and codec.name == SCALAR:
            value: Any = obj.item()
            if type(value) is t:  # a long double has no Python counterpart: the nearest
                value = complex(obj) if obj.dtype.kind == "c" else float(obj)
            return self.walk(value, depth)
        if codec is not None and codec.name in SECRET_NAMES:
            return MASK  # pydantic.v1's secrets
        if codec is not None and codec.name in LIBRARY_CODEC_NAMES:
            return str(obj)  # a Color's name or hex, a version's text, as pydantic dumps it
        if self.default is not None:
            try:
                replacement = self.default(obj)
            except FlujoError:
                raise
            except Exception as exc:
                raise SerializationError(f"default_serializer raised {exc!r}") from exc
            if type(replacement) is not t:
                return self.walk(replacement, depth)
        raise UnserializableTypeError(t)
