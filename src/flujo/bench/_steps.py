"""The N-step append pipeline: what a save writes and costs as a run grows.

Each of N steps appends one small record to the context (the workload of the checkpoint
history issue). For each backend and N the benchmark reports the bytes of the records flujo
writes per step and the time per step; then, at the largest N, how long loading the latest
state takes beside loading a whole-state record of the same content, and what a step that
changes nothing but its output costs beside a whole-state save of the same small state
(what every save cost before checkpoint chains). A hand-written baseline stores one whole
state per step as ``model_dump_json`` (one row per step, SQLite or PostgreSQL): what an
application without flujo would do, losing the types of ``Any`` fields.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from ..application import Flujo, Pipeline, PipelineContext, Step
from ..serialization import register_type
from ..state import EnvelopeStateBackend, WorkflowState

__all__ = ["StepsRow", "bench_steps", "render_steps"]

_START = datetime(2026, 1, 1, tzinfo=UTC)


class StepRecord(BaseModel):
    step: int
    note: str
    score: float
    at: datetime


class StepsContext(PipelineContext):
    records: list[StepRecord] = Field(default_factory=list)


register_type(StepRecord, name="flujo.bench.StepRecord")
register_type(StepsContext, name="flujo.bench.StepsContext")


def _step(index: int) -> Step[Any, Any]:
    def append(value: int, *, context: StepsContext) -> int:
        context.records.append(StepRecord(step=index, note=f"step {index} done",
                                          score=index / 3, at=_START + timedelta(index)))
        return value + 1

    return Step.from_callable(append, name=f"step{index}")


@dataclass
class StepsRow:
    backend: str
    steps: int
    bytes_per_step: float
    seconds_per_step: float


@dataclass
class LoadRow:
    backend: str
    steps: int
    latest_s: float
    whole_s: float


@dataclass
class SmallRow:
    backend: str
    delta_bytes: int
    delta_s: float
    whole_bytes: int
    whole_s: float


def _pg_dsn() -> str:
    return os.environ.get("FLUJO_BENCH_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test")


class _Counting:
    """Counts the bytes of the records a backend writes (wraps its ``_write``)."""

    def __init__(self, backend: EnvelopeStateBackend) -> None:
        self.bytes = 0
        write = backend._write

        async def counted(run_id: str, make: Any, **kwargs: Any) -> Any:
            sealed = await write(run_id, make, **kwargs)
            self.bytes += len(sealed.raw)
            return sealed

        backend._write = counted  # type: ignore[method-assign]


def _open(kind: str, folder: Path, schema: str) -> EnvelopeStateBackend:
    from ..state import FileBackend, PostgresBackend, SQLiteBackend

    name = uuid.uuid4().hex[:8]
    if kind == "sqlite":
        return SQLiteBackend(folder / f"{name}.db")
    if kind == "file":
        return FileBackend(folder / name)
    return PostgresBackend(_pg_dsn(), schema=schema, table=f"steps_{name}")


def _median(samples: Sequence[float]) -> float:
    return statistics.median(samples)


async def _run_once(kind: str, steps: int, folder: Path, schema: str,
                    pipeline: Pipeline[Any, Any]) -> tuple[float, float, EnvelopeStateBackend, str]:
    backend = _open(kind, folder, schema)
    # The store's creation (database file, tables) is not a step's cost.
    await backend.save_state("warm-up", WorkflowState(run_id="warm-up"))
    await backend.delete_state("warm-up")
    counter = _Counting(backend)
    runner = Flujo(pipeline, context_model=StepsContext, state_backend=backend,
                   pipeline_name="steps")
    run_id = f"steps-{uuid.uuid4().hex[:8]}"
    started = time.perf_counter()
    result = await runner.run_async(0, run_id=run_id)
    took = time.perf_counter() - started
    context = result.final_pipeline_context
    assert result.success and context is not None and len(context.records) == steps
    return counter.bytes / steps, took / steps, backend, run_id


async def _load_times(backend: EnvelopeStateBackend, run_id: str, rounds: int) -> LoadRow:
    record = await backend.load_record(run_id)
    assert record is not None
    whole = _open_like(backend)
    await whole._save_state("whole", record.state.model_copy(update={"run_id": "whole"}),
                            None, None, whole=True)
    latest, complete = [], []
    for _ in range(rounds):
        started = time.perf_counter()
        await backend.load_record(run_id)
        latest.append(time.perf_counter() - started)
        started = time.perf_counter()
        await whole.load_record("whole")
        complete.append(time.perf_counter() - started)
    await whole.close()
    return LoadRow("", record.state.current_step_index, _median(latest), _median(complete))


def _open_like(backend: EnvelopeStateBackend) -> EnvelopeStateBackend:
    from ..state import FileBackend, PostgresBackend, SQLiteBackend

    if isinstance(backend, SQLiteBackend):
        return SQLiteBackend(backend.path.with_name(f"whole-{uuid.uuid4().hex[:6]}.db"))
    if isinstance(backend, FileBackend):
        return FileBackend(backend.path.with_name(f"whole-{uuid.uuid4().hex[:6]}"))
    assert isinstance(backend, PostgresBackend)
    return PostgresBackend(backend.dsn, schema=backend.schema,
                           table=f"whole_{uuid.uuid4().hex[:6]}")


async def _small_step(kind: str, folder: Path, schema: str, rounds: int) -> SmallRow:
    """A step that changes only its output, as a delta, beside the same state saved whole."""
    backend = _open(kind, folder, schema)
    counter = _Counting(backend)
    context = StepsContext(run_id="small", records=[
        StepRecord(step=i, note="seed", score=0.5, at=_START) for i in range(3)])
    state = WorkflowState(run_id="small", pipeline_name="steps", current_step_index=1,
                          pipeline_context=dict(context.__dict__), last_step_output=0)
    await backend.save_state("small", state)
    deltas, wholes, delta_bytes, whole_bytes = [], [], [], []
    for number in range(1, rounds + 1):
        state.last_step_output = number
        before = counter.bytes
        started = time.perf_counter()
        await backend.save_state("small", state)
        deltas.append(time.perf_counter() - started)
        delta_bytes.append(counter.bytes - before)
        before = counter.bytes
        started = time.perf_counter()
        await backend._save_state("small", state, None, None, whole=True)
        wholes.append(time.perf_counter() - started)
        whole_bytes.append(counter.bytes - before)
    await backend.close()
    return SmallRow(kind, int(_median(delta_bytes)), _median(deltas),
                    int(_median(whole_bytes)), _median(wholes))


def _baseline(kind: str, steps: int, schema: str) -> StepsRow:
    """One whole state per step as ``model_dump_json``, one row per step."""
    context = StepsContext(run_id="baseline")
    written = 0
    with tempfile.TemporaryDirectory() as folder:
        if kind == "sqlite":
            conn: Any = sqlite3.connect(Path(folder) / "baseline.db")
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("CREATE TABLE states (run_id TEXT, step INTEGER, state TEXT,"
                         " PRIMARY KEY (run_id, step))")
            insert = "INSERT INTO states VALUES (?, ?, ?)"
        else:
            import psycopg

            conn = psycopg.connect(_pg_dsn(), autocommit=False)
            table = f'"{schema}"."baseline_{uuid.uuid4().hex[:6]}"'
            conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
            conn.execute(f"CREATE TABLE {table} (run_id text, step int, state jsonb,"
                         " PRIMARY KEY (run_id, step))")
            conn.commit()
            insert = f"INSERT INTO {table} VALUES (%s, %s, %s)"
        started = time.perf_counter()
        for index in range(steps):
            context.records.append(StepRecord(step=index, note=f"step {index} done",
                                              score=index / 3, at=_START + timedelta(index)))
            text = context.model_dump_json()
            written += len(text)
            conn.execute(insert, ("baseline", index, text))
            conn.commit()
        took = time.perf_counter() - started
        conn.close()
    return StepsRow(f"{kind} baseline (model_dump_json, a row per step)", steps,
                    written / steps, took / steps)


def bench_steps(kinds: Sequence[str], *, quick: bool) -> tuple[list[StepsRow], list[LoadRow],
                                                                list[SmallRow]]:
    """Run the N-step benchmark on ``kinds`` (file, sqlite, postgres)."""
    sizes = (10, 50) if quick else (10, 50, 200, 500)
    repeats, rounds = (1, 3) if quick else (3, 15)
    rows: list[StepsRow] = []
    loads: list[LoadRow] = []
    small: list[SmallRow] = []
    schema = f"flujo_bench_{uuid.uuid4().hex[:10]}"
    cleanup: Callable[[], None] | None = None
    if "postgres" in kinds:
        from . import _dropper

        cleanup = _dropper(_pg_dsn(), schema)
    try:
        with tempfile.TemporaryDirectory() as directory:
            folder = Path(directory)
            pipelines: dict[int, Pipeline[Any, Any]] = {
                n: Pipeline([_step(i) for i in range(n)]) for n in sizes}
            for kind in kinds:
                # One untimed run first: the first run in a process also builds the classes'
                # guards and the backend's statements, which no later run pays.
                asyncio.run(_measure(kind, sizes[0], folder, schema, pipelines[sizes[0]],
                                     rounds, False, loads))
                for n in sizes:
                    # Short runs are repeated more (a median of a few 10-step runs is noise).
                    measured = [asyncio.run(_measure(kind, n, folder, schema, pipelines[n],
                                                     rounds, n == sizes[-1], loads))
                                for _ in range(max(repeats, min(15, 150 // n)))]
                    rows.append(StepsRow(kind, n, _median([m[0] for m in measured]),
                                         _median([m[1] for m in measured])))
                small.append(asyncio.run(_small_step(kind, folder, schema, rounds * 4)))
                if kind in ("sqlite", "postgres"):
                    for n in (sizes[0], sizes[-1]):
                        base = [_baseline(kind, n, schema) for _ in range(repeats)]
                        rows.append(StepsRow(base[0].backend, n,
                                             _median([b.bytes_per_step for b in base]),
                                             _median([b.seconds_per_step for b in base])))
    finally:
        if cleanup is not None:
            cleanup()
    return rows, loads, small


async def _measure(kind: str, n: int, folder: Path, schema: str, pipeline: Pipeline[Any, Any],
                   rounds: int, largest: bool, loads: list[LoadRow]) -> tuple[float, float]:
    per_bytes, per_second, backend, run_id = await _run_once(kind, n, folder, schema,
                                                             pipeline)
    if largest and not any(row.backend == kind for row in loads):
        row = await _load_times(backend, run_id, rounds)
        row.backend = kind
        loads.append(row)
    await backend.close()
    return per_bytes, per_second


def render_steps(rows: list[StepsRow], loads: list[LoadRow], small: list[SmallRow]) -> str:
    lines = ["### checkpoint history: the N-step append pipeline", "",
             "Each step appends one record to the context. Bytes: the records written per"
             " step; time: the run's time per step (medians of repeated runs). The ratios are"
             " to the same backend's N=10.", "",
             "| backend | N | bytes / step | time / step | bytes ÷ N=10 | time ÷ N=10 |",
             "|---|---|---|---|---|---|"]
    first: dict[str, StepsRow] = {}
    for row in rows:
        base = first.setdefault(row.backend, row)
        lines.append(f"| {row.backend} | {row.steps} | {row.bytes_per_step:,.0f} |"
                     f" {row.seconds_per_step * 1e3:.2f} ms |"
                     f" {row.bytes_per_step / base.bytes_per_step:.2f}x |"
                     f" {row.seconds_per_step / base.seconds_per_step:.2f}x |")
    lines += ["", "| backend | N | load latest state | load a whole-state record | ratio |",
              "|---|---|---|---|---|"]
    lines += [f"| {r.backend} | {r.steps} | {r.latest_s * 1e3:.2f} ms |"
              f" {r.whole_s * 1e3:.2f} ms | {r.latest_s / r.whole_s:.2f}x |" for r in loads]
    lines += ["", "A step that changes only its output (a small state), saved as a delta and"
              " saved whole:", "",
              "| backend | delta: bytes | delta: time | whole: bytes | whole: time |",
              "|---|---|---|---|---|"]
    lines += [f"| {r.backend} | {r.delta_bytes:,} | {r.delta_s * 1e3:.2f} ms |"
              f" {r.whole_bytes:,} | {r.whole_s * 1e3:.2f} ms |" for r in small]
    lines.append("")
    return "\n".join(lines)
