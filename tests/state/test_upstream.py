"""Stores written by upstream flujo 0.4.35 (tests/golden/upstream, written by its own backends
with write_fixtures.py): read in place, resumed, migrated, nothing lost."""

from __future__ import annotations

import shutil
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from flujo import Flujo, PipelineContext, Step
from flujo.cli._state import add_state_commands
from flujo.exceptions import CorruptStateError
from flujo.state import FileBackend, SQLiteBackend, migrate_all

FIXTURES = Path(__file__).parent.parent / "golden" / "upstream"
RUN_IDS = ["up-completed", "up-failed", "up-paused", "up-running"]


@pytest.fixture
def upstream_db(tmp_path: Path) -> Path:
    copy = tmp_path / "workflow_state.db"
    shutil.copyfile(FIXTURES / "workflow_state.db", copy)
    return copy


@pytest.fixture
def upstream_files(tmp_path: Path) -> Path:
    return Path(shutil.copytree(FIXTURES / "files", tmp_path / "files"))


def upstream_rows(path: Path) -> list[tuple[Any, ...]]:
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT * FROM workflow_state ORDER BY run_id").fetchall()


class Customer(BaseModel):
    name: str
    tier: str


class OrderContext(PipelineContext):
    customer: Customer | None = None
    rows: int = 0


def order_runner(backend: Any, calls: list[str]) -> Flujo[OrderContext]:
    def extract(data: Any) -> Any:
        calls.append("extract")
        return data

    def load(data: dict[str, Any], *, context: OrderContext) -> str:
        calls.append("load")
        return f"{context.customer.name if context.customer else '?'}: {data['rows']}"

    return Flujo(Step.from_callable(extract) >> Step.from_callable(load),
                 context_model=OrderContext, state_backend=backend, pipeline_name="orders",
                 pipeline_version="1.2")


async def test_an_upstream_sqlite_database_is_read_in_place(upstream_db: Path) -> None:
    before = upstream_rows(upstream_db)
    backend = SQLiteBackend(upstream_db)
    assert await backend.list_run_ids() == RUN_IDS
    rows = await backend.list_runs()
    assert sorted(r["run_id"] for r in rows) == RUN_IDS
    assert [r["run_id"] for r in await backend.list_runs(status="failed")] == ["up-failed"]
    failed = await backend.load_state("up-failed")
    assert failed is not None
    assert failed["error"] == "RuntimeError: price service down"
    assert failed["created_at"] == datetime(2025, 3, 4, 5, 0, tzinfo=UTC)
    assert failed["pipeline_id"] == "orders-id"  # upstream's own columns are kept
    assert failed["pipeline_context"]["customer"] == {"name": "ACME", "tier": "gold"}
    assert failed["step_history"][0]["name"] == "extract"
    assert upstream_rows(upstream_db) == before  # reading changed nothing
    await backend.close()


async def test_an_upstream_run_resumes_with_its_context_parsed(upstream_db: Path) -> None:
    backend = SQLiteBackend(upstream_db)
    calls: list[str] = []
    result = await order_runner(backend, calls).run_async(run_id="up-running")
    assert result.success and result.output == "ACME: 42"
    assert calls == ["load"]  # the step upstream finished is not run again
    assert type(result.final_pipeline_context.customer) is Customer
    record = await backend.load_record("up-running")
    assert record is not None and record.revision == 2  # upstream's row read as revision 1
    assert record.state.created_at == datetime(2025, 3, 4, 5, 0, tzinfo=UTC)
    assert sorted(r["run_id"] for r in await backend.list_runs()) == RUN_IDS  # no duplicate
    await backend.close()


async def test_migrate_converts_every_upstream_run_and_keeps_the_old_rows(
        upstream_db: Path) -> None:
    before = upstream_rows(upstream_db)
    backend = SQLiteBackend(upstream_db)
    loaded = {rid: await backend.load_state(rid) for rid in RUN_IDS}
    report = await migrate_all(backend)
    assert report.ok and sorted(c.run_id for c in report.changed) == RUN_IDS
    assert (await migrate_all(backend)).up_to_date == RUN_IDS
    for rid in RUN_IDS:
        record = await backend.load_record(rid)
        assert record is not None and record.envelope.stored_envelope_version == 2
        assert record.state.to_dict() == {**loaded[rid], "updated_at": record.state.updated_at,
                                          "context_is_plain_json": True}
    assert upstream_rows(upstream_db) == before  # copied, never rewritten
    await backend.close()


async def test_deleting_an_upstream_run_deletes_it_from_both_tables(upstream_db: Path) -> None:
    backend = SQLiteBackend(upstream_db)
    await migrate_all(backend)
    await backend.delete_state("up-failed")
    assert await backend.load_state("up-failed") is None
    assert "up-failed" not in await backend.list_run_ids()
    assert "up-failed" not in [row[0] for row in upstream_rows(upstream_db)]
    await backend.close()


async def test_a_damaged_upstream_row_is_refused_naming_its_column(upstream_db: Path) -> None:
    with sqlite3.connect(upstream_db) as conn:
        conn.execute("UPDATE workflow_state SET pipeline_context = '{bad' WHERE run_id = ?",
                     ("up-paused",))
    before = upstream_rows(upstream_db)
    backend = SQLiteBackend(upstream_db)
    with pytest.raises(CorruptStateError, match=r"up-paused.*pipeline_context"):
        await backend.load_state("up-paused")
    assert upstream_rows(upstream_db) == before
    await backend.close()


async def test_an_upstream_file_store_is_read_resumed_and_migrated(upstream_files: Path) -> None:
    backend = FileBackend(upstream_files)
    assert await backend.list_run_ids() == RUN_IDS
    failed = await backend.load_state("up-failed")
    assert failed is not None and failed["error"] == "RuntimeError: price service down"
    calls: list[str] = []
    result = await order_runner(backend, calls).run_async(run_id="up-running")
    assert result.success and calls == ["load"]
    report = await migrate_all(backend)
    assert report.ok
    assert (await migrate_all(backend)).up_to_date == RUN_IDS


async def test_upstream_admin_calls_on_an_upstream_database(upstream_db: Path) -> None:
    backend = SQLiteBackend(upstream_db)
    stats = await backend.get_workflow_stats()
    assert stats["total_workflows"] == 4
    assert stats["status_counts"] == {"running": 1, "failed": 1, "completed": 1, "paused": 1}
    assert stats["recent_workflows_24h"] == 0
    failed = await backend.get_failed_workflows(hours_back=24 * 365 * 100)
    assert [(f["run_id"], f["error_message"], f["pipeline_version"], f["current_step_index"])
            for f in failed] == [("up-failed", "RuntimeError: price service down", "1.2", 1)]
    assert await backend.get_failed_workflows() == []  # not within the last 24 hours
    listed = await backend.list_workflows(status="completed", pipeline_id="orders")
    assert [w["run_id"] for w in listed] == ["up-completed"]
    assert await backend.cleanup_old_workflows(days_old=10**6) == 0
    assert await backend.cleanup_old_workflows(days_old=1) == 4
    assert await backend.list_run_ids() == [] and upstream_rows(upstream_db) == []
    await backend.close()


def test_flujo_state_migrate_converts_an_upstream_database(upstream_db: Path,
                                                           capsys: Any) -> None:
    import argparse

    root = argparse.ArgumentParser(prog="flujo")
    add_state_commands(root.add_subparsers(dest="command", required=True))
    args = root.parse_args(["state", "migrate", "--store", f"sqlite:///{upstream_db}"])
    assert args.handler(args) == 0, capsys.readouterr().err
    args = root.parse_args(["state", "migrate", "--check", "--store", f"sqlite:///{upstream_db}"])
    assert args.handler(args) == 0




async def test_rows_no_run_id_can_name_are_not_listed(upstream_db: Path) -> None:
    """Upstream's ``run_id TEXT PRIMARY KEY`` admits NULL and, in SQLite, any type."""
    with sqlite3.connect(upstream_db) as conn:
        row = conn.execute("SELECT * FROM workflow_state WHERE run_id = 'up-running'").fetchone()
        for odd in (None, b"blob-id", "../escape"):
            conn.execute(f"INSERT INTO workflow_state VALUES ({', '.join('?' * len(row))})",
                         (odd, *row[1:]))
    backend = SQLiteBackend(upstream_db)
    assert await backend.list_run_ids() == RUN_IDS
    assert sorted(r["run_id"] for r in await backend.list_runs()) == RUN_IDS
    assert (await backend.get_workflow_stats())["total_workflows"] == 4
    await backend.close()


async def test_a_damaged_upstream_index_column_is_named(upstream_db: Path) -> None:
    with sqlite3.connect(upstream_db) as conn:
        conn.execute("PRAGMA ignore_check_constraints = ON")  # status's CHECK (...)
        conn.execute("UPDATE workflow_state SET status = 'lost', pipeline_name = x'07'"
                     " WHERE run_id = 'up-paused'")  # a BLOB keeps its type in a TEXT column
    backend = SQLiteBackend(upstream_db)
    with pytest.raises(CorruptStateError,
                       match=r"up-paused.*workflow_state.*pipeline_name b'\\x07' is not text"
                             r".*status 'lost' is not one of"):
        await backend.load_state("up-paused")
    await backend.close()
