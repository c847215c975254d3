"""flujo.testing.FlujoSnapshotExtension: the serialized form of values pinned in snapshot files.

The snapshots of this module are in ``snapshots/test_snapshot_extension/`` (the folder this
repository keeps every snapshot in); ``pytest --snapshot-update`` rewrites them.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from pydantic import BaseModel
from syrupy.assertion import SnapshotAssertion
from syrupy.filters import props

from flujo.serialization import TypeRegistry
from flujo.testing import FlujoSnapshotExtension

REPO = Path(__file__).resolve().parents[2]


class Line(BaseModel):
    sku: str
    price: decimal.Decimal


class Invoice(BaseModel):
    number: int
    issued: dt.datetime
    lines: list[Line]
    tags: set[str]


class Rounded:
    """Stored through a float: the amount loses its trailing zero."""

    def __init__(self, amount: decimal.Decimal) -> None:
        self.amount = amount


REGISTRY = TypeRegistry()
REGISTRY.register_type(Line, name="example.line")
REGISTRY.register_type(Invoice, name="example.invoice", version=2)
REGISTRY.register_custom_serializer(
    Rounded, lambda r: float(r.amount), deserializer=lambda f: Rounded(decimal.Decimal(str(f))),
    name="example.rounded")

Pinned = FlujoSnapshotExtension.in_folder(REPO / "snapshots", registry=REGISTRY)


def invoice() -> Invoice:
    return Invoice(
        number=42,
        issued=dt.datetime(2024, 10, 27, 2, 30, fold=1, tzinfo=ZoneInfo("Europe/Madrid")),
        lines=[Line(sku="A-1", price=decimal.Decimal("9.90")),
               Line(sku="B-2", price=decimal.Decimal("1E+3"))],
        tags={"urgent", "export"},
    )


def test_invoice_format_is_pinned(snapshot: SnapshotAssertion) -> None:
    assert snapshot.use_extension(Pinned) == invoice()


def test_state_shaped_value_is_pinned(snapshot: SnapshotAssertion) -> None:
    value = {"customer": ("ACME", 7), "total": decimal.Decimal("10.90"), "invoice": invoice()}
    assert snapshot.use_extension(Pinned) == value


def test_filters_apply_to_the_serialized_form(snapshot: SnapshotAssertion) -> None:
    value = {"keep": decimal.Decimal("1.5"), "volatile": dt.datetime.now(dt.UTC)}
    assert snapshot.use_extension(Pinned)(exclude=props("volatile")) == value


def test_in_folder_stores_under_folder_and_module(tmp_path: Path) -> None:
    extension = FlujoSnapshotExtension.in_folder(tmp_path)

    class Location:
        basename = "test_module"

    assert extension.dirname(test_location=Location()) == str(tmp_path / "test_module")  # type: ignore[arg-type]
    assert issubclass(extension, FlujoSnapshotExtension)
    assert extension.registry is None and extension.check_round_trip is True
    assert Pinned.registry is REGISTRY


def test_serialized_text_is_deterministic_indented_json() -> None:
    first = Pinned().serialize(invoice())
    second = Pinned().serialize(invoice())
    assert first == second
    assert isinstance(first, str) and first.endswith("}\n")
    document = json.loads(first)
    assert document["$t"] == "example.invoice@2"
    assert list(document["v"]) == ["number", "issued", "lines", "tags"]  # flujo's order
    assert document["v"]["issued"] == {
        "$t": "datetime@1", "v": "2024-10-27T02:30:00+01:00[Europe/Madrid]"}
    assert document["v"]["tags"] == {"$t": "set@1", "v": ["export", "urgent"]}
    assert '\n  "v": {\n    "number": 42,' in first


def test_a_value_that_does_not_read_back_is_not_pinned() -> None:
    with pytest.raises(AssertionError, match=r"\$\.price\.amount: Decimal\('9\.9'\) != "
                                             r"expected Decimal\('9\.90'\)"):
        Pinned().serialize({"price": Rounded(decimal.Decimal("9.90"))})
    lenient = FlujoSnapshotExtension.in_folder(REPO / "snapshots", registry=REGISTRY,
                                               check_round_trip=False)
    text = lenient().serialize({"price": Rounded(decimal.Decimal("9.90"))})
    assert '"v": 9.9' in text
