"""mode="json": plain, human-facing output (not reversible)."""

from __future__ import annotations

import math
import pathlib
from collections import OrderedDict, deque
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

import orjson
import pytest

from flujo.exceptions import NestingTooDeepError, SerializationError, UnserializableTypeError
from flujo.serialization import (
    CIRCULAR_PLACEHOLDER,
    TypeRegistry,
    safe_serialize,
    serialize_to_json,
)

from ._support import Box, Color, Dog, Kennel, Loose, Money, Pair, Point, Priority, make_registry


@pytest.fixture
def registry() -> TypeRegistry:
    return make_registry()


def plain(value: Any, registry: TypeRegistry, **options: Any) -> Any:
    return safe_serialize(value, mode="json", registry=registry, **options)


def test_scalars_and_builtins(registry: TypeRegistry) -> None:
    value = {
        "dt": datetime(2024, 5, 17, 13, 45, 30, 5, tzinfo=UTC),
        "naive": datetime(2024, 5, 17),
        "date": date(2024, 5, 17),
        "time": time(1, 2, 3),
        "delta": timedelta(minutes=1, microseconds=500_000),
        "uuid": UUID(int=1),
        "decimal": Decimal("1.10"),
        "path": pathlib.PurePosixPath("/a/b"),
        "bytes": b"\x00\xff",
        "enum": Color.RED,
        "intenum": Priority.HIGH,
        "nan": math.nan,
        "inf": math.inf,
        "ninf": -math.inf,
        "big": 2**70,
        "complex": complex(1, -1),
    }
    assert plain(value, registry) == {
        "dt": "2024-05-17T13:45:30.000005+00:00",
        "naive": "2024-05-17T00:00:00",
        "date": "2024-05-17",
        "time": "01:02:03",
        "delta": 60.5,
        "uuid": "00000000-0000-0000-0000-000000000001",
        "decimal": "1.10",
        "path": "/a/b",
        "bytes": "AP8=",
        "enum": "red",
        "intenum": 2,
        "nan": "nan",
        "inf": "inf",
        "ninf": "-inf",
        "big": 2**70,
        "complex": {"real": 1.0, "imag": -1.0},
    }


def test_containers_become_lists_and_objects(registry: TypeRegistry) -> None:
    out = plain({"set": {3, 1, 2}, "frozen": frozenset({"b", "a"}), "tuple": (1, (2,)),
                 "deque": deque([1]), "od": OrderedDict(b=1, a=2), "keys": {1: "a", (1, 2): "b"},
                 "nt": Point(1, 2), "$t": "kept"}, registry)
    assert out == {"set": [1, 2, 3], "frozen": ["a", "b"], "tuple": [1, [2]], "deque": [1],
                   "od": {"b": 1, "a": 2}, "keys": {"1": "a", "[1, 2]": "b"}, "nt": [1, 2],
                   "$t": "kept"}


def test_models_and_dataclasses_become_field_dicts(registry: TypeRegistry) -> None:
    out = plain([Kennel(resident=Dog(name="rex", breed="pug")), Pair(1, Decimal("2.5")),
                 Loose(kind="k", x_a=date(2024, 1, 1)), Box(payload={"m": Money(Decimal(1))})],
                registry)
    assert out == [
        {"resident": {"name": "rex", "breed": "pug", "good": True}, "visitors": []},
        {"left": 1, "right": "2.5"},
        {"kind": "k", "x_a": "2024-01-01"},
        {"payload": {"m": {"amount": "1", "currency": "EUR"}}, "extras": {}},
    ]


def test_output_is_json_native(registry: TypeRegistry) -> None:
    out = plain({"a": [datetime(2024, 1, 1), {1, 2}, Color.BLUE, math.nan]}, registry)
    assert orjson.loads(orjson.dumps(out)) == out


def test_circular_references_become_a_placeholder(registry: TypeRegistry) -> None:
    loop: list[Any] = [1]
    loop.append(loop)
    assert plain({"loop": loop}, registry) == {"loop": [1, CIRCULAR_PLACEHOLDER]}
    assert CIRCULAR_PLACEHOLDER == "<circular-ref>"
    d: dict[str, Any] = {}
    d["self"] = d
    assert plain(d, registry) == {"self": "<circular-ref>"}
    box = Box()
    box.payload = [box]
    assert plain(box, registry) == {"payload": ["<circular-ref>"], "extras": {}}


def test_shared_references_are_not_circular(registry: TypeRegistry) -> None:
    shared = {"x": 1}
    assert plain([shared, shared], registry) == [{"x": 1}, {"x": 1}]


class Opaque:
    def __repr__(self) -> str:
        return "Opaque(secret)"


def test_unknown_types_raise_with_a_path(registry: TypeRegistry) -> None:
    with pytest.raises(UnserializableTypeError) as info:
        plain({"a": [1, Opaque()]}, registry)
    assert info.value.path == "$.a[1]"
    assert "$.a[1]" in str(info.value)
    assert "secret" not in str(info.value)


def test_default_serializer_handles_unknown_types(registry: TypeRegistry) -> None:
    out = plain({"a": Opaque()}, registry, default_serializer=lambda o: {"opaque": True})
    assert out == {"a": {"opaque": True}}


def test_default_serializer_returning_the_same_type_raises(registry: TypeRegistry) -> None:
    with pytest.raises(UnserializableTypeError):
        plain(Opaque(), registry, default_serializer=lambda o: Opaque())


def test_default_serializer_that_fails(registry: TypeRegistry) -> None:
    def boom(_: Any) -> Any:
        raise RuntimeError("nope")

    with pytest.raises(SerializationError, match="nope"):
        plain({"a": Opaque()}, registry, default_serializer=boom)


def test_deep_nesting_raises(registry: TypeRegistry) -> None:
    value: Any = 0
    for _ in range(10_000):
        value = {1: [value]}
    with pytest.raises(NestingTooDeepError):
        plain(value, registry)


def test_serialize_to_json_in_json_mode(registry: TypeRegistry) -> None:
    text = serialize_to_json({"when": date(2024, 1, 1), "s": {2, 1}}, mode="json",
                             registry=registry)
    assert text == '{"when":"2024-01-01","s":[1,2]}'


def test_bad_mode_is_refused(registry: TypeRegistry) -> None:
    with pytest.raises(ValueError, match="mode"):
        safe_serialize(1, mode="yaml", registry=registry)  # type: ignore[arg-type]


def test_keys_that_collide_in_plain_json_are_refused_not_dropped() -> None:
    with pytest.raises(SerializationError, match="both become '1'") as info:
        safe_serialize({"outer": {1: "int", "1": "str"}}, mode="json")
    assert info.value.path == "$.outer['1']"


def test_a_remote_schema_ref_is_refused_at_registration_without_fetching() -> None:
    from flujo.exceptions import RegistrationError
    from flujo.serialization import TypeRegistry

    class Remote:
        pass

    with pytest.raises(RegistrationError, match="Retrieval is disabled"):
        TypeRegistry().register_custom_serializer(
            Remote, lambda r: {}, schema={"$ref": "https://example.invalid/remote.json"})


def test_addresses_zones_and_patterns_in_plain_json(registry: TypeRegistry) -> None:
    import ipaddress
    import re
    from datetime import UTC, timedelta, timezone
    from zoneinfo import ZoneInfo

    value = [ipaddress.IPv6Address("fe80::1%eth0"), ipaddress.IPv4Network("10.0.0.0/8"),
             ZoneInfo("Europe/Paris"), UTC, timezone(timedelta(hours=1), "CET"),
             re.compile(r"\d+", re.I), re.compile(b"\xff")]
    assert safe_serialize(value, registry=registry, mode="json") == [
        "fe80::1%eth0", "10.0.0.0/8", "Europe/Paris", "UTC", "CET", r"\d+", "/w=="]


def test_buffers_and_struct_times_in_plain_json(registry: TypeRegistry) -> None:
    import array
    import time

    value = [memoryview(b"\xff"), memoryview(bytes(range(4))).cast("B", [2, 2]),
             array.array("h", [1, -2]), time.struct_time((2024, 1, 2, 3, 4, 5, 6, 7, 0))]
    assert safe_serialize(value, registry=registry, mode="json") == [
        "/w==", "AAECAw==", [1, -2], [2024, 1, 2, 3, 4, 5, 6, 7, 0]]
