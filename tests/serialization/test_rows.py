"""``rows@1``: a list of one typed model class, each model as the array of its field values.

The rows stand for exactly the models pydantic-core's JSON dicts hold: the tests check the
positions against those dicts, the stored names against later versions of the class, and
that damaged rows or field lists are refused with the place they are wrong.
"""

from __future__ import annotations

import copy
import subprocess
import sys
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, Field

from flujo.exceptions import DeserializationError, NestingTooDeepError
from flujo.serialization import TAG, VALUE, TypeRegistry, safe_deserialize, safe_serialize
from flujo.serialization._rows import parse_header, rows_to_dicts

from ._support import assert_same


class Address(BaseModel):
    street: str
    zip: str | None = None


class Customer(BaseModel):
    name: str
    balance: Decimal
    since: datetime
    home: Address | None = None
    addresses: list[Address] = Field(default_factory=list)
    by_label: dict[str, Address] = Field(default_factory=dict)
    history: list[list[Address | None]] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list)


class Tree(BaseModel):
    label: str
    children: list[Tree] = Field(default_factory=list)


CUSTOMER_TAG = f"{Customer.__module__}:Customer@1"
CUSTOMER_FIELDS = [
    "name", "balance", "since", {"home": ["street", "zip"]},
    {"addresses": {"list": ["street", "zip"]}},
    {"by_label": {"dict": ["street", "zip"]}},
    {"history": {"list": {"list": ["street", "zip"]}}},
    "tags",
]


def every_field_set(model: Any) -> Any:
    """``model`` with every field of it (and of the models inside it) in ``model_fields_set``:
    the typed forms hold only such models (the others keep their fields_set in the generic
    form)."""
    return type(model).model_validate(model.model_dump())


def customer(n: int) -> Customer:
    return every_field_set(Customer(
        name=f"c{n}", balance=Decimal(f"{n}.50"), since=datetime(2024, 1, n + 1, tzinfo=UTC),
        home=Address(street=f"{n} Main St") if n % 2 else None,
        addresses=[Address(street="a", zip=str(n)), Address(street="b")],
        by_label={"work": Address(street="w", zip="1"), "none": Address(street="x")},
        history=[[None, Address(street="h")], []], tags=["t", str(n)]))


@pytest.fixture
def registry() -> TypeRegistry:
    return TypeRegistry()


def through_json(data: Any, registry: TypeRegistry) -> Any:
    return safe_deserialize(orjson.loads(orjson.dumps(data)), registry=registry)


def test_a_list_of_one_typed_class_is_written_as_rows(registry: TypeRegistry) -> None:
    values = [customer(n) for n in range(3)]
    data = safe_serialize(values, registry=registry)
    assert data[TAG] == "rows@2"
    tag, fields, rows = data[VALUE]
    assert tag == CUSTOMER_TAG and fields == CUSTOMER_FIELDS
    assert rows[1] == [
        "c1", "1.50", "2024-01-02T00:00:00Z", ["1 Main St", None],
        [["a", "1"], ["b", None]], {"work": ["w", "1"], "none": ["x", None]},
        [[None, ["h", None]], []], ["t", "1"]]
    assert orjson.loads(orjson.dumps(data)) == data  # plain JSON data, nothing else
    assert_same(through_json(data, registry), values)


def test_rows_hold_what_pydantic_writes_for_each_model(registry: TypeRegistry) -> None:
    values = [customer(n) for n in range(4)]
    _, fields, rows = safe_serialize(values, registry=registry)[VALUE]
    shape = parse_header(fields, 0, 100, 100)
    assert rows_to_dicts(rows, shape) == [v.model_dump(mode="json") for v in values]


_text = st.text(max_size=5)
_addresses = st.builds(Address, street=_text, zip=st.none() | _text)


_SHARED = TypeRegistry()


@settings(max_examples=60, deadline=None)
@given(st.lists(st.builds(
    Customer, name=_text,
    balance=st.decimals(allow_nan=False, allow_infinity=False, places=2),
    since=st.datetimes(timezones=st.just(UTC)).map(lambda d: d.replace(fold=0)),
    home=st.none() | _addresses, addresses=st.lists(_addresses, max_size=3),
    by_label=st.dictionaries(_text, _addresses, max_size=3),
    history=st.lists(st.lists(st.none() | _addresses, max_size=2), max_size=2),
    tags=st.lists(_text, max_size=3)), min_size=2, max_size=6))
def test_any_list_of_customers_round_trips_through_rows(values: list[Customer]) -> None:
    registry = _SHARED
    data = safe_serialize(values, registry=registry)
    assert data[TAG] == "rows@2"
    fields, rows = data[VALUE][1:]
    assert rows_to_dicts(rows, parse_header(fields, 0, 100, 100)) == [
        v.model_dump(mode="json") for v in values]
    assert_same(through_json(data, registry), values)


def test_a_model_that_contains_itself_is_still_written_as_models(
        registry: TypeRegistry) -> None:
    values = [every_field_set(Tree(label="a", children=[Tree(label="b")])),
              every_field_set(Tree(label="c"))]
    data = safe_serialize(values, registry=registry)
    assert data[TAG] == "models@1"
    assert_same(through_json(data, registry), values)


def test_models_written_by_earlier_releases_still_read(registry: TypeRegistry) -> None:
    values = [customer(n) for n in range(2)]
    earlier = {TAG: "models@1", VALUE: [CUSTOMER_TAG, [v.model_dump(mode="json")
                                                      for v in values]]}
    assert_same(through_json(earlier, registry), values)


def test_rows_are_read_by_their_stored_field_names() -> None:
    class Item(BaseModel):
        name: str
        qty: int

    old = TypeRegistry()
    old.register_type(Item, name="item")
    stored = orjson.loads(orjson.dumps(safe_serialize(
        [Item(name="a", qty=1), Item(name="b", qty=2)], registry=old)))
    assert stored[VALUE][1:] == [["name", "qty"], [["a", 1], ["b", 2]]]

    class Reordered(BaseModel):  # the class as a later release declares it
        note: str = "-"
        qty: int
        name: str

    new = TypeRegistry()
    new.register_type(Reordered, name="item")
    assert safe_deserialize(stored, registry=new) == [
        Reordered(name="a", qty=1), Reordered(name="b", qty=2)]

    class Dropped(BaseModel):
        name: str

    gone = TypeRegistry()
    gone.register_type(Dropped, name="item")
    with pytest.raises(DeserializationError, match=r"\['qty'\] no longer exist"):
        safe_deserialize(stored, registry=gone)


def _stored(registry: TypeRegistry) -> dict[str, Any]:
    data = safe_serialize({"customers": [customer(1), customer(2)]}, registry=registry)
    return orjson.loads(orjson.dumps(data))  # type: ignore[no-any-return]


@pytest.mark.parametrize(("damage", "message", "path"), [
    (lambda v: v.pop(), "expected \\[tag, fields, \\[row, ...\\]\\]", "$.customers"),
    (lambda v: v.__setitem__(1, "name"), "fields must be an array", "$.customers"),
    (lambda v: v[1].__setitem__(0, 7), "a field is a name or", "$.customers"),
    (lambda v: v[1].__setitem__(0, {"a": [], "b": []}), "a field is a name or", "$.customers"),
    (lambda v: v[1].__setitem__(1, "name"), "name a field twice", "$.customers"),
    (lambda v: v[1].__setitem__(3, {3: ["street", "zip"]}), "must be a string", "$.customers"),
    (lambda v: v[1][3].__setitem__("home", {"set": ["street"]}), "a node is", "$.customers"),
    (lambda v: v[1][4].__setitem__("addresses", {"list": "street"}), "a node is",
     "$.customers"),
    (lambda v: v.__setitem__(2, {"0": []}), "expected an array of rows", "$.customers"),
    (lambda v: v[2][1].pop(), "expected a row of 8 values", "$.customers[1]"),
    (lambda v: v[2].__setitem__(0, {"name": "c1"}), "expected a row of 8", "$.customers[0]"),
    (lambda v: v[2][1][4][1].append("extra"), "expected a row of 2 values",
     "$.customers[1].addresses[1]"),
    (lambda v: v[2][0].__setitem__(4, {"a": ["s", None]}), "expected an array",
     "$.customers[0].addresses"),
    (lambda v: v[2][0][5].__setitem__("work", ["w"]), "expected a row of 2",
     "$.customers[0].by_label.work"),
    (lambda v: v[2][0][6][0].__setitem__(1, "h"), "expected a row of 2",
     "$.customers[0].history[0][1]"),
])
def test_damaged_rows_are_refused_where_they_are_damaged(
        registry: TypeRegistry, damage: Any, message: str, path: str) -> None:
    stored = _stored(registry)
    damage(stored["customers"][VALUE])
    with pytest.raises(DeserializationError, match=message) as caught:
        safe_deserialize(stored, registry=registry)
    assert caught.value.path == path


def test_rows_that_do_not_fit_the_class_are_refused_by_its_validator(
        registry: TypeRegistry) -> None:
    stored = _stored(registry)
    stored["customers"][VALUE][2][0][1] = "not a number"
    with pytest.raises(DeserializationError, match="typed form does not fit"):
        safe_deserialize(stored, registry=registry)


def test_a_deeply_nested_field_list_is_refused_as_too_deep(registry: TypeRegistry) -> None:
    node: Any = ["x"]
    for _ in range(5_000):
        node = {"list": node}
    forged = {TAG: "rows@1", VALUE: [CUSTOMER_TAG, [{"deep": node}], []]}
    with pytest.raises(NestingTooDeepError):
        safe_deserialize(forged, registry=registry)


def test_field_names_from_storage_are_only_keys(registry: TypeRegistry) -> None:
    forged = {TAG: "rows@1", VALUE: [CUSTOMER_TAG, ["__class__", "name"], [[1, "x"]]]}
    with pytest.raises(DeserializationError, match=r"\['__class__'\] no longer exist"):
        safe_deserialize(forged, registry=registry)


def test_a_stored_field_the_class_lost_is_refused_in_every_typed_form(
        registry: TypeRegistry) -> None:
    """Never dropped: in rows (checked once, nested models too), models@1 and one model."""
    stored = _stored(registry)
    fields, rows = stored["customers"][VALUE][1:]
    fields[4] = {"addresses": {"list": ["street", "zip", "floor"]}}
    for row in rows:
        for address in row[4]:
            address.append(3)
    with pytest.raises(DeserializationError, match=r"\['addresses.floor'\] no longer exist"):
        safe_deserialize(stored, registry=registry)
    one = customer(1).model_dump(mode="json")
    one["addresses"][0]["floor"] = 3
    one["by_label"]["work"]["floor"] = 3
    one["history"][0][1]["lift"] = True
    lost = r"\['addresses.floor', 'by_label.floor', 'history.lift'\] no longer exist"
    other = customer(2).model_dump(mode="json")
    for forged in ({TAG: "models@1", VALUE: [CUSTOMER_TAG, [other, one]]},
                   {TAG: CUSTOMER_TAG, VALUE: [one]}):
        with pytest.raises(DeserializationError, match=lost):
            safe_deserialize(forged, registry=registry)


def test_a_lost_field_deep_in_a_model_that_contains_itself_is_refused(
        registry: TypeRegistry) -> None:
    tree = every_field_set(Tree(label="a", children=[Tree(label="b", children=[Tree(label="c")])]))
    stored = orjson.loads(orjson.dumps(safe_serialize(tree, registry=registry)))
    assert type(stored[VALUE]) is list  # the typed form
    stored[VALUE][0]["children"][0]["children"][0]["colour"] = "red"
    with pytest.raises(DeserializationError,
                       match=r"\['children.children.colour'\] no longer exist"):
        safe_deserialize(stored, registry=registry)


def test_model_rows_off_writes_what_earlier_releases_read() -> None:
    writer, reader = TypeRegistry(model_rows=False), TypeRegistry()
    values = [customer(n) for n in range(2)]
    data = safe_serialize(values, registry=writer)
    assert data[TAG] == "models@1"
    assert data[VALUE][1] == [v.model_dump(mode="json") for v in values]
    assert_same(through_json(data, reader), values)
    assert_same(through_json(safe_serialize(values, registry=reader), writer), values)


def test_long_lists_are_read_in_chunks_and_errors_keep_whole_list_positions(
        registry: TypeRegistry) -> None:
    values = [customer(n % 9) for n in range(1_300)]  # several chunks of the reader
    stored = orjson.loads(orjson.dumps(safe_serialize({"c": values}, registry=registry)))
    assert_same(safe_deserialize(stored, registry=registry), {"c": values})
    rows = stored["c"][VALUE][2]
    rows[1_100][1] = "not a number"
    with pytest.raises(DeserializationError, match="valid decimal") as caught:
        safe_deserialize(stored, registry=registry)
    assert caught.value.path == "$.c[1100].balance"
    rows[1_100][1] = "1.00"
    rows[1_250].pop()
    with pytest.raises(DeserializationError, match="expected a row of 8") as caught:
        safe_deserialize(stored, registry=registry)
    assert caught.value.path == "$.c[1250]"


class Pair(BaseModel):  # every field required: the key check only counts keys
    left: int
    right: int


@pytest.mark.parametrize("stored", [
    {"left": 1, "right": 2, "middle": 3},  # one key too many
    {"left": 1, "middle": 3},  # as many keys as fields, one of them renamed
])
def test_a_renamed_or_extra_field_of_an_all_required_class_is_refused(
        registry: TypeRegistry, stored: dict[str, int]) -> None:
    tag = f"{Pair.__module__}:Pair@1"
    for forged in ({TAG: tag, VALUE: [stored]},
                   {TAG: "models@1", VALUE: [tag, [{"left": 0, "right": 0}, stored]]}):
        with pytest.raises(DeserializationError, match=r"middle|right"):
            safe_deserialize(forged, registry=registry)


_DEEP_TYPED = """
from pydantic import BaseModel, Field
from flujo.exceptions import DeserializationError
from flujo.serialization import TypeRegistry, safe_deserialize

class Node(BaseModel):
    label: str
    children: list["Node"] = Field(default_factory=list)

def chain(levels, stray=False):
    root = node = {"label": "x", "children": []}
    for _ in range(levels):
        child = {"label": "x", "children": []}
        node["children"].append(child)
        node = child
    if stray:
        node["colour"] = "red"  # a field Node never had, at the bottom
    return root

tag = "__main__:Node@1"
for stray in (False, True):
    for stored in ({"$t": tag, "v": [chain(50_000, stray)]},
                   {"$t": "models@1", "v": [tag, [chain(1), chain(50_000, stray)]]}):
        try:
            safe_deserialize(stored, registry=TypeRegistry())
        except DeserializationError as exc:
            expected = "no longer exist" if stray else "maximum validation depth"
            assert expected in str(exc), str(exc)[:300]
        else:
            raise AssertionError("50,000 levels of typed form accepted")
print("ok")
"""


def test_typed_forms_far_deeper_than_the_stack_are_refused_not_a_crash() -> None:
    """The check for lost fields walks stored dicts; compiled code must not recurse on the
    C stack through 50,000 levels (the process would crash)."""
    result = subprocess.run([sys.executable, "-c", _DEEP_TYPED], capture_output=True,
                            text=True, timeout=300, check=False)
    assert result.returncode == 0, (result.returncode, result.stderr[-2000:])
    assert result.stdout.strip() == "ok"


def test_rows_written_by_older_releases_are_read_as_they_are(
        registry: TypeRegistry, monkeypatch: pytest.MonkeyPatch) -> None:
    # rows@1 (flujo 0.8 to 0.11) is rows@2 without unset fields: read directly, without the
    # copy that a migration step gets (which made such a state load 2.5 times slower).
    customers = [customer(n) for n in range(3)]
    data = safe_serialize(customers, registry=registry)
    assert data[TAG] == "rows@2" and "$unset" not in str(data[VALUE][1])
    stored = orjson.loads(orjson.dumps({**data, TAG: "rows@1"}))

    class Counted(BaseModel):
        n: int

    registry.register_type(Counted, name="counted", version=2,
                           migrations={1: lambda v: [{"n": v[0]["n"] + 1}]})
    old_counted = {TAG: "counted@1", VALUE: [{"n": 1}]}
    copies: list[Any] = []
    real_deepcopy = copy.deepcopy

    def counting(value: Any, *args: Any) -> Any:
        copies.append(value)
        return real_deepcopy(value, *args)

    monkeypatch.setattr(copy, "deepcopy", counting)
    back = safe_deserialize(stored, registry=registry)
    assert copies == []  # no copy of the rows
    assert_same(back, customers)
    assert safe_deserialize(old_counted, registry=registry) == Counted(n=2)
    assert copies  # a migration that changes the value still gets its copy
