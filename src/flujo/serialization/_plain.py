"""``mode="json"``: plain, human-facing JSON for logs and APIs (not reversible).

Matches what earlier flujo releases produced: datetimes/dates/times as ISO strings, UUID and
Decimal as strings, enums as their value, models and dataclasses as field dicts, sets and
tuples as lists, bytes as base64, IP addresses, networks and interfaces as ``str()``, a
``ZoneInfo`` as its key, a ``timezone`` as its ``tzname``, a compiled regular expression as
its pattern (bytes ones in base64), non-finite floats as "nan"/"inf"/"-inf", a circular
reference as "<circular-ref>". Unknown types still fail loudly (or go to
``default_serializer``): nothing is silently replaced by its ``repr``.
"""

from __future__ import annotations

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

from pydantic import BaseModel

from ..exceptions import (
    FlujoError,
    NestingTooDeepError,
    SerializationError,
    UnserializableTypeError,
)
from ._codec import _finish, _note, key_segment

if TYPE_CHECKING:
    from ._registry import TypeRegistry

CIRCULAR_PLACEHOLDER = "<circular-ref>"
_IP_TYPES = (ipaddress.IPv4Address, ipaddress.IPv6Address, ipaddress.IPv4Network,
             ipaddress.IPv6Network, ipaddress.IPv4Interface, ipaddress.IPv6Interface)


def to_plain(obj: Any, registry: TypeRegistry, default: Callable[[Any], Any] | None) -> Any:
    walker = _PlainWalker(registry, default)
    try:
        return walker.walk(obj, 0)
    except SerializationError as exc:
        raise _finish(exc) from exc.__cause__
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
                name = key if isinstance(key, str) else str(self.walk(key, depth))
                if name in out:  # e.g. 1 and "1": keeping one would silently drop the other
                    raise SerializationError(
                        f"keys {key!r} and another key both become {name!r} in plain JSON")
                out[name] = self.walk(value, depth)
        except SerializationError as exc:
            _note(exc, key_segment(key), None)
            raise
        return out

    def _items(self, items: Any, depth: int) -> list[Any]:
        out: list[Any] = []
        try:
            for item in items:
                out.append(self.walk(item, depth))
        except SerializationError as exc:
            _note(exc, f"[{len(out)}]", None)
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
        if isinstance(obj, (bytes, bytearray)):
            return base64.b64encode(obj).decode("ascii")
        if isinstance(obj, complex):
            return {"real": self.walk(obj.real, depth), "imag": self.walk(obj.imag, depth)}
        if isinstance(obj, int):
            return int(obj)
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
