"""pydantic.v1 models (_pydantic_v1) come back as pickle brings them back: __dict__ (fields
and extras), __fields_set__, private attributes, fields without a value; no validator runs.
pydantic.v1's SecretStr/SecretBytes round-trip and are masked wherever flujo shows data."""

from __future__ import annotations

import pickle
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flujo.exceptions import DeserializationError, UnserializableTypeError
from flujo.serialization import (
    TypeRegistry,
    mask_secrets,
    safe_deserialize,
    safe_serialize,
    tagged_format_schema,
)
from flujo.testing import assert_identical

with warnings.catch_warnings():  # pydantic.v1 warns on Python 3.14+
    warnings.simplefilter("ignore")
    from pydantic.v1 import BaseModel, Field, PrivateAttr, SecretBytes, SecretStr, validator


class Address(BaseModel):
    city: str
    zip: str | None = None


class Person(BaseModel):
    name: str
    age: int = 0
    address: Address | None = None
    friends: list[Address] = Field(default_factory=list)
    token: SecretStr = SecretStr("t0ken")
    key: SecretBytes = SecretBytes(b"\x00k")
    _session: str = PrivateAttr("none")

    @validator("name")
    def shout(cls, value: str) -> str:
        return value.upper()


class Loose(BaseModel):
    a: int

    class Config:
        extra = "allow"


class Strict(BaseModel):
    a: int

    class Config:
        extra = "forbid"


class Pickled(BaseModel):
    a: int

    def __setstate__(self, state: Any) -> None:
        super().__setstate__(state)


def _round_trip(value: Any, registry: TypeRegistry | None = None) -> Any:
    data = safe_serialize(value, registry=registry)
    return safe_deserialize(orjson.loads(orjson.dumps(data)), registry=registry)


def _people() -> dict[str, Any]:
    person = Person(name="ada", address={"city": "London"}, friends=[{"city": "Paris"}])
    person._session = "s-1"
    partial = Person.construct(age=3)  # no name: a field without a value
    renamed = Person(name="bob")
    renamed.__dict__["name"] = "bob"  # set past the validator
    return {"full": person, "partial": partial, "renamed": renamed,
            "extra": Loose(a=1, b=[1, 2], c={"d": None}), "strict": Strict(a=2),
            "secret": SecretStr("s3cret"), "secret_bytes": SecretBytes(b"\xff")}


@pytest.mark.parametrize("case", sorted(_people()))
def test_v1_values_come_back_as_pickle_brings_them_back(case: str) -> None:
    value = _people()[case]
    back = _round_trip(value)
    expected = pickle.loads(pickle.dumps(value))
    if isinstance(value, (SecretStr, SecretBytes)):
        assert type(back) is type(value)
        assert back.get_secret_value() == value.get_secret_value()
        return
    assert_identical(back, expected)
    assert back.__fields_set__ == value.__fields_set__
    assert back.__dict__ == value.__dict__ and list(back.__dict__) == list(value.__dict__)


def test_no_validator_runs_when_reading() -> None:
    person = Person(name="ada")
    person.__dict__["name"] = "lower"
    assert _round_trip(person).name == "lower"


def test_private_attributes_and_fields_set_are_kept() -> None:
    person = Person(name="ada")
    person._session = "s-9"
    data = safe_serialize(person)
    assert data["s"]["set"] == ["name"] and data["s"]["private"] == {"_session": "s-9"}
    back = _round_trip(person)
    assert back._session == "s-9" and back.__fields_set__ == {"name"}


def test_a_model_constructed_without_a_required_field_keeps_it_missing() -> None:
    back = _round_trip(Person.construct(age=3))
    assert "name" not in back.__dict__ and back.age == 3


def test_shared_v1_models_stay_shared_and_cycles_round_trip() -> None:
    person = Person(name="x", address=Address(city="Rome"))
    person.friends.append(person.address)  # v1 copies models it validates: shared by code
    back = _round_trip(person)
    assert back.address is back.friends[0]
    loose = Loose(a=1)
    loose.__dict__["me"] = loose
    again = _round_trip(loose)
    assert again.__dict__["me"] is again


def test_a_field_the_class_gained_since_gets_its_default() -> None:
    back = safe_deserialize({"$t": f"{__name__}:Person@1", "v": {"name": "ada"}})
    assert back.age == 0 and back.friends == [] and back._session == "none"
    assert back.__fields_set__ == {"name"}


@pytest.mark.parametrize(("v", "s", "message"), [
    ({"age": 1}, None, "lacks required field"),
    ({"a": 1, "b": 2}, None, "no longer exist"),
    ({"a": 1}, {"attrs": {"a": 2}}, "besides its fields"),
    ({"a": 1}, {"private": {"_nope": 1}}, "does not declare"),
    ([1], None, "expected an object of fields"),
])
def test_malformed_stored_v1_models_are_refused(v: Any, s: Any, message: str) -> None:
    name = "Strict" if "a" in str(v) else "Person"
    tagged: dict[str, Any] = {"$t": f"{__name__}:{name}@1", "v": v}
    if s is not None:
        tagged["s"] = s
    with pytest.raises(DeserializationError, match=message) as info:
        safe_deserialize({"k": tagged})
    assert info.value.path.startswith("$.k")


def test_a_v1_model_with_its_own_pickle_hook_is_refused() -> None:
    with pytest.raises(UnserializableTypeError, match="__setstate__") as info:
        safe_serialize({"m": Pickled(a=1)})
    assert info.value.path == "$.m"


def test_an_unstorable_private_value_is_refused_naming_its_path() -> None:
    person = Person(name="x")
    person._session = object()  # type: ignore[assignment]
    with pytest.raises(UnserializableTypeError) as info:
        safe_serialize({"p": person})
    assert info.value.path == "$.p._session"


def test_secrets_are_masked_wherever_flujo_shows_data() -> None:
    person = Person(name="ada")
    plain = safe_serialize(person, mode="json")
    assert plain["token"] == "**********" and plain["key"] == "**********"
    shown = orjson.dumps(mask_secrets(safe_serialize(person))).decode()
    assert "t0ken" not in shown and "**********" in shown


def test_written_v1_models_match_their_schema() -> None:
    registry = TypeRegistry()
    validator_ = jsonschema.Draft202012Validator(
        tagged_format_schema(registry, types=[Person, Loose, Strict]))
    for case, value in _people().items():
        if case == "partial":  # a required field without a value: as for v2 models
            continue
        assert validator_.is_valid(safe_serialize(value, registry=registry)), case


def test_flujo_does_not_import_pydantic_v1() -> None:
    src = Path(__file__).resolve().parents[2] / "src"
    code = ("import sys, flujo, flujo.serialization as s; s.safe_deserialize(s.safe_serialize("
            "{'a': [1]})); print('pydantic.v1' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={"PYTHONPATH": str(src)}, timeout=120, check=True)
    assert done.stdout.strip() == "False"


def test_construct_with_names_that_are_no_fields_comes_back_as_pickle_brings_it_back() -> None:
    value = Strict.construct(a=1, zzz=2, **{"$t": 3})
    back = _round_trip(value)
    assert_identical(back, pickle.loads(pickle.dumps(value)))
    assert list(back.__dict__) == ["a", "zzz", "$t"]
    assert back.__fields_set__ == {"a", "zzz", "$t"}


@given(name=st.text(), age=st.integers(), cities=st.lists(st.text(), max_size=4),
       # Extras named like pickle's own hooks (__getstate__: None) break pickle itself, the
       # reference this test compares with.
       extra=st.dictionaries(st.text(min_size=1).filter(
           lambda k: k not in Loose.__fields__ and not (k.startswith("__") and k.endswith("__"))),
           st.integers() | st.text() | st.none(), max_size=3),
       session=st.text())
@settings(max_examples=80, deadline=None)
def test_any_v1_model_comes_back_as_pickle_brings_it_back(
        name: str, age: int, cities: list[str], extra: dict[str, Any], session: str) -> None:
    person = Person(name=name, age=age, friends=[{"city": c} for c in cities])
    person._session = session
    loose = Loose(a=age, **extra)
    for value in (person, loose):
        assert_identical(_round_trip(value), pickle.loads(pickle.dumps(value)))
