"""PostgreSQL against a hostile or mistaken setup (issue 14), on the real server.

* Reads (API and CLI) never create or change anything: a mistyped schema stays missing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from state_helpers import PostgresTarget

from flujo.cli import main as flujo_main
from flujo.cli._state import EXIT_NOT_FOUND, EXIT_OK, EXIT_UNAVAILABLE
from flujo.exceptions import FutureVersionError
from flujo.state import PostgresBackend, WorkflowState

pytestmark = pytest.mark.postgres


def state(run_id: str) -> WorkflowState:
    return WorkflowState(run_id=run_id, pipeline_name="p", pipeline_context={"n": 1})


def catalog(dsn: str, sql: str, *params: object) -> list[tuple[Any, ...]]:
    """Rows of a query on a connection of the test's own (not flujo's)."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        cur = conn.execute(sql, params or None)
        return list(cur.fetchall()) if cur.description is not None else []


def tables_in(dsn: str, schema: str) -> list[str]:
    return [row[0] for row in catalog(
        dsn, "SELECT table_name FROM information_schema.tables WHERE table_schema = %s"
        " ORDER BY table_name", schema)]


def schema_exists(dsn: str, schema: str) -> bool:
    return bool(catalog(dsn, "SELECT 1 FROM pg_namespace WHERE nspname = %s", schema))


# -- reads never write -------------------------------------------------------------------------


async def read_everything(backend: PostgresBackend) -> None:
    """Every read of the API, and a delete: each finds nothing."""
    assert await backend.load_state("r1") is None
    assert await backend.load_record("r1") is None
    assert await backend.read_envelope("r1") is None
    assert await backend.list_runs() == []
    assert await backend.list_runs(status="failed", pipeline_name="p", limit=5) == []
    assert await backend.list_run_ids() == []
    await backend.delete_state("r1")


async def test_reads_in_a_missing_schema_create_nothing(
        postgres_schemas: Callable[[str], tuple[str, str]]) -> None:
    dsn, schema = postgres_schemas("flujo_typo")
    backend = PostgresBackend(dsn, schema=schema)
    try:
        await read_everything(backend)
        assert not await backend.schema_exists()
        assert not schema_exists(dsn, schema)
        await backend.save_state("r1", state("r1"))  # the first write creates it
        assert await backend.list_run_ids() == ["r1"]
        assert tables_in(dsn, schema) == ["flujo_schema_versions", "flujo_state"]
    finally:
        await backend.close()


async def test_reads_in_a_schema_without_flujos_table_create_nothing(
        postgres_schemas: Callable[[str], tuple[str, str]]) -> None:
    dsn, schema = postgres_schemas("flujo_other")
    catalog(dsn, f'CREATE SCHEMA "{schema}"')
    catalog(dsn, f'CREATE TABLE "{schema}".orders (id int)')
    backend = PostgresBackend(dsn, schema=schema, table="runs")
    try:
        await read_everything(backend)
        assert tables_in(dsn, schema) == ["orders"]
        # Another process creates the table: this backend's next read finds its runs.
        writer = PostgresBackend(dsn, schema=schema, table="runs")
        try:
            await writer.save_state("r1", state("r1"))
        finally:
            await writer.close()
        assert [run["run_id"] for run in await backend.list_runs()] == ["r1"]
    finally:
        await backend.close()


async def test_reads_refuse_a_newer_layout_without_changing_it(
        postgres_target: PostgresTarget) -> None:
    table = postgres_target.new_table()
    schema = postgres_target.schema
    writer = PostgresBackend(postgres_target.dsn, schema=schema, table=table)
    try:
        await writer.save_state("r1", state("r1"))
    finally:
        await writer.close()
    catalog(postgres_target.dsn, f'UPDATE "{schema}".flujo_schema_versions SET version = 99'
            " WHERE component = %s", table)
    reader = PostgresBackend(postgres_target.dsn, schema=schema, table=table)
    try:
        for read in (reader.load_state("r1"), reader.list_runs(), reader.list_run_ids(),
                     reader.delete_state("r1"), reader.save_state("r2", state("r2"))):
            with pytest.raises(FutureVersionError, match="layout version 99"):
                await read
    finally:
        await reader.close()
    assert catalog(postgres_target.dsn, f'SELECT run_id FROM "{schema}"."{table}"') == [("r1",)]
    assert catalog(postgres_target.dsn, f'SELECT version FROM "{schema}".flujo_schema_versions'
                   " WHERE component = %s", table) == [(99,)]


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    """The exit code and what was printed (stdout, then stderr)."""
    code = flujo_main(["state", *argv])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_cli_reads_a_mistyped_schema_as_no_store_and_creates_nothing(
        postgres_schemas: Callable[[str], tuple[str, str]],
        capsys: pytest.CaptureFixture[str]) -> None:
    dsn, schema = postgres_schemas("flujo_typo")
    store = ["--store", dsn, "--pg-schema", schema, "--connect-timeout", "5"]
    for command in (["ls"], ["show", "r1"], ["export"], ["migrate"], ["delete", "-y", "r1"]):
        code, output = run_cli(capsys, *command, *store)
        assert code == EXIT_UNAVAILABLE, (command, output)
        assert f"no schema {schema!r}" in output
    assert not schema_exists(dsn, schema)


def test_cli_reads_a_schema_without_flujos_table_as_empty(
        postgres_schemas: Callable[[str], tuple[str, str]],
        capsys: pytest.CaptureFixture[str]) -> None:
    dsn, schema = postgres_schemas("flujo_other")
    catalog(dsn, f'CREATE SCHEMA "{schema}"')
    store = ["--store", dsn, "--pg-schema", schema, "--table", "runs", "--connect-timeout", "5"]
    assert run_cli(capsys, "ls", "--no-header", *store) == (EXIT_OK, "")
    assert run_cli(capsys, "export", *store)[0] == EXIT_OK
    assert run_cli(capsys, "migrate", *store)[0] == EXIT_OK
    assert run_cli(capsys, "show", "r1", *store)[0] == EXIT_NOT_FOUND
    assert run_cli(capsys, "delete", "-y", "r1", *store)[0] == EXIT_NOT_FOUND
    assert tables_in(dsn, schema) == []
