"""WorkflowState, backend_from_uri, the committed envelope schema and the base contract."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from pydantic import BaseModel, ValidationError

import flujo.state
from flujo.state import (
    Envelope,
    FileBackend,
    InMemoryBackend,
    PostgresBackend,
    SQLiteBackend,
    StateBackend,
    WorkflowState,
    backend_from_uri,
    envelope_json_schema,
    envelope_schema_text,
)

REPO = Path(__file__).resolve().parents[2]


class Item(BaseModel):
    name: str


def test_workflow_state_defaults_and_earlier_fields() -> None:
    state = WorkflowState.model_validate(
        {
            "run_id": "r",
            "created_at": "2024-01-01T00:00:00",
            "updated_at": datetime(2024, 1, 1, 5, tzinfo=timezone(timedelta(hours=5))),
            "error_message": "boom",
            "pipeline_id": "legacy-id",
        }
    )
    assert state.status == "running" and state.current_step_index == 0
    assert state.created_at == datetime(2024, 1, 1, tzinfo=UTC)
    assert state.updated_at == datetime(2024, 1, 1, tzinfo=UTC)
    assert state.error == "boom"
    assert state.to_dict()["pipeline_id"] == "legacy-id"
    with pytest.raises(ValidationError):
        WorkflowState(run_id="r", status="exploded")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="NUL"):
        WorkflowState(run_id="r", pipeline_name="a\x00b")


def test_to_dict_keeps_nested_models() -> None:
    state = WorkflowState(run_id="r", pipeline_context={"item": Item(name="x")})
    assert type(state.to_dict()["pipeline_context"]["item"]) is Item
    assert set(state.to_dict()) >= {"run_id", "status", "pipeline_context", "error"}


@pytest.mark.parametrize(
    ("uri", "kind", "where"),
    [
        ("memory://", InMemoryBackend, None),
        ("file://{tmp}/files", FileBackend, "{tmp}/files"),
        ("sqlite:///{tmp}/state.db", SQLiteBackend, "{tmp}/state.db"),
    ],
)
def test_backend_from_uri(
    tmp_path: Path, uri: str, kind: type[StateBackend], where: str | None
) -> None:
    backend = backend_from_uri(uri.format(tmp=tmp_path), compression="zlib")
    assert type(backend) is kind
    if where is not None:
        assert backend.path == Path(where.format(tmp=tmp_path))  # type: ignore[attr-defined]
    assert backend.codec.codec == "json+zlib"  # type: ignore[attr-defined]


def test_backend_from_uri_sqlite_relative_and_postgres(monkeypatch: pytest.MonkeyPatch) -> None:
    backend = backend_from_uri("sqlite:///state.db")
    assert isinstance(backend, SQLiteBackend) and backend.path == Path("state.db")
    pg = backend_from_uri("postgresql://u@h:5/db", table="runs")
    assert isinstance(pg, PostgresBackend) and pg.dsn == "postgresql://u@h:5/db"
    assert pg.table == "runs"
    assert isinstance(backend_from_uri("postgres://u@h/db"), PostgresBackend)


@pytest.mark.parametrize(
    "uri", ["state.db", "memory://x", "file://", "sqlite://rel.db", "redis://h", 3]
)
def test_backend_from_uri_refuses(uri: Any) -> None:
    with pytest.raises(ValueError):
        backend_from_uri(uri)


def test_committed_envelope_schema_is_current() -> None:
    committed = REPO / "schemas" / f"envelope.v{flujo.state.ENVELOPE_VERSION}.schema.json"
    assert committed.read_text(encoding="utf-8") == envelope_schema_text(), (
        "schemas/envelope schema is out of date: run `flujo schema export` and commit it"
    )


async def test_stored_envelopes_match_the_schema(tmp_path: Path) -> None:
    validator = jsonschema.Draft202012Validator(envelope_json_schema())
    backend = FileBackend(tmp_path, compression="zlib")
    await backend.save_state("r", WorkflowState(run_id="r", pipeline_context={"s": {1}}))
    validator.validate(json.loads((tmp_path / "r.json").read_bytes()))
    plain = FileBackend(tmp_path / "plain")
    await plain.save_state("r", WorkflowState(run_id="r"))
    validator.validate(json.loads((tmp_path / "plain" / "r.json").read_bytes()))
    bad = json.loads((tmp_path / "r.json").read_bytes()) | {"envelope_version": 3}
    with pytest.raises(jsonschema.ValidationError):
        validator.validate(bad)
    assert Envelope.model_json_schema()["title"] == "FlujoStateEnvelope"


def test_public_api_is_curated() -> None:
    # Ordering is enforced by ruff (RUF022); here: no duplicates, and every name exists.
    assert len(set(flujo.state.__all__)) == len(flujo.state.__all__)
    for name in flujo.state.__all__:
        assert hasattr(flujo.state, name), name


class EarlierStyleBackend(StateBackend):
    """A custom backend written for earlier flujo: only the three original methods."""

    def __init__(self) -> None:
        self.data: dict[str, dict[str, Any]] = {}

    async def save_state(self, run_id: str, state: Any, *, expected_revision: Any = None) -> None:
        self.data[run_id] = dict(state)

    async def load_state(self, run_id: str) -> dict[str, Any] | None:
        return self.data.get(run_id)

    async def delete_state(self, run_id: str) -> None:
        self.data.pop(run_id, None)


async def test_earlier_custom_backends_keep_working() -> None:
    backend = EarlierStyleBackend()
    async with backend:
        await backend.save_state("r", {"run_id": "r", "status": "running"})
        assert await backend.load_state("r") == {"run_id": "r", "status": "running"}
        await backend.delete_state("r")
        for call in (
            backend.list_runs(),
            backend.list_run_ids(),
            backend.load_record("r"),
            backend.read_envelope("r"),
        ):
            with pytest.raises(NotImplementedError):
                await call
        with pytest.raises(NotImplementedError):
            backend.claim("r")
        await backend.shutdown()
