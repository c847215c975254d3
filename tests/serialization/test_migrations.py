"""Versions and migrations of encoded forms."""

from __future__ import annotations

import copy
import math
from decimal import Decimal
from typing import Any

import pytest
from pydantic import BaseModel

from flujo.exceptions import (
    DeserializationError,
    FutureVersionError,
    MigrationError,
    MissingMigrationError,
    RegistrationError,
)
from flujo.serialization import (
    TAG,
    VALUE,
    TypeRegistry,
    encode_with_manifest,
    register_migration,
    safe_deserialize,
    safe_serialize,
)


class Price:
    """Version 3 stores {"amount": "<decimal>", "currency": "EUR"}."""

    def __init__(self, amount: Decimal, currency: str) -> None:
        self.amount, self.currency = amount, currency

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Price) and (self.amount, self.currency) == (
            other.amount, other.currency)

    def __hash__(self) -> int:
        return hash((self.amount, self.currency))


def v1_to_v2(v: Any) -> Any:
    # v1: an int of cents -> v2: {"cents": int, "currency": "EUR"}
    return {"cents": v, "currency": "EUR"}


def v2_to_v3(v: Any) -> Any:
    # v2 -> v3: cents become a decimal string; mutates its input on purpose
    cents = v.pop("cents")
    v["amount"] = str(Decimal(cents) / 100)
    return v


def price_registry(**migrations: Any) -> TypeRegistry:
    registry = TypeRegistry()
    registry.register_custom_serializer(
        Price, lambda p: {"amount": str(p.amount), "currency": p.currency},
        deserializer=lambda v: Price(Decimal(v["amount"]), v["currency"]),
        name="price", version=3, migrations={1: v1_to_v2, 2: v2_to_v3})
    return registry


def test_v1_data_is_read_through_every_step() -> None:
    registry = price_registry()
    assert safe_deserialize({TAG: "price@1", VALUE: 1999}, registry=registry) == Price(
        Decimal("19.99"), "EUR")
    assert safe_deserialize({TAG: "price@2", VALUE: {"cents": 5, "currency": "USD"}},
                            registry=registry) == Price(Decimal("0.05"), "USD")
    current = safe_serialize(Price(Decimal("1.5"), "EUR"), registry=registry)
    assert current[TAG] == "price@3"
    assert safe_deserialize(current, registry=registry) == Price(Decimal("1.5"), "EUR")


def test_migrations_do_not_mutate_the_callers_data() -> None:
    registry = price_registry()
    data = {"prices": [{TAG: "price@2", VALUE: {"cents": 250, "currency": "EUR"}},
                       {TAG: "price@1", VALUE: 100}]}
    before = copy.deepcopy(data)
    safe_deserialize(data, registry=registry)
    assert data == before
    safe_deserialize(data, registry=registry)  # cached plan: still not mutated
    assert data == before


def test_missing_step_raises_missing_migration_error() -> None:
    registry = TypeRegistry()
    registry.register_custom_serializer(
        Price, lambda p: {"amount": str(p.amount), "currency": p.currency},
        deserializer=lambda v: Price(Decimal(v["amount"]), v["currency"]),
        name="price", version=3, migrations={2: v2_to_v3})
    with pytest.raises(MissingMigrationError, match="v1 to v2") as info:
        safe_deserialize({"p": {TAG: "price@1", VALUE: 100}}, registry=registry)
    assert info.value.path == "$.p"
    assert isinstance(info.value, MigrationError)
    assert isinstance(info.value, DeserializationError)
    # v2 data still reads; registering the step later fixes v1
    assert safe_deserialize({TAG: "price@2", VALUE: {"cents": 1, "currency": "EUR"}},
                            registry=registry) == Price(Decimal("0.01"), "EUR")
    registry.register_migration("price", 1, v1_to_v2)
    assert safe_deserialize({TAG: "price@1", VALUE: 100}, registry=registry) == Price(
        Decimal("1"), "EUR")


def test_newer_data_raises_future_version_error() -> None:
    registry = price_registry()
    with pytest.raises(FutureVersionError, match="newer version"):
        safe_deserialize({TAG: "price@4", VALUE: {}}, registry=registry)


def test_failing_migration_is_a_migration_error() -> None:
    registry = TypeRegistry()
    registry.register_custom_serializer(
        Price, lambda p: str(p.amount), deserializer=lambda v: Price(Decimal(v), "EUR"),
        name="price", version=2, migrations={1: lambda v: v["missing"]})
    with pytest.raises(MigrationError, match="from v1 to v2") as info:
        safe_deserialize({TAG: "price@1", VALUE: {}}, registry=registry)
    assert isinstance(info.value.__cause__, KeyError)


def test_model_migration_and_global_register_migration() -> None:
    registry = TypeRegistry()

    class Customer(BaseModel):
        name: str
        email: str

    registry.register_type(Customer, name="customer", version=2)
    with pytest.raises(MissingMigrationError):
        safe_deserialize({TAG: "customer@1", VALUE: {"name": "a"}}, registry=registry)
    register_migration("customer", 1, lambda v: {**v, "email": ""}, registry=registry)
    assert safe_deserialize({TAG: "customer@1", VALUE: {"name": "a"}},
                            registry=registry) == Customer(name="a", email="")


@pytest.mark.parametrize("start", [0, 3, "1", None])
def test_bad_migration_steps_are_refused(start: Any) -> None:
    registry = TypeRegistry()
    with pytest.raises(RegistrationError):
        registry.register_custom_serializer(Price, str, name="price", version=3,
                                            migrations={start: lambda v: v})


def test_migration_for_an_unregistered_type_is_refused() -> None:
    with pytest.raises(RegistrationError):
        TypeRegistry().register_migration("nothing", 1, lambda v: v)
    with pytest.raises(RegistrationError):
        TypeRegistry().register_migration("datetime", 1, lambda v: v)


def test_manifest_lists_versions_of_the_tags_used() -> None:
    registry = price_registry()
    data, manifest = encode_with_manifest({"p": Price(Decimal(1), "EUR"), "s": {1}},
                                          registry=registry)
    assert manifest == {"price": 3, "set": 1}
    assert safe_deserialize(data, registry=registry)["p"] == Price(Decimal(1), "EUR")


def test_migration_input_is_an_exact_copy_of_the_stored_value() -> None:
    """The copy that protects the caller's data must not change it: a float NaN stayed NaN
    only without migrations (a JSON round trip turned it into null) and an int beyond 64
    bits made the copy itself fail."""
    seen: list[Any] = []

    def record(v: Any) -> Any:
        seen.append(v)
        return v

    registry = TypeRegistry()
    registry.register_custom_serializer(Price, lambda p: p.amount, deserializer=lambda v: v,
                                        name="price", version=2, migrations={1: record})
    stored = {"nan": float("nan"), "big": 2**70, "nested": [1.5, {"k": None}]}
    back = safe_deserialize({TAG: "price@1", VALUE: stored}, registry=registry)
    assert seen[0] is not stored
    assert math.isnan(seen[0]["nan"])
    assert seen[0]["big"] == 2**70
    assert seen[0]["nested"] == [1.5, {"k": None}]
    assert math.isnan(back["nan"])
    assert back["big"] == 2**70
