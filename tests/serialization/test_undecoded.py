"""What a strict=False read keeps of an unknown tag (_undecoded): the stored data, as an
UndecodedValue, written back exactly as it was stored; refused when it holds references."""

from __future__ import annotations

import warnings
from typing import Any

import orjson
import pytest

from flujo.exceptions import SerializationError, UnknownTypeError
from flujo.serialization import (
    UndecodedValue,
    UnknownTypeWarning,
    safe_deserialize,
    safe_serialize,
)

UNKNOWN = {"$t": "nowhere:Invoice@2", "v": {"total": {"$t": "decimal@1", "v": "1.50"},
                                            "lines": [{"$t": "nowhere:Line@1", "v": [1, 2]}]}}


def _lenient(data: Any) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnknownTypeWarning)
        return safe_deserialize(data, strict=False)


def test_an_unknown_tag_is_kept_and_written_back_as_it_was_stored() -> None:
    data = {"known": {"$t": "decimal@1", "v": "2"}, "unknown": UNKNOWN, "many": [UNKNOWN] * 3}
    back = _lenient(data)
    assert type(back["unknown"]) is UndecodedValue and back["unknown"].tag == "nowhere:Invoice@2"
    assert back["unknown"] == UNKNOWN  # the stored data, not decoded
    again = safe_serialize(back)
    assert again == data
    assert orjson.dumps(again) == orjson.dumps(data)


def test_a_plain_dict_with_a_tag_key_is_still_escaped() -> None:
    data = safe_serialize({"$t": "x", "v": 1})
    assert data["$t"] == "dict@1"


def test_kept_data_holding_references_is_refused_when_written_again() -> None:
    shared = {"$t": "list@1", "v": [], "id": 1}
    data = [shared, {"$t": "nowhere:Box@1", "v": [{"$t": "ref@1", "v": 1}]}]
    back = _lenient(data)
    assert type(back[1]) is UndecodedValue
    with pytest.raises(SerializationError, match="shared references") as info:
        safe_serialize({"kept": back})
    assert info.value.path == "$.kept[1]"
    anchored = _lenient({"$t": "nowhere:Box@1", "v": [], "id": 1})
    with pytest.raises(SerializationError, match="shared references"):
        safe_serialize(anchored)


def test_a_strict_read_still_refuses_the_unknown_tag() -> None:
    with pytest.raises(UnknownTypeError):
        safe_deserialize(UNKNOWN)


def test_plain_json_shows_the_stored_data() -> None:
    assert safe_serialize(_lenient(UNKNOWN), mode="json")["$t"] == "nowhere:Invoice@2"
