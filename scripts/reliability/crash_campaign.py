"""Crash campaign: SIGKILL pipelines at random points, resume them, check everything.

    python scripts/reliability/crash_campaign.py --backend sqlite --kills 5000 \\
        --migration-kills 1000 --json crash-sqlite.json

A driver process imports everything once, then for every kill forks a worker (a real process,
killed with a real SIGKILL) that runs short pipelines on the store, one run after the other:
five steps, a context holding models, Decimals, zoned datetimes, frozensets and tuples. How the
worker dies is chosen at random for each kill:

* ``timer``: the driver kills it after a random delay: anywhere (start-up, claim, load, steps,
  serialization, the backend's write, fsync).
* ``step``: the worker kills itself inside a randomly chosen step, either right after the
  step's side effect or after the step changed the context.
* ``save``: when a randomly chosen ``save_state`` begins, a thread of the worker kills it
  after a random fraction of a typical save's duration (serializing, inside the write).

After each kill every record the dead worker touched must load without any error, and must
equal the state an uninterrupted run saved after the same step (values and exact types); so
must every checkpoint kept in its history (the whole states and the deltas between them). The
next worker resumes where the last one died. At the end every run is resumed to completion and
must equal an uninterrupted run, and the side-effect log must show that no step was skipped
and that a step ran again only right after its worker was killed.

Migration kills: a second store of finished runs is rewritten by ``migrate_all`` (alternating
compression and encryption keys, plus a whole-state migration) while workers are killed at
random; after each kill every record must load and decode to the expected state. A final
``migrate_all`` must succeed and leave every record current.

Compaction kills: a third store of finished runs, each a chain of checkpoints, is compacted
(``prune(history_only=True)``) while workers are killed at random; after each kill every run
must load its last state exactly and its history must be either whole or that one checkpoint.

The JSON report has the figures quoted in docs/reliability.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import mmap
import os
import random
import signal
import socket
import struct
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    Store,
    difference,
    make_store,
    postgres_dsn,
    postgres_schema,
    write_json,
)
from pydantic import BaseModel, Field

from flujo import Flujo, PipelineContext, Step
from flujo.serialization import register_type
from flujo.state import (
    Encryption,
    EnvelopeStateBackend,
    InMemoryBackend,
    RunClaim,
    StateBackend,
    StateMigrations,
    WorkflowState,
    migrate_all,
)

# -- the pipeline -----------------------------------------------------------------------------

STEP_NAMES = ("load", "enrich", "price", "total", "ship")
WIDTH = len(STEP_NAMES)
PARIS = ZoneInfo("Europe/Paris")


class Item(BaseModel):
    sku: str
    price: Decimal
    added: datetime


class CrashCtx(PipelineContext):
    items: list[Item] = Field(default_factory=list)
    seen: frozenset[str] = frozenset()
    done: list[int] = Field(default_factory=list)


register_type(Item, name="reliability.Item")
register_type(CrashCtx, name="reliability.CrashCtx")
# The kills must hit chains of deltas; this campaign's states are small enough to be saved
# whole by default (EnvelopeStateBackend.WHOLE_RECORD_BYTES), so every save may be a delta
# here.
EnvelopeStateBackend.WHOLE_RECORD_BYTES = 0


def rid(index: int) -> str:
    return f"run-{index:06d}"


def order_of(index: int) -> str:
    return f"order-{index}"


def _load(order: str, context: CrashCtx) -> list[Item]:
    number = int(order.split("-")[1])
    base = datetime(2026, 3, 29, 1, 30, tzinfo=PARIS)
    context.items = [Item(sku=f"{order}-{i}", price=Decimal(f"{i}.{number % 100:02d}"),
                          added=base + timedelta(hours=i)) for i in range(1 + number % 3)]
    return list(context.items)


def _enrich(items: list[Item], context: CrashCtx) -> tuple[Item, ...]:
    context.seen = context.seen | {item.sku for item in items}
    return tuple(items)


def _price(items: tuple[Item, ...], context: CrashCtx) -> dict[str, Decimal]:
    return {item.sku: item.price * 2 for item in items}


def _total(prices: dict[str, Decimal], context: CrashCtx) -> Decimal:
    context.scratchpad["total_at"] = datetime(2026, 1, 1, tzinfo=timezone(timedelta(hours=5)))
    return sum(prices.values(), Decimal("0.00"))


def _ship(amount: Decimal, context: CrashCtx) -> dict[str, Any]:
    return {"amount": amount, "skus": frozenset(context.seen), "run": context.run_id,
            "nan": float("nan"), "big": 2**80}


BODIES: tuple[Callable[[Any, CrashCtx], Any], ...] = (_load, _enrich, _price, _total, _ship)

# -- what a worker shares with the driver ------------------------------------------------------

PHASES = {
    0: "start-up (open the store)",
    1: "runner (claim, load, between steps)",
    2: "inside a step",
    3: "save_state: serializing",
    4: "save_state: the backend's write",
    5: "migrate_all: reading and decoding",
    6: "migrate_all: serializing a rewrite",
    7: "migrate_all: the backend's write",
    8: "finished",
    9: "compaction: reading the history",
    10: "compaction: the backend's write",
}
STARTUP, RUNNER, STEP, SAVE_ENCODE, SAVE_WRITE, MIG_READ, MIG_ENCODE, MIG_WRITE, DONE, \
    COMPACT_READ, COMPACT_WRITE = range(11)


class Shared:
    """A few numbers in anonymous shared memory, written by the worker, read by the driver."""

    _FMT = "<qqddd"  # run index, phase, ema of save seconds, startup seconds, seconds per run

    def __init__(self) -> None:
        self._mm = mmap.mmap(-1, struct.calcsize(self._FMT))
        struct.pack_into(self._FMT, self._mm, 0, 0, STARTUP, 0.001, 0.01, 0.01)

    def get(self) -> dict[str, Any]:
        values = struct.unpack_from(self._FMT, self._mm, 0)
        return dict(zip(("run_index", "phase", "ema_save", "startup", "per_run"), values,
                        strict=True))

    def set(self, **changes: Any) -> None:
        values = {**self.get(), **changes}
        struct.pack_into(self._FMT, self._mm, 0, int(values["run_index"]),
                         int(values["phase"]), float(values["ema_save"]),
                         float(values["startup"]), float(values["per_run"]))

    def phase(self, value: int) -> None:
        struct.pack_into("<q", self._mm, 8, value)


@dataclass
class Life:
    """How the next worker is to die (set in the driver before fork, read in the child)."""

    mode: str  # timer | step | save | calibrate
    start: int  # first run index (or, for migration lives, the config number)
    seed: int
    target: int = 0  # step entries or saves before the kill
    late: bool = False  # step mode: kill after the step changed the context
    stop_after: int = 0  # calibrate: number of runs


class _Process:
    """Per-process settings of the campaign (inherited by forked workers)."""

    shared: Shared
    life: Life
    effects = ""  # the side-effect log; "" while computing expectations (nothing logged)
    errors = os.devnull  # where workers write the traceback of an unexpected error


G = _Process()
_counters: Counter[str] = Counter()


def _kill_now() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _kill_after(delay: float) -> None:
    time.sleep(delay)
    _kill_now()


def _enter(run_id: str, index: int) -> None:
    G.shared.phase(STEP)
    if not G.effects:
        return
    fd = os.open(G.effects, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, f"{run_id} {index} {os.getpid()}\n".encode())
    finally:
        os.close(fd)
    if G.life.mode == "step":
        _counters["steps"] += 1
        if _counters["steps"] == G.life.target and not G.life.late:
            _kill_now()


def _leave() -> None:
    if G.life.mode == "step" and _counters["steps"] == G.life.target and G.life.late:
        _kill_now()
    G.shared.phase(RUNNER)


def _make_step(index: int) -> Step[Any, Any]:
    body = BODIES[index]

    def step(data: Any, *, context: CrashCtx) -> Any:
        _enter(context.run_id, index)
        out = body(data, context)
        context.done.append(index)
        _leave()
        return out

    return Step.from_callable(step, name=STEP_NAMES[index])


PIPELINE = (_make_step(0) >> _make_step(1) >> _make_step(2) >> _make_step(3)
            >> _make_step(4))


# PostgreSQL frees a killed worker's claim when its lease (_common.PG_CLAIM_LEASE) expires:
# the next worker, forked at once, waits for it as any worker waiting for a claim would (a
# claim still held after this long is a failure).
CLAIM_TIMEOUT = 10.0


def build_runner(backend: StateBackend) -> Flujo[CrashCtx]:
    return Flujo(PIPELINE, context_model=CrashCtx, state_backend=backend,
                 pipeline_name="crash-campaign", pipeline_version="1",
                 claim_timeout=CLAIM_TIMEOUT)


def _instrument(backend: StateBackend, *, migrating: bool) -> None:
    """Track phases (and arm save-mode kills) around save_state and the backend's write."""
    assert isinstance(backend, EnvelopeStateBackend)
    save_state = backend.save_state
    write = backend._write
    read_envelope = backend.read_envelope
    idle = MIG_READ if migrating else RUNNER

    async def tracked_save(run_id: str, state: Any, *, expected_revision: int | None = None,
                           claim: Any = None) -> int:
        G.shared.phase(MIG_ENCODE if migrating else SAVE_ENCODE)
        if G.life.mode == "save":
            _counters["saves"] += 1
            if _counters["saves"] == G.life.target:
                pick = random.Random(G.life.seed)
                # Half the kills early (while serializing), half spread over a typical save.
                span = 1.5 * G.shared.get()["ema_save"] if pick.random() < 0.5 else 0.0002
                delay = pick.uniform(0, span)
                threading.Thread(target=_kill_after, args=(delay,), daemon=True).start()
        started = time.perf_counter()
        try:
            return await save_state(run_id, state, expected_revision=expected_revision,
                                    claim=claim)
        finally:
            took = time.perf_counter() - started
            shared = G.shared.get()
            G.shared.set(ema_save=0.9 * shared["ema_save"] + 0.1 * took)
            G.shared.phase(idle)

    async def tracked_write(run_id: str, make: Any, **fenced: Any) -> Any:
        G.shared.phase(MIG_WRITE if migrating else SAVE_WRITE)
        try:
            return await write(run_id, make, **fenced)
        finally:
            G.shared.phase(MIG_ENCODE if migrating else SAVE_ENCODE)

    async def tracked_read(run_id: str) -> Any:
        G.shared.phase(MIG_READ if migrating else RUNNER)
        return await read_envelope(run_id)

    backend.save_state = tracked_save  # type: ignore[method-assign]
    backend._write = tracked_write  # type: ignore[method-assign]
    backend.read_envelope = tracked_read  # type: ignore[method-assign]


# -- migration configurations ------------------------------------------------------------------

KEYS = {"k1": bytes(range(32)), "k2": bytes(range(100, 132))}


def state_migrations(version: int) -> StateMigrations:
    migrations = StateMigrations(current_version=version)
    if version >= 2:
        def mark(state: dict[str, Any]) -> dict[str, Any]:
            state["pipeline_context"]["scratchpad"]["migrated"] = "v2"
            return state
        migrations.register(1, mark)
    return migrations


def writer_options(config: int) -> dict[str, Any]:
    """The store settings of migration life ``config``: each differs from the one before."""
    compression = (None, "zlib", "zstd", "zlib")[config % 4]
    active = ("k1", "k2", "k1", "k1")[config % 4]
    return {"compression": compression,
            "encryption": Encryption(KEYS, active_key_id=active, accept_plaintext=True),
            "migrations": state_migrations(2)}


def reader_options() -> dict[str, Any]:
    return {"encryption": Encryption(KEYS, active_key_id="k1", accept_plaintext=True),
            "migrations": state_migrations(2)}


# -- the worker (a forked child) ---------------------------------------------------------------

async def _run_worker(store: Store) -> None:
    started = time.perf_counter()
    backend = store.open()
    _instrument(backend, migrating=False)
    runner = build_runner(backend)
    index = G.life.start
    G.shared.set(run_index=index, startup=time.perf_counter() - started)
    G.shared.phase(RUNNER)
    finished = 0
    while True:
        G.shared.set(run_index=index)
        began = time.perf_counter()
        result = await runner.run_async(order_of(index), run_id=rid(index))
        if not result.success:
            raise RuntimeError(f"{rid(index)} failed: {result.step_history[-1].feedback}")
        if finished == 0 or G.life.mode == "calibrate":
            G.shared.set(per_run=time.perf_counter() - began)
        index += 1
        finished += 1
        G.shared.set(run_index=index)
        if G.life.mode == "calibrate" and finished >= G.life.stop_after:
            await backend.close()
            G.shared.phase(DONE)
            return


async def _migrate_worker(store: Store) -> None:
    started = time.perf_counter()
    backend = store.open(**writer_options(G.life.start))
    _instrument(backend, migrating=True)
    G.shared.set(startup=time.perf_counter() - started)
    G.shared.phase(MIG_READ)
    began = time.perf_counter()
    assert isinstance(backend, EnvelopeStateBackend)
    report = await migrate_all(backend)
    if not report.ok:
        raise RuntimeError(report.summary())
    G.shared.set(per_run=time.perf_counter() - began)
    await backend.close()
    G.shared.phase(DONE)


def _fork(life: Life, work: Callable[[], Any]) -> int:
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid:
        return pid
    code = 3
    try:
        G.life = life
        random.seed(life.seed)
        asyncio.run(work())
        code = 0
    except BaseException:
        with open(G.errors, "a", encoding="utf-8") as handle:
            handle.write(f"--- worker {os.getpid()} ({life.mode})\n{traceback.format_exc()}")
    finally:
        os._exit(code)


# -- the driver ------------------------------------------------------------------------------

@contextlib.contextmanager
def _quiet() -> Any:
    """Run pipelines in the driver without kills or side-effect log entries."""
    saved = G.life, G.effects
    G.life, G.effects = Life("none", 0, 0), ""
    try:
        yield
    finally:
        G.life, G.effects = saved


@dataclass
class Snapshot:
    """What an uninterrupted run saved after each step, and its result."""

    states: list[WorkflowState]
    output: Any
    context: CrashCtx


@dataclass
class Report:
    backend: str
    kills_made: int = 0
    kills_survived: int = 0
    by_mode: Counter[str] = field(default_factory=Counter)
    by_phase: Counter[str] = field(default_factory=Counter)
    records_checked: int = 0
    unreadable_records: int = 0
    inconsistent_records: int = 0
    runs: int = 0
    runs_exact: int = 0
    steps_rerun_after_a_kill: int = 0
    effect_log_violations: int = 0
    worker_errors: int = 0
    hangs: int = 0
    migration_kills_made: int = 0
    migration_kills_survived: int = 0
    migration_by_phase: Counter[str] = field(default_factory=Counter)
    migration_passes_completed: int = 0
    migration_records: int = 0
    migration_final_ok: bool = False
    checkpoints_checked: int = 0
    delta_checkpoints: int = 0
    compaction_kills_made: int = 0
    compaction_kills_survived: int = 0
    compaction_by_phase: Counter[str] = field(default_factory=Counter)
    runs_compacted: int = 0
    temp_files_left: int = 0
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)

    def problem(self, text: str) -> None:
        if len(self.problems) < 50:
            self.problems.append(text)

    @property
    def ok(self) -> bool:
        return (self.kills_survived == self.kills_made
                and self.migration_kills_survived == self.migration_kills_made
                and self.compaction_kills_survived == self.compaction_kills_made
                and self.runs_exact == self.runs and not self.problems
                and (self.migration_kills_made == 0 or self.migration_final_ok))

    def to_json(self) -> dict[str, Any]:
        data = {k: (dict(v) if isinstance(v, Counter) else v) for k, v in self.__dict__.items()}
        data["ok"] = self.ok
        return data


class Driver:
    def __init__(self, store: Store, workdir: Path, seed: int, report: Report,
                 progress: bool) -> None:
        self.store = store
        self.workdir = workdir
        self.rng = random.Random(seed)
        self.report = report
        self.progress = progress
        self.expected: dict[int, Snapshot] = {}
        self.killed: set[int] = set()

    # -- expectations --------------------------------------------------------------------
    async def snapshot(self, index: int) -> Snapshot:
        found = self.expected.get(index)
        if found is None:
            found = self.expected[index] = await self._uninterrupted(index)
        return found

    @staticmethod
    async def _uninterrupted(index: int) -> Snapshot:
        memory = InMemoryBackend()
        states: list[WorkflowState] = []
        save_state = memory.save_state

        async def capture(run_id: str, state: Any, *, expected_revision: int | None = None,
                          claim: RunClaim | None = None) -> int:
            revision = await save_state(run_id, state, expected_revision=expected_revision,
                                        claim=claim)
            record = await memory.load_record(run_id)  # decoded copy, immune to later mutation
            assert record is not None
            states.append(record.state)
            return revision

        memory.save_state = capture  # type: ignore[method-assign]
        with _quiet():
            result = await build_runner(memory).run_async(order_of(index), run_id=rid(index))
        context = result.final_pipeline_context
        assert context is not None
        return Snapshot(states, result.output, context)

    # -- checks -----------------------------------------------------------------------------
    def check_runs(self, first: int, last: int) -> list[str]:
        return asyncio.run(self._check_runs(first, last))

    async def _check_runs(self, first: int, last: int) -> list[str]:
        problems: list[str] = []
        backend = self.store.open()
        try:
            for index in range(first, last + 1):
                self.report.records_checked += 1
                try:
                    record = await backend.load_record(rid(index))
                except Exception as exc:
                    self.report.unreadable_records += 1
                    problems.append(f"{rid(index)} unreadable: {type(exc).__name__}: {exc}")
                    continue
                if record is None:
                    continue
                snapshot = await self.snapshot(index)
                found = self._compare(snapshot, record.state)
                if found:
                    self.report.inconsistent_records += 1
                    problems.append(f"{rid(index)}: {found}")
                problems += await self._check_checkpoints(backend, rid(index), snapshot)
        finally:
            await backend.close()
        return problems

    async def _check_checkpoints(self, backend: StateBackend, run_id: str,
                                 snapshot: Snapshot) -> list[str]:
        """Every kept checkpoint of the run rebuilds what an uninterrupted run saved after
        the same number of steps (a kill must not damage the chain of deltas either)."""
        assert isinstance(backend, EnvelopeStateBackend)
        problems: list[str] = []
        try:
            checkpoints = await backend.history(run_id)
        except Exception as exc:
            self.report.unreadable_records += 1
            return [f"{run_id} history unreadable: {type(exc).__name__}: {exc}"]
        for checkpoint in checkpoints:
            self.report.checkpoints_checked += 1
            self.report.delta_checkpoints += checkpoint.kind == "delta"
            try:
                record = await backend.state_at(run_id, checkpoint.revision)
            except Exception as exc:
                self.report.unreadable_records += 1
                problems.append(f"{run_id} revision {checkpoint.revision} unreadable:"
                                f" {type(exc).__name__}: {exc}")
                continue
            found = "not stored" if record is None else self._compare(snapshot, record.state)
            if found:
                self.report.inconsistent_records += 1
                problems.append(f"{run_id} revision {checkpoint.revision}: {found}")
        return problems

    @staticmethod
    def _compare(snapshot: Snapshot, state: WorkflowState) -> str | None:
        expected = snapshot.states
        n = state.current_step_index
        want = expected[n]  # states[0] is the save before the first step
        if state.status != want.status:
            return f"status {state.status} at step {n}, expected {want.status}"
        for name in ("pipeline_context", "last_step_output"):
            found = difference(getattr(state, name), getattr(want, name), name)
            if found:
                return f"after step {n}: {found}"
        got = [(s.name, s.output, s.attempts) for s in state.step_history]
        exp = [(s.name, s.output, s.attempts) for s in want.step_history]
        return difference(got, exp, "step_history")

    # -- lives --------------------------------------------------------------------------------
    def _wait(self, pid: int, kill_at: float | None, watchdog: float) -> int | None:
        """Wait for the worker (killing it at ``kill_at``); its wait status, None if it hung."""
        deadline = time.monotonic() + watchdog
        while True:
            now = time.monotonic()
            if kill_at is not None and now >= kill_at:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                kill_at = None
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                return status
            if now > deadline:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                return None
            time.sleep(0.0005 if kill_at is not None and kill_at - now < 0.002 else 0.001)

    def life(self, life: Life, work: Callable[[], Any], delay: float | None,
             watchdog: float = 30.0) -> tuple[str, int]:
        """Run one worker; return ("killed" | "exited" | "failed" | "hung", phase at death)."""
        G.shared.phase(STARTUP)
        pid = self._fork_worker(life, work)
        kill_at = None if delay is None else time.monotonic() + delay
        status = self._wait(pid, kill_at, watchdog)
        phase = G.shared.get()["phase"]
        if status is None:
            self.report.hangs += 1
            self.report.problem(f"worker {pid} ({life.mode}) did not finish in {watchdog}s")
            self.killed.add(pid)
            self._expire_claims(pid)
            return "hung", phase
        if os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL:
            self.killed.add(pid)
            self._expire_claims(pid)
            return "killed", phase
        if os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0:
            return "exited", phase
        self.report.worker_errors += 1
        self.report.problem(f"worker {pid} ({life.mode}) ended with status {status}")
        return "failed", phase

    def _expire_claims(self, pid: int) -> None:
        """PostgreSQL: end the leases of a worker that is dead (reaped), as their expiry would
        a moment later; the next worker need not wait for them (expiry itself is tested by
        tests/state/test_postgres_leases.py and the crash tests of the runner)."""
        if self.store.kind != "postgres":
            return
        import psycopg

        claims = f'"{self.store.schema}"."{self.store.table}_claims"'
        with psycopg.connect(self.store.location, autocommit=True) as conn, \
                contextlib.suppress(psycopg.errors.UndefinedTable):  # killed before any claim
            conn.execute(f"DELETE FROM {claims} WHERE holder LIKE %s",
                         (f"{socket.gethostname()}:{pid}:%",))

    @staticmethod
    def _fork_worker(life: Life, work: Callable[[], Any]) -> int:
        return _fork(life, work)

    # -- the runs campaign ----------------------------------------------------------------
    def run_kills(self, kills: int) -> None:
        store = self.store
        index = 0
        self.life(Life("calibrate", 0, self.rng.randrange(2**31), stop_after=3),
                  lambda: _run_worker(store), None)
        shared = G.shared.get()
        index = int(shared["run_index"])
        for n in range(kills):
            mode = self.rng.choice(("timer", "step", "save"))
            shared = G.shared.get()
            life = Life(mode, index, self.rng.randrange(2**31))
            delay: float | None = None
            if mode == "timer":
                delay = self.rng.uniform(0, shared["startup"] + 1.5 * shared["per_run"])
            elif mode == "step":
                life.target = self.rng.randint(1, 2 * WIDTH)
                life.late = self.rng.random() < 0.5
            else:
                life.target = self.rng.randint(1, 2 * (WIDTH + 1))
            _counters.clear()
            outcome, phase = self.life(life, lambda: _run_worker(store), delay)
            last = int(G.shared.get()["run_index"])
            self.report.kills_made += outcome in ("killed", "hung")
            self.report.by_mode[mode] += 1
            self.report.by_phase[PHASES.get(phase, str(phase))] += 1
            problems = self.check_runs(index, last)
            if outcome == "killed" and not problems:
                self.report.kills_survived += 1
            for problem in problems:
                self.report.problem(f"kill {n} ({mode}, {PHASES.get(phase)}): {problem}")
            index = last
            if self.report.worker_errors >= 10:
                self.report.problem(f"aborted after {n + 1} lives: workers keep failing")
                break
            if self.progress and (n + 1) % 100 == 0:
                print(f"[{self.report.backend}] {n + 1}/{kills} kills, run {index}",
                      file=sys.stderr, flush=True)
        self.finish_runs(index)

    def finish_runs(self, last: int) -> None:
        asyncio.run(self._finish_runs(last))
        self.check_effects(last)
        if self.store.kind == "file":
            directory = Path(self.store.location)
            self.report.temp_files_left = sum(1 for p in directory.glob(".*.tmp"))

    async def _finish_runs(self, last: int) -> None:
        backend = self.store.open()
        try:
            ids = await backend.list_run_ids()
            extra = sorted(set(ids) - {rid(i) for i in range(last + 1)})
            if extra:
                self.report.problem(f"unexpected records in the store: {extra[:5]}")
            runner = build_runner(backend)
            for index in range(last + 1):
                self.report.runs += 1
                try:
                    result = await runner.run_async(order_of(index), run_id=rid(index))
                except Exception as exc:
                    self.report.problem(f"{rid(index)} cannot be resumed: {exc!r}")
                    continue
                want = await self.snapshot(index)
                found = (difference(result.output, want.output, "output")
                         or difference(result.final_pipeline_context, want.context, "context"))
                if result.success and not found:
                    self.report.runs_exact += 1
                else:
                    self.report.problem(f"{rid(index)} differs from an uninterrupted run: "
                                        f"{found or result.step_history[-1].feedback}")
        finally:
            await backend.close()

    def check_effects(self, last: int) -> None:
        """Per run: steps in order; a step repeats only after its worker was killed."""
        seen: dict[str, list[tuple[int, int]]] = defaultdict(list)
        with open(G.effects, encoding="utf-8") as handle:
            for line in handle:
                run_id, index, pid = line.split()
                seen[run_id].append((int(index), int(pid)))
        for number in range(last + 1):
            entries = seen.get(rid(number), [])
            problem = None
            if not entries or entries[0][0] != 0 or entries[-1][0] != WIDTH - 1:
                problem = f"does not run from step 0 to step {WIDTH - 1}: {entries}"
            for (i1, p1), (i2, p2) in itertools.pairwise(entries):
                if i2 == i1 + 1:
                    continue
                if i2 == i1 and p1 != p2 and p1 in self.killed:
                    self.report.steps_rerun_after_a_kill += 1
                    continue
                problem = f"step {i1} (pid {p1}) followed by step {i2} (pid {p2})"
            if problem:
                self.report.effect_log_violations += 1
                self.report.problem(f"{rid(number)} side effects: {problem}")

    # -- the migration campaign -----------------------------------------------------------
    def migration_kills(self, kills: int, records: int) -> None:
        store = self.store.sibling("migration")
        self.report.migration_records = records
        expected = asyncio.run(self._populate(store, records))
        config = 0
        self.life(Life("calibrate", config, 0), lambda: _migrate_worker(store), None)
        self.report.migration_passes_completed += 1
        made = 0
        while made < kills:
            config += 1
            shared = G.shared.get()
            mode = self.rng.choice(("timer", "save"))
            life = Life(mode, config, self.rng.randrange(2**31))
            delay = None
            if mode == "timer":
                delay = self.rng.uniform(0, shared["startup"] + 1.1 * shared["per_run"])
            else:
                life.target = self.rng.randint(1, records)
            _counters.clear()
            outcome, phase = self.life(life, lambda: _migrate_worker(store), delay)
            if outcome == "exited":
                self.report.migration_passes_completed += 1
            elif outcome in ("killed", "hung"):
                made += 1
                self.report.migration_kills_made += 1
                self.report.migration_by_phase[PHASES.get(phase, str(phase))] += 1
            problems = asyncio.run(self._check_migrated(store, expected))
            if outcome == "killed" and not problems:
                self.report.migration_kills_survived += 1
            for problem in problems:
                self.report.problem(f"migration kill {made}: {problem}")
            if self.report.worker_errors >= 10:
                self.report.problem("migration campaign aborted: workers keep failing")
                break
            if self.progress and outcome == "killed" and made % 100 == 0:
                print(f"[{self.report.backend}] {made}/{kills} migration kills",
                      file=sys.stderr, flush=True)
        self.report.migration_final_ok = asyncio.run(self._final_migration(store, config + 1,
                                                                           expected))

    async def _populate(self, store: Store, records: int) -> dict[str, dict[str, Any]]:
        """Finished runs written plaintext at state version 1; their expected decoded states."""
        old = store.open(migrations=state_migrations(1))
        try:
            runner = build_runner(old)
            with _quiet():
                for index in range(records):
                    await runner.run_async(order_of(index), run_id=rid(index))
        finally:
            await old.close()
        reader = store.open(**reader_options())
        try:
            expected: dict[str, dict[str, Any]] = {}
            for index in range(records):
                record = await reader.load_record(rid(index))
                assert record is not None and record.envelope.state_version == 1
                assert record.state.pipeline_context["scratchpad"]["migrated"] == "v2"
                expected[rid(index)] = record.state.to_dict()
            return expected
        finally:
            await reader.close()

    async def _check_migrated(self, store: Store, expected: dict[str, dict[str, Any]]
                              ) -> list[str]:
        problems: list[str] = []
        reader = store.open(**reader_options())
        try:
            for run_id, want in expected.items():
                await self.check_loaded(reader, run_id, want, problems)
        finally:
            await reader.close()
        return problems

    async def check_loaded(self, backend: StateBackend, run_id: str, want: dict[str, Any],
                           problems: list[str]) -> bool:
        """Whether ``run_id`` loads; a problem is added when it does not, or differs from
        ``want`` (its decoded fields)."""
        self.report.records_checked += 1
        try:
            record = await backend.load_record(run_id)
        except Exception as exc:
            self.report.unreadable_records += 1
            problems.append(f"{run_id} unreadable: {type(exc).__name__}: {exc}")
            return False
        if record is None:
            problems.append(f"{run_id} vanished")
            return False
        found = difference(record.state.to_dict(), want)
        if found:
            self.report.inconsistent_records += 1
            problems.append(f"{run_id}: {found}")
        return True

    async def _final_migration(self, store: Store, config: int,
                               expected: dict[str, dict[str, Any]]) -> bool:
        writer = store.open(**writer_options(config))
        try:
            assert isinstance(writer, EnvelopeStateBackend)
            report = await migrate_all(writer)
            again = await migrate_all(writer, dry_run=True)
            ok = report.ok and again.ok and not again.changed
            if not ok:
                self.report.problem(f"final migrate_all: {report.summary()} / {again.summary()}")
            for run_id in expected:
                envelope = await writer.read_envelope(run_id)
                assert envelope is not None
                if envelope.codec != writer.codec.codec or envelope.state_version != 2:
                    ok = False
                    self.report.problem(f"{run_id} not current after migrate_all")
        finally:
            await writer.close()
        return ok and not await self._check_migrated(store, expected)


async def _compact_worker(store: Store) -> None:
    """Compact the history of every finished run of the store (the driver kills it)."""
    backend = store.open()
    assert isinstance(backend, EnvelopeStateBackend)
    compact = backend._compact

    async def tracked_compact(run_id: str, make: Any) -> Any:
        G.shared.phase(COMPACT_WRITE)
        if G.life.mode == "save":
            _counters["compactions"] += 1
            if _counters["compactions"] == G.life.target:
                delay = random.Random(G.life.seed).uniform(0, 0.003)
                threading.Thread(target=_kill_after, args=(delay,), daemon=True).start()
        try:
            return await compact(run_id, make)
        finally:
            G.shared.phase(COMPACT_READ)

    backend._compact = tracked_compact  # type: ignore[method-assign]
    G.shared.phase(COMPACT_READ)
    began = time.perf_counter()
    await backend.prune(keep_last=0, history_only=True)
    G.shared.set(per_run=time.perf_counter() - began)
    await backend.close()
    G.shared.phase(DONE)


class Compaction:
    """Kills while a worker compacts finished runs' histories: after each, every run loads
    its last state exactly, and its history is whole or compacted to that one checkpoint."""

    def __init__(self, driver: Driver, records: int) -> None:
        self.driver = driver
        self.report = driver.report
        self.store = driver.store.sibling("compaction")
        self.records = records
        self.generation = 0
        self.expected: dict[str, tuple[list[int], dict[str, Any]]] = {}

    def run(self, kills: int) -> None:
        asyncio.run(self._populate())
        made = 0
        lives = 0
        while made < kills and lives < 20 * kills:
            lives += 1
            mode = self.driver.rng.choice(("timer", "save"))
            life = Life(mode, 0, self.driver.rng.randrange(2**31))
            delay = None
            if mode == "timer":
                per_pass = G.shared.get()["per_run"] if self.generation > 1 else 0.5
                delay = self.driver.rng.uniform(0, 1.2 * per_pass + 0.05)
            else:  # inside a compaction's write
                life.target = self.driver.rng.randint(1, self.records)
            _counters.clear()
            outcome, phase = self.driver.life(life, lambda: _compact_worker(self.store), delay)
            if outcome in ("killed", "hung"):
                made += 1
                self.report.compaction_kills_made += 1
                self.report.compaction_by_phase[PHASES.get(phase, str(phase))] += 1
            problems, left = asyncio.run(self._check())
            if outcome == "killed" and not problems:
                self.report.compaction_kills_survived += 1
            for problem in problems:
                self.report.problem(f"compaction kill {made}: {problem}")
            if not left:  # every history is compacted: new runs to compact
                asyncio.run(self._populate())

    async def _populate(self) -> None:
        self.generation += 1
        backend = self.store.open()
        try:
            runner = build_runner(backend)
            with _quiet():
                for index in range(self.records):
                    run_id = f"{rid(index)}-g{self.generation}"
                    await runner.run_async(order_of(index), run_id=run_id)
            for index in range(self.records):
                run_id = f"{rid(index)}-g{self.generation}"
                assert isinstance(backend, EnvelopeStateBackend)
                revisions = [c.revision for c in await backend.history(run_id)]
                record = await backend.load_record(run_id)
                assert record is not None and len(revisions) > 1
                self.expected[run_id] = (revisions, record.state.to_dict())
        finally:
            await backend.close()

    async def _check(self) -> tuple[list[str], int]:
        problems: list[str] = []
        left = 0
        backend = self.store.open()
        assert isinstance(backend, EnvelopeStateBackend)
        try:
            for run_id, (revisions, want) in self.expected.items():
                if not await self.driver.check_loaded(backend, run_id, want, problems):
                    continue
                try:
                    found = [c.revision for c in await backend.history(run_id)]
                except Exception as exc:
                    self.report.unreadable_records += 1
                    problems.append(f"{run_id} history unreadable: {exc!r}")
                    continue
                if found == revisions:
                    left += 1
                elif found != revisions[-1:]:
                    problems.append(f"{run_id}: history {found}, neither whole ({revisions})"
                                    " nor compacted")
            self.report.runs_compacted = sum(
                1 for run_id, (revisions, _) in self.expected.items()
                if len(revisions) > 1) - left
        finally:
            await backend.close()
        return problems, left


def inject_torn_writes() -> None:
    """Self-test: make FileBackend write records in place, non-atomically.

    A campaign run with this fault must report unreadable records; if it did not, the
    campaign would not be able to see the failures it is looking for.
    """
    from flujo.state import FileBackend
    from flujo.state.backends._dirs import Directory

    def replace_in_place(self: FileBackend, root: Directory, target: str, data: bytes) -> None:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600, dir_fd=root.fd)
        try:
            half = len(data) // 2
            os.write(fd, data[:half])
            time.sleep(0.002)
            os.write(fd, data[half:])
        finally:
            os.close(fd)

    FileBackend._replace = replace_in_place  # type: ignore[method-assign]


def run_campaign(kind: str, workdir: Path, *, kills: int, migration_kills: int,
                 migration_records: int = 30, compaction_kills: int = 0,
                 seed: int = 0, dsn: str | None = None,
                 schema: str | None = None, progress: bool = False,
                 fault: str | None = None) -> Report:
    if fault == "torn-write":
        inject_torn_writes()
    elif fault is not None:
        raise ValueError(f"unknown fault {fault!r}")
    workdir.mkdir(parents=True, exist_ok=True)
    G.shared = Shared()
    G.life = Life("none", 0, 0)
    G.effects = str(workdir / f"effects-{kind}.log")
    G.errors = str(workdir / f"worker-errors-{kind}.log")
    store = make_store(kind, workdir, dsn=dsn, schema=schema, name=f"crash_{kind}")
    report = Report(kind)
    started = time.perf_counter()
    driver = Driver(store, workdir, seed, report, progress)
    asyncio.run(driver.snapshot(0))  # warm every code path before the first fork
    driver.run_kills(kills)
    if migration_kills:
        driver.migration_kills(migration_kills, migration_records)
    if compaction_kills:
        Compaction(driver, records=10).run(compaction_kills)
    report.seconds = round(time.perf_counter() - started, 2)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=("file", "sqlite", "postgres"), required=True)
    parser.add_argument("--kills", type=int, default=5000, help="kills while running pipelines")
    parser.add_argument("--migration-kills", type=int, default=1000,
                        help="kills during migrate_all rewrites")
    parser.add_argument("--migration-records", type=int, default=30)
    parser.add_argument("--compaction-kills", type=int, default=500,
                        help="kills while a worker compacts finished runs' histories")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--workdir", help="where stores and logs go (default: a temp dir)")
    parser.add_argument("--dsn", default=None, help="PostgreSQL DSN (FLUJO_TEST_POSTGRES_DSN)")
    parser.add_argument("--schema", default=None,
                        help="PostgreSQL schema to use (kept); default: a new one, dropped")
    parser.add_argument("--json", help="write the report here (default: stdout)")
    parser.add_argument("--fault", choices=("torn-write",),
                        help="self-test: break the file backend on purpose; must fail")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.randrange(2**31)
    with contextlib.ExitStack() as stack:
        workdir = Path(args.workdir) if args.workdir else Path(
            stack.enter_context(tempfile.TemporaryDirectory(prefix="flujo-crash-")))
        dsn = schema = None
        if args.backend == "postgres":
            dsn = args.dsn or postgres_dsn()
            schema = args.schema or stack.enter_context(postgres_schema(dsn, "flujo_crash"))
        report = run_campaign(args.backend, workdir, kills=args.kills,
                              migration_kills=args.migration_kills,
                              migration_records=args.migration_records,
                              compaction_kills=args.compaction_kills, seed=seed, dsn=dsn,
                              schema=schema, progress=True, fault=args.fault)
    data = report.to_json()
    data["seed"] = seed
    write_json(args.json, data)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
