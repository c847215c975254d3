"""PostgreSQL's fast paths (issue 18) write and read exactly what the slow ones do.

* A save of a run whose last record this process wrote is one statement
  (``PostgresBackend._write_over``), taken only while the stored record is still that one,
  and the claim (when given) still the run's: otherwise it writes nothing and the save takes
  the locking path (``SELECT ... FOR UPDATE``), with the same errors as before.
* A connection given back idle is kept for the next operation (``_lend``); one whose session
  the server ended is replaced, not used.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from state_helpers import PostgresTarget

from flujo.exceptions import ClaimLostError, StateConflictError
from flujo.state import PostgresBackend, WorkflowState

pytestmark = pytest.mark.postgres


def catalog(dsn: str, sql: str, *params: object) -> list[tuple[Any, ...]]:
    """Rows of a query on a connection of the test's own (not flujo's)."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        cur = conn.execute(sql, params or None)
        return list(cur.fetchall()) if cur.description is not None else []


def state(run_id: str, step: int, status: str = "running") -> WorkflowState:
    return WorkflowState(run_id=run_id, pipeline_name="p", status=status,
                         pipeline_context={"step": step, "notes": ["n"] * step})


class Spy:
    """Counts the one-statement writes of a backend, by outcome."""

    def __init__(self, backend: PostgresBackend, *, off: bool = False) -> None:
        self.outcomes: list[bool] = []
        real = backend._write_over

        async def write_over(*args: Any) -> bool:
            if off:
                return False  # as if the record had changed: the locking path writes
            done = await real(*args)
            self.outcomes.append(done)
            return done

        backend._write_over = write_over  # type: ignore[method-assign]


@pytest.fixture
async def backends(postgres_target: PostgresTarget
                   ) -> AsyncIterator[Callable[..., PostgresBackend]]:
    made: list[PostgresBackend] = []

    def new(table: str | None = None, **options: Any) -> PostgresBackend:
        backend = PostgresBackend(postgres_target.dsn, schema=postgres_target.schema,
                                  table=table or postgres_target.new_table(), **options)
        made.append(backend)
        return backend

    yield new
    for backend in made:
        await backend.close()


async def stored(backend: PostgresBackend, run_id: str) -> list[tuple[int, str, Any]]:
    """Every checkpoint of the run (revision, status, state) and the current state."""
    found = [(c.revision, c.status, (await backend.state_at(run_id, c.revision)))
             for c in await backend.history(run_id)]
    return [(revision, status, record.state.pipeline_context if record else None)
            for revision, status, record in found]


async def test_a_runs_saves_are_one_statement_and_store_what_the_locking_path_stores(
        backends: Callable[..., PostgresBackend]) -> None:
    fast, slow = backends(), backends()
    fast_spy, _ = Spy(fast), Spy(slow, off=True)
    for backend in (fast, slow):
        for step in range(1, 9):
            assert await backend.save_state("r", state("r", step)) == step
        assert await backend.save_state("r", state("r", 9, "completed")) == 9
    assert fast_spy.outcomes == [True] * 8  # every save after the first
    assert await stored(fast, "r") == await stored(slow, "r")
    for backend in (fast, slow):
        record = await backend.load_record("r")
        assert record is not None and record.revision == 9
        assert record.state.pipeline_context == {"step": 9, "notes": ["n"] * 9}


async def test_another_writer_in_between_makes_the_save_take_the_locking_path(
        postgres_target: PostgresTarget, backends: Callable[..., PostgresBackend]) -> None:
    table = postgres_target.new_table()
    mine, theirs = backends(table), backends(table)
    spy = Spy(mine)
    assert await mine.save_state("r", state("r", 1)) == 1
    assert await theirs.save_state("r", state("r", 2)) == 2
    # The record this backend wrote is no longer current: nothing is written by the one
    # statement, and the locking path refuses a stale expected revision as before.
    with pytest.raises(StateConflictError, match="expected revision 1 but found revision 2"):
        await mine.save_state("r", state("r", 3), expected_revision=1)
    assert await mine.save_state("r", state("r", 3)) == 3
    assert spy.outcomes == [False, False]
    assert [revision for revision, _, _ in await stored(mine, "r")] == [1, 2, 3]
    record = await theirs.load_record("r")
    assert record is not None and record.state.pipeline_context["step"] == 3
    assert await mine.save_state("r", state("r", 4)) == 4
    assert spy.outcomes == [False, False, True]


async def test_concurrent_writers_lose_no_save(
        postgres_target: PostgresTarget, backends: Callable[..., PostgresBackend]) -> None:
    table = postgres_target.new_table()
    writers = [backends(table, max_size=3) for _ in range(3)]
    assert await writers[0].save_state("r", state("r", 0)) == 1
    for writer in writers[1:]:
        await writer.load_record("r")  # each knows the record: it tries the one statement

    async def save_many(writer: PostgresBackend, label: int) -> list[int]:
        return [await writer.save_state("r", state("r", label * 100 + i)) for i in range(12)]

    revisions = await asyncio.gather(*(save_many(w, n) for n, w in enumerate(writers)))
    written = sorted(r for found in revisions for r in found)
    assert written == list(range(2, 2 + 36))  # every save has its own revision
    checkpoints = await writers[0].history("r")
    assert [c.revision for c in checkpoints] == list(range(1, 38))
    for checkpoint in checkpoints:  # and each revision reads back
        assert await writers[0].state_at("r", checkpoint.revision) is not None


async def test_a_save_under_a_lost_claim_writes_nothing_though_the_record_is_unchanged(
        postgres_target: PostgresTarget, backends: Callable[..., PostgresBackend]) -> None:
    table = postgres_target.new_table()
    backend = backends(table, claim_lease=5.0)
    spy = Spy(backend)
    async with backend.claim("r") as claim:
        assert await backend.save_state("r", state("r", 1), claim=claim) == 1
        assert await backend.save_state("r", state("r", 2), claim=claim) == 2
        assert spy.outcomes == [True]
        # Another worker's claim now (as after this one expired): the record is still the
        # one this backend wrote, but the claim is not this one's.
        catalog(postgres_target.dsn,
                f'UPDATE "{postgres_target.schema}"."{table}_claims" SET epoch = epoch + 1000'
                " WHERE run_id = %s", "r")
        with pytest.raises(ClaimLostError, match="nothing was written"):
            await backend.save_state("r", state("r", 3), claim=claim)
        assert spy.outcomes == [True, False]
    record = await backend.load_record("r")
    assert record is not None and record.revision == 2
    assert record.state.pipeline_context["step"] == 2


async def test_a_kept_connection_whose_session_the_server_ended_is_replaced(
        postgres_target: PostgresTarget, backends: Callable[..., PostgresBackend]) -> None:
    app = f"flujo_spare_{uuid.uuid4().hex[:8]}"
    dsn = f"{postgres_target.dsn}?application_name={app}"
    backend = PostgresBackend(dsn, schema=postgres_target.schema,
                              table=postgres_target.new_table(), min_size=1, max_size=2)
    try:
        assert await backend.save_state("r", state("r", 1)) == 1
        assert await backend.load_state("r") is not None
        ended = catalog(postgres_target.dsn,
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                        " WHERE application_name = %s", app)
        assert ended  # the kept connection (and the pool's) were ended
        deadline = time.monotonic() + 10
        while catalog(postgres_target.dsn, "SELECT 1 FROM pg_stat_activity"
                      " WHERE application_name = %s", app):
            assert time.monotonic() < deadline
            await asyncio.sleep(0.02)
        for step in (2, 3):  # loads and saves go on, on new connections
            loaded = await backend.load_state("r")
            assert loaded is not None and loaded["pipeline_context"]["step"] == step - 1
            assert await backend.save_state("r", state("r", step)) == step
    finally:
        await backend.close()
    assert catalog(postgres_target.dsn, "SELECT 1 FROM pg_stat_activity"
                   " WHERE application_name = %s", app) == []


async def test_operations_waiting_for_a_connection_get_the_one_given_back(
        postgres_target: PostgresTarget, backends: Callable[..., PostgresBackend]) -> None:
    """The connection kept for the next operation is not kept from one already waiting:
    with one connection in all, concurrent operations take turns."""
    backend = backends(max_size=1, connect_timeout=3)
    for run in ("a", "b"):
        await backend.save_state(run, state(run, 1))
    started = time.monotonic()
    found = await asyncio.gather(*(backend.load_state(run) for run in "abab"),
                                 backend.save_state("a", state("a", 2)))
    assert all(item is not None for item in found)
    assert time.monotonic() - started < 3  # none waited for the pool's timeout


async def test_a_load_waits_only_for_a_connection_given_back(
        postgres_target: PostgresTarget, backends: Callable[..., PostgresBackend]) -> None:
    """Two saves hold both connections (each waits on a row another session locked); when
    one finishes, its connection goes to the load waiting for one, not to the kept slot."""
    import psycopg

    table = postgres_target.new_table()
    backend = backends(table, min_size=1, max_size=2, connect_timeout=4)
    for run in ("a", "b", "c"):
        await backend.save_state(run, state(run, 0))
    lockers = [await psycopg.AsyncConnection.connect(postgres_target.dsn) for _ in range(2)]
    try:
        for locker, run in zip(lockers, "ab", strict=True):
            await locker.execute(f'SELECT 1 FROM "{postgres_target.schema}"."{table}"'
                                 " WHERE run_id = %s FOR UPDATE", (run,))
        saves = [asyncio.create_task(backend.save_state(run, state(run, 1))) for run in "ab"]
        await asyncio.sleep(0.3)
        load = asyncio.create_task(backend.load_state("c"))
        await asyncio.sleep(0.3)
        await lockers[1].rollback()  # save "b" finishes, its connection is given back
        loaded = await asyncio.wait_for(load, timeout=2)  # before the pool's timeout
        assert loaded is not None and not saves[0].done()
        await lockers[0].rollback()
        assert await asyncio.gather(*saves) == [2, 2]
    finally:
        for locker in lockers:
            await locker.close()


def test_a_process_with_many_open_files_still_checks_its_connections(
        postgres_target: PostgresTarget) -> None:
    """The check of idle connections works on descriptors past 1024 (``select`` does not)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1200:
        pytest.skip(f"the descriptor limit ({hard}) is below 1200")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1200), hard))
    held = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
    try:
        assert held[-1] >= 1024

        async def use() -> None:
            backend = PostgresBackend(postgres_target.dsn, schema=postgres_target.schema,
                                      table=postgres_target.new_table(), connect_timeout=3)
            try:
                for step in (1, 2, 3):
                    assert await backend.save_state("r", state("r", step)) == step
                    assert await backend.load_state("r") is not None
            finally:
                await backend.close()

        asyncio.run(use())
    finally:
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
