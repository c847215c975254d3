"""PostgreSQL claims are leases (issue 14), on the real server.

A lost session must not free a run while its worker is inside a step: the claim is a lease,
renewed by a thread with its own connection (reconnecting), that another worker takes only
once it expired. A worker that cannot renew stops before its lease expires (an async step is
cancelled; ClaimLostError), and a save under a stale claim is refused by fencing.

Worker A and worker B are two backends (and runners) with their own connection pools, told
apart on the server by ``application_name``; their steps log when they enter and leave, and
no two executions of the step may overlap. Leases are 1 to 2 s; every wait is bounded.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any
from urllib.parse import quote

import pytest
from state_helpers import PostgresTarget

from flujo import Flujo, Step
from flujo.exceptions import (
    BackendConfigError,
    ClaimLostError,
    RunInProgressError,
)
from flujo.state import PostgresBackend, RunClaim, WorkflowState
from flujo.state.backends import _pglease

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

BOUND = 30.0  # seconds: no wait in these tests is longer
RENEWER = "flujo-lease-renewer"


def dsn_for(base: str, app: str, **settings: str) -> str:
    """``base`` with an ``application_name`` (to find the worker's sessions) and per-session
    settings (``options=-c name=value``), never a role or database setting."""
    options = " ".join(f"-c {name}={value}" for name, value in settings.items())
    if "://" in base:
        extra = f"application_name={app}" + (f"&options={quote(options)}" if options else "")
        return f"{base}{'&' if '?' in base else '?'}{extra}"
    return f"{base} application_name={app}" + (f" options='{options}'" if options else "")


def catalog(dsn: str, sql: str, *params: object) -> list[tuple[Any, ...]]:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        cur = conn.execute(sql, params or None)
        return list(cur.fetchall()) if cur.description is not None else []


def terminate(dsn: str, app: str) -> int:
    """End every session of ``app`` (``pg_terminate_backend``); how many there were."""
    return len(catalog(dsn, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                       " WHERE application_name = %s AND pid <> pg_backend_pid()", app))


def sessions(dsn: str, app: str) -> int:
    return len(catalog(dsn, "SELECT pid FROM pg_stat_activity WHERE application_name = %s", app))


def renewers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(RENEWER) and t.is_alive()]


class Worker:
    """One worker: its own backend (and application_name) on the shared table."""

    def __init__(self, target: PostgresTarget, table: str, label: str, *, lease: float,
                 **settings: str) -> None:
        self.label = label
        self.app = f"flujo_{label}_{uuid.uuid4().hex[:8]}"
        self.dsn = dsn_for(target.dsn, self.app, **settings)
        self.backend = PostgresBackend(self.dsn, schema=target.schema, table=table,
                                       min_size=1, max_size=2, claim_lease=lease)


class StepLog:
    """When each worker's execution of the step entered and left it (monotonic clock)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, float]] = []
        self.inside: set[str] = set()

    def enter(self, label: str) -> None:
        self.events.append((label, "enter", time.monotonic()))
        self.inside.add(label)

    def leave(self, label: str) -> None:
        self.inside.discard(label)
        self.events.append((label, "leave", time.monotonic()))

    def intervals(self) -> list[tuple[float, float, str]]:
        opened: dict[str, float] = {}
        found = []
        for label, kind, at in self.events:
            if kind == "enter":
                opened[label] = at
            else:
                found.append((opened.pop(label), at, label))
        assert not opened, f"executions that never left: {opened}"
        return sorted(found)

    def assert_no_overlap(self) -> None:
        spans = self.intervals()
        for (_, left, first), (entered, _, second) in itertools.pairwise(spans):
            assert left <= entered, f"{second} entered the step while {first} was inside it"


def async_pipeline(log: StepLog, label: str, seconds: float) -> Step:
    async def work(data: str) -> str:
        log.enter(label)
        try:
            await asyncio.sleep(seconds)
        finally:
            log.leave(label)
        return f"{data}:{label}"

    return Step.from_callable(work, name="work")


def runner(worker: Worker, step: Step, *, claim_timeout: float | None = None) -> Flujo[Any]:
    return Flujo(step, state_backend=worker.backend, pipeline_name="leases",
                 claim_timeout=claim_timeout)


@pytest.fixture
def table(postgres_target: PostgresTarget) -> str:
    return postgres_target.new_table()


@pytest.fixture
async def workers(postgres_target: PostgresTarget) -> AsyncIterator[list[Worker]]:
    """Workers made by the test; closed at the end, and then none of their renewer threads
    or sessions may be left."""
    made: list[Worker] = []
    yield made
    for worker in made:
        await worker.backend.close()
    deadline = time.monotonic() + BOUND
    while renewers() or any(sessions(postgres_target.dsn, w.app) for w in made):
        assert time.monotonic() < deadline, (renewers(), [w.app for w in made])
        await asyncio.sleep(0.05)


@pytest.fixture
def blocked(monkeypatch: pytest.MonkeyPatch) -> Iterator[set[str]]:
    """DSNs whose renewals cannot connect (put a worker's ``dsn`` in the set)."""
    import psycopg

    dsns: set[str] = set()
    real = _pglease.connect

    def connect(dsn: str, connect_timeout: float) -> Any:
        if dsn in dsns:
            raise psycopg.OperationalError("the test blocks this worker's renewals")
        return real(dsn, connect_timeout)

    monkeypatch.setattr(_pglease, "connect", connect)
    yield dsns


async def wait_until(done: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + BOUND
    while not done():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


async def claim_when_free(worker: Worker, run_id: str) -> tuple[Any, RunClaim, int]:
    """Claim as soon as possible: the entered claim manager, its claim, and how many
    attempts were refused first."""
    refused = 0
    deadline = time.monotonic() + BOUND
    while True:
        manager = worker.backend.claim(run_id)
        try:
            claim = await manager.__aenter__()
        except RunInProgressError:
            refused += 1
            assert time.monotonic() < deadline, "the claim never became free"
            await asyncio.sleep(0.05)
            continue
        return manager, claim, refused


def state(run_id: str, who: str) -> WorkflowState:
    return WorkflowState(run_id=run_id, pipeline_name="leases", pipeline_context={"who": who})


# -- the lease ---------------------------------------------------------------------------------


def test_claim_lease_is_validated() -> None:
    for bad in (0, 0.1, -1, True, "30", float("nan"), float("inf"), 10**6):
        with pytest.raises(BackendConfigError, match="claim_lease"):
            PostgresBackend("postgresql://x", claim_lease=bad)  # type: ignore[arg-type]
    assert PostgresBackend("postgresql://x", claim_lease=2).claim_lease == 2.0
    assert PostgresBackend("postgresql://x").claim_lease == 30.0


async def test_a_held_claim_is_refused_and_a_released_one_free_at_once(
        postgres_target: PostgresTarget, table: str, workers: list[Worker]) -> None:
    a, b = Worker(postgres_target, table, "a", lease=1.0), Worker(postgres_target, table, "b",
                                                                   lease=1.0)
    workers += [a, b]
    async with a.backend.claim("r1") as first:
        assert first.epoch is not None and not first.lost
        for _ in range(3):  # held across several renewals
            with pytest.raises(RunInProgressError, match=r"run 'r1'.*claimed by another worker"
                               r" \(.+:\d+:[0-9a-f]+\) until "):
                async with b.backend.claim("r1"):
                    pass
            await asyncio.sleep(0.5)
        assert not first.lost
    async with b.backend.claim("r1") as second:  # released: free at once
        assert second.epoch is not None and second.epoch > first.epoch
    assert len(renewers()) == 0


async def test_an_unrenewed_claim_is_taken_only_after_it_expired_and_is_then_fenced(
        postgres_target: PostgresTarget, table: str, workers: list[Worker],
        blocked: set[str]) -> None:
    a, b, c = (Worker(postgres_target, table, label, lease=1.0) for label in "abc")
    workers += [a, b, c]
    blocked.add(a.dsn)
    async with a.backend.claim("r1") as stale:
        assert await a.backend.save_state("r1", state("r1", "a"), claim=stale) == 1
        lost = asyncio.ensure_future(stale.watch.wait())  # type: ignore[union-attr]
        manager, taken, refused = await claim_when_free(b, "r1")
        try:
            assert refused > 0  # it was held until it expired
            assert lost.done(), "A still thought it held the claim when B took it"
            assert "renewed in time" in lost.result()
            assert taken.epoch is not None and stale.epoch is not None
            assert taken.epoch > stale.epoch
            with pytest.raises(ClaimLostError, match=r"run 'r1'.*lost its claim"):
                stale.check()
            assert await b.backend.save_state("r1", state("r1", "b"), claim=taken) == 2
            # Fencing: A's save under its old epoch is refused, and nothing is written.
            for attempt in (
                    a.backend.save_state("r1", state("r1", "a"), claim=stale),
                    a.backend.save_state("r1", state("r1", "a"), expected_revision=2,
                                         claim=stale),
                    b.backend.save_state("r1", state("r1", "a"), claim=stale)):
                with pytest.raises(ClaimLostError, match=rf"epoch {stale.epoch}.*nothing was"):
                    await attempt
            record = await b.backend.load_record("r1")
            assert record is not None and record.revision == 2
            assert record.state.pipeline_context["who"] == "b"
            envelope = record.envelope
            with pytest.raises(ClaimLostError):
                await a.backend.write_envelope(envelope, claim=stale)
            with pytest.raises(BackendConfigError, match="this run's RunClaim"):
                await b.backend.save_state("r2", state("r2", "b"), claim=taken)
        finally:
            await manager.__aexit__(None, None, None)
    # A's exit released nothing of B's; B's did: C claims at once.
    async with c.backend.claim("r1") as third:
        assert third.epoch is not None and third.epoch > taken.epoch


async def test_renewal_survives_terminated_sessions(
        postgres_target: PostgresTarget, table: str, workers: list[Worker]) -> None:
    a, b = Worker(postgres_target, table, "a", lease=1.5), Worker(postgres_target, table, "b",
                                                                   lease=1.5)
    workers += [a, b]
    async with a.backend.claim("r1") as held:
        killed = 0
        until = time.monotonic() + 4.0  # several leases
        while time.monotonic() < until:
            killed += terminate(postgres_target.dsn, a.app)
            with pytest.raises(RunInProgressError):
                async with b.backend.claim("r1"):
                    pass
            await asyncio.sleep(0.2)
        assert killed > 0 and not held.lost
        assert await a.backend.save_state("r1", state("r1", "a"), claim=held) == 1


async def test_closing_leaves_no_renewer_and_no_session(
        postgres_target: PostgresTarget, table: str) -> None:
    a = Worker(postgres_target, table, "a", lease=1.0)
    try:
        async with a.backend.claim("r1"):
            assert len(renewers()) == 1
            # the pool's and the renewer's (which connects at its first renewal)
            await wait_until(lambda: sessions(postgres_target.dsn, a.app) >= 2, "a renewal")
        assert renewers() == []
    finally:
        await a.backend.close()
    await wait_until(lambda: sessions(postgres_target.dsn, a.app) == 0, "sessions to end")


# -- the runner: no second worker inside the step ----------------------------------------------


async def contend(log: StepLog, a: Worker, b: Worker, run_id: str, *,
                  kill: Callable[[], int] | None = None) -> tuple[int, int]:
    """While A is inside the step: (kill A's sessions, then) let B try to run the run; every
    try must be refused. Returns (tries, sessions killed)."""
    await wait_until(lambda: "a" in log.inside, "A to enter the step")
    tries = killed = 0
    while "a" in log.inside:
        if kill is not None:
            killed += kill()
        with pytest.raises(RunInProgressError):
            await runner(b, async_pipeline(log, "b", 0.1)).run_async("x", run_id=run_id)
        tries += 1
        await asyncio.sleep(0.2)
    return tries, killed


@pytest.mark.parametrize("loss", ["terminate", "idle_session_timeout"])
async def test_a_lost_session_lets_no_second_worker_into_the_step(
        postgres_target: PostgresTarget, table: str, workers: list[Worker], loss: str) -> None:
    settings = {"idle_session_timeout": "300"} if loss == "idle_session_timeout" else {}
    # 3 s: A's renewer reconnects after every terminated session; on a loaded 2-core
    # machine a reconnection has taken longer than a 2 s lease's margin (the suite, once)
    a = Worker(postgres_target, table, "a", lease=3.0, **settings)
    b = Worker(postgres_target, table, "b", lease=3.0)
    workers += [a, b]
    log = StepLog()
    run_id = f"r-{uuid.uuid4().hex[:8]}"
    first = asyncio.ensure_future(
        runner(a, async_pipeline(log, "a", 4.0)).run_async("x", run_id=run_id))
    try:
        kill = (lambda: terminate(postgres_target.dsn, a.app)) if loss == "terminate" else None
        tries, killed = await contend(log, a, b, run_id, kill=kill)
        result = await asyncio.wait_for(first, BOUND)
    finally:
        first.cancel()
    assert result.success and result.output == "x:a"
    assert tries >= 5 and (loss != "terminate" or killed > 0)
    # B finds the run completed and runs nothing.
    again = await runner(b, async_pipeline(log, "b", 0.1)).run_async("x", run_id=run_id)
    assert again.success and again.output == "x:a"
    assert [label for label, kind, _ in log.events if kind == "enter"] == ["a"]
    log.assert_no_overlap()


async def test_a_worker_that_cannot_renew_cancels_its_step_before_another_takes_over(
        postgres_target: PostgresTarget, table: str, workers: list[Worker],
        blocked: set[str]) -> None:
    a = Worker(postgres_target, table, "a", lease=1.5)
    b = Worker(postgres_target, table, "b", lease=1.5)
    workers += [a, b]
    blocked.add(a.dsn)
    log = StepLog()
    run_id = f"r-{uuid.uuid4().hex[:8]}"
    first = asyncio.ensure_future(
        runner(a, async_pipeline(log, "a", BOUND)).run_async("x", run_id=run_id))
    await wait_until(lambda: "a" in log.inside, "A to enter the step")
    taken_over = await runner(b, async_pipeline(log, "b", 0.2),
                              claim_timeout=BOUND).run_async("x", run_id=run_id)
    with pytest.raises(ClaimLostError, match=rf"run '{run_id}'.*lost its claim"):
        await asyncio.wait_for(first, BOUND)
    assert taken_over.success and taken_over.output == "x:b"
    assert [label for label, kind, _ in log.events if kind == "enter"] == ["a", "b"]
    log.assert_no_overlap()  # A's step was cancelled before B's claim could succeed
    record = await b.backend.load_record(run_id)
    assert record is not None and record.state.status == "completed"
    assert record.state.last_step_output == "x:b"


async def test_a_sync_step_keeps_its_claim_while_it_blocks_the_event_loop(
        postgres_target: PostgresTarget, table: str, workers: list[Worker]) -> None:
    a = Worker(postgres_target, table, "a", lease=1.0)
    workers += [a]
    run_id = f"r-{uuid.uuid4().hex[:8]}"
    refused: list[int] = []

    def other_worker() -> None:  # its own loop and backend: A's loop is blocked
        async def tries() -> None:
            b = Worker(postgres_target, table, "b", lease=1.0)
            try:
                for _ in range(8):
                    with pytest.raises(RunInProgressError):
                        async with b.backend.claim(run_id):
                            pass
                    refused.append(1)
                    await asyncio.sleep(0.3)
            finally:
                await b.backend.close()

        asyncio.run(tries())

    def blocking(data: str) -> str:
        thread = threading.Thread(target=other_worker)
        thread.start()
        thread.join(BOUND)  # 2.4 s and more: over twice the lease, with no await
        return data

    result = await runner(a, Step.from_callable(blocking)).run_async("x", run_id=run_id)
    assert result.success and len(refused) == 8


async def test_a_late_sync_step_saves_nothing_over_the_worker_that_took_over(
        postgres_target: PostgresTarget, table: str, workers: list[Worker],
        blocked: set[str]) -> None:
    a = Worker(postgres_target, table, "a", lease=1.0)
    workers += [a]
    blocked.add(a.dsn)
    run_id = f"r-{uuid.uuid4().hex[:8]}"
    outcome: dict[str, Any] = {}

    def other_worker() -> None:
        async def take_over() -> None:
            b = Worker(postgres_target, table, "b", lease=1.0)
            try:
                step = Step.from_callable(lambda data: f"{data}:b", name="work")
                outcome["b"] = await runner(b, step, claim_timeout=BOUND).run_async(
                    "x", run_id=run_id)
                outcome["record"] = await b.backend.load_record(run_id)
            finally:
                await b.backend.close()

        asyncio.run(take_over())

    def late(data: str) -> str:  # sync: cannot be cancelled; returns after B finished
        thread = threading.Thread(target=other_worker)
        thread.start()
        thread.join(BOUND)
        return f"{data}:a"

    with pytest.raises(ClaimLostError, match=rf"run '{run_id}'.*lost its claim"):
        await runner(a, Step.from_callable(late, name="work")).run_async("x", run_id=run_id)
    assert outcome["b"].success and outcome["b"].output == "x:b"
    record = await a.backend.load_record(run_id)
    assert record is not None and record.revision == outcome["record"].revision
    assert record.state.last_step_output == "x:b" and record.state.status == "completed"
