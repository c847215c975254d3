"""PostgreSQL against a hostile or mistaken setup (issue 14), on the real server.

* Reads (API and CLI) never create or change anything: a mistyped schema stays missing.
* The DSN's password appears in no message, traceback, log record or warning.
* A function, operator or type planted in a schema on the connections' search path is never
  used by flujo's statements.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import traceback
import uuid
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from state_helpers import PostgresTarget

from flujo.cli import main as flujo_main
from flujo.cli._state import EXIT_NOT_FOUND, EXIT_OK, EXIT_UNAVAILABLE, EXIT_USAGE
from flujo.exceptions import (
    BackendConfigError,
    BackendUnavailableError,
    FutureVersionError,
    StateError,
)
from flujo.state import PostgresBackend, WorkflowState, backend_from_uri
from flujo.state._redact import redact_dsn

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
    assert not await backend.cancel_requested("r1")
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
        assert tables_in(dsn, schema) == ["flujo_schema_versions", "flujo_state",
                                          "flujo_state_cancel_requests",
                                          "flujo_state_claims", "flujo_state_history"]
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


# -- passwords are never shown -----------------------------------------------------------------

PASSWORD = "S3cr3t-hunter2"

# Each refused within connect_timeout; libpq echoes the two malformed ones in its errors.
SECRET_DSNS = {
    "uri, unreachable port": f"postgresql://flujo:{PASSWORD}@127.0.0.1:1/db",
    "keywords, unreachable port": f"host=127.0.0.1 port=1 user=flujo password={PASSWORD}",
    "quoted keyword": f"host=127.0.0.1 port=1 password='{PASSWORD}'",
    "percent-encoded": "postgresql://flujo:S3cr3t%2Dhunter2@127.0.0.1:1/db",
    "malformed uri": f"postgresql://flujo:{PASSWORD}@[::1/db",
    "malformed uri, password in the query": f"postgresql://[::1/db?password={PASSWORD}",
}


@pytest.fixture
def psycopg_logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    for name in ("psycopg", "psycopg.pool"):
        caplog.set_level(logging.DEBUG, logger=name)
    yield caplog


def shown(exc: BaseException) -> str:
    """Everything a traceback of ``exc`` shows, causes included."""
    return "".join(traceback.format_exception(exc))


@pytest.mark.parametrize("dsn", SECRET_DSNS.values(), ids=SECRET_DSNS.keys())
async def test_the_password_is_never_shown(dsn: str,
                                           psycopg_logs: pytest.LogCaptureFixture) -> None:
    errors: list[BaseException] = []
    with warnings.catch_warnings(record=True) as warned:
        warnings.simplefilter("always")
        backend = PostgresBackend(dsn, schema="s", table="t", connect_timeout=1)
        try:
            for operation in (backend.load_state("r1"), backend.list_run_ids(),
                              backend.save_state("r1", state("r1"))):
                with pytest.raises(StateError) as caught:
                    await operation
                errors.append(caught.value)
            with pytest.raises(StateError) as caught:
                async with backend.claim("r1"):
                    pass
            errors.append(caught.value)
        finally:
            await backend.close()
    for error in errors:
        assert PASSWORD not in shown(error)
        cause = error.__cause__
        while cause is not None:
            assert PASSWORD not in str(cause)
            cause = cause.__cause__
    records = [record.getMessage() + (record.exc_text or "") for record in psycopg_logs.records]
    # psycopg_pool did log (a DSN that does not parse is refused before any pool opens)
    assert "[::1/db" in dsn or any("error connecting" in record for record in records)
    assert not [record for record in records if PASSWORD in record]
    assert not [str(w.message) for w in warned if PASSWORD in str(w.message)]


async def test_a_pool_whose_opening_is_cancelled_is_closed() -> None:
    from psycopg_pool import AsyncConnectionPool

    dsn = f"postgresql://flujo@127.0.0.1:1/cancelled_{uuid.uuid4().hex}"
    backend = PostgresBackend(dsn, connect_timeout=30)
    with pytest.raises(TimeoutError):  # the caller gives up long before connect_timeout
        await asyncio.wait_for(backend.list_run_ids(), 0.5)
    await backend.close()
    # A pool left open would go on reconnecting, and logging, in the background.
    assert not [pool for pool in gc.get_objects() if isinstance(pool, AsyncConnectionPool)
                and pool.conninfo == dsn and not pool.closed]


def _with(dsn: str, **parts: str) -> str:
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    return make_conninfo(**{**conninfo_to_dict(dsn), **parts})


@pytest.mark.parametrize("part", ["user", "dbname"])
async def test_a_connection_the_server_refuses_fails_at_once_in_one_line(
        postgres_target: PostgresTarget, part: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import psycopg_pool

    def no_pool(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a pool was opened: it would retry until connect_timeout")

    missing = f"no_such_{uuid.uuid4().hex[:8]}"
    backend = PostgresBackend(_with(postgres_target.dsn, **{part: missing}), connect_timeout=30)
    monkeypatch.setattr(psycopg_pool, "AsyncConnectionPool", no_pool)
    with pytest.raises(BackendUnavailableError) as caught:
        await backend.list_run_ids()
    await backend.close()
    what = "role" if part == "user" else "database"
    assert str(caught.value) == ("PostgreSQL (public.flujo_state): the server refused the"
                                 f' connection: {what} "{missing}" does not exist')


async def test_an_unreachable_server_is_named_with_the_reason(
        psycopg_logs: pytest.LogCaptureFixture) -> None:
    backend = PostgresBackend("postgresql://flujo@127.0.0.1:1/db", connect_timeout=1)
    with pytest.raises(BackendUnavailableError) as caught:
        await backend.list_run_ids()
    await backend.close()
    message = str(caught.value)
    assert message.startswith("PostgreSQL (public.flujo_state): no connection within 1 s:")
    assert "Connection refused" in message and "\n" not in message


def test_the_cli_reports_a_refused_connection_in_one_line(
        postgres_target: PostgresTarget, capsys: pytest.CaptureFixture[str]) -> None:
    from psycopg.conninfo import conninfo_to_dict

    missing = f"no_such_{uuid.uuid4().hex[:8]}"
    parts = conninfo_to_dict(postgres_target.dsn)
    uri = (f"postgresql://{parts.get('user', 'postgres')}@{parts.get('host', '127.0.0.1')}:"
           f"{parts.get('port', 5432)}/{missing}")
    assert flujo_main(["state", "ls", "--store", uri]) == EXIT_UNAVAILABLE
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f'database "{missing}" does not exist' in err, err


@pytest.mark.parametrize("uri", [f"postgress://flujo:{PASSWORD}@db/app",
                                 f"sqlite:postgresql://flujo:{PASSWORD}@db/app",
                                 f"postgres:/db/app?user=a&password={PASSWORD}"])
def test_a_mistyped_uri_is_quoted_without_its_password(uri: str) -> None:
    with pytest.raises(BackendConfigError) as caught:
        backend_from_uri(uri)
    assert PASSWORD not in shown(caught.value) and "***" in str(caught.value)


def test_the_cli_quotes_a_keyword_dsn_without_its_password(
        capsys: pytest.CaptureFixture[str]) -> None:
    code, output = run_cli(capsys, "ls", "--store", f"host=db user=flujo password={PASSWORD}")
    assert code == EXIT_USAGE and "password=***" in output and PASSWORD not in output


@pytest.mark.parametrize(("dsn", "masked"), [
    ("postgresql://app:pw@db:5432/app", "postgresql://app:***@db:5432/app"),
    ("postgresql://app:p@ss@db/app", "postgresql://app:***@db/app"),  # @ unencoded
    ("postgresql://db/app?user=a&password=pw&sslmode=require",
     "postgresql://db/app?user=a&password=***&sslmode=require"),
    ("host=db password = 'p w\\'x' user=a", "host=db password = *** user=a"),
    ("postgresql://app@db/app", "postgresql://app@db/app"),
])
def test_every_form_of_password_is_masked(dsn: str, masked: str) -> None:
    assert redact_dsn(dsn) == masked


# -- a planted search path ---------------------------------------------------------------------

RAISES = "LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'a planted object ran'; END $$"
PLANTED = [
    f"CREATE FUNCTION {{evil}}.hijacked() RETURNS boolean {RAISES}",
    f"CREATE FUNCTION {{evil}}.hashtextextended(text, bigint) RETURNS bigint {RAISES}",
    f"CREATE FUNCTION {{evil}}.pg_advisory_xact_lock(bigint) RETURNS void {RAISES}",
    f"CREATE FUNCTION {{evil}}.pg_try_advisory_lock(bigint) RETURNS boolean {RAISES}",
    f"CREATE FUNCTION {{evil}}.pg_advisory_unlock(bigint) RETURNS boolean {RAISES}",
    f"CREATE FUNCTION {{evil}}.octet_length(text) RETURNS integer {RAISES}",
    f"CREATE FUNCTION {{evil}}.set_config(text, text, boolean) RETURNS text {RAISES}",
    f"CREATE FUNCTION {{evil}}.text_eq(text, text) RETURNS boolean {RAISES}",
    "CREATE OPERATOR {evil}.= (LEFTARG = text, RIGHTARG = text, FUNCTION = {evil}.text_eq)",
    "CREATE DOMAIN {evil}.json AS pg_catalog.text CHECK ({evil}.hijacked())",
]


async def test_objects_planted_on_the_search_path_are_never_used(
        postgres_schemas: Callable[[str], tuple[str, str]]) -> None:
    import psycopg
    from psycopg.conninfo import make_conninfo

    dsn, evil = postgres_schemas("flujo_evil")
    _, schema = postgres_schemas("flujo_victim")
    catalog(dsn, f'CREATE SCHEMA "{evil}"')
    for statement in PLANTED:
        catalog(dsn, statement.format(evil=f'"{evil}"'))
    # The role's search path, as an attacker with CREATE on a schema in it would like it.
    planted_dsn = make_conninfo(dsn, options=f"-c search_path={evil},pg_catalog,public")
    for planted_call in ("SELECT hashtextextended('k', 0)", "SELECT octet_length('x'::text)",
                         "SELECT 'a'::text = 'a'", "SELECT pg_try_advisory_lock(1)"):
        with pytest.raises(psycopg.errors.RaiseException, match="planted"):  # they do take over
            catalog(planted_dsn, planted_call)

    backend = PostgresBackend(planted_dsn, schema=schema)
    try:
        assert await backend.save_state("r1", state("r1")) == 1
        assert await backend.save_state("r1", state("r1"), expected_revision=1) == 2
        loaded = await backend.load_state("r1")
        assert loaded is not None and loaded["pipeline_context"] == {"n": 1}
        assert [run["run_id"] for run in await backend.list_runs(status="running")] == ["r1"]
        assert await backend.list_run_ids() == ["r1"]
        async with backend.claim("r1"):
            pass
        await backend.delete_state("r1")
        assert await backend.list_run_ids() == []
    finally:
        await backend.close()
    fresh = PostgresBackend(planted_dsn, schema=schema, table=f"t_{uuid.uuid4().hex[:8]}")
    try:  # the reads of a backend that has not written yet look the table up first
        assert await fresh.load_state("r1") is None
    finally:
        await fresh.close()


@pytest.mark.parametrize(("message", "for_good"), [
    ('connection failed: ... failed: FATAL:  role "app" does not exist', True),
    ('connection failed: ... failed: FATAL:  database "app" does not exist', True),
    ('... FATAL:  password authentication failed for user "app"', True),
    ('... FATAL:  no pg_hba.conf entry for host "10.0.0.1", user "app"', True),
    ('... FATAL:  too many connections for role "app"', False),  # passes with time
    ("... FATAL:  sorry, too many clients already", False),
    ("... FATAL:  the database system is starting up", False),
    ("... failed: Connection refused", False),
    ('... FATAL:  la base de données « app » n\'existe pas', False),  # another language: wait
])
def test_only_refusals_that_waiting_does_not_cure_fail_at_once(message: str,
                                                                for_good: bool) -> None:
    from flujo.state.backends.postgres import _refusal

    assert (_refusal(Exception(message)) is not None) == for_good
