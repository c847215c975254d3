"""Custom types: registration forms, schema checks, isolation, dispatch, caching, threads."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest
from pydantic import BaseModel

import flujo.serialization as ser
from flujo.exceptions import (
    FlujoError,
    MissingDeserializerError,
    RegistrationError,
    SchemaValidationError,
    UnknownTypeError,
    UnserializableTypeError,
)
from flujo.serialization import (
    TAG,
    VALUE,
    TypeRegistry,
    safe_deserialize,
    safe_serialize,
    serializable,
)
from flujo.utils import register_custom_deserializer, register_custom_serializer

from ._support import MONEY_SCHEMA, Money, assert_same, money_from_json, money_to_json


class Point3:
    def __init__(self, x: int, y: int, z: int) -> None:
        self.x, self.y, self.z = x, y, z

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Point3) and vars(self) == vars(other)

    def __hash__(self) -> int:
        return hash((self.x, self.y, self.z))


class Point4(Point3):
    pass


@dataclass
class Ledger:
    records: list[Any]


def point_to_json(p: Point3) -> list[int]:
    return [p.x, p.y, p.z]


def point_from_json(v: list[int]) -> Point3:
    return Point3(*v)


@pytest.fixture
def registry() -> TypeRegistry:
    return TypeRegistry()


@pytest.fixture
def global_registry(monkeypatch: pytest.MonkeyPatch) -> TypeRegistry:
    """A fresh process-wide registry for one test; the real one is back afterwards."""
    fresh = TypeRegistry()
    monkeypatch.setattr(ser, "_GLOBAL", fresh)
    return fresh


# -- the two-argument form ---------------------------------------------------------------------
def test_two_argument_form_on_the_global_registry(global_registry: TypeRegistry) -> None:
    register_custom_serializer(Point3, point_to_json)
    assert ser.default_registry() is global_registry
    data = safe_serialize(Point3(1, 2, 3))
    assert data == {TAG: f"{__name__}:Point3@1", VALUE: [1, 2, 3]}
    with pytest.raises(MissingDeserializerError, match="register_custom_deserializer") as info:
        safe_deserialize(data)
    assert isinstance(info.value, UnknownTypeError)
    register_custom_deserializer(Point3, point_from_json)
    assert safe_deserialize(data) == Point3(1, 2, 3)


def test_deserializer_registered_after(registry: TypeRegistry) -> None:
    registry.register_custom_serializer(Point3, point_to_json)
    data = safe_serialize({"p": Point3(1, 2, 3)}, registry=registry)
    with pytest.raises(MissingDeserializerError) as info:
        safe_deserialize(data, registry=registry)
    assert info.value.path == "$.p"
    registry.register_custom_deserializer(Point3, point_from_json)
    assert safe_deserialize(data, registry=registry) == {"p": Point3(1, 2, 3)}


def test_deserializer_registered_before(registry: TypeRegistry) -> None:
    registry.register_custom_deserializer(Point3, point_from_json)
    registry.register_custom_serializer(Point3, point_to_json)
    data = safe_serialize(Point3(4, 5, 6), registry=registry)
    assert safe_deserialize(data, registry=registry) == Point3(4, 5, 6)


def test_deserializer_added_later_keeps_schema_and_name(registry: TypeRegistry) -> None:
    registry.register_custom_serializer(Money, money_to_json, schema=MONEY_SCHEMA, name="money")
    registry.register_custom_deserializer(Money, money_from_json)
    assert safe_deserialize(safe_serialize(Money(Decimal("1.50")), registry=registry),
                            registry=registry) == Money(Decimal("1.50"))
    with pytest.raises(SchemaValidationError):
        safe_serialize(Money(Decimal("1.50"), "euro"), registry=registry)


# -- the full form, schemas ---------------------------------------------------------------------
def test_full_form_with_schema_name_version(registry: TypeRegistry) -> None:
    codec = registry.register_custom_serializer(
        Money, money_to_json, deserializer=money_from_json, schema=MONEY_SCHEMA, name="money",
        version=2, migrations={1: lambda v: v})
    assert codec.tag == "money@2"
    data = safe_serialize(Money(Decimal("9.99"), "USD"), registry=registry)
    assert data == {TAG: "money@2", VALUE: {"amount": "9.99", "currency": "USD"}}
    assert safe_deserialize(data, registry=registry) == Money(Decimal("9.99"), "USD")


def _money_registry(**options: Any) -> TypeRegistry:
    registry = TypeRegistry(**options)
    registry.register_custom_serializer(Money, money_to_json, deserializer=money_from_json,
                                        schema=MONEY_SCHEMA, name="money")
    return registry


@dataclass
class Record:
    price: Money


def test_schema_violation_names_type_path_and_value() -> None:
    registry = _money_registry()
    state = {"records": [Record(Money(Decimal(i))) for i in range(3)]
             + [Record(Money(Decimal("1"), "dollars"))]}
    with pytest.raises(SchemaValidationError) as info:
        safe_serialize(state, registry=registry)
    err = info.value
    assert err.type_name == "money"
    assert err.path == "$.records[3].price"
    assert err.value == "dollars"
    message = str(err)
    assert "'money'" in message
    assert "$.records[3].price" in message
    assert "'dollars'" in message
    assert "currency" in message
    assert isinstance(err, FlujoError)
    assert isinstance(err, ValueError)


def test_schema_violation_inside_custom_output_names_output_location() -> None:
    registry = _money_registry()
    ledger = Ledger(records=[Money(Decimal("1")), Money(Decimal("2"), "usd")])
    with pytest.raises(SchemaValidationError) as info:
        safe_serialize({"ledger": ledger}, registry=registry)
    assert info.value.path == "$.ledger.records[1]"
    assert "output.currency" in str(info.value)
    assert info.value.value == "usd"


def test_validate_false_per_call_skips_the_check() -> None:
    registry = _money_registry()
    bad = Money(Decimal("1"), "dollars")
    data = safe_serialize(bad, registry=registry, validate=False)
    assert data[VALUE]["currency"] == "dollars"
    with pytest.raises(SchemaValidationError):
        safe_serialize(bad, registry=registry)


def test_validate_false_on_registry_and_on_type() -> None:
    bad = Money(Decimal("1"), "dollars")
    safe_serialize(bad, registry=_money_registry(validate=False))
    with pytest.raises(SchemaValidationError):
        safe_serialize(bad, registry=_money_registry(validate=False), validate=True)
    registry = TypeRegistry()
    registry.register_type(Money, serializer=money_to_json, deserializer=money_from_json,
                           schema=MONEY_SCHEMA, validate=False)
    safe_serialize(bad, registry=registry)


@pytest.mark.parametrize("schema", [
    {"type": "no-such-type"},
    {"properties": {"a": {"minimum": "zero"}}},
    {"required": "amount"},
    ["not", "a", "schema"],
    {"$ref": "#/$defs/missing"},  # passes the metaschema, cannot be resolved
    {"type": "string", "pattern": "a{,3}"},  # a Python regex, not one the fast validator takes
    {"type": "string", "pattern": "a\\Z"},
])
def test_invalid_schema_is_refused_at_registration(registry: TypeRegistry, schema: Any) -> None:
    with pytest.raises(RegistrationError, match="schema"):
        registry.register_custom_serializer(Money, money_to_json, schema=schema)
    with pytest.raises(UnserializableTypeError):
        safe_serialize(Money(Decimal(1)), registry=registry)


@pytest.mark.parametrize("name", ["", "a@b", "$money", "has space", 5])
def test_invalid_names_are_refused(registry: TypeRegistry, name: Any) -> None:
    with pytest.raises(RegistrationError):
        registry.register_custom_serializer(Money, money_to_json, name=name)


def test_builtin_and_native_types_guarded(registry: TypeRegistry) -> None:
    with pytest.raises(RegistrationError):
        registry.register_custom_serializer(list, lambda x: x)
    with pytest.raises(RegistrationError):
        registry.register_type(Point3)  # neither model, dataclass, enum nor NamedTuple
    registry.register_custom_serializer(Money, money_to_json, name="money")
    with pytest.raises(RegistrationError, match="already used"):
        registry.register_custom_serializer(Point3, point_to_json, name="money")


# -- isolation ---------------------------------------------------------------------------------
def test_registries_are_isolated(registry: TypeRegistry) -> None:
    other = TypeRegistry()
    registry.register_custom_serializer(Point3, point_to_json, deserializer=point_from_json,
                                        name="point")
    data = safe_serialize(Point3(1, 2, 3), registry=registry)
    with pytest.raises(UnserializableTypeError):
        safe_serialize(Point3(1, 2, 3), registry=other)
    with pytest.raises(UnserializableTypeError):
        safe_serialize(Point3(1, 2, 3))  # the global registry knows nothing about it
    with pytest.raises(UnknownTypeError):
        safe_deserialize(data, registry=other)
    with pytest.raises(UnknownTypeError):
        safe_deserialize(data)
    assert "point" not in ser.default_registry().current_versions()


def test_module_level_functions_accept_a_registry(registry: TypeRegistry) -> None:
    register_custom_serializer(Point3, point_to_json, registry=registry, name="p3")
    register_custom_deserializer(Point3, point_from_json, registry=registry)
    text = ser.serialize_to_json(Point3(1, 1, 1), registry=registry)
    assert text == '{"$t":"p3@1","v":[1,1,1]}'
    assert ser.deserialize_from_json(text, registry=registry) == Point3(1, 1, 1)
    assert "p3" not in ser.default_registry().current_versions()


# -- dispatch through the MRO -----------------------------------------------------------------
def test_registered_base_serves_subclasses(registry: TypeRegistry) -> None:
    registry.register_custom_serializer(Point3, point_to_json, deserializer=point_from_json,
                                        name="point")
    data = safe_serialize(Point4(1, 2, 3), registry=registry)
    assert data[TAG] == "point@1"
    back = safe_deserialize(data, registry=registry)
    assert type(back) is Point3  # read back by the base's deserializer, as documented


def test_registered_subclass_wins_over_base(registry: TypeRegistry) -> None:
    registry.register_custom_serializer(Point3, point_to_json, deserializer=point_from_json,
                                        name="point")
    data_before = safe_serialize(Point4(1, 2, 3), registry=registry)  # cached via the base
    registry.register_custom_serializer(Point4, lambda p: {"xyz": point_to_json(p)},
                                        deserializer=lambda v: Point4(*v["xyz"]), name="point4")
    assert data_before[TAG] == "point@1"
    data = safe_serialize(Point4(1, 2, 3), registry=registry)
    assert data == {TAG: "point4@1", VALUE: {"xyz": [1, 2, 3]}}
    assert type(safe_deserialize(data, registry=registry)) is Point4
    assert safe_serialize(Point3(1, 2, 3), registry=registry)[TAG] == "point@1"


# -- caches --------------------------------------------------------------------------------------
def test_reregistration_clears_the_encode_cache(registry: TypeRegistry) -> None:
    registry.register_custom_serializer(Point3, point_to_json, name="point")
    assert safe_serialize(Point3(1, 2, 3), registry=registry)[VALUE] == [1, 2, 3]
    registry.register_custom_serializer(Point3, lambda p: {"sum": p.x + p.y + p.z},
                                        name="point")
    assert safe_serialize(Point3(1, 2, 3), registry=registry)[VALUE] == {"sum": 6}


def test_reregistration_clears_the_decode_cache(registry: TypeRegistry) -> None:
    registry.register_custom_serializer(Point3, point_to_json, deserializer=point_from_json,
                                        name="point")
    data = safe_serialize(Point3(1, 2, 3), registry=registry)
    assert safe_deserialize(data, registry=registry) == Point3(1, 2, 3)
    registry.register_custom_deserializer(Point3, lambda v: Point3(*reversed(v)))
    assert safe_deserialize(data, registry=registry) == Point3(3, 2, 1)


def test_registration_racing_a_cache_miss_does_not_leave_a_stale_plan(
        registry: TypeRegistry) -> None:
    """An encoder that looked the codec up just before a re-registration must not cache it.

    The interleaving is forced deterministically: the lookup that fills the cache returns the
    old codec, and the re-registration happens between that lookup and the cache fill.
    """
    registry.register_custom_serializer(Point3, point_to_json, name="point")
    original = registry.codec_for_type
    raced = False

    def lookup_then_race(cls: type) -> Any:
        nonlocal raced
        codec = original(cls)
        if cls is Point3 and not raced:
            raced = True
            registry.register_custom_serializer(Point3, lambda p: "new", name="point")
        return codec

    registry.codec_for_type = lookup_then_race  # type: ignore[method-assign]
    safe_serialize(Point3(1, 2, 3), registry=registry)  # may still use the old codec once
    del registry.codec_for_type
    assert safe_serialize(Point3(1, 2, 3), registry=registry)[VALUE] == "new"


def test_registration_racing_a_decode_cache_miss_does_not_leave_a_stale_plan(
        registry: TypeRegistry) -> None:
    registry.register_custom_serializer(Point3, point_to_json, deserializer=point_from_json,
                                        name="point")
    data = safe_serialize(Point3(1, 2, 3), registry=registry)
    original = registry.codec_named
    raced = False

    def lookup_then_race(name: str, *rest: Any) -> Any:
        nonlocal raced
        codec = original(name, *rest)
        if name == "point" and not raced:
            raced = True
            registry.register_custom_deserializer(Point3, lambda v: Point3(0, 0, 0))
        return codec

    registry.codec_named = lookup_then_race  # type: ignore[method-assign]
    safe_deserialize(data, registry=registry)  # may still use the old deserializer once
    del registry.codec_named
    assert safe_deserialize(data, registry=registry) == Point3(0, 0, 0)


def test_deserializer_registered_while_the_serializer_is_being_registered(
        registry: TypeRegistry, monkeypatch: pytest.MonkeyPatch) -> None:
    """register_custom_deserializer from another thread, in the middle of the serializer's
    registration, must not be lost (it used to land in 'pending' and then be dropped)."""
    from flujo.serialization import _registry

    original = _registry.custom_codec
    others: list[threading.Thread] = []

    def build_then_race(*args: Any, **kwargs: Any) -> Any:
        codec = original(*args, **kwargs)
        if not others:
            other = threading.Thread(target=registry.register_custom_deserializer,
                                     args=(Point3, point_from_json))
            others.append(other)
            other.start()
            other.join(timeout=0.2)  # it finishes now, unless it has to wait for the lock
        return codec

    monkeypatch.setattr(_registry, "custom_codec", build_then_race)
    registry.register_custom_serializer(Point3, point_to_json, name="point")
    others[0].join()
    monkeypatch.undo()
    data = safe_serialize(Point3(1, 2, 3), registry=registry)
    assert safe_deserialize(data, registry=registry) == Point3(1, 2, 3)


def test_threads_registering_and_encoding_concurrently() -> None:
    registry = TypeRegistry()
    classes = [type(f"T{i}", (Point3,), {}) for i in range(8)]
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(classes) * 2)

    def register(i: int, cls: type) -> None:
        barrier.wait()
        for round_ in range(30):
            registry.register_custom_serializer(
                cls, lambda p, r=round_: [r, *point_to_json(p)],
                deserializer=lambda v, c=cls: c(*v[1:]), name=f"t{i}")

    def encode(cls: type) -> None:
        barrier.wait()
        for _ in range(300):
            try:
                data = safe_serialize([cls(1, 2, 3)], registry=registry)
                assert data[0][VALUE][1:] == [1, 2, 3]
                assert safe_deserialize(data, registry=registry)[0] == cls(1, 2, 3)
            except UnserializableTypeError:
                pass  # not registered yet
            except BaseException as exc:  # pragma: no cover - the failure we look for
                errors.append(exc)
                return

    threads = [threading.Thread(target=register, args=(i, c)) for i, c in enumerate(classes)]
    threads += [threading.Thread(target=encode, args=(c,)) for c in classes]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    for i, cls in enumerate(classes):  # every last registration is the one in force
        assert safe_serialize(cls(1, 2, 3), registry=registry) == {
            TAG: f"t{i}@1", VALUE: [29, 1, 2, 3]}


# -- decorator -----------------------------------------------------------------------------------
def test_serializable_decorator(registry: TypeRegistry) -> None:
    @serializable(name="order", version=2, migrations={1: lambda v: {**v, "qty": 1}},
                  registry=registry)
    class Order(BaseModel):
        sku: str
        qty: int

    assert Order.__name__ == "Order"  # the class itself is returned
    data = safe_serialize(Order(sku="a", qty=3), registry=registry)
    assert data == {TAG: "order@2", VALUE: [{"sku": "a", "qty": 3}]}  # the typed form
    assert safe_deserialize({TAG: "order@1", VALUE: {"sku": "b"}}, registry=registry) == Order(
        sku="b", qty=1)


def test_serializable_decorator_for_a_custom_class(registry: TypeRegistry) -> None:
    @serializable(name="temp", serializer=lambda t: t.c,
                  deserializer=lambda v: Temp(v),  # noqa: PLW0108 - Temp is defined below
                  schema={"type": "number"}, registry=registry)
    class Temp:
        def __init__(self, c: float) -> None:
            self.c = c

    back = safe_deserialize(safe_serialize(Temp(21.5), registry=registry), registry=registry)
    assert type(back) is Temp
    assert back.c == 21.5
    with pytest.raises(SchemaValidationError):
        safe_serialize(Temp("warm"), registry=registry)  # type: ignore[arg-type]


def test_register_type_gives_a_model_a_stable_name_and_alias(registry: TypeRegistry) -> None:
    class Customer(BaseModel):
        name: str

    registry.register_type(Customer, name="customer", aliases=["old.module:Customer"])
    assert safe_serialize(Customer(name="a"), registry=registry)[TAG] == "customer@1"
    old = {TAG: "old.module:Customer@1", VALUE: {"name": "b"}}
    assert safe_deserialize(old, registry=registry) == Customer(name="b")


class Holder:
    """A plain class whose serializer returns whatever dict it holds."""

    def __init__(self, content: dict[Any, Any]) -> None:
        self.content = content

    __hash__ = None  # type: ignore[assignment]  # mutable, compared by content

    def __eq__(self, other: object) -> bool:
        return type(other) is Holder and self.content == other.content


@pytest.mark.parametrize("content", [
    {"a": "x", "b": 1, "c": 1.5, "d": None, "e": True},
    {"$t": "set@1", "v": []},
    {1: "int key"},
    {"amount": Decimal("1.10")},
    {"nan": float("nan")},
    {"big": 2**70},
    {"nested": {"$t": "x"}},
], ids=["flat-native", "reserved-key", "int-key", "decimal", "nan", "big-int", "nested"])
def test_every_shape_of_dict_a_serializer_returns_comes_back(content: dict[Any, Any]) -> None:
    registry = TypeRegistry()
    registry.register_custom_serializer(Holder, lambda h: h.content,
                                        deserializer=Holder, name="holder")
    data = safe_serialize(Holder(content), registry=registry)
    back = safe_deserialize(data, registry=registry)
    assert type(back) is Holder
    assert_same(back.content, content)


def test_slot_setters_fall_back_to_setattr_for_a_name_without_a_descriptor() -> None:
    from flujo.serialization._typed import slot_setter

    class Plain:
        pass

    class Model(BaseModel):
        x: int

    obj = Plain()
    slot_setter(Plain, "note")(obj, 5)
    assert obj.note == 5  # type: ignore[attr-defined]
    model = Model(x=1)
    slot_setter(Model, "__pydantic_extra__")(model, None)
    assert model.__pydantic_extra__ is None


def test_a_serializer_output_past_max_depth_is_refused_as_before() -> None:
    from flujo.exceptions import NestingTooDeepError

    registry = TypeRegistry(max_depth=3)
    registry.register_custom_serializer(Holder, lambda h: h.content, deserializer=Holder,
                                        name="holder")
    shallow = [[Holder({"a": 1})]]
    assert safe_deserialize(safe_serialize(shallow, registry=registry),
                            registry=registry) == shallow
    with pytest.raises(NestingTooDeepError):
        safe_serialize([[[Holder({"a": 1})]]], registry=registry)
