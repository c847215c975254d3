"""A stored object comes back as unpickling would bring it back.

Fields, extras, ``model_fields_set``, private and plain instance attributes, dataclass state
set by ``__post_init__``; no validator, ``__init__`` or post-init hook runs when reading, and
reading does not depend on the class (as it is now) being one flujo writes in the typed form.
Each case is also checked against ``pickle`` itself: what flujo gives back is what pickle
gives back.
"""

from __future__ import annotations

import dataclasses
import pickle
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import (
    AliasChoices,
    AliasPath,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    computed_field,
    field_validator,
    model_validator,
)
from pydantic.dataclasses import dataclass as pydantic_dataclass

from flujo.exceptions import DeserializationError, SerializationError, UnserializableTypeError
from flujo.serialization import STATE, TAG, VALUE, TypeRegistry, safe_deserialize, safe_serialize
from flujo.testing import assert_identical

CALLS: list[str] = []


def round_trip(value: Any, registry: TypeRegistry | None = None) -> tuple[Any, Any]:
    registry = registry or TypeRegistry()
    data = orjson.loads(orjson.dumps(safe_serialize(value, registry=registry)))
    return data, safe_deserialize(data, registry=registry)


def assert_as_pickle(value: Any) -> Any:
    """The round trip gives what pickle gives, and what was stored."""
    _, back = round_trip(value)
    assert_identical(back, value)
    assert_identical(back, pickle.loads(pickle.dumps(value)))
    return back


# -- model validators, hooks -----------------------------------------------------------------
class After(BaseModel):
    a: int

    @model_validator(mode="after")
    def check(self) -> After:
        CALLS.append("after")
        return self


class Wrap(BaseModel):
    a: int

    @model_validator(mode="wrap")
    @classmethod
    def around(cls, data: Any, handler: Any) -> Wrap:
        CALLS.append("wrap")
        result: Wrap = handler(data)
        return result


class Before(BaseModel):
    a: int

    @model_validator(mode="before")
    @classmethod
    def first(cls, data: Any) -> Any:
        CALLS.append("before")
        return data


class Hooked(BaseModel):
    items: list[int] = []

    def model_post_init(self, context: Any) -> None:
        CALLS.append("post_init")
        self.items.append(len(self.items))  # not idempotent: doubles on a second run


@pytest.mark.parametrize("cls", [After, Wrap, Before])
def test_models_with_model_validators_round_trip_without_running_them(cls: type) -> None:
    values = (cls(a=1), [cls(a=1), cls(a=2)])
    CALLS.clear()
    for written in values:
        assert_as_pickle(written)
    assert CALLS == []


def test_model_post_init_is_not_run_again_on_read() -> None:
    value = Hooked()
    assert value.items == [0]
    CALLS.clear()
    back = assert_as_pickle(value)
    assert back.items == [0] and CALLS == []


# -- fields_set, private and plain attributes ---------------------------------------------
class Message(BaseModel):
    role: str
    content: str | None = None
    function_call: dict[str, Any] | None = None
    _cache: dict[str, int] = PrivateAttr(default_factory=dict)
    _token: str | None = PrivateAttr(default=None)


def test_model_fields_set_is_kept_so_exclude_unset_dumps_are_unchanged() -> None:
    value = Message(role="assistant", content="hi")
    back = assert_as_pickle(value)
    assert back.model_fields_set == {"role", "content"}
    assert back.model_dump(exclude_unset=True) == {"role": "assistant", "content": "hi"}


def test_an_explicitly_set_default_stays_set() -> None:
    value = Message(role="user", function_call=None)
    back = assert_as_pickle(value)
    assert back.model_dump(exclude_unset=True) == {"role": "user", "function_call": None}


def test_private_attributes_and_plain_instance_attributes_are_kept() -> None:
    value = Message(role="user")
    value._cache["n"] = 3
    value._token = "secret"
    object.__setattr__(value, "_request_id", "req_123")  # as the openai SDK does
    data, back = round_trip(value)
    assert data[STATE]["private"] == {"_cache": {"n": 3}, "_token": "secret"}
    assert data[STATE]["attrs"] == {"_request_id": "req_123"}
    assert back._cache == {"n": 3} and back._token == "secret"
    assert back._request_id == "req_123"  # type: ignore[attr-defined]
    assert_identical(back, value)


def test_a_model_with_nothing_but_its_fields_has_no_state_key() -> None:
    value = OrderV1(sku="a", qty=1, placed=datetime(2024, 1, 1, tzinfo=UTC))
    for registry in (TypeRegistry(), TypeRegistry(typed_models=False)):
        data, _ = round_trip(value, registry)
        assert set(data) == {TAG, VALUE}


def test_an_unserializable_private_attribute_is_refused_with_class_and_path() -> None:
    from flujo.exceptions import UnserializableTypeError

    value = Message(role="user")
    value._cache["lock"] = object()  # type: ignore[assignment]
    with pytest.raises(UnserializableTypeError) as caught:
        safe_serialize({"msg": value})
    assert caught.value.path == "$.msg._cache.lock"


def test_model_construct_without_a_required_field_round_trips_without_it() -> None:
    value = Message.model_construct(content="x")
    back = assert_as_pickle(value)
    assert "role" not in back.__dict__


# -- dataclasses -----------------------------------------------------------------------------
@dataclasses.dataclass
class Part:
    tool_name: str
    args: dict[str, Any]
    part_id: str = dataclasses.field(init=False)
    metadata: dict[str, Any] | None = dataclasses.field(default=None, repr=False)

    def __post_init__(self) -> None:
        CALLS.append("post_init")
        self.part_id = f"id-{self.tool_name}"
        self.otel_metadata = {"span": 7}  # not a field: what pydantic-ai's parts do


@dataclasses.dataclass(slots=True)
class Slotted:
    x: int
    y: int = 0


@dataclasses.dataclass
class Late:
    x: int
    later: int = dataclasses.field(init=False)  # never set


@pydantic_dataclass(config=ConfigDict(extra="allow"))
class LooseData:
    a: int


def test_dataclass_state_set_by_post_init_is_kept_and_post_init_is_not_run() -> None:
    value = Part("search", {"q": "x"})
    CALLS.clear()
    back = assert_as_pickle(value)
    assert back.otel_metadata == {"span": 7} and back.part_id == "id-search"
    assert CALLS == []


def test_dataclass_fields_without_a_value_stay_without_one() -> None:
    slotted = Slotted(1, 2)
    del slotted.y
    back = assert_as_pickle(slotted)
    assert not hasattr(back, "y")
    late = assert_as_pickle(Late(1))
    assert "later" not in late.__dict__


def test_pydantic_dataclass_extras_are_kept() -> None:
    back = assert_as_pickle(LooseData(a=1, b=datetime(2024, 1, 1, tzinfo=UTC)))  # type: ignore[call-arg]
    assert back.b == datetime(2024, 1, 1, tzinfo=UTC)


# -- values that bypassed validation, config transforms, serializers ------------------------
class Shouting(BaseModel):
    model_config = ConfigDict(str_to_lower=True, str_strip_whitespace=True, str_max_length=3)
    name: str
    qty: int = Field(gt=0)


class Seconds(BaseModel):
    model_config = ConfigDict(ser_json_temporal="seconds")
    at: datetime


class Serialized(BaseModel):
    price: Decimal

    @computed_field  # type: ignore[prop-decorator]
    @property
    def doubled(self) -> Decimal:
        return self.price * 2


@pytest.mark.parametrize("value", [
    Shouting.model_construct(name="  LONG NAME  ", qty=-1),
    Seconds(at=datetime(2024, 1, 1, 12)),
    Seconds(at=datetime(2024, 1, 1, 12, tzinfo=timezone(timedelta(hours=5, minutes=30)))),
    Serialized(price=Decimal("1.10")),
], ids=lambda v: type(v).__name__)
def test_config_and_serializers_change_nothing_stored(value: BaseModel) -> None:
    assert_as_pickle(value)
    assert_as_pickle([value, value.model_copy()])


class Aliased(BaseModel):
    model_config = ConfigDict(populate_by_name=True)
    login: str = Field(validation_alias=AliasChoices("username", "user"))
    username: str = ""
    city: str = Field(default="", validation_alias=AliasPath("address", "city"))
    address: dict[str, str] = {}


def test_fields_are_read_by_name_never_by_alias() -> None:
    value = Aliased(username="real", user="alias", address={"city": "Oslo"})
    # "username" feeds both login (its alias) and username, "address" both address and city
    assert value.login == "real" and value.username == "real" and value.city == "Oslo"
    assert_as_pickle(value)
    assert_as_pickle(Aliased.model_validate(value.model_dump()))  # every field set: typed


# -- the class changes between write and read -----------------------------------------------
class OrderV1(BaseModel):
    sku: str
    qty: int
    placed: datetime


def evolved_order() -> type[BaseModel]:
    """``OrderV1`` as it is a release later: validators, constraints, a model validator, a
    computed field, a defaulted field, config transforms and an alias (same name, same tag)."""

    class OrderV1(BaseModel):
        model_config = ConfigDict(str_to_upper=True, frozen=True)
        sku: str = Field(min_length=5, alias="SKU")
        qty: int = Field(gt=0)
        placed: datetime
        note: str = "none"

        @field_validator("qty")
        @classmethod
        def double(cls, qty: int) -> int:
            CALLS.append("qty")
            return qty * 2

        @model_validator(mode="after")
        def check(self) -> OrderV1:
            CALLS.append("model")
            return self

        @computed_field  # type: ignore[prop-decorator]
        @property
        def total(self) -> int:
            return self.qty

    return OrderV1


@pytest.mark.parametrize("typed_models", [True, False], ids=["typed", "generic"])
def test_state_written_before_validators_and_constraints_were_added_still_reads(
        typed_models: bool) -> None:
    placed = datetime(2024, 5, 1, 9, tzinfo=UTC)
    old = [OrderV1(sku="ab", qty=0, placed=placed), OrderV1(sku="x", qty=3, placed=placed)]
    writer = TypeRegistry(typed_models=typed_models)
    stored = orjson.loads(orjson.dumps(safe_serialize({"orders": old, "one": old[0]},
                                                      registry=writer)))
    new_cls = evolved_order()
    reader = TypeRegistry()
    reader.register_type(new_cls, name=f"{OrderV1.__module__}:OrderV1")
    CALLS.clear()
    back = safe_deserialize(stored, registry=reader)
    assert CALLS == []
    for got, was in zip([*back["orders"], back["one"]], [*old, old[0]], strict=True):
        assert type(got) is new_cls
        assert (got.sku, got.qty, got.placed, got.note) == (was.sku, was.qty, was.placed, "none")
        assert got.model_fields_set == {"sku", "qty", "placed"}


def test_a_field_whose_type_changed_is_refused_naming_it() -> None:
    stored = orjson.loads(orjson.dumps(safe_serialize(
        OrderV1(sku="a", qty=1, placed=datetime(2024, 1, 1, tzinfo=UTC)))))
    assert type(stored[VALUE]) is list  # the typed form

    class OrderV1Changed(BaseModel):
        sku: str
        qty: set[int]
        placed: datetime

    reader = TypeRegistry()
    reader.register_type(OrderV1Changed, name=f"{OrderV1.__module__}:OrderV1")
    with pytest.raises(DeserializationError,
                       match=r"qty is now typed as 'set'.*migration") as caught:
        safe_deserialize(stored, registry=reader)
    assert caught.value.path == "$.qty"


# -- the typed form and the generic form are one format ----------------------------------
class Leaf(BaseModel):
    label: str
    weight: float = 1.0


class Node(BaseModel):
    name: str
    count: int = 0
    price: Decimal = Decimal("0")
    at: datetime | None = None
    leaves: list[Leaf] = []
    index: dict[str, Leaf] = {}


_names = st.text(min_size=0, max_size=6)
_leaves = st.builds(
    lambda label, weight, set_weight: Leaf(label=label, weight=weight) if set_weight
    else Leaf(label=label),
    _names, st.floats(allow_nan=False, allow_infinity=False), st.booleans())


@st.composite
def nodes(draw: st.DrawFn) -> Node:
    values: dict[str, Any] = {"name": draw(_names)}
    if draw(st.booleans()):
        values["count"] = draw(st.integers(-(2**63), 2**63))
    if draw(st.booleans()):
        values["price"] = draw(st.decimals(allow_nan=False, allow_infinity=False, places=3))
    if draw(st.booleans()):
        values["at"] = draw(st.one_of(st.none(), st.datetimes(timezones=st.sampled_from(
            [UTC, timezone(timedelta(hours=-3))]))))
    if draw(st.booleans()):
        values["leaves"] = draw(st.lists(_leaves, max_size=3))
    if draw(st.booleans()):
        values["index"] = draw(st.dictionaries(_names, _leaves, max_size=2))
    if draw(st.booleans()):  # every field (and every leaf's) set: the typed forms
        return Node.model_validate(Node(**values).model_dump())
    return Node(**values)


@settings(max_examples=150, deadline=None)
@given(st.lists(nodes(), max_size=4))
def test_typed_and_generic_forms_read_back_identically(values: list[Node]) -> None:
    typed = orjson.loads(orjson.dumps(safe_serialize(values, registry=TypeRegistry())))
    generic = orjson.loads(orjson.dumps(safe_serialize(
        values, registry=TypeRegistry(typed_models=False))))
    reader = TypeRegistry()
    from_typed = safe_deserialize(typed, registry=reader)
    from_generic = safe_deserialize(generic, registry=reader)
    assert_identical(from_typed, values)
    assert_identical(from_generic, values)
    assert_identical(from_typed, pickle.loads(pickle.dumps(values)))


# -- hostile states ---------------------------------------------------------------------------
_MESSAGE_TAG = f"{Message.__module__}:Message@1"


@pytest.mark.parametrize(("state", "message"), [
    ([], "an object state must be an object"),
    ({}, "an object state must be an object"),
    ({"unknown": 1}, "an object state must be an object"),
    ({"set": "role"}, "state 'set' must be a list of names"),
    ({"missing": [1]}, "state 'missing' must be a list of names"),
    ({"private": [1, 2]}, "state 'private' must be an object of attributes"),
    ({"attrs": {"$t": "dict@1", "v": [[1, 2]]}}, "state 'attrs' must be an object of attributes"),
    ({"attrs": {"$t": "nowhere:Nothing@1", "v": 1}}, "unknown type tag"),
], ids=repr)
def test_a_damaged_state_is_refused_with_a_typed_error(state: Any, message: str) -> None:
    with pytest.raises(DeserializationError, match=message) as caught:
        safe_deserialize({"m": {TAG: _MESSAGE_TAG, VALUE: {"role": "user"}, STATE: state}})
    assert caught.value.path.startswith("$.m")


@pytest.mark.parametrize("data", [
    {TAG: "datetime@1", VALUE: "2024-01-01T00:00:00", STATE: {"set": []}},
    {TAG: _MESSAGE_TAG, VALUE: [{"role": "user"}], STATE: {"set": []}},
    {TAG: _MESSAGE_TAG, VALUE: {"role": "user"}, "x": {}},
], ids=["builtin", "typed-form", "other-key"])
def test_a_state_where_none_belongs_is_refused(data: dict[str, Any]) -> None:
    with pytest.raises(DeserializationError):
        safe_deserialize(data)


def test_a_dataclass_has_no_private_attributes() -> None:
    tag = f"{Late.__module__}:Late@1"
    with pytest.raises(DeserializationError, match="only pydantic models have private"):
        safe_deserialize({TAG: tag, VALUE: {"x": 1}, STATE: {"private": {}}})


# -- classes with pickle hooks of their own ---------------------------------------------------
@dataclasses.dataclass
class DropsCache:
    a: int
    cache: dict[str, int] = dataclasses.field(default_factory=dict)

    def __getstate__(self) -> dict[str, Any]:
        return {"a": self.a}  # pickle would come back without the cache

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state, cache={"rebuilt": 1})


class Reduces(BaseModel):
    a: int

    def __reduce__(self) -> Any:
        return (Reduces, (), {"a": 0})


class HoldsReduces(BaseModel):
    inner: Reduces


@dataclasses.dataclass(frozen=True, slots=True)
class FrozenSlots:  # the dataclasses module's own pickle hooks: stored as usual
    a: int


@pytest.mark.parametrize(("value", "owner", "hook", "path"), [
    (DropsCache(1), "DropsCache", "__getstate__", "$[0]"),
    (Reduces(a=1), "Reduces", "__reduce__", "$[0]"),
    (HoldsReduces(inner=Reduces(a=1)), "Reduces", "__reduce__", "$[0].inner"),
])
def test_a_class_with_pickle_hooks_of_its_own_is_refused_when_saved(
        value: Any, owner: str, hook: str, path: str) -> None:
    with pytest.raises(UnserializableTypeError, match=rf"{owner} defines its own {hook}") as info:
        safe_serialize([value], registry=TypeRegistry())
    assert info.value.path == path


def test_a_class_with_pickle_hooks_stores_through_its_registered_serializer() -> None:
    registry = TypeRegistry()
    registry.register_custom_serializer(DropsCache, lambda d: {"a": d.a},
                                        deserializer=lambda v: DropsCache(v["a"]))
    assert safe_deserialize(safe_serialize(DropsCache(2), registry=registry),
                            registry=registry) == DropsCache(2)
    assert_as_pickle(FrozenSlots(3))


class _Slotted(BaseModel):
    a: int


@pytest.mark.parametrize("slot", ["__pydantic_extra__", "__pydantic_private__",
                                  "__pydantic_fields_set__"])
@pytest.mark.parametrize("many", [False, True])
def test_an_instance_missing_a_pydantic_slot_is_refused_naming_class_and_path(
        slot: str, many: bool) -> None:
    """pickle fails on such an instance too; flujo refuses it with a typed error (it raised
    a bare AttributeError, or would have stored it as if the slot were empty)."""
    broken = _Slotted(a=1)
    object.__delattr__(broken, slot)
    with pytest.raises(AttributeError):
        pickle.dumps(broken)
    value = {"items": [_Slotted(a=0), broken] if many else broken}
    with pytest.raises(SerializationError, match=f"_Slotted.*no {slot}") as caught:
        safe_serialize(value)
    assert caught.value.path == ("$.items[1]" if many else "$.items")
