"""inspect_type: the one description of a class that schema export and docs both read."""

from __future__ import annotations

import dataclasses
import enum
import warnings
from typing import Any, NamedTuple

from pydantic import BaseModel, ConfigDict, Field

from flujo.schema import collect
from flujo.serialization import (
    NO_DEFAULT,
    FieldInfo,
    TypeRegistry,
    inspect_type,
    type_schema,
)


class Order(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: int = Field(description="the order's number")
    notes: list[str] = Field(default_factory=list)
    status: str = "new"


@dataclasses.dataclass
class Line:
    sku: str
    qty: int = 1
    tags: set[str] = dataclasses.field(default_factory=set)
    later: Undefined | None = None  # type: ignore[name-defined]  # noqa: F821


class Point(NamedTuple):
    x: int
    y: float = 0.0


class Color(enum.Enum):
    RED = "red"


def test_models_dataclasses_and_namedtuples_are_described_field_by_field() -> None:
    assert inspect_type(Order).fields == (
        FieldInfo("id", int, True, description="the order's number"),
        FieldInfo("notes", list[str], False, default_factory=True),
        FieldInfo("status", str, False, "new"))
    assert inspect_type(Order).extra_allowed and inspect_type(Order).kind == "model"
    line = inspect_type(Line)
    assert [(f.name, f.required, f.default, f.default_factory) for f in line.fields] == [
        ("sku", True, NO_DEFAULT, False), ("qty", False, 1, False),
        ("tags", False, NO_DEFAULT, True), ("later", False, None, False)]
    assert line.fields[3].annotation == "Undefined | None"  # unresolvable: kept as written
    assert inspect_type(Point).fields == (FieldInfo("x", int, True),
                                          FieldInfo("y", float, False, 0.0))
    assert inspect_type(Color).fields == () and inspect_type(Color).kind == "enum"
    assert inspect_type(object).kind is None


def test_pydantic_v1_models_are_described_too() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from pydantic import v1

    class Legacy(v1.BaseModel):
        name: str
        size: int = 3

    info = inspect_type(Legacy)
    assert info.kind == "v1model"
    assert [(f.name, f.annotation, f.required, f.default) for f in info.fields] == [
        ("name", str, True, NO_DEFAULT), ("size", int, False, 3)]


def test_schema_and_docs_read_the_same_description() -> None:
    registry = TypeRegistry()
    for cls, name in ((Order, "order"), (Line, "line")):
        registry.register_type(cls, name=name)
        info = inspect_type(cls)
        schema = type_schema(registry, cls)
        body = schema["$defs"][f"{name}@1"]["properties"]["v"]
        generic = body["anyOf"][0] if "anyOf" in body else body
        assert list(generic["properties"]) == [f.name for f in info.fields]
        assert generic["required"] == sorted(f.name for f in info.fields if f.required)
        doc = next(d for d in collect(registry) if d.name == name)
        assert [(f.name, f.required) for f in doc.fields] == [
            (f.name, f.required) for f in info.fields]
        assert next(f for f in doc.fields if f.default == "factory")


def test_a_field_without_annotation_is_any() -> None:
    class Loose(BaseModel):
        value: Any = None

    assert inspect_type(Loose).fields[0].annotation is Any
