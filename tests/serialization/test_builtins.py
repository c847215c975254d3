"""Explicit round trips of every built-in and derived type, with the edge cases named."""

from __future__ import annotations

import ipaddress
import json
import math
import pathlib
import re
from collections import Counter, OrderedDict, defaultdict, deque
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo, available_timezones

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from flujo.exceptions import SerializationError
from flujo.serialization import TAG, VALUE, TypeRegistry, safe_deserialize, safe_serialize
from flujo.serialization._codec import is_finite, is_plain_int, plain_json

from ._support import (
    Animal,
    Bag,
    Box,
    Color,
    Coord,
    Dog,
    Item,
    Kennel,
    Labeled,
    Loose,
    Mode,
    Money,
    Page,
    Pair,
    Perm,
    Point,
    Priority,
    Slotted,
    Version,
    assert_same,
    make_registry,
)

NY = ZoneInfo("America/New_York")


@pytest.fixture
def registry() -> TypeRegistry:
    return make_registry()


def round_trip(value: Any, registry: TypeRegistry) -> Any:
    data = safe_serialize(value, registry=registry)
    back = safe_deserialize(orjson.loads(orjson.dumps(data)), registry=registry)
    assert_same(value, back)
    return back


BUILTIN_VALUES: dict[str, Any] = {
    "datetime-naive": datetime(2024, 5, 17, 13, 45, 30, 123456),
    "datetime-utc": datetime(2024, 5, 17, 13, 45, tzinfo=UTC),
    "datetime-offset": datetime(2024, 5, 17, 13, 45, tzinfo=timezone(timedelta(hours=-3))),
    "datetime-odd-offset": datetime(2024, 5, 17, tzinfo=timezone(timedelta(hours=5, minutes=45,
                                                                         seconds=7))),
    "datetime-named-offset": datetime(2024, 1, 1, tzinfo=timezone(timedelta(hours=-5), "EST")),
    "datetime-zoneinfo": datetime(2024, 7, 4, 12, tzinfo=NY),
    "datetime-fold-0": datetime(2024, 11, 3, 1, 30, fold=0, tzinfo=NY),
    "datetime-fold-1": datetime(2024, 11, 3, 1, 30, fold=1, tzinfo=NY),
    "datetime-gap": datetime(2024, 3, 10, 2, 30, tzinfo=NY),
    "datetime-min": datetime.min,
    "datetime-max": datetime.max.replace(tzinfo=ZoneInfo("Pacific/Kiritimati")),
    "date": date(1999, 12, 31),
    "time": time(23, 59, 59, 999999),
    "time-offset": time(8, 0, tzinfo=timezone(timedelta(hours=2), "CEST")),
    "timedelta": timedelta(days=-3, seconds=5, microseconds=7),
    "uuid": UUID("12345678-1234-5678-1234-567812345678"),
    "decimal": Decimal("1.10"),
    "decimal-exp": Decimal("1E+3"),
    "decimal-neg-zero": Decimal("-0"),
    "decimal-nan": Decimal("NaN"),
    "decimal-snan": Decimal("sNaN"),
    "decimal-inf": Decimal("-Infinity"),
    "enum": Color.GREEN,
    "intenum": Priority.HIGH,
    "strenum": Mode.WRITE,
    "flag": Perm.R | Perm.X,
    "complex": complex(1.5, -2),
    "complex-nonfinite": complex(math.nan, -math.inf),
    "set": {1, 2, 3},
    "frozenset": frozenset({"a", "b"}),
    "tuple": (1, "a", None),
    "namedtuple": Point(1, (2, 3)),
    "bytes": bytes(range(256)),
    "bytearray": bytearray(b"\x00\xff\x80"),
    "posix-path": pathlib.PosixPath("/var/lib/flujo/run.db"),
    "pure-posix-path": pathlib.PurePosixPath("a/b"),
    "pure-windows-path": pathlib.PureWindowsPath(r"C:\Users\x"),
    "int-above-u64": 2**64,
    "int-below-i64": -(2**63) - 1,
    "int-huge": 7**6000,
    "float-nan": math.nan,
    "float-inf": math.inf,
    "float-neg-inf": -math.inf,
    "float-neg-zero": -0.0,
    "dict-int-keys": {1: "a", 2: "b"},
    "dict-tuple-keys": {(1, 2): "x"},
    "dict-enum-keys": {Color.RED: 1},
    "dict-frozenset-keys": {frozenset({1, 2}): "f"},
    "dict-reserved-key": {"$t": "datetime@1", "v": "2024-01-01T00:00:00"},
    "ordereddict": OrderedDict([("b", 1), ("a", 2)]),
    "deque": deque([1, 2, 3], maxlen=5),
    "deque-unbounded": deque(["x"]),
    "counter": Counter("mississippi"),
    "defaultdict-list": defaultdict(list, {"a": [1]}),
    "defaultdict-int": defaultdict(int, {1: 2}),
    "defaultdict-none": defaultdict(None, {1: 2}),
    "ipv4address": ipaddress.IPv4Address("192.168.0.1"),
    "ipv6address": ipaddress.IPv6Address("2001:db8::1"),
    "ipv6address-scoped": ipaddress.IPv6Address("fe80::1%eth0"),
    "ipv6address-v4-mapped": ipaddress.IPv6Address("::ffff:10.0.0.1"),
    "ipv4network": ipaddress.IPv4Network("10.0.0.0/8"),
    "ipv6network": ipaddress.IPv6Network("2001:db8::/32"),
    "ipv4interface": ipaddress.IPv4Interface("10.0.0.1/24"),
    "ipv6interface": ipaddress.IPv6Interface("fe80::1%eth0/64"),
    "zoneinfo": ZoneInfo("Europe/Paris"),
    "timezone-utc": UTC,
    "timezone-utc-named": timezone(timedelta(0), "UTC"),
    "timezone-offset": timezone(timedelta(hours=-5, minutes=-30)),
    "timezone-named": timezone(timedelta(hours=1), "CET"),
    "timezone-odd": timezone(-timedelta(hours=23, minutes=59, seconds=59, microseconds=999999)),
    "pattern": re.compile(r"(?P<n>\d+)\s*é", re.IGNORECASE | re.MULTILINE),
    "pattern-ascii": re.compile(r"\w+", re.ASCII),
    "pattern-bytes": re.compile(b"\\x00[\x80-\xff]+", re.LOCALE | re.DOTALL),
    "dict-ip-keys": {ipaddress.IPv4Address("1.2.3.4"): "a", ipaddress.IPv6Address("::1"): "b"},
}


@pytest.mark.parametrize("value", BUILTIN_VALUES.values(), ids=BUILTIN_VALUES.keys())
def test_builtin_round_trip(value: Any, registry: TypeRegistry) -> None:
    round_trip(value, registry)


def test_json_native_data_is_written_unchanged(registry: TypeRegistry) -> None:
    data = {"a": [1, 2.5, "x", None, True], "b": {"c": -(2**63), "d": 2**64 - 1}, "e": -0.0}
    assert safe_serialize(data, registry=registry) == data
    assert safe_deserialize(data, registry=registry) == data


def test_decimal_keeps_exact_digits_and_exponent(registry: TypeRegistry) -> None:
    for text in ["1.10", "1.1", "1.100", "-0", "0E-7", "1E+3", "NaN", "-NaN12", "sNaN",
                 "Infinity"]:
        back = round_trip(Decimal(text), registry)
        assert str(back) == text


def test_ambiguous_and_skipped_wall_times_keep_their_offset(registry: TypeRegistry) -> None:
    first = datetime(2024, 11, 3, 1, 30, fold=0, tzinfo=NY)
    second = datetime(2024, 11, 3, 1, 30, fold=1, tzinfo=NY)
    assert first.utcoffset() != second.utcoffset()
    for value in (first, second):
        back = round_trip(value, registry)
        assert back.fold == value.fold
        assert back.tzinfo is NY
        assert back.timestamp() == value.timestamp()


def test_datetime_with_zoneinfo_states_offset_and_zone(registry: TypeRegistry) -> None:
    encoded = safe_serialize(datetime(2024, 11, 3, 1, 30, fold=1, tzinfo=NY), registry=registry)
    assert encoded == {TAG: "datetime@1", VALUE: "2024-11-03T01:30:00-05:00[America/New_York]"}


def test_huge_int_beyond_str_digit_limit(registry: TypeRegistry) -> None:
    value = -(10**5000) - 12345
    data = safe_serialize(value, registry=registry)
    assert data[TAG] == "int@1"
    back = round_trip(value, registry)
    assert back == value


@pytest.mark.parametrize("value", [2**64 - 1, -(2**63)])
def test_ints_at_the_64_bit_edges_stay_plain(value: int, registry: TypeRegistry) -> None:
    assert safe_serialize(value, registry=registry) == value


@pytest.mark.parametrize("value", [2**64, -(2**63) - 1])
def test_ints_past_the_64_bit_edges_are_tagged(value: int, registry: TypeRegistry) -> None:
    assert safe_serialize(value, registry=registry)[TAG] == "int@1"
    round_trip(value, registry)


def test_negative_zero_keeps_its_sign(registry: TypeRegistry) -> None:
    back = round_trip([-0.0, complex(-0.0, -0.0)], registry)
    assert math.copysign(1, back[0]) == -1
    assert math.copysign(1, back[1].imag) == -1


def test_distinct_nan_objects_stay_distinct(registry: TypeRegistry) -> None:
    # Two NaN objects are two elements of a set (and two keys of a dict).
    a, b = float("nan"), float("nan")
    assert len({a, b}) == 2
    assert len(round_trip({a, b}, registry)) == 2
    assert len(round_trip({(0.0, a): 1, (0.0, b): 2}, registry)) == 2


def test_sets_whose_elements_cannot_be_ordered(registry: TypeRegistry) -> None:
    # Decimal NaN raises InvalidOperation (not TypeError) when compared with '<'.
    round_trip({Decimal("NaN"), Decimal(1)}, registry)
    round_trip(frozenset({Decimal("NaN7"), Decimal("-2.5"), "x", None}), registry)
    round_trip({(1, "a"), ("b", 2), None}, registry)


def test_equal_sets_encode_to_identical_bytes(registry: TypeRegistry) -> None:
    one = {3, "a", (1, 2), None, 2.5, frozenset({1, "b"})}
    other: set[Any] = set()
    for element in sorted(one, key=repr, reverse=True):  # another insertion order
        other.add(element)
    assert orjson.dumps(safe_serialize(one, registry=registry)) == orjson.dumps(
        safe_serialize(other, registry=registry))


def test_equal_sets_encode_identically_whatever_their_insertion_order(
        registry: TypeRegistry) -> None:
    # sorted() does not fail on these but gives no total order: frozensets compare by
    # inclusion and NaN compares false, so its result followed the iteration order.
    nan = float("nan")
    for elements in ([frozenset({i}) for i in range(20)],
                     [nan, *(float(i) for i in range(20))],
                     [(i, nan) for i in range(20)]):
        forward: set[Any] = set()
        backward: set[Any] = set()
        for element in elements:
            forward.add(element)
        for element in reversed(elements):
            backward.add(element)
        assert forward == backward
        assert orjson.dumps(safe_serialize(forward, registry=registry)) == orjson.dumps(
            safe_serialize(backward, registry=registry))
        assert orjson.dumps(safe_serialize(frozenset(forward), registry=registry)) == (
            orjson.dumps(safe_serialize(frozenset(backward), registry=registry)))


def test_reserved_key_dicts_come_back_exactly(registry: TypeRegistry) -> None:
    tricky = [
        {"$t": "x"},
        {"$t": "datetime@1", "v": "2024-01-01T00:00:00"},
        {"$t": {"$t": "set@1", "v": []}, "v": [1]},
        {"outer": {"$t": "dict@1", "v": [[1, 2]]}},
    ]
    for value in tricky:
        data = safe_serialize(value, registry=registry)
        assert "$t" not in data or data["$t"] == "dict@1"
        round_trip(value, registry)


def test_dict_with_mixed_keys_keeps_key_order_and_types(registry: TypeRegistry) -> None:
    value = {"a": 1, 2: "two", (3, "x"): [3], Color.RED: "r", frozenset({4}): 4, "$t": 5}
    back = round_trip(value, registry)
    assert list(back) == list(value)


def test_collections_round_trip(registry: TypeRegistry) -> None:
    back = round_trip(deque(range(10), maxlen=3), registry)
    assert back.maxlen == 3
    back = round_trip(Counter({"a": 3, (1, 2): -1}), registry)
    assert back[(1, 2)] == -1
    back = round_trip(OrderedDict([(2, "b"), (1, "a")]), registry)
    assert list(back) == [2, 1]


def test_defaultdict_factories(registry: TypeRegistry) -> None:
    for factory in (list, int, dict, set, str, float, bool, Bag):
        back = round_trip(defaultdict(factory, {"k": factory()}), registry)
        assert back.default_factory is factory
    back = round_trip(defaultdict(Bag), registry)
    assert back["missing"] == Bag()


def test_defaultdict_with_lambda_factory_is_refused(registry: TypeRegistry) -> None:
    with pytest.raises(SerializationError, match="defaultdict factory") as info:
        safe_serialize({"counts": defaultdict(lambda: 0)}, registry=registry)
    assert info.value.path == "$.counts"


def test_dataclasses_round_trip(registry: TypeRegistry) -> None:
    round_trip(Pair(datetime(2024, 1, 1, tzinfo=UTC), {"d": Decimal("2.50")}), registry)
    frozen = round_trip(Version(3, 11), registry)
    assert hash(frozen) == hash(Version(3, 11))
    slotted = round_trip(Labeled("x", {1, 2}), registry)
    assert not hasattr(slotted, "__dict__")
    round_trip(Slotted([Decimal("1.0"), (1, 2)]), registry)


def test_namedtuples_round_trip(registry: TypeRegistry) -> None:
    back = round_trip(Coord(1.5, -2.0), registry)
    assert back.lat == 1.5
    round_trip([Point(Point(1, 2), None)], registry)


def test_generic_model_keeps_its_parameters(registry: TypeRegistry) -> None:
    page = Page[Item](items=[Item(name="a", price=Decimal("1.10"),
                                  at=datetime(2024, 1, 1, tzinfo=NY))], total=1)
    back = round_trip(page, registry)
    assert type(back) is Page[Item]
    assert type(back.items[0]) is Item


def test_model_any_fields_keep_rich_values(registry: TypeRegistry) -> None:
    box = Box(payload=Item(name="n", price=Decimal("9.990"), at=datetime(2024, 1, 1)),
              extras={"when": datetime(2024, 2, 29, tzinfo=UTC), "amount": Decimal("0.10"),
                      "tags": {"a", "b"}, "nested": Box(payload=(1, 2))})
    back = round_trip(box, registry)
    assert type(back.extras["nested"].payload) is tuple


def test_field_typed_as_base_model_keeps_the_subclass(registry: TypeRegistry) -> None:
    kennel = Kennel(resident=Dog(name="rex", breed="collie", good=False),
                    visitors=[Animal(name="cat"), Dog(name="fido", breed="pug")])
    back = round_trip(kennel, registry)
    assert type(back.resident) is Dog
    assert back.resident.breed == "collie"
    assert [type(v) for v in back.visitors] == [Animal, Dog]


def test_extra_allow_model_keeps_extra_fields(registry: TypeRegistry) -> None:
    loose = Loose(kind="k", x_when=date(2024, 1, 1), x_money=Money(Decimal("3.50")))
    back = round_trip(loose, registry)
    assert back.__pydantic_extra__ == {"x_when": date(2024, 1, 1),
                                       "x_money": Money(Decimal("3.50"))}


def test_everything_nested_together(registry: TypeRegistry) -> None:
    value = {
        "models": [Kennel(resident=Dog(name="a", breed="b"))],
        "by_id": {UUID(int=1): (Color.RED, Priority.LOW, Mode.READ)},
        "sets": [frozenset({Version(1, 0), Coord(0.0, 1.0)}), set()],
        "money": Money(Decimal("12.00"), "USD"),
        "path": pathlib.PurePosixPath("/x"),
        "window": deque([timedelta(seconds=1)], maxlen=2),
        "$t": "not a tag",
    }
    round_trip(value, registry)


def test_a_fresh_registry_reads_derived_types_without_registration() -> None:
    """Models, dataclasses, enums and NamedTuples defined in the process need no registry."""
    value = [
        Page[Item](items=[Item(name="a", price=Decimal("1.10"), at=datetime(2024, 1, 1))],
                   total=1),
        Kennel(resident=Dog(name="rex", breed="pug")),
        Pair(Version(1, 2), Slotted([Labeled("l", Coord(1.0, 2.0))])),
        Loose(kind="k", x_a=Color.RED),
        {Priority.HIGH: Mode.READ, Perm.R | Perm.W: Point(1, 2)},
    ]
    data = orjson.loads(orjson.dumps(safe_serialize(value, registry=TypeRegistry())))
    assert_same(value, safe_deserialize(data, registry=TypeRegistry()))
    assert_same(value, safe_deserialize(data))  # the global registry too


def test_a_list_of_typed_models_is_written_the_same_on_first_and_later_calls() -> None:
    from pydantic import BaseModel as _Base

    class Point(_Base):
        x: int
        y: int

    registry = TypeRegistry()
    points = [Point(x=1, y=2), Point(x=3, y=4)]
    first = safe_serialize(points, registry=registry)
    assert first == safe_serialize(points, registry=registry)
    assert first[TAG] == "rows@2"
    assert safe_deserialize(first, registry=registry) == points


def test_an_extra_field_named_like_a_model_construct_parameter_stays_an_extra() -> None:
    from pydantic import BaseModel as _Base
    from pydantic import ConfigDict

    class Loose(_Base):
        model_config = ConfigDict(extra="allow")
        a: int = 0

    value = Loose.model_validate({"a": 1, "_fields_set": "kept"})
    back = safe_deserialize(safe_serialize(value))
    assert back.model_extra == {"_fields_set": "kept"}
    assert isinstance(back.__pydantic_fields_set__, set)


def test_json_native_subtrees_are_returned_as_they_are_and_decoding_copies() -> None:
    native = {"a": [1, 2.5, "x", None, True], "b": {"c": []}}
    mixed = {"keep": native["a"], "tagged": (1, 2)}
    encoded = safe_serialize(mixed)
    assert encoded["keep"] is native["a"]  # not rebuilt
    assert encoded is not mixed and mixed == {"keep": native["a"], "tagged": (1, 2)}
    assert safe_serialize(native) is native
    decoded = safe_deserialize(safe_serialize(native))
    assert decoded == native and decoded is not native and decoded["a"] is not native["a"]


def test_fold_of_naive_and_named_offset_values_is_kept() -> None:
    for value in (datetime(2021, 11, 7, 1, 30, fold=1), time(1, 30, fold=1),
                  datetime(2021, 1, 1, fold=1, tzinfo=timezone(timedelta(hours=-5), "EST"))):
        back = safe_deserialize(orjson.loads(orjson.dumps(safe_serialize(value))))
        assert back == value and back.fold == 1 and back.tzinfo == value.tzinfo


def test_a_zone_key_outside_the_database_list_is_refused_when_written() -> None:
    try:
        zone = ZoneInfo("posix/Europe/Paris")
    except Exception:
        pytest.skip("no posix/ zones here")
    with pytest.raises(SerializationError, match="posix/Europe/Paris"):
        safe_serialize(datetime(2024, 7, 1, tzinfo=zone))


@pytest.mark.parametrize("value", [
    datetime(2000, 1, 1, fold=1, tzinfo=ZoneInfo("Africa/Abidjan")),  # fold without effect
    datetime(2021, 11, 7, 1, 30, fold=1, tzinfo=ZoneInfo("America/New_York")),  # ambiguous
    datetime(2021, 11, 7, 1, 30, fold=0, tzinfo=ZoneInfo("America/New_York")),
])
def test_fold_of_zoned_datetimes_is_kept(value: datetime) -> None:
    back = safe_deserialize(orjson.loads(orjson.dumps(safe_serialize(value))))
    assert back == value and back.fold == value.fold and back.utcoffset() == value.utcoffset()


def test_equal_offsets_with_different_names_keep_their_own_names(
        registry: TypeRegistry) -> None:
    # timezone equality ignores the name, so the zone suffixes flujo remembers between calls
    # must be told apart by identity, not by equality.
    named, plain = timezone(timedelta(hours=1), "CET"), timezone(timedelta(hours=1))
    assert named == plain
    values = [datetime(2024, 1, 1, tzinfo=plain), datetime(2024, 1, 1, tzinfo=named)]
    for order in (values, values[::-1]):
        back = safe_deserialize(safe_serialize(order, registry=registry), registry=registry)
        assert [v.tzname() for v in back] == [v.tzname() for v in order]


def test_sets_of_strings_are_written_sorted(registry: TypeRegistry) -> None:
    data = safe_serialize({"b", "a", "c"}, registry=registry)
    assert data == {TAG: "set@1", VALUE: ["a", "b", "c"]}
    assert safe_deserialize(data, registry=registry) == {"a", "b", "c"}


@given(st.integers(min_value=0, max_value=2**128 - 1))
def test_uuid_text_is_the_stdlib_text_both_ways(bits: int) -> None:
    from flujo.serialization._builtins import _uuid_from_text, _uuid_text

    value = UUID(int=bits)
    assert _uuid_text(value) == str(value)
    back = _uuid_from_text(str(value))
    assert type(back) is UUID and back == value and back.is_safe == value.is_safe


@pytest.mark.parametrize("spelling", [
    "{12345678-1234-5678-1234-567812345678}",
    "urn:uuid:12345678-1234-5678-1234-567812345678",
    "12345678123456781234567812345678",
    "12345678-1234-5678-1234-567812345678".upper(),
    "12345678-1234-5678-12345678-12345678",  # hyphens elsewhere: the stdlib ignores them
    "1234567812345678123456781234567\u0661",  # a non-ASCII digit int() accepts
    "not a uuid",
    "1234567812345678123456781234567",
])
def test_uuid_text_is_read_exactly_as_the_stdlib_reads_it(
        spelling: str, registry: TypeRegistry) -> None:
    from flujo.exceptions import DeserializationError

    try:
        expected: UUID | None = UUID(spelling)
    except ValueError:
        expected = None
    data = {TAG: "uuid@1", VALUE: spelling}
    if expected is None:
        with pytest.raises(DeserializationError, match="uuid"):
            safe_deserialize(data, registry=registry)
    else:
        assert safe_deserialize(data, registry=registry) == expected


_WHOLE_MINUTE_ZONES = st.one_of(
    st.none(), st.just(UTC),
    st.integers(-(23 * 60 + 59), 23 * 60 + 59).map(lambda m: timezone(timedelta(minutes=m))))


@given(st.datetimes(), _WHOLE_MINUTE_ZONES, st.sampled_from([0, 1]))
def test_datetime_text_by_pydantic_core_is_isoformat(
        value: datetime, zone: timezone | None, fold: int) -> None:
    from flujo.serialization._datetimes import datetime_text as _datetime_text

    value = value.replace(tzinfo=zone, fold=fold)
    assert _datetime_text(value) == value.isoformat() + ("[fold=1]" if fold else "")


@given(st.datetimes(min_value=datetime(1700, 1, 1), timezones=st.sampled_from(
    sorted(available_timezones() - {"localtime", "posixrules"})).map(ZoneInfo)))
def test_the_text_of_a_zoned_datetime_is_its_isoformat_and_its_zone(value: datetime) -> None:
    # pydantic-core writes whole-minute offsets of zones, isoformat() the others (LMT)
    from flujo.serialization._datetimes import datetime_text

    assert isinstance(value.tzinfo, ZoneInfo)
    fold = "[fold=1]" if value.fold and value.replace(fold=0).utcoffset() == value.utcoffset() \
        else ""
    assert datetime_text(value) == f"{value.isoformat()}{fold}[{value.tzinfo.key}]"


def test_a_zone_met_at_whole_minutes_still_gets_the_full_text_of_its_other_datetimes() -> None:
    # The common zoned datetime is written from a zone and offsets remembered: a datetime of
    # the same zone at an offset of seconds (Paris LMT, +00:09:21) or with fold=1 must not
    # take that path.
    from flujo.serialization._codec import datetime_cell
    from flujo.serialization._datetimes import common_zoned_text, datetime_text

    paris = ZoneInfo("Europe/Paris")
    summer = datetime(2024, 7, 1, 12, 30, 15, 250, tzinfo=paris)
    lmt = datetime(1900, 7, 1, 12, 30, tzinfo=paris)
    repeated = datetime(2024, 10, 27, 2, 30, fold=1, tzinfo=paris)  # the later 02:30
    unambiguous_fold = summer.replace(fold=1)
    for value in (summer, lmt, repeated, unambiguous_fold, summer):
        fold = "[fold=1]" if value.fold and value.replace(fold=0).utcoffset() == \
            value.utcoffset() else ""
        expected = f"{value.isoformat()}{fold}[Europe/Paris]"
        assert datetime_text(value) == expected
        zoned: list[bool] = []
        assert datetime_cell(value, zoned) == expected
        assert zoned == [True]
    assert lmt.isoformat().endswith("+00:09:21")
    assert common_zoned_text(summer) == "2024-07-01T12:30:15.000250+02:00[Europe/Paris]"
    assert common_zoned_text(lmt) is None  # an offset of seconds: isoformat() writes it
    assert common_zoned_text(unambiguous_fold) is None
    offset_zone = datetime(2024, 7, 1, tzinfo=timezone(timedelta(hours=2)))
    zoned = []
    assert datetime_cell(offset_zone, zoned) is offset_zone  # pydantic-core writes it as is
    assert zoned == []


def test_timezone_utc_comes_back_as_itself(registry: TypeRegistry) -> None:
    assert round_trip(UTC, registry) is UTC
    assert round_trip(timezone(timedelta(0), "UTC"), registry) is not UTC
    assert safe_serialize(UTC, registry=registry) == {
        TAG: "timezone@1", VALUE: {"offset_us": 0, "name": None}}


def test_zone_codecs_leave_the_datetime_form_unchanged(registry: TypeRegistry) -> None:
    value = [datetime(2024, 7, 4, 12, tzinfo=NY), NY,
             datetime(2024, 1, 1, tzinfo=timezone(timedelta(hours=-5), "EST"))]
    assert safe_serialize(value, registry=registry) == [
        {TAG: "datetime@1", VALUE: "2024-07-04T12:00:00-04:00[America/New_York]"},
        {TAG: "zoneinfo@1", VALUE: "America/New_York"},
        {TAG: "datetime@1", VALUE: "2024-01-01T00:00:00-05:00[tzname=EST]"},
    ]


@pytest.mark.parametrize(("tag", "text"), [
    ("ipv4address@1", "010.0.0.1"),
    ("ipv4address@1", " 10.0.0.1"),
    ("ipv4address@1", "10.0.0.1/32"),
    ("ipv6address@1", "FE80::1"),
    ("ipv6address@1", "fe80:0:0:0:0:0:0:1"),
    ("ipv6address@1", "fe80::1%"),
    ("ipv4network@1", "10.0.0.1/8"),
    ("ipv4network@1", "10.0.0.0/255.0.0.0"),
    ("ipv4network@1", "10.0.0.0"),
    ("ipv6network@1", "2001:DB8::/32"),
    ("ipv4interface@1", "10.0.0.1"),
    ("ipv6interface@1", "::1/0128"),
    ("zoneinfo@1", "posix/Europe/Paris"),
    ("zoneinfo@1", "../../etc/passwd"),
    ("zoneinfo@1", "Not/A_Zone"),
])
def test_non_canonical_texts_are_refused(tag: str, text: str, registry: TypeRegistry) -> None:
    from flujo.exceptions import DeserializationError

    with pytest.raises(DeserializationError, match=r"at \$\[1\]"):
        safe_deserialize([1, {TAG: tag, VALUE: text}], registry=registry)


@pytest.mark.parametrize("v", [
    {"offset_us": 86_400_000_000, "name": None},
    {"offset_us": 1.5, "name": None},
    {"offset_us": True, "name": None},
    {"offset_us": 0, "name": 3},
    {"offset_us": 0},
    {"offset_us": 0, "name": None, "x": 1},
    [0, None],
])
def test_malformed_timezones_are_refused(v: Any, registry: TypeRegistry) -> None:
    from flujo.exceptions import DeserializationError

    with pytest.raises(DeserializationError, match=r"timezone.*at \$\.z"):
        safe_deserialize({"z": {TAG: "timezone@1", VALUE: v}}, registry=registry)


@pytest.mark.parametrize("v", [
    {"pattern": "a", "flags": 2},  # a str pattern always has re.UNICODE
    {"pattern": "a", "flags": int(re.I | re.U | re.DEBUG)},
    {"pattern": "a", "flags": int(re.U) | 1},  # re.TEMPLATE's flag (gone in Python 3.13)
    {"pattern": "a", "flags": -1},
    {"pattern": "a", "flags": int(re.L | re.U)},
    {"bytes": "YQ==", "flags": int(re.U)},
    {"bytes": "not base64!", "flags": 0},
    {"pattern": "(", "flags": 32},
    {"pattern": "a" * 10_001, "flags": 32},
    {"bytes": "YWFh" * 3_400, "flags": 0},
    {"pattern": b"a".decode(), "flags": 32, "bytes": "YQ=="},
    {"pattern": 1, "flags": 32},
    {"flags": 32},
    "a",
])
def test_malformed_patterns_are_refused(v: Any, registry: TypeRegistry) -> None:
    from flujo.exceptions import DeserializationError

    with pytest.raises(DeserializationError, match=r"at \$\[0\]"):
        safe_deserialize([{TAG: "pattern@1", VALUE: v}], registry=registry)


def test_patterns_that_cannot_be_read_back_are_refused_when_written(
        registry: TypeRegistry) -> None:
    with pytest.raises(SerializationError, match=r"10000.*at \$\.p"):
        safe_serialize({"p": re.compile("a" * 10_001)}, registry=registry)
    if hasattr(re, "TEMPLATE"):  # (gone in Python 3.13)
        with pytest.warns(DeprecationWarning):
            template = re.compile("a", re.TEMPLATE)
        with pytest.raises(SerializationError, match=r"DEBUG.*at \$\.p"):
            safe_serialize({"p": template}, registry=registry)
    assert round_trip(re.compile("a" * 10_000), registry).pattern == "a" * 10_000


def test_other_tzinfo_classes_are_refused_naming_the_class(registry: TypeRegistry) -> None:
    from datetime import tzinfo

    from flujo.exceptions import UnserializableTypeError

    class Custom(tzinfo):
        pass

    with pytest.raises(UnserializableTypeError, match=r"Custom.*at \$\.tz"):
        safe_serialize({"tz": Custom()}, registry=registry)

    class MyZone(ZoneInfo):
        pass

    with pytest.raises(UnserializableTypeError, match=r"MyZone.*at \$\[0\]"):
        safe_serialize([MyZone("UTC")], registry=registry)
    with pytest.raises(SerializationError, match="not in the time zone database"):
        safe_serialize([ZoneInfo("posix/UTC")], registry=registry)


# -- buffers and struct_time (_stdlib) ----------------------------------------------------------
def test_buffers_and_struct_time_round_trip_exactly(registry: TypeRegistry) -> None:
    import array
    import time as clock

    values = [
        memoryview(b"abc"), memoryview(bytearray(b"xy")),
        memoryview(array.array("i", [1, -2])), memoryview(bytes(range(6))).cast("B", [2, 3]),
        memoryview(array.array("d", [1.5])).cast("B").cast("d", []),
        array.array("q", [-(2**63), 2**63 - 1]), array.array("f", [1.5, math.inf]),
        array.array("B"), clock.gmtime(0), clock.struct_time((2024, 1, 2, 3, 4, 5, 6, 7, -1)),
    ]
    for value in values:
        back = round_trip(value, registry)
        assert_same(value, back)
        assert type(back) is type(value)
    writable = round_trip(memoryview(bytearray(b"ab")), registry)
    writable[0] = ord("z")  # a bytearray of its own
    assert writable.tobytes() == b"zb"
    with pytest.raises(TypeError):
        round_trip(memoryview(b"ab"), registry)[0] = 1  # read-only, as over bytes


def test_an_array_is_written_little_endian_whatever_the_machine(registry: TypeRegistry) -> None:
    import array

    data = safe_serialize(array.array("H", [1, 258]), registry=registry)
    assert data == {TAG: "array@1", VALUE: {"typecode": "H", "itemsize": 2,
                                            "data": "AQACAQ=="}}  # 01 00 02 01


def test_array_typecodes_are_the_formats_not_the_interpreters(registry: TypeRegistry) -> None:
    import array
    import sys

    from flujo.serialization import type_schema

    schema = type_schema(registry, array.array)
    assert schema["$defs"]["array@1"]["properties"]["v"]["properties"]["typecode"]["enum"] == \
        sorted("bBuwhHiIlLqQfd")  # the same on every Python flujo supports
    wide = {TAG: "array@1", VALUE: {"typecode": "w", "itemsize": 4, "data": "YQAAAA=="}}
    if sys.version_info >= (3, 13):
        assert safe_deserialize(wide, registry=registry) == array.array("w", "a")
    else:
        with pytest.raises(SerializationError, match=r"typecode 'w' is not supported by this"
                                                     r" Python \(3\.1[12]; 'w' needs 3\.13\)"):
            safe_deserialize(wide, registry=registry)
    with pytest.raises(SerializationError, match="unknown typecode 'z'"):
        safe_deserialize({TAG: "array@1", VALUE: {"typecode": "z", "itemsize": 1, "data": ""}},
                         registry=registry)


def test_memoryviews_that_cannot_be_rebuilt_are_refused_when_written(
        registry: TypeRegistry) -> None:
    import ctypes

    with pytest.raises(SerializationError, match=r"format.*at \$\.m"):
        safe_serialize({"m": memoryview((ctypes.c_int * 2)())}, registry=registry)


@pytest.mark.parametrize(("tag", "v"), [
    ("memoryview@1", {"data": "YWI=", "format": "B", "itemsize": 1, "shape": [3],
                      "readonly": True}),  # 2 bytes for 3 items
    ("memoryview@1", {"data": "YWI=", "format": "x", "itemsize": 1, "shape": [2],
                      "readonly": True}),
    ("memoryview@1", {"data": "YWI=", "format": "i", "itemsize": 2, "shape": [1],
                      "readonly": True}),  # another platform's item size
    ("memoryview@1", {"data": "YWI=", "format": "B", "itemsize": 1, "shape": [-2],
                      "readonly": True}),
    ("memoryview@1", {"data": "YWI=", "format": "B", "itemsize": 1, "shape": [1] * 65,
                      "readonly": True}),
    ("memoryview@1", {"data": "YWI=", "format": "B", "itemsize": 1, "shape": [2],
                      "readonly": 1}),
    ("memoryview@1", {"data": "!!", "format": "B", "itemsize": 1, "shape": [2],
                      "readonly": True}),
    ("memoryview@1", {"data": "YWI=", "format": "B", "itemsize": 1, "shape": [2]}),
    ("memoryview@1", "YWI="),
    ("array@1", {"typecode": "i", "itemsize": 4, "data": "AQAA"}),  # 3 bytes
    ("array@1", {"typecode": "l", "itemsize": 3, "data": ""}),
    ("array@1", {"typecode": "z", "itemsize": 4, "data": ""}),
    ("array@1", {"typecode": "ii", "itemsize": 4, "data": ""}),
    ("array@1", {"typecode": "i", "itemsize": 4}),
    ("array@1", [1, 2]),
    ("struct_time@1", [2024, 1, 1, 0, 0, 0, 0, 1, 0]),
    ("struct_time@1", [2024, 1, 1, 0, 0, 0, 0, 1, 0, 5, 0]),
    ("struct_time@1", [2024, 1, 1, 0, 0, 0, 0, 1.5, 0, None, None]),
    ("struct_time@1", {"tm_year": 2024}),
])
def test_malformed_buffers_and_struct_times_are_refused(tag: str, v: Any,
                                                        registry: TypeRegistry) -> None:
    from flujo.exceptions import DeserializationError

    with pytest.raises(DeserializationError, match=r"at \$\[0\]"):
        safe_deserialize([{TAG: tag, VALUE: v}], registry=registry)


def test_serialize_to_json_takes_the_formatting_keywords_of_json_dumps() -> None:
    from flujo.serialization import serialize_to_json

    value = {"b": Decimal("1.5"), "a": [1, {"c": None}]}
    assert serialize_to_json(value, indent=2) == json.dumps(safe_serialize(value), indent=2)
    assert serialize_to_json(value, mode="json", sort_keys=True, separators=(",", ":")) == \
        '{"a":[1,{"c":null}],"b":"1.5"}'
    assert serialize_to_json({"é": 1}, ensure_ascii=False) == '{"é": 1}'
    assert serialize_to_json({"é": 1}) == '{"é":1}'  # orjson, compact, when none is given
    with pytest.raises(SerializationError, match="sort_keys"):
        serialize_to_json(value, sort_keys=True)  # a tagged value's dict order is its own
    with pytest.raises(TypeError, match="default"):
        serialize_to_json(value, default=str)
    with pytest.raises(SerializationError, match="surrogate"):
        serialize_to_json({"a": "\ud800"}, indent=2)


# Each int at and beside the bounds the compiled core compares differently: the 62-bit ints
# it holds unboxed and the 64-bit bounds of what is written as a plain number.
_BOUNDARY_INTS = sorted({edge + step for edge in (2**62, -(2**62), 2**63, -(2**63), 2**64)
                         for step in (-2, -1, 0, 1)})


@pytest.mark.parametrize("number", _BOUNDARY_INTS)
def test_ints_at_the_bounds_are_plain_only_within_64_bits(number: int) -> None:
    plain = -(2**63) <= number <= 2**64 - 1
    # in a list, a dict, an Any field's check and alone: each place checks ints inline
    for value in ([number], {"n": number}, number):
        encoded = safe_serialize(value)
        assert (encoded == value) is plain, (value, encoded)
        assert safe_deserialize(encoded) == value
    assert is_plain_int(number) is plain
    assert plain_json({"n": [number]}, lambda _: None, 0) is plain


@pytest.mark.parametrize("real", [0.0, -0.0, 1e308, -1e308, 5e-324, math.inf, -math.inf,
                                  math.nan])
def test_only_finite_floats_are_plain(real: float) -> None:
    finite = math.isfinite(real)
    assert is_finite(real) is finite
    for value in ([real], {"x": real}):
        assert (safe_serialize(value) == value) is finite
