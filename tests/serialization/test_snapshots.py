"""Pin the exact encoded form of representative values (snapshots in snapshots/test_snapshots/).

The tagged format is persisted, so any change to these bytes is a format change: it needs a
new type version (and a migration), not a snapshot update.
"""

from __future__ import annotations

import array
import ipaddress
import math
import pathlib
import re
import time as time_module
from collections import Counter, OrderedDict, defaultdict, deque
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

import orjson
import pytest
from syrupy.assertion import SnapshotAssertion

from flujo.serialization import (
    TypeRegistry,
    encode_with_manifest,
    safe_deserialize,
    safe_serialize,
)

from ._support import (
    Animal,
    Bag,
    Blob,
    Box,
    Cents,
    Color,
    Dog,
    Item,
    Kennel,
    Label,
    Labeled,
    Loose,
    Mode,
    Money,
    Page,
    Pair,
    Perm,
    Point,
    Priority,
    Ratio,
    Version,
    make_registry,
)
from .test_references import assert_same_graph


def _subclasses() -> list[Any]:
    label = Label("ocr text")
    label.confidence = 0.5  # type: ignore[attr-defined]
    return [label, Label(""), Cents(-2**70), Ratio(math.nan), Blob(b"\x00")]


def snapshot_registry() -> TypeRegistry:
    """Stable names, so the snapshots do not depend on where the test module is imported from."""
    registry = make_registry()
    for cls in (Animal, Box, Color, Dog, Item, Kennel, Labeled, Loose, Mode, Pair, Perm, Point,
                Priority, Version, Label, Cents, Ratio, Blob):
        registry.register_type(cls, name=f"test.{cls.__name__.lower()}")
    registry.register_type(Page[Item], name="test.page[item]")
    return registry


def _shared() -> Any:
    """One list, dict, set, model and custom object, each in two places."""
    items = [1, 2]
    names = {"a": "b"}
    tags = {"x"}
    model = Item(name="shared", price=Decimal("1"), at=datetime(2024, 1, 1, tzinfo=UTC))
    money = Money(Decimal("2.00"), "EUR")
    return {"items": items, "names": names, "tags": tags, "model": model, "money": money,
            "again": [items, names, tags, model, money]}


def _cycles() -> Any:
    """A list, a dict and a dataclass that contain themselves."""
    loop: list[Any] = ["head"]
    loop.append(loop)
    table: dict[Any, Any] = {1: "one"}
    table["self"] = table
    pair = Pair(1)
    pair.right = [pair]
    return [loop, table, pair]


REGISTRY = snapshot_registry()
NY = ZoneInfo("America/New_York")

CORPUS: dict[str, Any] = {
    "json-native": {"s": "text", "i": -(2**63), "u": 2**64 - 1, "f": 1.5, "z": -0.0,
                    "b": True, "n": None, "l": [1, [2]]},
    "datetime-naive": datetime(2024, 5, 17, 13, 45, 30, 123456),
    "datetime-utc": datetime(2024, 5, 17, 13, 45, tzinfo=UTC),
    "datetime-offset": datetime(2024, 5, 17, 13, 45, tzinfo=timezone(timedelta(hours=5,
                                                                              minutes=30))),
    "datetime-named-offset": datetime(2024, 1, 1, tzinfo=timezone(timedelta(hours=-5), "EST")),
    "datetime-zoneinfo-fold-0": datetime(2024, 11, 3, 1, 30, tzinfo=NY),
    "datetime-zoneinfo-fold-1": datetime(2024, 11, 3, 1, 30, fold=1, tzinfo=NY),
    "date": date(2024, 2, 29),
    "time": time(23, 59, 59, 999999),
    "time-offset": time(8, 30, tzinfo=timezone(timedelta(hours=-3))),
    "timedelta": timedelta(days=-1, seconds=3600, microseconds=5),
    "uuid": UUID("12345678-1234-5678-1234-567812345678"),
    "decimals": [Decimal("1.10"), Decimal("1E+3"), Decimal("-0"), Decimal("NaN"),
                 Decimal("sNaN"), Decimal("-Infinity")],
    "enums": [Color.RED, Priority.HIGH, Mode.WRITE, Perm.R | Perm.X],
    "complex": [complex(1.5, -2.0), complex(math.nan, math.inf)],
    "floats": [math.nan, math.inf, -math.inf, -0.0],
    "ints": [2**64, -(2**63) - 1, 10**40],
    "set": {3, 1, 2},
    "frozenset": frozenset({"b", "a", 1}),
    "tuple": (1, "a", None, (2,)),
    "namedtuple": Point(1, 2),
    "bytes": b"\x00\x01\xfe\xff",
    "bytearray": bytearray(b"flujo"),
    "paths": [pathlib.PosixPath("/var/lib/x"), pathlib.PurePosixPath("a/b"),
              pathlib.PureWindowsPath(r"C:\x\y")],
    "dict-non-str-keys": {1: "one", (2, 3): "tuple", Color.BLUE: "enum",
                          frozenset({4}): "frozenset"},
    "dict-escaped-reserved-key": {"$t": "datetime@1", "v": "not a datetime"},
    "ordereddict": OrderedDict([("b", 1), ("a", 2)]),
    "counter": Counter({"x": 3, "y": 1}),
    "deque": deque([1, 2], maxlen=3),
    "defaultdicts": [defaultdict(list, {"a": [1]}), defaultdict(Bag), defaultdict(None)],
    "dataclasses": [Pair(1, "two"), Version(3, 11), Labeled("x", {1})],
    "model": Item(name="widget", price=Decimal("9.90"), at=datetime(2024, 1, 1, tzinfo=UTC)),
    "generic-model": Page[Item](items=[Item(name="a", price=Decimal("1"),
                                            at=datetime(2024, 1, 1))], total=1),
    "model-subclass-field": Kennel(resident=Dog(name="rex", breed="pug")),
    "models-with-unset-fields": [Dog(name="rex", breed="pug"),
                                 Dog(name="ace", breed="lab", good=False)],
    "model-with-zoned-datetime": Item(name="w", price=Decimal("1.00"),
                                      at=datetime(2024, 11, 3, 1, 30, fold=1, tzinfo=NY)),
    "models-with-zoned-datetimes": [  # rows@3: the zoned ones as flujo's text, beside ISO
        Item(name="a", price=Decimal("1"), at=datetime(2024, 3, 10, 3, tzinfo=NY)),
        Item(name="b", price=Decimal("2"), at=datetime(2024, 1, 1, tzinfo=UTC)),
        Item(name="c", price=Decimal("3"), at=datetime(2024, 1, 1, tzinfo=timezone(
            timedelta(hours=-5), "EST")))],
    "model-any-fields": Box(payload={"when": date(2024, 1, 1)}, extras={"d": Decimal("0.5")}),
    "model-extra-allow": Loose(kind="k", x_extra={1, 2}),
    "custom-type": Money(Decimal("12.50"), "USD"),
    "ip": [ipaddress.IPv4Address("10.0.0.1"), ipaddress.IPv6Address("fe80::1%eth0"),
           ipaddress.IPv4Network("10.0.0.0/8"), ipaddress.IPv6Network("2001:db8::/32"),
           ipaddress.IPv4Interface("10.0.0.1/24"), ipaddress.IPv6Interface("::1/128")],
    "zones": [NY, UTC, timezone(timedelta(0), "UTC"),
              timezone(-timedelta(hours=5, microseconds=1), "odd")],
    "patterns": [re.compile(r"^(?P<id>\d+)$", re.I), re.compile(b"\\xff+", re.L)],
    "buffers": [memoryview(b"ab"), memoryview(bytearray(b"\x00\xff")).cast("B", [1, 2]),
                array.array("h", [1, -2]), array.array("d", [0.5])],
    "struct-time": time_module.struct_time((2024, 5, 17, 13, 45, 30, 4, 138, 0, "UTC", 0)),
    "shared-references": _shared(),
    "cycles": _cycles(),
    "builtin-subclasses": _subclasses(),
}


@pytest.mark.parametrize("value", CORPUS.values(), ids=CORPUS.keys())
def test_serialized_form(value: Any, snapshot: SnapshotAssertion) -> None:
    data = safe_serialize(value, registry=REGISTRY)
    assert data == snapshot
    back = safe_deserialize(orjson.loads(orjson.dumps(data)), registry=REGISTRY)
    assert_same_graph(value, back)


def test_manifest(snapshot: SnapshotAssertion) -> None:
    _, manifest = encode_with_manifest(list(CORPUS.values()), registry=REGISTRY)
    assert manifest == snapshot
