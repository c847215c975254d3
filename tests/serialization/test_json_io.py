"""serialize_to_json / deserialize_from_json."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings

from flujo.exceptions import SerializationError, UnserializableTypeError
from flujo.serialization import (
    deserialize_from_json,
    safe_deserialize,
    safe_serialize,
    serialize_to_json,
)

from ._support import Dog, Kennel, Money, assert_same, make_registry, values

REGISTRY = make_registry()


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(values)
def test_json_text_round_trip(value: Any) -> None:
    text = serialize_to_json(value, registry=REGISTRY)
    assert isinstance(text, str)
    assert_same(value, deserialize_from_json(text, registry=REGISTRY))
    assert_same(value, deserialize_from_json(text.encode("utf-8"), registry=REGISTRY))


def test_json_text_is_compact_orjson_of_the_tagged_data() -> None:
    value = {"k": Kennel(resident=Dog(name="a", breed="b")), "m": Money(Decimal("1.00")),
             "t": datetime(2024, 1, 1, tzinfo=UTC), "n": math.nan}
    text = serialize_to_json(value, registry=REGISTRY)
    assert text == orjson.dumps(safe_serialize(value, registry=REGISTRY)).decode()
    assert_same(value, deserialize_from_json(text, registry=REGISTRY))


def test_unicode_text_survives() -> None:
    value = {"emoji": "\U0001f600", "cjk": "流れ", "nul": "\x00", "$t": "é"}
    assert deserialize_from_json(serialize_to_json(value, registry=REGISTRY),
                                 registry=REGISTRY) == value


def test_json_io_failures_are_serialization_errors() -> None:
    with pytest.raises(UnserializableTypeError):
        serialize_to_json(object(), registry=REGISTRY)
    with pytest.raises(SerializationError, match="not valid JSON"):
        deserialize_from_json("{", registry=REGISTRY)
    with pytest.raises(SerializationError, match="not valid JSON"):
        deserialize_from_json(b"\xff", registry=REGISTRY)


def test_a_lone_surrogate_is_refused_naming_the_path_of_its_string() -> None:
    from pydantic import BaseModel

    class Note(BaseModel):
        lines: list[str]
        extra: dict[str, str] = {}

    cases = {
        "$.notes[0].lines[1]": {"notes": [Note(lines=["ok", "a\ud800b"])]},
        "$.notes[0].extra['k\\udc00']": {"notes": [Note(lines=[], extra={"k\udc00": "v"})]},
        "$.t[1]": {"t": ("x", "\udfff")},
    }
    for path, value in cases.items():
        with pytest.raises(SerializationError, match="lone surrogate") as info:
            serialize_to_json(value)
        assert info.value.path == path


def test_a_lone_surrogate_in_a_key_is_never_changed_by_the_typed_form() -> None:
    from pydantic import BaseModel

    class Keyed(BaseModel):
        by_name: dict[str, int]

    # pydantic-core would write the key as '\ufffd\ufffd\ufffd': such values go generic
    values = [Keyed(by_name={"k\udc00": 1}), Keyed(by_name={"é": 2})]
    data = safe_serialize(values)
    assert safe_deserialize(data) == values
    with pytest.raises(SerializationError, match="lone surrogate") as info:
        serialize_to_json(values)
    assert info.value.path == "$[0].by_name['k\\udc00']"
