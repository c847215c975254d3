"""Schema contracts: every schema is valid Draft 2020-12 and describes what is written."""

from __future__ import annotations

import enum
import math
from datetime import datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo, available_timezones

import jsonschema
import jsonschema_rs
import pytest
from pydantic import BaseModel, Field

from flujo.serialization import (
    FORMAT_ID,
    TAG,
    VALUE,
    TypeRegistry,
    safe_serialize,
    tagged_format_schema,
    type_schema,
)
from flujo.serialization._builtins import BUILTIN_CODECS

from ._support import (
    MONEY_SCHEMA,
    SCHEMA_TYPES,
    Color,
    Item,
    Kennel,
    Money,
    Page,
    Perm,
    make_registry,
    money_from_json,
    money_to_json,
)

Draft = jsonschema.Draft202012Validator


@pytest.fixture
def registry() -> TypeRegistry:
    return make_registry()


def assert_valid(schema: dict[str, Any], data: Any) -> None:
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in Draft(schema).iter_errors(data)]
    assert errors == []
    assert jsonschema_rs.validator_for(schema).is_valid(data)


@pytest.mark.parametrize("codec", BUILTIN_CODECS, ids=[c.name for c in BUILTIN_CODECS])
def test_every_builtin_codec_schema_is_valid_draft_2020_12(codec: Any) -> None:
    Draft.check_schema(codec.schema)


def test_format_schema_is_valid_draft_2020_12(registry: TypeRegistry) -> None:
    schema = tagged_format_schema(registry)
    Draft.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] == FORMAT_ID
    assert {c.tag for c in BUILTIN_CODECS} <= set(schema["$defs"])
    assert "money@1" in schema["$defs"]
    full = tagged_format_schema(registry, types=SCHEMA_TYPES)
    Draft.check_schema(full)
    jsonschema_rs.validator_for(full)


def test_type_schema_of_a_model_lists_its_fields(registry: TypeRegistry) -> None:
    schema = type_schema(registry, Item)
    Draft.check_schema(schema)
    tag = f"{Item.__module__}:Item@1"
    generic, typed = schema["$defs"][tag]["properties"][VALUE]["anyOf"]
    own_json, one_row = typed["anyOf"]  # the typed forms
    assert own_json["type"] == "array" and own_json["minItems"] == 1
    assert one_row["minItems"] == 2 and one_row["prefixItems"][0] == {
        "$ref": "#flujo-rows-fields"}
    body = generic
    assert set(body["properties"]) == {"name", "price", "at"}
    assert body["required"] == ["at", "name", "price"]
    assert body["additionalProperties"] is False
    assert body["properties"]["name"] == {"type": "string"}
    assert "decimal@1" in schema["$defs"] and "datetime@1" in schema["$defs"]
    assert_valid(schema, safe_serialize(
        Item(name="a", price=Decimal("1.5"), at=datetime(2024, 1, 1)), registry=registry))


def test_type_schema_carries_field_descriptions() -> None:
    class Documented(BaseModel):
        """A documented model."""

        size: int = Field(description="in bytes")

    registry = TypeRegistry()
    schema = type_schema(registry, Documented)
    tag = f"{Documented.__module__}:{Documented.__qualname__}@1"
    definition = schema["$defs"][tag]
    assert definition["description"] == "A documented model."
    generic = definition["properties"][VALUE]["anyOf"][0]
    assert generic["properties"]["size"]["description"] == "in bytes"


def test_type_schema_of_a_custom_type_is_its_declared_schema(registry: TypeRegistry) -> None:
    schema = type_schema(registry, Money)
    assert schema["$defs"]["money@1"]["properties"][VALUE] == MONEY_SCHEMA
    assert_valid(schema, safe_serialize(Money(Decimal("2.50")), registry=registry))
    assert not Draft(schema).is_valid({TAG: "money@1", VALUE: {"amount": "x"}})


def test_schema_rejects_data_it_does_not_describe(registry: TypeRegistry) -> None:
    validator = Draft(tagged_format_schema(registry, types=SCHEMA_TYPES))
    assert not validator.is_valid({TAG: "set@1"})
    assert not validator.is_valid({TAG: "datetime@1", VALUE: "yesterday"})
    assert not validator.is_valid({TAG: "money@1", VALUE: {"amount": "1"}})
    assert not validator.is_valid({TAG: "bad tag", VALUE: 1})
    assert validator.is_valid({TAG: "unknown.type@3", VALUE: {"anything": 1}})


@pytest.mark.parametrize("name", ["acme/money", "acme~money", "acme#money", "a%20b", "Ünï.côde",
                                  "name<with>brackets", "quote\"d", "back\\slash", "a?b", "a[1]"])
def test_names_that_need_escaping_in_refs(name: str) -> None:
    registry = TypeRegistry()
    registry.register_custom_serializer(Money, money_to_json, deserializer=money_from_json,
                                        schema=MONEY_SCHEMA, name=name)
    good = safe_serialize({"m": [Money(Decimal("1.00"))]}, registry=registry)
    bad = {"m": [{TAG: f"{name}@1", VALUE: {"amount": "x", "currency": "EUR"}}]}
    for schema in (tagged_format_schema(registry), type_schema(registry, Money)):
        Draft.check_schema(schema)
        data = good if schema.get("$id") else good["m"][0]
        assert_valid(schema, data)
        wrong = bad if schema.get("$id") else bad["m"][0]
        assert not Draft(schema).is_valid(wrong)
        assert not jsonschema_rs.validator_for(schema).is_valid(wrong)


def test_generic_and_local_model_names_validate_with_both_validators() -> None:
    class Local(BaseModel):
        page: Page[Item]

    registry = TypeRegistry()
    value = Local(page=Page[Item](items=[Item(name="a", price=Decimal(1),
                                              at=datetime(2024, 1, 1))], total=1))
    schema = tagged_format_schema(registry, types=[Local])
    assert_valid(schema, safe_serialize(value, registry=registry))


def test_flag_combinations_match_the_enum_schema(registry: TypeRegistry) -> None:
    schema = tagged_format_schema(registry, types=[Perm])
    for member in (Perm.R, Perm.R | Perm.W, Perm.R | Perm.W | Perm.X, Perm(0), ~Perm.R):
        assert_valid(schema, safe_serialize(member, registry=registry))


class Big(enum.Enum):
    HUGE = 2**70  # written as a tagged int
    SMALL = 1


def test_enum_schema_lists_member_values(registry: TypeRegistry) -> None:
    schema = type_schema(registry, Color)
    assert schema["$defs"][f"{Color.__module__}:Color@1"]["properties"][VALUE] == {
        "enum": ["red", "green", "blue"]}

    schema = tagged_format_schema(TypeRegistry(), types=[Big])
    for member in Big:
        assert_valid(schema, safe_serialize(member))


@pytest.mark.parametrize("text", ["1.10", "-0", "1E+3", "-1.5E-7", "NaN", "-NaN", "NaN123",
                                  "-NaN45", "sNaN", "-sNaN9", "Infinity", "-Infinity"])
def test_every_decimal_form_matches_the_decimal_schema(registry: TypeRegistry, text: str) -> None:
    assert_valid(tagged_format_schema(registry), safe_serialize(Decimal(text), registry=registry))


def test_every_zone_key_matches_the_datetime_schema(registry: TypeRegistry) -> None:
    schema = tagged_format_schema(registry)
    validator = jsonschema_rs.validator_for(schema)
    # (but the machine's own zone, which some systems list, and flujo refuses to store)
    for key in sorted(available_timezones() - {"localtime", "posixrules"}):
        data = safe_serialize(datetime(2024, 6, 1, 12, tzinfo=ZoneInfo(key)), registry=registry)
        assert validator.is_valid(data), data


@pytest.mark.parametrize("name", ["EST", "UTC+5", "", "a]b", "[x]", "with space", "tab\tname",
                                  "line\nbreak"])
def test_named_fixed_offsets_match_the_datetime_and_time_schemas(
        registry: TypeRegistry, name: str) -> None:
    tz = timezone(timedelta(hours=-5, seconds=30), name)
    schema = tagged_format_schema(registry)
    assert_valid(schema, safe_serialize(datetime(2024, 1, 1, tzinfo=tz), registry=registry))
    assert_valid(schema, safe_serialize(time(1, 2, tzinfo=tz), registry=registry))


def test_non_finite_floats_and_big_ints_in_model_fields(registry: TypeRegistry) -> None:
    class Numbers(BaseModel):
        ratio: float
        count: int

    schema = tagged_format_schema(registry, types=[Numbers])
    for ratio in (math.nan, math.inf, -0.0, 1.5):
        assert_valid(schema, safe_serialize(Numbers(ratio=ratio, count=2**80), registry=registry))
    assert not Draft(schema).is_valid(
        {TAG: f"{Numbers.__module__}:{Numbers.__qualname__}@1", VALUE: {"ratio": "x", "count": 1}})


def test_subclass_in_a_base_typed_field_validates(registry: TypeRegistry) -> None:
    schema = tagged_format_schema(registry, types=[Kennel])
    from ._support import Dog
    assert_valid(schema, safe_serialize(Kennel(resident=Dog(name="a", breed="b")),
                                        registry=registry))


def test_types_without_a_codec_are_refused(registry: TypeRegistry) -> None:
    class Nothing:
        pass

    with pytest.raises(TypeError):
        tagged_format_schema(registry, types=[Nothing])
    with pytest.raises(TypeError):
        type_schema(registry, Nothing)


def test_rows_and_their_field_lists_are_described(registry: TypeRegistry) -> None:
    from .test_rows import customer

    schema = tagged_format_schema(registry)
    rows = safe_serialize([customer(1), customer(2)], registry=registry)
    assert rows[TAG] == "rows@2"
    assert_valid(schema, rows)
    assert_valid(schema, safe_serialize([customer(1), customer(2)],
                                        registry=TypeRegistry(model_rows=False)))
    fields = rows[VALUE][1]
    # rows@3 (datetimes as flujo's text) is written beside rows@2, and described alike
    zoned = safe_serialize([customer(1), customer(2).model_copy(update={"since": datetime(
        2024, 5, 1, tzinfo=ZoneInfo("Europe/Paris"))})], registry=registry)
    assert zoned[TAG] == "rows@3"
    assert_valid(schema, zoned)
    for tag in ("rows@2", "rows@3"):
        for wrong in ([7], [{"a": ["x"], "b": ["y"]}], [{"a": {"set": ["x"]}}],
                      [{"a": {"list": "x"}}]):
            forged = {TAG: tag, VALUE: [rows[VALUE][0], wrong, []]}
            assert not Draft(schema).is_valid(forged)
            assert not jsonschema_rs.validator_for(schema).is_valid(forged)
    assert fields[4] == {"addresses": {"list": ["street", "zip"]}}
