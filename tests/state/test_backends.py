"""What is specific to each durable backend: files on disk, SQLite and PostgreSQL layouts."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import stat
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from state_helpers import PostgresTarget

from flujo.exceptions import (
    BackendUnavailableError,
    CorruptStateError,
    EncryptionError,
    FutureVersionError,
    RecordTooLargeError,
    RunInProgressError,
)
from flujo.state import (
    Encryption,
    FileBackend,
    PostgresBackend,
    SQLiteBackend,
    WorkflowState,
    backend_from_uri,
)
from flujo.state._jsonio import dumps
from flujo.state.backends.postgres import POSTGRES_SCHEMA_VERSION
from flujo.state.backends.sqlite import _INLINE_BYTES, SQLITE_SCHEMA_VERSION


def state(run_id: str, **context: object) -> WorkflowState:
    return WorkflowState(run_id=run_id, pipeline_name="p", pipeline_context=dict(context))


# -- FileBackend -------------------------------------------------------------------------------


async def test_file_loads_earlier_flujo_files(tmp_path: Path) -> None:
    # What earlier flujo's FileBackend wrote: orjson of the state dict, naive timestamps.
    (tmp_path / "old-run.json").write_bytes(
        dumps(
            {
                "run_id": "old-run",
                "pipeline_id": "pid",
                "pipeline_name": "etl",
                "pipeline_version": "1.0",
                "current_step_index": 4,
                "pipeline_context": {"rows": 10, "note": "kept"},
                "last_step_output": {"ok": True},
                "step_history": [{"name": "extract"}],
                "status": "paused",
                "created_at": "2023-05-01T08:00:00",
                "updated_at": "2023-05-01T09:00:00",
                "error_message": None,
                "metadata": {"owner": "ops"},
            }
        )
    )
    backend = FileBackend(tmp_path)
    record = await backend.load_record("old-run")
    assert record is not None and record.revision == 1
    assert record.envelope.stored_envelope_version == 0
    assert record.state.status == "paused" and record.state.current_step_index == 4
    assert record.state.created_at == datetime(2023, 5, 1, 8, tzinfo=UTC)
    assert record.state.to_dict()["metadata"] == {"owner": "ops"}
    runs = await backend.list_runs()
    assert [(r["run_id"], r["status"], r["pipeline_name"]) for r in runs] == [
        ("old-run", "paused", "etl")
    ]
    assert await backend.save_state("old-run", record.state, expected_revision=1) == 2


async def test_file_damage_is_reported_with_the_file_and_never_overwritten(
    tmp_path: Path,
) -> None:
    backend = FileBackend(tmp_path)
    await backend.save_state("ok", state("ok"))
    damaged = tmp_path / "bad.json"
    damaged.write_bytes(b'{"format": "flujo.state", "envelope_ver')
    with pytest.raises(CorruptStateError) as info:
        await backend.load_state("bad")
    assert str(damaged) in str(info.value)
    with pytest.raises(CorruptStateError, match=r"bad\.json"):
        await backend.save_state("bad", state("bad"))
    with pytest.raises(CorruptStateError, match=r"bad\.json"):
        await backend.list_runs()
    assert await backend.list_run_ids() == ["bad", "ok"]
    assert damaged.read_bytes() == b'{"format": "flujo.state", "envelope_ver'
    await backend.delete_state("bad")
    assert not damaged.exists()
    assert await backend.save_state("bad", state("bad")) == 1


async def test_file_record_copied_to_another_name_is_refused(tmp_path: Path) -> None:
    backend = FileBackend(tmp_path)
    await backend.save_state("a", state("a"))
    (tmp_path / "b.json").write_bytes((tmp_path / "a.json").read_bytes())
    with pytest.raises(CorruptStateError, match="belongs to run 'a'"):
        await backend.load_state("b")


async def test_an_encrypted_record_copied_to_another_store_sharing_the_key_is_refused(
        tmp_path: Path) -> None:
    """Two stores that share a key, one SQLite table and one directory: a record copied from
    one to the other fails authentication there, because each store has its own name; the
    same bytes load back in a store of the original name."""
    key = Encryption.generate_key()
    orders = SQLiteBackend(tmp_path / "state.db", table="orders",
                           encryption=Encryption.single(key, store="orders"))
    await orders.save_state("r", state("r", total=5))
    billing = SQLiteBackend(tmp_path / "state.db", table="billing",
                            encryption=Encryption.single(key, store="billing"))
    await billing.save_state("x", state("x"))
    with sqlite3.connect(tmp_path / "state.db") as conn:
        conn.execute("INSERT INTO billing SELECT * FROM orders")
    with pytest.raises(EncryptionError, match="copied from another run or store"):
        await billing.load_state("r")
    files = FileBackend(tmp_path / "files", encryption=Encryption.single(key, store="files"))
    await files.save_state("x", state("x"))
    envelope = await orders.read_envelope("r")
    assert envelope is not None
    await files.write_envelope(envelope)
    with pytest.raises(EncryptionError, match="copied from another run or store"):
        await files.load_state("r")
    renamed = FileBackend(tmp_path / "files", encryption=Encryption.single(key, store="orders"))
    loaded = await renamed.load_state("r")
    assert loaded is not None and loaded["pipeline_context"] == {"total": 5}
    await orders.close()
    await billing.close()


async def test_file_leaves_no_temporary_or_lock_files(tmp_path: Path) -> None:
    backend = FileBackend(tmp_path)
    for i in range(3):
        await backend.save_state("r", state("r", i=i))
    async with backend.claim("r"):
        assert sorted(p.name for p in (tmp_path / ".locks").iterdir()) == [
            "claims.counter", "r.claim", "r.epoch"]  # the claim's lock and its fencing epoch
    await backend.save_state("gone", state("gone"))
    await backend.delete_state("gone")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".history", ".locks", "r.json"]
    # what stays: the store's claim counter (an epoch is never given twice)
    assert [p.name for p in (tmp_path / ".locks").iterdir()] == ["claims.counter"]
    # The earlier records of "r" are its history; nothing is left of "gone"
    assert sorted(p.name for p in (tmp_path / ".history").iterdir()) == ["r"]
    assert sorted(p.name for p in (tmp_path / ".history" / "r").iterdir()) == ["1.json",
                                                                              "2.json"]
    assert stat.S_IMODE((tmp_path / "r.json").stat().st_mode) == 0o600


async def test_file_ignores_leftovers_of_a_crashed_write(tmp_path: Path) -> None:
    backend = FileBackend(tmp_path, fsync=False)
    await backend.save_state("r", state("r"))
    (tmp_path / ".r.json.123.abc.tmp").write_bytes(b"half a rec")
    (tmp_path / "notes.txt").write_text("not ours")
    assert await backend.list_run_ids() == ["r"]
    assert [r["run_id"] for r in await backend.list_runs()] == ["r"]


async def test_file_survives_removal_of_its_lock_directory(tmp_path: Path) -> None:
    backend = FileBackend(tmp_path)
    await backend.save_state("r", state("r"))
    shutil.rmtree(tmp_path / ".locks")
    await backend.save_state("r", state("r"))
    async with backend.claim("r"):
        pass
    assert await backend.load_state("r") is not None


async def test_file_claims_span_backend_instances(tmp_path: Path) -> None:
    one, two = FileBackend(tmp_path), FileBackend(tmp_path)
    async with one.claim("job"):
        with pytest.raises(RunInProgressError, match="job"):
            async with two.claim("job"):
                pass
    async with two.claim("job"):
        pass


async def test_file_unusable_directory(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    backend = FileBackend(blocker / "state")  # constructing touches nothing
    with pytest.raises(BackendUnavailableError, match="cannot create"):
        await backend.save_state("r", state("r"))
    with pytest.raises(BackendUnavailableError, match="cannot open the state directory"):
        await backend.load_state("r")


@pytest.mark.parametrize("uri", ["file://{dir}/state", "sqlite:///{dir}/state/runs.db"])
async def test_constructing_a_backend_touches_nothing(tmp_path: Path, uri: str) -> None:
    where = tmp_path / "state"
    backend = backend_from_uri(uri.format(dir=tmp_path))
    assert not where.exists()
    # a store nothing was written to holds no runs, and reading it creates nothing
    assert await backend.load_state("r") is None
    assert await backend.list_run_ids() == []
    assert await backend.list_runs() == []
    assert await backend.load_record("r") is None
    await backend.delete_state("r")
    assert not where.exists()
    await backend.save_state("r", state("r"))  # the first write creates what it needs
    assert where.is_dir() and (await backend.load_state("r")) is not None
    if uri.startswith("file"):  # the store's own directory (a database's is the user's)
        assert (where.stat().st_mode & 0o777) == 0o700 and (where / ".locks").is_dir()


# -- SQLiteBackend -----------------------------------------------------------------------------


async def test_sqlite_layout_wal_and_sql_access(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    backend = SQLiteBackend(db, table="runs")
    await backend.save_state("r", state("r", customer="ACME"))
    assert backend.schema_version() == SQLITE_SCHEMA_VERSION == 2
    assert backend.journal_mode == "wal"
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        indexes = {r[1] for r in conn.execute("PRAGMA index_list(runs)")}
        assert {"runs_status_updated", "runs_pipeline_updated", "runs_updated"} <= indexes
        row = conn.execute(
            "SELECT status, revision,"
            " json_extract(envelope, '$.payload.fields.pipeline_context.customer')"
            " FROM runs WHERE run_id = 'r'"
        ).fetchone()
        assert row == ("running", 1, "ACME")
        versions = conn.execute("SELECT * FROM flujo_schema_versions").fetchall()
        assert versions == [("runs", 2)]


async def test_sqlite_refuses_a_newer_layout(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    await SQLiteBackend(db).save_state("r", state("r"))
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE flujo_schema_versions SET version = 99")
    with pytest.raises(FutureVersionError, match="layout version 99"):
        await SQLiteBackend(db).load_state("r")


async def test_sqlite_instances_share_data_and_claims(tmp_path: Path) -> None:
    one, two = SQLiteBackend(tmp_path / "s.db"), SQLiteBackend(tmp_path / "s.db")
    await one.save_state("r", state("r"))
    assert await two.save_state("r", state("r"), expected_revision=1) == 2
    async with one.claim("r"):
        with pytest.raises(RunInProgressError):
            async with two.claim("r"):
                pass
    assert (tmp_path / "s.db.claims").is_dir()


@pytest.mark.parametrize("path", [":memory:", "", "file:x.db?mode=memory"])
def test_sqlite_needs_a_file(path: str) -> None:
    with pytest.raises(BackendUnavailableError, match="database file path"):
        SQLiteBackend(path)


def test_sqlite_checks_its_options(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="table name"):
        SQLiteBackend(tmp_path / "x.db", table='x"; DROP TABLE y; --')
    with pytest.raises(ValueError, match="synchronous"):
        SQLiteBackend(tmp_path / "x.db", synchronous="OFF")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="inline_reads must be True or False, got 'yes'"):
        SQLiteBackend(tmp_path / "x.db", inline_reads="yes")  # type: ignore[arg-type]


async def test_sqlite_unopenable_database(tmp_path: Path) -> None:
    (tmp_path / "dir.db").mkdir()
    with pytest.raises(BackendUnavailableError, match=r"dir\.db"):
        await SQLiteBackend(tmp_path / "dir.db").load_state("r")
    (tmp_path / "junk.db").write_bytes(b"this is not a database" * 100)
    with pytest.raises(BackendUnavailableError, match=r"junk\.db"):
        await SQLiteBackend(tmp_path / "junk.db").load_state("r")


class _ThreadNoting(SQLiteBackend):
    """Notes the thread each chain of records is read on."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.read_on: list[int] = []

    def _read_chain_sync(self, run_id: str, slot: str = "conn") -> Any:
        self.read_on.append(threading.get_ident())
        return super()._read_chain_sync(run_id, slot)


async def test_sqlite_loads_on_the_calling_thread_what_a_worker_thread_loads(
        tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    inline, threaded = _ThreadNoting(db), _ThreadNoting(db, inline_reads=False)
    assert inline.inline_reads and not threaded.inline_reads
    inline.WHOLE_RECORD_BYTES = 0  # deltas of this small state: a chain to read
    notes = [f"note {i}" for i in range(200)]
    for n in range(5):  # a whole state, then deltas of it
        await inline.save_state("r", state("r", n=n, at=datetime(2026, 1, 1, n, tzinfo=UTC),
                                           notes=notes))
    await threaded.save_state("other", state("other"))  # prepared by a save, as inline is
    here = threading.get_ident()
    one, two = await inline.load_record("r"), await threaded.load_record("r")
    assert one is not None and two is not None
    assert one.state == two.state and one.revision == two.revision == 5
    assert one.envelope.kind == "delta"
    assert one.state.pipeline_context["at"] == datetime(2026, 1, 1, 4, tzinfo=UTC)
    assert inline.read_on == [here]
    assert threaded.read_on and here not in threaded.read_on
    assert await inline.load_state("missing") is None
    # Until a backend has prepared the database it reads on a worker thread, read-only.
    fresh = _ThreadNoting(db)
    assert (await fresh.load_state("r")) == (await inline.load_state("r"))
    assert fresh.read_on and here not in fresh.read_on


async def test_sqlite_reads_long_records_and_missing_runs_on_a_worker_thread(
        tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    backend, threaded = _ThreadNoting(db), SQLiteBackend(db, inline_reads=False)
    here = threading.get_ident()
    await backend.save_state("small", state("small", text="x" * (_INLINE_BYTES // 2)))
    await backend.save_state("long", state("long", text="x" * _INLINE_BYTES))
    assert await backend.load_state("small") == await threaded.load_state("small")
    assert backend.read_on == [here]
    for run_id in ("long", "missing"):  # tried here, then read on a worker thread
        backend.read_on.clear()
        assert await backend.load_state(run_id) == await threaded.load_state(run_id)
        assert len(backend.read_on) == 2 and backend.read_on[0] == here != backend.read_on[1]
    # A chain whose older record is long: the whole chain is read on a worker thread.
    await backend.save_state("long", state("long", text="x" * _INLINE_BYTES, n=1))
    backend.read_on.clear()
    record = await backend.load_record("long")
    assert record is not None and record.envelope.kind == "delta"
    assert record.state.pipeline_context["n"] == 1
    assert len(backend.read_on) == 2 and backend.read_on[1] != here
    # Over the store's own limit: refused here, unread, as on a worker thread.
    await backend.save_state("huge", state("huge", text="x" * 1_200_000))
    strict = _ThreadNoting(db, max_payload_bytes=1000)
    await strict.save_state("tiny", state("tiny"))
    with pytest.raises(RecordTooLargeError, match="huge"):
        await strict.load_state("huge")
    assert strict.read_on == [here]
    await backend.close()
    await threaded.close()
    await strict.close()


async def test_sqlite_inline_load_lets_other_tasks_run(tmp_path: Path) -> None:
    # A task that loads a run until another task has saved it: the loads must let that task
    # run, as a load on a worker thread does.
    backend = SQLiteBackend(tmp_path / "s.db")
    await backend.save_state("r", state("r", done=False))

    async def finish() -> None:
        await backend.save_state("r", state("r", done=True))

    finishing = asyncio.create_task(finish())
    loads = 0
    while loads < 10_000:
        loaded = await backend.load_state("r")
        loads += 1
        assert loaded is not None
        if loaded["pipeline_context"]["done"]:
            break
    assert loads < 10_000
    await finishing
    await backend.close()


async def test_sqlite_inline_reads_never_create_the_database(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    backend = SQLiteBackend(db)
    await backend.save_state("r", state("r"))
    for path in tmp_path.iterdir():
        if path.name.startswith("s.db"):
            path.unlink()
    with pytest.raises(BackendUnavailableError, match=r"s\.db"):
        await backend.load_state("r")
    assert not db.exists()
    await backend.close()


async def test_sqlite_load_of_a_locked_database_waits_on_a_worker_thread(
        tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    backend = _ThreadNoting(db, busy_timeout=20)
    await backend.save_state("r", state("r", customer="ACME"))
    await backend.close()  # prepared, no connection open: another can lock the database
    # A connection holding the database in exclusive locking mode: no other can read it, WAL
    # or not, until that one lets it go.
    locker = sqlite3.connect(db, isolation_level=None)
    locker.execute("PRAGMA locking_mode=EXCLUSIVE")
    locker.execute("BEGIN EXCLUSIVE")
    locker.execute('UPDATE "flujo_state" SET pipeline_name = pipeline_name')
    try:
        load = asyncio.create_task(backend.load_state("r"))
        await asyncio.sleep(0.2)  # the event loop runs on while the load waits for the lock
        assert not load.done()
        assert len(backend.read_on) == 2  # tried here, then made on a worker thread
        assert backend.read_on[0] == threading.get_ident() != backend.read_on[1]
    finally:
        locker.execute("COMMIT")
        locker.close()
    loaded = await load
    assert loaded is not None and loaded["pipeline_context"] == {"customer": "ACME"}
    backend.read_on.clear()
    assert await backend.load_state("r") == loaded  # and inline again
    assert backend.read_on == [threading.get_ident()]
    await backend.close()


class _BusyOnce:
    """A connection whose next statement fails as SQLite fails a read it would have to wait
    for (another process recovering the WAL, say: a state tests cannot stage while this
    connection is open, since a connection in exclusive locking mode needs it closed)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn, self.failed = conn, False

    def execute(self, *args: Any) -> Any:
        if not self.failed:
            self.failed = True
            error = sqlite3.OperationalError("database is locked")
            error.sqlite_errorname = "SQLITE_BUSY_RECOVERY"
            raise error
        return self.conn.execute(*args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.conn, name)


async def test_sqlite_inline_read_that_would_wait_keeps_its_connection(tmp_path: Path) -> None:
    backend = _ThreadNoting(tmp_path / "s.db")
    await backend.save_state("r", state("r", customer="ACME"))
    expected = await backend.load_state("r")
    inline = backend._conns.local.inline
    backend._conns.local.inline = busy = _BusyOnce(inline)
    # (taken as the connection it wraps)
    backend._conns._open[busy] = backend._conns._open.pop(inline)
    backend.read_on.clear()
    assert await backend.load_state("r") == expected
    assert busy.failed and backend._conns.local.inline is busy  # kept: the read changed nothing
    assert len(backend.read_on) == 2 and backend.read_on[1] != threading.get_ident()
    # Any other error of the inline connection is the store's, as on a worker thread.
    backend._conns.local.inline = inline
    backend._conns._open[inline] = backend._conns._open.pop(busy)
    inline.close()
    with pytest.raises(BackendUnavailableError, match="closed database"):
        await backend.load_state("r")
    assert await backend.load_state("r") == expected  # a new connection
    await backend.close()


_CLOSE_WHILE_IN_USE = """
import asyncio, sys, time
from flujo.state import SQLiteBackend, WorkflowState

backend = SQLiteBackend(sys.argv[1], inline_reads=sys.argv[2] == "inline")
failures = []


def state(n):
    context = {"n": n, "tail": list(range(n))}
    return WorkflowState(run_id="r", pipeline_name="p", pipeline_context=context)


async def main():
    await backend.save_state("r", state(0))
    stop = time.monotonic() + 1.5

    async def loader(saves):
        while time.monotonic() < stop:
            try:
                loaded = await backend.load_state("r")
                n = loaded["pipeline_context"]["n"]
                assert loaded["pipeline_context"]["tail"] == list(range(n))
                if saves:
                    await backend.save_state("r", state(n + 1))
            except Exception as exc:
                failures.append(repr(exc))
            await asyncio.sleep(0)

    async def closer():
        while time.monotonic() < stop:
            await backend.close()
            await asyncio.sleep(0.001)

    await asyncio.gather(*(loader(k == 0) for k in range(6)), closer())
    await backend.close()
    print(len(failures), failures[:3])


asyncio.run(main())
"""


@pytest.mark.parametrize("reads", ["threads", "inline"])
def test_sqlite_close_while_other_threads_use_connections(tmp_path: Path, reads: str) -> None:
    # close() on the event loop while worker threads run statements on connections it
    # opened: closing them under a running statement crashed the interpreter (SIGSEGV).
    # Each is now closed when its thread is done with it, and the next call opens another.
    done = subprocess.run([sys.executable, "-c", _CLOSE_WHILE_IN_USE, str(tmp_path / "s.db"),
                           reads], check=False, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "0 []"


def test_sqlite_close_keeps_the_statement_timeout_of_a_running_statement(
        tmp_path: Path) -> None:
    # close() while a worker thread runs a statement: the statement is still interrupted at
    # statement_timeout (close() once dropped the deadline it is checked against).
    backend = SQLiteBackend(tmp_path / "s.db", statement_timeout=0.2)
    asyncio.run(backend.save_state("r", state("r")))
    outcome: list[object] = []
    running = threading.Event()

    def long_statement() -> None:
        try:
            with backend._using("conn") as conn:
                running.set()
                outcome.append(conn.execute(
                    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c"
                    " WHERE x < 50000000) SELECT count(*) FROM c").fetchone())
        except BackendUnavailableError as exc:
            outcome.append(exc)

    worker = threading.Thread(target=long_statement)
    worker.start()
    running.wait()
    time.sleep(0.05)  # the statement is running (it is interrupted at 0.2 s)
    asyncio.run(backend.close())
    worker.join()
    assert len(outcome) == 1 and isinstance(outcome[0], BackendUnavailableError)
    assert "statement_timeout=0.2s" in str(outcome[0])
    assert backend._conns.open_count() == 0  # closed by its thread, once done


def test_sqlite_connections_of_ended_threads_are_closed(tmp_path: Path) -> None:
    # Each asyncio.run() ends its loop's worker threads: their connections must not pile up
    # (a file descriptor each) in a process that runs one backend that way, task by task.
    backend = SQLiteBackend(tmp_path / "s.db", inline_reads=False)
    asyncio.run(backend.save_state("r", state("r")))
    for _ in range(40):
        assert asyncio.run(backend.load_state("r")) is not None
    assert backend._conns.open_count() <= 4
    asyncio.run(backend.close())
    assert backend._conns.open_count() == 0


async def test_sqlite_interrupted_read_of_upstreams_table_is_a_backend_error(
        tmp_path: Path) -> None:
    # A run missing from flujo's table is looked for in upstream flujo's; a statement there
    # interrupted at statement_timeout (a large table without an index) is the store's
    # error, not a bare sqlite3 one from the connection it closed.
    db = tmp_path / "s.db"
    columns = ("run_id", "pipeline_id", "pipeline_name", "pipeline_version",
               "current_step_index", "pipeline_context", "last_step_output", "status",
               "created_at", "updated_at")
    with sqlite3.connect(db) as conn:
        conn.execute(f"CREATE TABLE workflow_state ({', '.join(columns)})")
        conn.executemany(
            "INSERT INTO workflow_state VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            ((f"r{i}", "p", "p", "1", 0, "{}", "null", "running", "2024-01-01T00:00:00",
              "2024-01-01T00:00:00") for i in range(300_000)))
    conn.close()
    backend = SQLiteBackend(db, statement_timeout=0.001)
    with pytest.raises(BackendUnavailableError, match="statement_timeout"):
        await backend.load_state("missing")
    await backend.close()

# -- PostgresBackend ---------------------------------------------------------------------------


@pytest.fixture
async def pg(postgres_target: PostgresTarget) -> AsyncIterator[PostgresBackend]:
    backend = PostgresBackend(
        postgres_target.dsn, schema=postgres_target.schema, table=postgres_target.new_table()
    )
    try:
        yield backend
    finally:
        await backend.close()


async def _query(backend: PostgresBackend, sql: str) -> list[tuple[object, ...]]:
    import psycopg

    async with await psycopg.AsyncConnection.connect(backend.dsn) as conn:
        cur = await conn.execute(sql.format(t=f'"{backend.schema}"."{backend.table}"'))
        return list(await cur.fetchall())


@pytest.mark.postgres
async def test_postgres_payload_is_queryable_jsonb(postgres_target: PostgresTarget) -> None:
    pg = PostgresBackend(postgres_target.dsn, schema=postgres_target.schema,
                         table=postgres_target.new_table(), queryable_payload=True)
    await pg.save_state("q", state("q", customer="ACME", amount=12))
    await pg.save_state("q", state("q", customer="ACME", amount=13))  # a whole state again
    rows = await _query(
        pg,
        "SELECT payload->'fields'->'pipeline_context'->>'customer',"
        " (payload->'fields'->'pipeline_context'->>'amount')::int, pg_typeof(payload)::text,"
        " pg_typeof(envelope)::text FROM {t}",
    )
    assert rows == [("ACME", 13, "jsonb", "json")]
    assert await pg.schema_version() == POSTGRES_SCHEMA_VERSION == 4
    await pg.close()


@pytest.mark.postgres
async def test_postgres_keeps_exact_text_where_jsonb_would_not(pg: PostgresBackend) -> None:
    context = {"z": 1, "a": 1e20, "neg": -0.0, "nul": "a\x00b"}
    await pg.save_state("exact", state("exact", **context))
    loaded = await pg.load_state("exact")
    assert loaded is not None
    assert list(loaded["pipeline_context"]) == ["z", "a", "neg", "nul"]
    assert type(loaded["pipeline_context"]["a"]) is float
    assert str(loaded["pipeline_context"]["neg"]) == "-0.0"
    assert loaded["pipeline_context"]["nul"] == "a\x00b"
    assert await _query(pg, "SELECT payload IS NULL FROM {t}") == [(True,)]  # no U+0000 in jsonb


@pytest.mark.postgres
async def test_postgres_encrypted_rows_have_no_plaintext_copy(
    postgres_target: PostgresTarget,
) -> None:
    backend = PostgresBackend(
        postgres_target.dsn,
        schema=postgres_target.schema,
        table=postgres_target.new_table(),
        encryption=Encryption.single(Encryption.generate_key()),
        queryable_payload=True,
    )
    try:
        await backend.save_state("s", state("s", secret="hunter2"))
        rows = await _query(backend, "SELECT payload IS NULL, envelope::text FROM {t}")
        assert rows[0][0] is True and "hunter2" not in str(rows[0][1])
    finally:
        await backend.close()


@pytest.mark.postgres
async def test_postgres_refuses_a_newer_layout(postgres_target: PostgresTarget) -> None:
    table = postgres_target.new_table()
    first = PostgresBackend(postgres_target.dsn, schema=postgres_target.schema, table=table)
    await first.save_state("r", state("r"))
    await first.close()
    await _query(
        first,
        f'UPDATE "{postgres_target.schema}".flujo_schema_versions SET version = 99'
        f" WHERE component = '{table}' RETURNING version",
    )
    second = PostgresBackend(postgres_target.dsn, schema=postgres_target.schema, table=table)
    try:
        with pytest.raises(FutureVersionError, match="layout version 99"):
            await second.load_state("r")
    finally:
        await second.close()


@pytest.mark.postgres
async def test_postgres_instances_share_data_and_claims(postgres_target: PostgresTarget) -> None:
    table = postgres_target.new_table()
    one = PostgresBackend(postgres_target.dsn, schema=postgres_target.schema, table=table)
    two = PostgresBackend(postgres_target.dsn, schema=postgres_target.schema, table=table)
    try:
        await one.save_state("r", state("r"))
        assert await two.save_state("r", state("r"), expected_revision=1) == 2
        async with one.claim("r"):
            with pytest.raises(RunInProgressError):
                async with two.claim("r"):
                    pass
        async with two.claim("r"):
            pass
    finally:
        await one.close()
        await two.close()


async def test_postgres_unreachable_server_is_a_clear_error() -> None:
    backend = PostgresBackend(
        "postgresql://nobody@127.0.0.1:1/none", schema="s", table=f"t_{uuid.uuid4().hex[:6]}",
        connect_timeout=1,
    )  # fmt: skip
    try:
        with pytest.raises(BackendUnavailableError):
            await backend.load_state("r")
        with pytest.raises(BackendUnavailableError):
            async with backend.claim("r"):
                pass
    finally:
        await backend.close()


def test_postgres_checks_names() -> None:
    with pytest.raises(ValueError, match="schema name"):
        PostgresBackend("postgresql://x", schema="bad-name")
    with pytest.raises(ValueError, match="table name"):
        PostgresBackend("postgresql://x", table="t" * 60)


def test_file_backend_removes_temp_files_of_dead_writers_only(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    from flujo.state import FileBackend

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    dead_pid = int(dead.stdout)
    tmp_path.mkdir(exist_ok=True)
    stale = tmp_path / f".run.json.{dead_pid}.abc123.tmp"
    young = tmp_path / f".young.json.{dead_pid}.def456.tmp"
    alive = tmp_path / f".live.json.{os.getpid()}.0a1b2c.tmp"
    for file in (stale, young, alive):
        file.write_bytes(b"partial")
    old = stale.stat().st_mtime - 3600
    os.utime(stale, (old, old))
    os.utime(alive, (old, old))
    backend = FileBackend(tmp_path)
    assert stale.exists()  # constructing touches nothing...
    asyncio.run(backend.load_state("r"))
    assert stale.exists()  # ...nor does reading
    asyncio.run(backend.save_state("r", state("r")))  # the first write tidies
    assert not stale.exists()
    assert young.exists() and alive.exists()  # too recent, or its writer is still running


@pytest.mark.parametrize("kind", ["file", "sqlite"])
async def test_a_store_path_that_cannot_be_looked_at_is_a_flujo_error(tmp_path: Path,
                                                                      kind: str) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    backend = (FileBackend(blocker / "store") if kind == "file"
               else SQLiteBackend(blocker / "state.db"))
    with pytest.raises(BackendUnavailableError):  # not a bare NotADirectoryError
        await backend.delete_state("r")
