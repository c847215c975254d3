"""Property: every supported value survives encode -> JSON bytes -> decode with exact types."""

from __future__ import annotations

import random
from typing import Any

import jsonschema
import jsonschema_rs
import orjson
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from flujo.serialization import safe_deserialize, safe_serialize, tagged_format_schema

from ._support import SCHEMA_TYPES, assert_same, hashables, make_registry, values

REGISTRY = make_registry()
PROPERTY_SETTINGS = settings(
    max_examples=150, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def round_trip(value: Any) -> Any:
    data = safe_serialize(value, registry=REGISTRY)
    return safe_deserialize(orjson.loads(orjson.dumps(data)), registry=REGISTRY)


@PROPERTY_SETTINGS
@given(values)
def test_round_trip_keeps_values_and_exact_types(value: Any) -> None:
    assert_same(value, round_trip(value))


@PROPERTY_SETTINGS
@given(values)
def test_encoding_is_deterministic_and_pure_json(value: Any) -> None:
    first = orjson.dumps(safe_serialize(value, registry=REGISTRY))
    assert orjson.dumps(safe_serialize(value, registry=REGISTRY)) == first
    # The bytes parse back to exactly the data that was written (JSON-native, no loss).
    assert orjson.dumps(orjson.loads(first)) == first


def _encoded(value: Any) -> bytes:
    return orjson.dumps(safe_serialize(value, registry=REGISTRY))


@PROPERTY_SETTINGS
@given(st.lists(hashables, max_size=10), st.randoms(use_true_random=False))
def test_equal_sets_encode_to_identical_bytes(elements: list[Any], rnd: random.Random) -> None:
    # Equal elements that can be told apart (True, 1 and an IntEnum member; one instant at
    # two UTC offsets or under two zone names) make sets that are == but hold different
    # objects, whichever came first: those rightly encode differently.
    assume(all(type(a) is type(b) and _encoded(a) == _encoded(b)
               for a in elements for b in elements if _equal(a, b)))
    shuffled = list(elements)
    rnd.shuffle(shuffled)
    forward: set[Any] = set()
    backward: set[Any] = set()
    for element in elements:
        forward.add(element)
    for element in shuffled:
        backward.add(element)
    assert orjson.dumps(safe_serialize(forward, registry=REGISTRY)) == orjson.dumps(
        safe_serialize(backward, registry=REGISTRY))


def _equal(a: Any, b: Any) -> bool:
    try:
        return bool(a == b)
    except Exception:  # e.g. Decimal("sNaN") refuses comparison
        return False


FORMAT_SCHEMA = tagged_format_schema(REGISTRY, types=SCHEMA_TYPES)
SLOW_VALIDATOR = jsonschema.Draft202012Validator(FORMAT_SCHEMA)


@PROPERTY_SETTINGS
@given(values)
def test_encoded_output_validates_against_the_format_schema(value: Any) -> None:
    data = orjson.loads(orjson.dumps(safe_serialize(value, registry=REGISTRY)))
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in SLOW_VALIDATOR.iter_errors(data)]
    assert errors == []
    assert jsonschema_rs.validator_for(FORMAT_SCHEMA).is_valid(data)
