"""Subclasses of str, int, float and bytes (_scalars), and the value classes of libraries
flujo does not depend on (_library_types): pydantic-extra-types' Color and SemanticVersion,
python-ulid's ULID, semver's Version, bson's ObjectId. Exact round trips standalone and as
model fields, pickle's state, clear refusals of malformed stored data, and the tagged-format
schema accepting what is written."""

from __future__ import annotations

import math
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest
import semver
from bson import ObjectId
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel
from pydantic_extra_types.color import Color
from pydantic_extra_types.country import CountryAlpha2
from pydantic_extra_types.payment import PaymentCardNumber
from pydantic_extra_types.semantic_version import SemanticVersion
from syrupy.assertion import SnapshotAssertion
from ulid import ULID

from flujo.exceptions import (
    DeserializationError,
    SerializationError,
    UnknownTypeError,
    UnserializableTypeError,
)
from flujo.serialization import (
    TypeRegistry,
    safe_deserialize,
    safe_serialize,
    tagged_format_schema,
)
from flujo.serialization._library_types import LibraryClass
from flujo.testing import assert_identical
from serialization._support import Blob, Cents, Label, Ratio


class Shouty(str):
    def __str__(self) -> str:  # flujo stores the str value, as pickle does, not this
        return self.upper()


class Packed(str):
    def __reduce__(self) -> Any:
        return (Packed, (str.upper(self),))


class SlottedRatio(float):
    __slots__ = ("unit",)


def _json_round_trip(value: Any, registry: TypeRegistry | None = None) -> Any:
    data = safe_serialize(value, registry=registry)
    return safe_deserialize(orjson.loads(orjson.dumps(data)), registry=registry)


def _labelled(text: str, **attributes: Any) -> Label:
    label = Label(text)
    label.__dict__.update(attributes)
    return label


SUBCLASS_VALUES = [
    Label("x"), Label(""), _labelled("tagged", source="ocr", score=0.5),
    Cents(250), Cents(-2**80), Ratio(0.1), Ratio(math.inf), Blob(b"\x00\xff"),
    Shouty("quiet"), CountryAlpha2("FR"), PaymentCardNumber("4000000000000002"),
]


@pytest.mark.parametrize("value", SUBCLASS_VALUES, ids=lambda v: type(v).__name__)
def test_builtin_subclasses_come_back_as_pickle_brings_them_back(value: Any) -> None:
    back = _json_round_trip(value)
    assert_identical(back, pickle.loads(pickle.dumps(value)))
    assert_identical(back, value)


def test_a_float_subclass_keeps_nan() -> None:
    back = _json_round_trip([Ratio(math.nan)])
    assert type(back[0]) is Ratio and math.isnan(back[0])


def test_the_builtin_value_is_stored_not_what_the_class_prints() -> None:
    data = safe_serialize(Shouty("quiet"))
    assert data["v"] == "quiet"


def test_attributes_go_in_the_state() -> None:
    data = safe_serialize(_labelled("t", source="ocr"))
    assert data["s"] == {"attrs": {"source": "ocr"}}
    assert "s" not in safe_serialize(Label("t"))


def test_subclass_values_keep_no_identity_like_strings() -> None:
    label = _labelled("t", source="ocr")
    data = safe_serialize([label, label])
    assert "ref@1" not in orjson.dumps(data).decode()
    back = safe_deserialize(data)
    assert back == [label, label] and type(back[1]) is Label


@given(st.text(), st.dictionaries(st.text(min_size=1).filter(str.isidentifier),
                                  st.integers() | st.text(), max_size=3))
@settings(max_examples=60, deadline=None)
def test_any_text_and_attributes_round_trip(text: str, attributes: dict[str, Any]) -> None:
    value = _labelled(text, **attributes)
    assert_identical(_json_round_trip(value), value)


def test_in_model_fields_they_come_back_exactly() -> None:
    class Row(BaseModel):
        label: str
        amount: int
        ratio: float

    row = Row(label="a", amount=1, ratio=0.5)
    row.label, row.amount, row.ratio = Label("b"), Cents(3), Ratio(0.25)  # no validation
    back = _json_round_trip(row)
    assert_identical(back, row)


def test_a_subclass_with_its_own_pickle_hook_is_refused() -> None:
    with pytest.raises(UnserializableTypeError, match="Packed") as info:
        safe_serialize({"x": Packed("a")})
    assert info.value.path == "$.x"
    assert "__reduce__" in str(info.value)


def test_a_float_subclass_keeps_its_filled_slots_as_pickle_does() -> None:
    filled, empty = SlottedRatio(1.5), SlottedRatio(2.5)
    filled.unit = "m"
    back = _json_round_trip([filled, empty])
    assert type(back[0]) is SlottedRatio and back[0] == 1.5 and back[0].unit == "m"
    assert not hasattr(back[1], "unit")
    assert safe_serialize(empty) == {"$t": f"{__name__}:SlottedRatio@1", "v": 2.5}


def test_a_value_stored_before_its_class_declared_slots_still_reads() -> None:
    data = {"$t": f"{__name__}:SlottedRatio@1", "v": 1.5}
    back = safe_deserialize(data)
    assert type(back) is SlottedRatio and back == 1.5
    with pytest.raises(DeserializationError, match="no attribute 'other'"):
        safe_deserialize({**data, "s": {"attrs": {"other": 1}}})


def test_plain_json_mode_gives_the_builtin_values() -> None:
    plain = safe_serialize([Label("a"), Cents(2), Ratio(math.nan), Shouty("q"),
                            Color("red"), ULID.from_str("01ARZ3NDEKTSV4RRFFQ69G5FAV"),
                            semver.Version.parse("1.2.3")], mode="json")
    assert plain == ["a", 2, "nan", "q", "red", "01ARZ3NDEKTSV4RRFFQ69G5FAV", "1.2.3"]
    assert all(type(item) in (str, int) for item in plain)


SUBCLASS_TAG = "serialization._support:Label@1"


@pytest.mark.parametrize(("v", "s", "message"), [
    (5, None, "expected a stored str, got int"),
    ({"$t": "bytes@1", "v": "AA=="}, None, "expected a stored str, got bytes"),
    ("x", {"set": []}, "must be"),
    ("x", {"attrs": 5}, "object of attributes"),
    ("x", {"attrs": {"$t": "dict@1", "v": [[1, 2]]}}, "object of attributes"),
])
def test_malformed_stored_subclass_values_are_refused(v: Any, s: Any, message: str) -> None:
    tagged: dict[str, Any] = {"$t": SUBCLASS_TAG, "v": v}
    if s is not None:
        tagged["s"] = s
    with pytest.raises(DeserializationError, match=message):
        safe_deserialize({"k": tagged})


def test_attributes_for_a_class_whose_instances_have_none_are_refused() -> None:
    tagged = {"$t": f"{__name__}:SlotlessLabel@1", "v": "x", "s": {"attrs": {"a": 1}}}
    with pytest.raises(DeserializationError, match="have no attribute 'a'"):
        safe_deserialize(tagged)


class SlotlessLabel(str):
    __slots__ = ()


LIBRARY_VALUES = [
    Color("red"), Color("#0f08"), Color((1, 2, 3)), Color([10, 20, 30, 0.25]),
    Color("hsl(270, 60%, 50%)"), Color(Color("navy")),
    semver.Version.parse("1.2.3-rc.1+build.5"), SemanticVersion.parse("0.0.1"),
    ULID.from_str("01ARZ3NDEKTSV4RRFFQ69G5FAV"), ObjectId("507f1f77bcf86cd799439011"),
]


@pytest.mark.parametrize("value", LIBRARY_VALUES, ids=lambda v: f"{type(v).__name__}-{v}")
def test_library_values_come_back_as_pickle_brings_them_back(value: Any) -> None:
    back = _json_round_trip({"k": value})["k"]
    assert_identical(back, pickle.loads(pickle.dumps(value)))
    assert_identical(back, value)


def test_a_color_keeps_the_value_it_was_made_from() -> None:
    back = _json_round_trip(Color([10, 20, 30]))
    assert back.original() == [10, 20, 30] and type(back.original()) is list
    assert back.as_rgb_tuple() == (10, 20, 30)


@given(st.tuples(st.integers(0, 255), st.integers(0, 255), st.integers(0, 255)),
       st.none() | st.floats(0, 1))
@settings(max_examples=60, deadline=None)
def test_any_color_round_trips(rgb: tuple[int, int, int], alpha: float | None) -> None:
    color = Color(rgb if alpha is None else (*rgb, alpha))
    assert_identical(_json_round_trip(color), color)


@given(st.integers(0, 2**128 - 1))
@settings(max_examples=60, deadline=None)
def test_any_ulid_round_trips(value: int) -> None:
    ulid = ULID.from_int(value)
    assert_identical(_json_round_trip(ulid), ulid)


def test_written_values_match_the_tagged_format_schema() -> None:
    registry = TypeRegistry()
    validator = jsonschema.Draft202012Validator(tagged_format_schema(registry))
    for value in [*LIBRARY_VALUES, *SUBCLASS_VALUES]:
        data = safe_serialize(value, registry=registry)
        assert validator.is_valid(data), data


@pytest.mark.parametrize(("tag", "v", "message"), [
    ("pydantic_extra_types.Color@1", "red", "expected {original, rgba}"),
    ("pydantic_extra_types.Color@1", {"original": "red", "rgba": [1.0, 0.0, 0.0]}, "rgba"),
    ("pydantic_extra_types.Color@1", {"original": "red", "rgba": [2.0, 0.0, 0.0, None]},
     "rgba"),
    ("pydantic_extra_types.Color@1", {"original": "red", "rgba": [1, 0, 0, None]}, "rgba"),
    ("pydantic_extra_types.Color@1", {"original": 5, "rgba": [1.0, 0.0, 0.0, None]},
     "original value"),
    ("semver.Version@1", "1.2", "not a valid Version"),
    ("semver.Version@1", 123, "expected text"),
    ("ulid.ULID@1", "01arz3ndektsv4rrffq69g5fav", "not a valid ULID"),
    ("ulid.ULID@1", "8ZZZZZZZZZZZZZZZZZZZZZZZZZ", "not a valid ULID"),
    ("bson.ObjectId@1", "507F1F77BCF86CD799439011", "not the text ObjectId writes"),
    ("bson.ObjectId@1", "abcdefghijkl", "not a valid ObjectId"),
])
def test_malformed_library_values_are_refused(tag: str, v: Any, message: str) -> None:
    with pytest.raises(DeserializationError, match=message) as info:
        safe_deserialize({"k": {"$t": tag, "v": v}})
    assert info.value.path == "$.k"


def test_a_class_of_the_same_name_elsewhere_is_not_taken_for_the_library_class() -> None:
    class ULID:  # not python-ulid's
        pass

    with pytest.raises(UnserializableTypeError, match="ULID"):
        safe_serialize(ULID())


def test_a_process_without_the_library_reads_an_unknown_type(
        monkeypatch: pytest.MonkeyPatch) -> None:
    data = safe_serialize([ULID.from_str("01ARZ3NDEKTSV4RRFFQ69G5FAV")])
    monkeypatch.setitem(sys.modules, "ulid", None)  # importing it now raises ImportError
    with pytest.raises(UnknownTypeError, match="install python-ulid") as info:
        safe_deserialize(data)
    assert info.value.path == "$[0]" and info.value.tag == "ulid.ULID@1"
    kept = safe_deserialize(data, strict=False)[0]
    assert "01ARZ3NDEKTSV4RRFFQ69G5FAV" in repr(kept)


def test_a_library_that_no_longer_defines_the_class_is_named() -> None:
    where = LibraryClass("json", "NoSuchClass", "nothing")
    with pytest.raises(UnknownTypeError, match="json no longer defines NoSuchClass"):
        where.load("x@1")


def test_a_registered_serializer_takes_precedence() -> None:
    registry = TypeRegistry()
    registry.register_custom_serializer(
        Color, lambda c: c.as_hex(), deserializer=Color, schema={"type": "string"},
        name="app.Color")
    data = safe_serialize(Color("red"), registry=registry)
    assert data == {"$t": "app.Color@1", "v": "#f00"}
    assert safe_deserialize(data, registry=registry) == Color("red")


def test_library_values_serialized_form(snapshot: SnapshotAssertion) -> None:
    values = [Color("red"), Color((1, 2, 3, 0.5)), semver.Version.parse("1.2.3-rc.1+b.5"),
              SemanticVersion.parse("0.0.1"), ULID.from_str("01ARZ3NDEKTSV4RRFFQ69G5FAV"),
              ObjectId("507f1f77bcf86cd799439011")]
    assert safe_serialize(values) == snapshot


class HookMixin:
    def __reduce__(self) -> Any:
        return (str, ("REDUCED",))


class StateMixin:
    def __getstate__(self) -> Any:
        return {"from_getstate": 1}


class MixedLabel(str, HookMixin):
    pass


class MixedCount(int, StateMixin):
    pass


@pytest.mark.parametrize("value", [MixedLabel("abc"), MixedCount(5)],
                         ids=["reduce", "getstate"])
def test_pickle_hooks_of_a_base_after_the_builtin_are_refused(value: Any) -> None:
    with pytest.raises(UnserializableTypeError, match=type(value).__name__) as info:
        safe_serialize({"x": value})
    assert info.value.path == "$.x"


@pytest.mark.parametrize("factory", [semver.Version, Color, ULID, ObjectId])
def test_library_classes_as_defaultdict_factories_are_refused_when_saved(factory: type) -> None:
    from collections import defaultdict

    with pytest.raises(SerializationError, match="factory"):
        safe_serialize({"d": defaultdict(factory)})


@pytest.mark.parametrize("version", [
    semver.Version(1, 2, 3, prerelease="01"), semver.Version(1, 2, 3, prerelease=""),
    semver.Version(1, 2, 3, build="x+y"), SemanticVersion(1, 2, 3, prerelease="é"),
], ids=["leading-zero", "empty", "plus-in-build", "non-ascii"])
def test_a_version_whose_text_does_not_read_back_is_refused_when_saved(version: Any) -> None:
    with pytest.raises(SerializationError, match="does not read back") as info:
        safe_serialize({"v": version})
    assert info.value.path == "$.v"


def test_a_color_made_from_a_str_subclass_comes_back() -> None:
    color = Color(Label("red"))
    back = _json_round_trip(color)
    assert type(back.original()) is Label and back == color


def test_an_unstorable_color_original_is_named_by_its_path() -> None:
    color = Color("red")
    object.__setattr__(color, "_original", (1, 2, object()))
    with pytest.raises(UnserializableTypeError) as info:
        safe_serialize({"c": color})
    assert info.value.path == "$.c.original[2]"


def test_a_null_state_is_refused() -> None:
    with pytest.raises(DeserializationError, match="must be"):
        safe_deserialize({"$t": SUBCLASS_TAG, "v": "x", "s": None})


def test_stored_secrets_are_masked_in_error_messages() -> None:
    attrs = {"$t": "dict@1", "v": [[1, {"$t": "secretstr@1", "v": "hunter2"}]]}
    with pytest.raises(DeserializationError) as info:
        safe_deserialize({"$t": SUBCLASS_TAG, "v": "x", "s": {"attrs": attrs}})
    assert "hunter2" not in str(info.value) and "**********" in str(info.value)


class Loud(int):
    def __int__(self) -> int:
        return 42


def test_plain_json_shows_the_builtin_value_and_plain_keys() -> None:
    plain = safe_serialize({"i": Loud(5), Label("k"): 1}, mode="json")
    assert plain == {"i": 5, "k": 1}
    assert all(type(key) is str for key in plain)


def test_concurrent_first_reads_of_library_values_all_succeed(tmp_path: Path) -> None:
    data = tmp_path / "values.json"
    data.write_bytes(orjson.dumps(safe_serialize(
        [Color("red"), SemanticVersion.parse("1.0.0"), ULID.from_str(
            "01ARZ3NDEKTSV4RRFFQ69G5FAV"), ObjectId("507f1f77bcf86cd799439011")])))
    code = """
import sys, threading, orjson
from flujo.serialization import safe_deserialize
data = orjson.loads(open(sys.argv[1], "rb").read())
errors = []
def read(item):
    try:
        safe_deserialize(item)
    except Exception as exc:
        errors.append(repr(exc))
threads = [threading.Thread(target=read, args=(data[k % 4],)) for k in range(40)]
for thread in threads: thread.start()
for thread in threads: thread.join()
print(len(errors), errors[:1])
"""
    src = Path(__file__).resolve().parents[2] / "src"
    for _ in range(3):
        done = subprocess.run([sys.executable, "-c", code, str(data)], capture_output=True,
                              text=True, env={"PYTHONPATH": str(src)}, timeout=120,
                              check=True)
        assert done.stdout.strip() == "0 []", done.stdout
