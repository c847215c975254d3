"""flujo.testing.assert_round_trip and assert_identical: exact types, paths of differences."""

from __future__ import annotations

import array
import collections
import dataclasses
import datetime as dt
import decimal
import enum
import ipaddress
import subprocess
import sys
import uuid
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

import pytest
from pydantic import BaseModel, ConfigDict

from flujo.exceptions import UnserializableTypeError
from flujo.serialization import TypeRegistry
from flujo.testing import assert_identical, assert_round_trip, sample_values
from flujo.testing._compare import _json_problem

MADRID = ZoneInfo("Europe/Madrid")
NAN = float("nan")


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Point(NamedTuple):
    x: int
    y: float


@dataclasses.dataclass
class Batch:
    tags: set[str]
    span: tuple[int, str]
    when: dt.datetime


class Line(BaseModel):
    sku: str
    price: decimal.Decimal


class Order(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: uuid.UUID
    lines: list[Line]
    placed: dt.datetime
    color: Color = Color.RED


class Plain:
    """No __eq__: compared by its attributes."""

    def __init__(self, amount: decimal.Decimal, tags: tuple[str, ...]) -> None:
        self.amount, self.tags = amount, tags


class Sloppy:
    """An __eq__ that cannot see precision: the attributes still can."""

    def __init__(self, amount: decimal.Decimal) -> None:
        self.amount = amount

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sloppy) and self.amount == other.amount

    __hash__ = None  # type: ignore[assignment]


class Slotted:
    __slots__ = ("a", "b")

    def __init__(self, a: Any, b: Any) -> None:
        self.a, self.b = a, b


def order(**extra: Any) -> Order:
    return Order(id=uuid.UUID(int=7), lines=[Line(sku="A-1", price=decimal.Decimal("9.90"))],
                 placed=dt.datetime(2024, 10, 27, 2, 30, fold=1, tzinfo=MADRID), **extra)


GOOD_VALUES: dict[str, Any] = {
    "every built-in": sample_values(),
    "model with extras": order(note={"a", "b"}, when=dt.date(2024, 1, 1)),
    "dataclass": Batch({"x"}, (1, "one"), dt.datetime(2024, 3, 31, 2, 30, tzinfo=MADRID)),
    "namedtuple in a set": {Point(1, 2.5), Point(2, NAN)},
    "ambiguous wall time": dt.datetime(2024, 10, 27, 2, 30, fold=1, tzinfo=MADRID),
    "nan in containers": {"s": {NAN, 1.0}, "k": {(0.0, NAN): 1, (1.0, NAN): 2}},
    "decimal specials": [decimal.Decimal("-0"), decimal.Decimal("1E+3"), decimal.Decimal("sNaN")],
    "numeric look-alikes": [1, 1.0, True, decimal.Decimal(1), complex(1, -0.0)],
    "nested keys": {(1, "a"): {frozenset({1}): [None]}, 2**80: "big"},
    "deque": collections.deque([1, (2, 3)], maxlen=5),
    "counter": collections.Counter("hello"),
}


@pytest.mark.parametrize("value", GOOD_VALUES.values(), ids=GOOD_VALUES.keys())
def test_good_values_round_trip_and_are_returned(value: Any) -> None:
    decoded = assert_round_trip(value)
    assert_identical(decoded, value)
    assert decoded is not value


def test_pydantic_tzinfo_reads_back_as_the_equal_timezone() -> None:
    class Stamp(BaseModel):
        at: dt.datetime

    stamp = Stamp.model_validate({"at": "2024-05-01T12:00:00+02:00"})
    assert type(stamp.at.tzinfo).__name__ == "TzInfo"
    assert_round_trip(stamp)


# -- lossy custom types are caught with the path --------------------------------------------


class Span:
    def __init__(self, bounds: tuple[int, int]) -> None:
        self.bounds = bounds


class Money:
    def __init__(self, amount: decimal.Decimal, currency: str) -> None:
        self.amount, self.currency = amount, currency

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Money) and (self.amount, self.currency) == (
            other.amount, other.currency)

    __hash__ = None  # type: ignore[assignment]


@pytest.fixture
def lossy() -> TypeRegistry:
    registry = TypeRegistry()
    registry.register_custom_serializer(  # the tuple comes back as a list
        Span, lambda s: {"bounds": list(s.bounds)},
        deserializer=lambda d: Span(d["bounds"]), name="test.span")
    registry.register_custom_serializer(  # the amount goes through a float
        Money, lambda m: {"amount": float(m.amount), "currency": m.currency},
        deserializer=lambda d: Money(decimal.Decimal(str(d["amount"])), d["currency"]),
        name="test.money")
    registry.register_custom_serializer(  # the zone is dropped, the offset kept
        ZoneInfo, lambda z: z.key, deserializer=ZoneInfo, name="test.zone")
    return registry


def test_tuple_turned_into_list_fails_with_its_path(lossy: TypeRegistry) -> None:
    value = {"orders": [{"span": Span((1, 2))}]}
    with pytest.raises(AssertionError, match=r"\$\.orders\[0\]\.span\.bounds: type list != "
                                             r"expected tuple") as info:
        assert_round_trip(value, registry=lossy)
    assert '"$t":"test.span@1"' in str(info.value)  # the serialized form is shown


def test_decimal_precision_loss_fails_even_when_eq_says_equal(lossy: TypeRegistry) -> None:
    money = Money(decimal.Decimal("9.90"), "EUR")
    assert money == Money(decimal.Decimal("9.9"), "EUR")
    with pytest.raises(AssertionError, match=r"\$\['price list'\]\[0\]\.amount: "
                                             r"Decimal\('9\.9'\) != expected Decimal\('9\.90'\)"):
        assert_round_trip({"price list": [money]}, registry=lossy)


def test_round_trip_uses_the_given_registry_only(lossy: TypeRegistry) -> None:
    assert_round_trip({"built-ins": (1, 2)}, registry=lossy)
    with pytest.raises(UnserializableTypeError):
        assert_round_trip(Span((1, 2)))  # not registered globally: the error propagates


def test_unregistered_value_raises_the_serialization_error() -> None:
    with pytest.raises(UnserializableTypeError, match=r"\$\.x"):
        assert_round_trip({"x": object()})


# -- assert_identical ------------------------------------------------------------------------

DIFFERENT: list[tuple[Any, Any, str]] = [
    (1, 1.0, r"^\$: type int != expected float"),
    (True, 1, r"^\$: type bool != expected int"),
    (0.0, -0.0, r"^\$: 0\.0 != expected -0\.0"),
    (NAN, 1.0, r"^\$: nan != expected 1\.0"),
    (decimal.Decimal("1.0"), decimal.Decimal("1.00"), r"Decimal\('1\.0'\) != expected"),
    (decimal.Decimal("NaN"), decimal.Decimal("sNaN"), r"Decimal\('NaN'\)"),
    (dt.datetime(2024, 1, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=1))),
     dt.datetime(2024, 1, 1, tzinfo=dt.UTC), r"^\$: datetime"),
    (dt.datetime(2024, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=1))),
     dt.datetime(2024, 1, 1, tzinfo=MADRID), r"^\$\.tzinfo: tzinfo type datetime\.timezone"),
    (dt.datetime(2024, 1, 1, tzinfo=ZoneInfo("Europe/Paris")),
     dt.datetime(2024, 1, 1, tzinfo=MADRID), r"^\$\.tzinfo: zone"),
    (dt.datetime(2024, 10, 27, 2, 30, tzinfo=MADRID),
     dt.datetime(2024, 10, 27, 2, 30, fold=1, tzinfo=MADRID), r"^\$: fold 0 != expected 1"),
    (dt.datetime(2024, 1, 1), dt.datetime(2024, 1, 1, tzinfo=dt.UTC), r"^\$\.tzinfo: tzinfo None"),
    (dt.time(1, tzinfo=dt.timezone(dt.timedelta(0), "GMT")), dt.time(1, tzinfo=dt.UTC),
     r"^\$\.tzinfo"),
    ((1, 2), [1, 2], r"^\$: type tuple != expected list"),
    ([1, 2], [1, 2, 3], r"^\$: length 2 != expected 3"),
    ({"a": 1, "b": 2}, {"b": 2, "a": 1}, r"^\$: key order \['a', 'b'\] != expected"),
    ({1: "x"}, {1.0: "x"}, r"missing key\(s\) 1\.0 \(float\); unexpected key\(s\) 1$"),
    ({"a": {"b c": [1, {2}]}}, {"a": {"b c": [1, {3}]}}, r"^\$\.a\['b c'\]\[1\]: element 3"),
    (collections.OrderedDict(a=1), {"a": 1}, r"type collections\.OrderedDict != expected dict"),
    (collections.deque([1], maxlen=2), collections.deque([1]), r"deque maxlen 2 != expected"),
    ({1, 2}, frozenset({1, 2}), r"type set != expected frozenset"),
    ({1, 2, 3}, {1, 2}, r"^\$: unexpected element\(s\) 3$"),
    (Color.RED, Color.BLUE, r"Color\.RED"),
    (Point(1, 2.0), Point(1, 2), r"^\$\.y: type float != expected int"),
    (Batch({"a"}, (1, "x"), dt.datetime(2024, 1, 1)), Batch({"a"}, (1, "y"),
     dt.datetime(2024, 1, 1)), r"^\$\.span\[1\]: 'x' != expected 'y'"),
    (order(), order(note=1), r"^\$: extra fields \[\] != expected \['note'\]"),
    (order(note=1), order(note=1.0), r"^\$\.note: type int != expected float"),
    (order(color=Color.BLUE), order(), r"^\$\.color"),
    (Plain(decimal.Decimal("1.10"), ("a",)), Plain(decimal.Decimal("1.1"), ("a",)),
     r"^\$\.amount"),
    (Plain(decimal.Decimal(1), ["a"]), Plain(decimal.Decimal(1), ("a",)),  # type: ignore[arg-type]
     r"^\$\.tags: type list"),
    (Sloppy(decimal.Decimal("2.0")), Sloppy(decimal.Decimal("2")), r"^\$\.amount"),
    (Slotted(1, 2), Slotted(1, 2.0), r"^\$\.b: type int"),
    (b"a", bytearray(b"a"), r"type bytes != expected bytearray"),
    (memoryview(b"ab").cast("B", [1, 2]), memoryview(b"ab"), r"^\$: <memory"),
    (array.array("d", [NAN]), array.array("d", [0.0]), r"^\$: array\('d', \[nan\]\)"),
    (array.array("i", [1]), array.array("l", [1]), r"^\$: array\('i'"),
    ({10**5000: 1}, {10**5000: 2}, r"^\$\[<int: repr failed"),
]


@pytest.mark.parametrize(("actual", "expected", "message"), DIFFERENT,
                         ids=[f"{i}-{type(e).__name__}" for i, (_, e, _) in enumerate(DIFFERENT)])
def test_differences_are_reported_with_their_path(actual: Any, expected: Any,
                                                  message: str) -> None:
    with pytest.raises(AssertionError, match=message):
        assert_identical(actual, expected)


def test_identical_values_pass() -> None:
    values = sample_values()
    assert_identical(values, sample_values())
    assert_identical(Plain(decimal.Decimal(1), ("a",)), Plain(decimal.Decimal(1), ("a",)))
    assert_identical(Slotted(NAN, [NAN]), Slotted(NAN, [NAN]))
    loop: list[Any] = [1]
    loop.append(loop)
    other: list[Any] = [1]
    other.append(other)
    assert_identical(loop, other)  # cycles terminate
    # NaN in buffers; bound methods kept as attributes (a /31 network's ``hosts``)
    assert_identical(memoryview(array.array("d", [NAN])), memoryview(array.array("d", [NAN])))
    assert_identical(array.array("d", [NAN]), array.array("d", [NAN]))
    assert_identical(ipaddress.ip_network("10.0.0.0/31"), ipaddress.ip_network("10.0.0.0/31"))
    with pytest.raises(AssertionError, match=r"^\$\.hosts: "):
        broken = ipaddress.ip_network("10.0.0.0/31")
        broken.hosts = broken.__str__  # type: ignore[method-assign]
        assert_identical(broken, ipaddress.ip_network("10.0.0.0/31"))


def test_strict_json_check_names_the_path() -> None:
    assert _json_problem({"a": [1, 2.5, "x", None, True, {"b": 2**64 - 1}]}, "$") is None
    assert _json_problem({"a": [NAN]}, "$") == "$.a[0]: nan is not a JSON number"
    assert _json_problem({"a": (1,)}, "$") == "$.a: tuple (1,) is not a JSON value"
    assert _json_problem({1: 2}, "$") == "$: object key 1 is not a str"
    assert _json_problem([2**64], "$") == "$[0]: integer 18446744073709551616 does not fit 64 bits"


def test_importing_flujo_testing_needs_neither_pytest_nor_syrupy() -> None:
    code = (
        "import sys\n"
        "for name in ('syrupy', 'pytest', 'pytest_asyncio'):\n"
        "    sys.modules[name] = None\n"
        "import flujo.testing as t\n"
        "assert t.assert_round_trip({1, 2}) == {1, 2}\n"
        "try:\n"
        "    t.FlujoSnapshotExtension\n"
        "except ImportError as exc:\n"
        "    print('ImportError:', exc)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=False, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "needs syrupy: pip install" in result.stdout


class Lenient(enum.Enum):
    KNOWN = "known"

    @classmethod
    def _missing_(cls, value: object) -> Lenient:
        member = object.__new__(cls)  # a new pseudo-member on every lookup
        member._name_, member._value_ = str(value).upper(), value
        return member


def test_pseudo_members_made_by_missing_are_compared_by_name_and_value() -> None:
    assert Lenient("new") is not Lenient("new")
    assert_round_trip(Lenient("new"))
    with pytest.raises(AssertionError):
        assert_identical(Lenient("new"), Lenient("other"))
    with pytest.raises(AssertionError):
        assert_identical(Lenient("new"), Lenient.KNOWN)
