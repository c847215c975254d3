"""``serialize_to_bytes`` writes the typed parts as JSON text (``Encoder.fragments``): the
bytes must be exactly ``orjson.dumps(safe_serialize(value))``, and every place that reads
encoded output inside a run (a custom serializer's schema check, the byte order of a set's
elements) must still see data."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, Literal

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, ConfigDict

from flujo.exceptions import SchemaValidationError, SerializationError
from flujo.serialization import (
    TypeRegistry,
    safe_deserialize,
    safe_serialize,
    serialize_to_bytes,
    serialize_to_json,
)
from flujo.serialization._codec import Encoder, run_encoder

from ._support import assert_same, make_registry, values
from .test_roundtrip_property import PROPERTY_SETTINGS

REGISTRY = make_registry()


class Reading(BaseModel):
    sensor: str
    value: float
    at: datetime
    tags: list[str] = []
    unit: Literal["C", "F"] = "C"


class Batch(BaseModel):
    name: str
    readings: list[Reading]
    meta: dict[str, Any] = {}


class Node(BaseModel):
    name: str
    children: list[Node] = []


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True)
    key: str
    extra: dict[str, int]

    def __hash__(self) -> int:  # frozen models hash their fields; the dict is not hashable
        return hash(self.key)


def same_bytes(value: Any, registry: TypeRegistry | None = None) -> bytes:
    data = orjson.dumps(safe_serialize(value, registry=registry))
    text = serialize_to_bytes(value, registry=registry)
    assert text == data
    assert serialize_to_json(value, registry=registry) == data.decode()
    return text


def fragments_in(value: Any, registry: TypeRegistry) -> int:
    """How many parts of ``value``'s encoding were written as JSON text."""
    encoder = Encoder(registry, validate=True, default=None, max_depth=registry.max_depth,
                      manifest=None, fragments=True)
    found = 0
    stack = [run_encoder(encoder, value)]
    while stack:
        item = stack.pop()
        if isinstance(item, orjson.Fragment):
            found += 1
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return found


readings = st.builds(
    Reading, sensor=st.text(max_size=6), value=st.floats(allow_nan=False, allow_infinity=False),
    at=st.datetimes(timezones=st.just(UTC)), tags=st.lists(st.text(max_size=3), max_size=3))
batches = st.builds(Batch, name=st.text(max_size=5), readings=st.lists(readings, max_size=6),
                    meta=st.dictionaries(st.text(max_size=3), st.integers(-5, 5), max_size=3))


@PROPERTY_SETTINGS
@given(values)
def test_the_bytes_are_those_of_the_data_for_every_supported_value(value: Any) -> None:
    text = same_bytes(value, REGISTRY)
    assert_same(value, safe_deserialize(orjson.loads(text), registry=REGISTRY))


@PROPERTY_SETTINGS
@given(st.lists(batches | readings, max_size=4), st.booleans())
def test_the_bytes_are_those_of_the_data_for_typed_models(items: list[Any], twice: bool) -> None:
    if twice and items:
        items.append(items[0])  # shared: anchors and references, never rows
    for item in items:  # some leave fields unset (rows@2), some set them all
        if isinstance(item, Reading) and len(item.tags) == 1:
            item.unit = "F"
    text = same_bytes(items)
    assert_same(items, safe_deserialize(orjson.loads(text)))


def test_the_typed_parts_are_written_as_json_text() -> None:
    registry = TypeRegistry()
    at = datetime(2026, 1, 2, tzinfo=UTC)
    rows = [Reading(sensor=f"s{i}", value=i / 3, at=at) for i in range(1200)]
    assert fragments_in(rows, registry) == 3  # a part per chunk of 512 rows
    assert fragments_in(Batch(name="b", readings=rows[:3]), registry) == 1
    # a model that contains itself: as text when the levels its guard counted keep it
    # shallow (see the depth tests), each model of a list of them too
    assert fragments_in(Node(name="root", children=[Node(name="leaf", children=[])]),
                        registry) == 1
    assert fragments_in({"a": rows[:2], "b": [Node(name="x", children=[])]}, registry) == 2
    same_bytes(rows, registry)
    same_bytes([rows[:1], rows[1:600]], registry)
    for count in (511, 512, 513, 1024, 1025):  # at and around the chunks' edges
        same_bytes(rows[:count], registry)
    # ...those leave fields unset (the general rows); with every field set, the rows
    full = [Reading(sensor=f"s{i}", value=i / 3, at=at, tags=["t"], unit="F")
            for i in range(1100)]
    same_bytes(full, registry)
    assert fragments_in(full, registry) == 3


class Name(str):
    pass


def test_a_value_the_guard_refuses_is_written_as_data_as_before() -> None:
    named = Reading(sensor="s", value=1.0, at=datetime(2026, 1, 2))
    named.__dict__["sensor"] = Name("s")  # a str subclass, which pydantic would flatten
    assert fragments_in([named], TypeRegistry()) == 0
    same_bytes([named, Reading(sensor="t", value=2.0, at=datetime(2026, 1, 2))])


def test_rows_with_datetimes_as_their_text_are_written_as_text() -> None:
    zoned = Reading(sensor="s", value=1.0, at=datetime(2026, 1, 2, tzinfo=timezone(
        timedelta(hours=2), "CEST")))  # a named offset: not kept by an ISO string
    assert fragments_in([zoned], TypeRegistry()) == 1
    same_bytes([zoned, Reading(sensor="t", value=2.0, at=datetime(2026, 1, 2))])
    same_bytes(zoned)


def test_set_elements_are_ordered_by_the_bytes_of_their_data() -> None:
    # Frozen models are not ordered by <: the set is written in the order of its elements'
    # JSON with sorted keys, which JSON text from pydantic (keys in field order) would change.
    elements = {Frozen(key=k, extra={"z": 1, "a": 2, k: 3}) for k in ["m", "b", "y", "c", "a"]}
    text = same_bytes(elements)
    assert safe_deserialize(orjson.loads(text)) == elements
    assert same_bytes(frozenset(elements)) == same_bytes(frozenset(reversed(list(elements))))


class Envelope:
    def __init__(self, batch: Batch) -> None:
        self.batch = batch


def test_a_custom_serializers_schema_is_checked_on_data() -> None:
    registry = TypeRegistry()
    # the batch is written as one row: [fields, [name, [rows...], meta]]
    schema = {"type": "object", "required": ["batch"], "properties": {"batch": {
        "type": "object", "required": ["$t", "v"], "properties": {"v": {
            "type": "array", "prefixItems": [{"type": "array"}, {"type": "array"}]}}}}}
    registry.register_custom_serializer(
        Envelope, lambda e: {"batch": e.batch}, deserializer=lambda d: Envelope(d["batch"]),
        schema=schema, name="envelope")
    at = datetime(2026, 1, 2, tzinfo=UTC)
    value = Envelope(Batch(name="b", readings=[Reading(sensor="s", value=1.5, at=at)]))
    text = same_bytes(value, registry)
    back = safe_deserialize(orjson.loads(text), registry=registry)
    assert back.batch == value.batch
    # A schema the output breaks is still refused, naming the type (it saw data, not text).
    strict = TypeRegistry()
    strict.register_custom_serializer(
        Envelope, lambda e: {"batch": e.batch}, schema={"type": "object", "properties": {
            "batch": {"type": "object", "properties": {"v": {"type": "string"}}}}},
        name="envelope")
    with pytest.raises(SchemaValidationError, match="envelope"):
        serialize_to_bytes(value, registry=strict)


class Nested:
    def __init__(self, readings: list[Reading]) -> None:
        self.readings = readings


def test_a_serializer_that_encodes_inside_the_run_gets_data() -> None:
    registry = TypeRegistry()
    seen: list[Any] = []

    def serialize(n: Nested) -> Any:
        inner = safe_serialize(n.readings, registry=registry)
        seen.append(inner)
        return {"json": orjson.dumps(inner).decode()}

    registry.register_custom_serializer(Nested, serialize, name="nested")
    at = datetime(2026, 1, 2, tzinfo=UTC)
    readings = [Reading(sensor="s", value=1.0, at=at), Reading(sensor="t", value=2.0, at=at)]
    same_bytes([Nested(readings)], registry)
    assert seen and seen[0] == safe_serialize(readings, registry=registry)
    assert "Fragment" not in repr(seen)


def test_a_lone_surrogate_in_a_model_is_refused_with_its_path() -> None:
    bad = [Reading(sensor="ok", value=1.0, at=datetime(2026, 1, 2)),
           Reading(sensor="bad\ud800", value=1.0, at=datetime(2026, 1, 2))]
    with pytest.raises(SerializationError) as caught:
        serialize_to_bytes(bad)
    assert "lone surrogate" in str(caught.value) and caught.value.path == "$[1].sensor"


def test_json_mode_and_decimal_values() -> None:
    value = {"price": Decimal("1.10"), "when": datetime(2026, 1, 2, tzinfo=UTC)}
    assert serialize_to_bytes(value, mode="json") == orjson.dumps(
        safe_serialize(value, mode="json"))
    same_bytes(value)


def outcome(call: Any) -> Any:
    try:
        return call()
    except SerializationError as exc:
        return type(exc).__name__, str(exc), exc.path


def data_outcome(value: Any) -> Any:
    """What the data path gives: orjson's bytes of safe_serialize, or the error, as
    serialize_to_json reports orjson's refusal."""
    try:
        data = safe_serialize(value)
    except SerializationError as exc:
        return type(exc).__name__, str(exc), exc.path
    try:
        return orjson.dumps(data)
    except TypeError as exc:
        return "SerializationError", f"cannot write JSON: {exc} (at $)", "$"


def json_depth(text: bytes) -> int:
    """How deeply ``text`` nests arrays and objects (its strings hold no brackets)."""
    deepest = depth = 0
    for byte in text:
        if byte in b"[{":
            depth += 1
            deepest = max(deepest, depth)
        elif byte in b"]}":
            depth -= 1
    return deepest


# A chain of Node of this many levels is the deepest written as text at the top level: its
# guard counts the levels, and 3 + 3 * (levels - 1) levels of JSON (a bound: a model is at
# most 2, its list 1) must fit in _TEXT_DEPTH - 4 = 236.
TEXT_LEVELS = 78


@pytest.mark.parametrize("levels", [3, TEXT_LEVELS - 2, TEXT_LEVELS - 1, TEXT_LEVELS, 126,
                                    260, 400])
def test_a_deep_chain_of_models_has_the_outcome_of_the_data_path(levels: int) -> None:
    # A model that contains itself is written as text only as deep as its levels allow, so
    # that orjson's depth limit holds as on the data path (it does not look into text);
    # and pydantic-core's own limit (a ValueError) sends it to the generic form, never out.
    node = Node(name="leaf", children=[])
    for i in range(levels):
        node = Node(name=str(i), children=[node])
    assert outcome(lambda: serialize_to_bytes(node)) == data_outcome(node)
    if levels < 126:  # (deeper, the encoder refuses it: max_depth)
        assert fragments_in(node, TypeRegistry()) == (1 if levels + 1 <= TEXT_LEVELS else 0)


def test_the_deepest_tree_written_as_text_stays_within_orjsons_depth() -> None:
    node = Node(name="leaf", children=[])
    for i in range(TEXT_LEVELS - 1):
        node = Node(name=str(i), children=[node, Node(name="x", children=[])])
    assert fragments_in(node, TypeRegistry()) == 1
    text = same_bytes(node)
    assert json_depth(text) <= 255
    # one level more: as data, the same bytes
    node = Node(name="top", children=[node])
    assert fragments_in(node, TypeRegistry()) == 0
    assert same_bytes(node) == orjson.dumps(safe_serialize(node))
    # inside containers, the room is less (3 levels of JSON for each): the same tree, two
    # lists down, as data; two levels less deep, as text
    assert fragments_in([[node.children[0]]], TypeRegistry()) == 0
    assert fragments_in([[node.children[0].children[0].children[0]]], TypeRegistry()) == 1


def test_a_model_deep_inside_containers_is_written_as_data() -> None:
    at = datetime(2026, 1, 2, tzinfo=UTC)
    for levels in (10, 70, 120):
        value: Any = [Reading(sensor="s", value=1.0, at=at)]
        for _ in range(levels):
            value = [value]
        assert outcome(lambda v=value: serialize_to_bytes(v)) == data_outcome(value)
    assert fragments_in([[[Reading(sensor="s", value=1.0, at=at)]]], TypeRegistry()) == 1
    deep: Any = [Reading(sensor="s", value=1.0, at=at)]
    for _ in range(90):
        deep = [deep]
    assert fragments_in(deep, TypeRegistry()) == 0
