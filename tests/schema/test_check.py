"""`flujo schema check`: version and migration policy over a committed schemas folder."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from flujo.cli import main
from flujo.schema import check_folder, export
from flujo.serialization import TypeRegistry

SCHEMA_V1 = {"type": "object", "properties": {"cents": {"type": "integer"}},
             "required": ["cents"], "additionalProperties": False}
SCHEMA_V2 = {"type": "object", "properties": {"amount": {"type": "string"},
                                              "currency": {"type": "string"}},
             "required": ["amount", "currency"], "additionalProperties": False}


class Money:
    def __init__(self, amount: Decimal) -> None:
        self.amount = amount


def registry_with(version: int, schema: dict[str, Any],
                  migrations: dict[int, Any] | None = None) -> TypeRegistry:
    registry = TypeRegistry()
    registry.register_custom_serializer(
        Money, lambda m: {"cents": int(m.amount * 100)}, deserializer=lambda d: d,
        schema=schema, name="money", version=version, migrations=migrations)
    return registry


def errors(findings: list[Any]) -> list[str]:
    return [f"{f.subject} {f.path} {f.reason}" for f in findings if f.severity == "error"]


@pytest.fixture
def committed(tmp_path: Path) -> Path:
    export(tmp_path, registry_with(1, SCHEMA_V1), [])
    return tmp_path


def test_unchanged_code_is_compatible(committed: Path) -> None:
    assert errors(check_folder(committed, registry_with(1, SCHEMA_V1), [])) == []


def test_breaking_change_without_a_version_bump_is_an_error(committed: Path) -> None:
    found = errors(check_folder(committed, registry_with(1, SCHEMA_V2), []))
    assert any("money $.v.cents" in e and "without a version bump" in e for e in found), found


def test_bump_without_migration_is_an_error(committed: Path) -> None:
    found = errors(check_folder(committed, registry_with(2, SCHEMA_V2), []))
    assert any("without a migration from v1" in e for e in found), found


def test_bump_with_migration_is_compatible_backward(committed: Path) -> None:
    registry = registry_with(2, SCHEMA_V2, {1: lambda v: v})
    findings = check_folder(committed, registry, [])
    assert errors(findings) == []
    assert any(f.severity == "info" and "migrated" in f.reason for f in findings)


def test_forward_mode_refuses_any_bump(committed: Path) -> None:
    registry = registry_with(2, SCHEMA_V2, {1: lambda v: v})
    found = errors(check_folder(committed, registry, [], "forward"))
    assert any("refuses v2 data" in e for e in found), found


def test_transitive_needs_a_chain_from_every_committed_version(tmp_path: Path) -> None:
    export(tmp_path, registry_with(1, SCHEMA_V1), [])
    export(tmp_path, registry_with(2, SCHEMA_V2, {1: lambda v: v}), [])
    only_last = registry_with(3, SCHEMA_V2, {2: lambda v: v})
    assert errors(check_folder(tmp_path, only_last, [], "backward")) == []
    found = errors(check_folder(tmp_path, only_last, [], "backward-transitive"))
    assert any("migration from v1" in e for e in found), found


def test_removed_type_and_version_going_back(committed: Path) -> None:
    found = errors(check_folder(committed, TypeRegistry(), []))
    assert any(e.startswith("money $ type removed") for e in found), found
    export(committed, registry_with(2, SCHEMA_V2, {1: lambda v: v}), [])
    found = errors(check_folder(committed, registry_with(1, SCHEMA_V1), []))
    assert any("version went back" in e for e in found), found


class Order(BaseModel):
    sku: str
    qty: int


def test_model_field_change_detected_through_derived_schemas(tmp_path: Path) -> None:
    registry = TypeRegistry()
    registry.register_type(Order, name="order")
    export(tmp_path, registry, [])
    narrowed = json.loads((tmp_path / "types" / "order@1.schema.json").read_text())
    generic = narrowed["$defs"]["order@1"]["properties"]["v"]["anyOf"][0]
    generic["properties"]["sku"]["type"] = ["string", "null"]
    (tmp_path / "types" / "order@1.schema.json").write_text(json.dumps(narrowed))
    # Committed: sku could be null. The code's str-only sku cannot read such old data
    # (backward), but what it writes is still readable by the old code (forward).
    found = errors(check_folder(tmp_path, registry, [], "backward"))
    assert any("order $.v.sku" in e and "type narrowed" in e for e in found), found
    assert errors(check_folder(tmp_path, registry, [], "forward")) == []
    assert errors(check_folder(tmp_path, registry, [], "full"))


def test_cli_exit_codes_and_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema", "export", "--out", str(tmp_path)]) == 0
    capsys.readouterr()
    assert main(["schema", "check", "--against", str(tmp_path), "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is True and report["mode"] == "backward"
    datetime_file = tmp_path / "types" / "datetime@1.schema.json"
    document = json.loads(datetime_file.read_text())
    document["$defs"]["datetime@1"]["properties"]["v"] = {"type": ["string", "integer"]}
    datetime_file.write_text(json.dumps(document))
    assert main(["schema", "check", "--against", str(tmp_path), "--mode", "forward"]) == 0
    capsys.readouterr()
    assert main(["schema", "check", "--against", str(tmp_path)]) == 1  # backward
    out = capsys.readouterr().out
    assert "datetime  $.v  backward: type narrowed from integer/string to string" in out


def test_cli_refuses_a_folder_without_committed_schemas(tmp_path: Path) -> None:
    assert main(["schema", "check", "--against", str(tmp_path / "missing")]) == 2
