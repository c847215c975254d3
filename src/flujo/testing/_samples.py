"""Sample values for the backend contract suite: one of every kind the registry supports.

Kept apart from the contract suite (which needs pytest) so the values can be used anywhere.
"""

from __future__ import annotations

import array
import collections
import dataclasses
import datetime as dt
import decimal
import enum
import ipaddress
import re
import time
import uuid
import zoneinfo
from pathlib import PurePosixPath
from typing import Any, NamedTuple

from pydantic import AnyUrl, BaseModel, ByteSize, NameEmail, SecretBytes, SecretStr

__all__ = [
    "BAD_RUN_IDS",
    "NoSerializer",
    "SampleBatch",
    "SampleColor",
    "SampleLabel",
    "SampleLine",
    "SampleOrder",
    "SamplePoint",
    "sample_values",
]


class SampleColor(enum.Enum):
    RED = "red"
    GREEN = "green"


class SamplePoint(NamedTuple):
    x: int
    y: float


@dataclasses.dataclass
class SampleBatch:
    tags: set[str]
    span: tuple[int, str]


class SampleLine(BaseModel):
    sku: str
    price: decimal.Decimal


class SampleOrder(BaseModel):
    id: uuid.UUID
    lines: list[SampleLine]
    placed: dt.datetime
    color: SampleColor


class SampleLabel(str):
    """A subclass of a builtin, as libraries make (pydantic-extra-types' country codes)."""


class NoSerializer:
    """A type nothing knows how to store."""


def sample_values() -> dict[str, Any]:
    """One value of every kind the registry supports out of the box, and some nesting."""
    madrid = dt.timezone(dt.timedelta(hours=1), "CET")
    return {
        "text": "héllo \x00 wörld ✓",
        "big_int": 2**100,
        "neg": -(2**70),
        "float": 0.1,
        "big_float": 1e20,
        "neg_zero": -0.0,
        "nan": float("nan"),
        "inf": float("-inf"),
        "bool": True,
        "none": None,
        "decimal": decimal.Decimal("12.340"),
        "aware": dt.datetime(2024, 2, 29, 23, 59, 59, 999999, tzinfo=dt.UTC),
        "offset": dt.datetime(2024, 1, 1, 8, tzinfo=madrid),
        "naive": dt.datetime(2024, 1, 1, 8, 30),
        "date": dt.date(1999, 12, 31),
        "time": dt.time(23, 1, 2, 3),
        "delta": dt.timedelta(days=-1, seconds=5, microseconds=7),
        "uuid": uuid.UUID("12345678-1234-5678-1234-567812345678"),
        "bytes": b"\x00\xffbinary",
        "bytearray": bytearray(b"mutable"),
        "set": {1, 2, 3},
        "frozenset": frozenset({"a", "b"}),
        "tuple": (1, "two", (3.0, None)),
        "list_of_tuples": [(1, 2), (3, 4)],
        "int_keys": {1: "one", 2: "two"},
        "tuple_keys": {(1, 2): "pair"},
        "dollar_key": {"$t": "not a tag", "v": 1},
        "ordered": collections.OrderedDict([("z", 1), ("a", 2)]),
        "counter": collections.Counter("abracadabra"),
        "deque": collections.deque([1, 2, 3], maxlen=10),
        "path": PurePosixPath("/srv/data/file.csv"),
        "ip": [ipaddress.IPv4Address("192.0.2.1"), ipaddress.IPv6Address("fe80::1%eth0"),
               ipaddress.IPv4Network("192.0.2.0/24"), ipaddress.IPv6Interface("2001:db8::1/64")],
        "zones": [zoneinfo.ZoneInfo("Europe/Madrid"), dt.UTC, madrid],
        "pattern": re.compile(r"^[A-Z]-\d+$", re.IGNORECASE),
        "complex": complex(1.5, -2),
        "enum": SampleColor.GREEN,
        "namedtuple": SamplePoint(1, 2.5),
        "dataclass": SampleBatch({"x", "y"}, (7, "seven")),
        "model": SampleOrder(
            id=uuid.UUID(int=42),
            lines=[SampleLine(sku="A-1", price=decimal.Decimal("9.99"))],
            placed=dt.datetime(2024, 5, 1, 12, tzinfo=dt.UTC),
            color=SampleColor.RED,
        ),
        "key_order": {"b": 1, "a": 2, "c": 3},
        "deep": [[[[{"x": [1, {2, 3}]}]]]],
        "buffers": [memoryview(b"view"), array.array("h", [1, -2])],
        "struct_time": time.struct_time((2024, 5, 17, 13, 45, 30, 4, 138, 0, "UTC", 0)),
        "pydantic_values": [SecretStr("s3cret"), SecretBytes(b"\x00k"),
                            AnyUrl("https://example.com/a?b=1"), NameEmail("Al", "al@x.org"),
                            ByteSize(2**40)],
        "builtin_subclass": _label("FR", source="ocr"),
        **_numpy_values(),
    }


def _label(text: str, **attributes: Any) -> SampleLabel:
    label = SampleLabel(text)
    label.__dict__.update(attributes)
    return label


def _numpy_values() -> dict[str, Any]:
    """numpy arrays and scalars, when numpy (the ``flujo[numpy]`` extra) is installed."""
    try:
        import numpy
    except ImportError:
        return {}
    return {"numpy": [numpy.arange(6, dtype=">i4").reshape(2, 3),
                      numpy.asfortranarray(numpy.ones((2, 2))), numpy.float32(1.5),
                      numpy.datetime64("2024-01-01T00:00", "ns")]}


BAD_RUN_IDS: list[Any] = [
    "",
    ".",
    "..",
    "../escape",
    "a/../../b",
    "/etc/passwd",
    "dir/run",
    "dir\\run",
    "nul\x00byte",
    "line\nbreak",
    ".hidden",
    " padded",
    "x" * 201,
    42,
    None,
]
