"""Concurrency campaign: N worker processes compete for M runs on one store.

    python scripts/reliability/concurrency_campaign.py --backend sqlite --workers 8 --runs 200 \\
        --kill-workers 2 --json concurrency-sqlite.json

Every worker (a separate process) walks all run ids in its own random order and calls
``Flujo(...).run_async(run_id=...)`` on each: a run another worker holds raises
RunInProgressError and is retried later, a finished run returns its stored result. Each step
appends a start line and an end line to its own append-only (``O_APPEND``) side-effect file.
While they work, ``--kill-workers`` of them are SIGKILLed at random moments and not restarted:
the others must take their runs over.

Checked at the end:

* every run completed with exactly the result of an uninterrupted run (values and types);
* every step of every run executed exactly once, except a step whose worker was killed
  before its state was saved, which is executed once more by the worker that took the run
  over (steps are at-least-once, as documented; never skipped, never run twice otherwise);
* no run was ever executed by two workers at once: the step executions of different workers
  on one run never overlap in time (a killed worker's execution lasts until its death);
* the runs of killed workers were taken over (and how long after the kill).

Reported: runs per second (wall clock, first start to last finish), save latency p50/p99
(every ``save_state`` of every worker), retries on RunInProgressError.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import random
import signal
import sys
import tempfile
import time
import traceback
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    Store,
    difference,
    make_store,
    percentile,
    postgres_dsn,
    postgres_schema,
    write_json,
)
from pydantic import Field

from flujo import Flujo, PipelineContext, Step
from flujo.exceptions import RunInProgressError
from flujo.serialization import register_type
from flujo.state import InMemoryBackend, RunClaim, StateBackend

STEP_NAMES = ("reserve", "charge", "notify")


class OrderCtx(PipelineContext):
    lines: list[Decimal] = Field(default_factory=list)
    events: list[datetime] = Field(default_factory=list)


register_type(OrderCtx, name="reliability.OrderCtx")


class _Process:
    effects_dir = ""  # "" while computing expectations: nothing logged
    latency_file = ""
    step_seconds = 0.001
    die_at_step = 0  # victims: SIGKILL themselves at this step execution (1-based); 0: never
    die_late = False  # after the step's end line (before the save) instead of mid-step
    steps_entered = 0


G = _Process()


def rid(index: int) -> str:
    return f"order-{index:05d}"


def _log(step: str, line: str) -> None:
    if not G.effects_dir:
        return
    fd = os.open(os.path.join(G.effects_dir, f"{step}.log"),
                 os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def _make_step(position: int) -> Step[Any, Any]:
    name = STEP_NAMES[position]

    async def step(data: Any, *, context: OrderCtx) -> Any:
        _log(name, f"S {context.run_id} {os.getpid()} {time.monotonic():.6f}\n")
        G.steps_entered += 1
        dying = G.die_at_step == G.steps_entered
        if dying and not G.die_late:
            _die()
        await asyncio.sleep(G.step_seconds)  # the step's "work": long enough to overlap
        number = int(context.run_id.split("-")[1])
        context.lines.append(Decimal(number) / Decimal(7 + position))
        context.events.append(datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=number))
        out = (data, name, Decimal(position))
        _log(name, f"E {context.run_id} {os.getpid()} {time.monotonic():.6f}\n")
        if dying:
            _die()
        return out

    return Step.from_callable(step, name=name)


def _die() -> None:
    """SIGKILL this worker, noting when (in the shared monotonic clock)."""
    _write(os.path.join(G.effects_dir, "kills.log"), f"{os.getpid()} {time.monotonic():.6f}\n")
    os.kill(os.getpid(), signal.SIGKILL)


PIPELINE = _make_step(0) >> _make_step(1) >> _make_step(2)


def build_runner(backend: StateBackend) -> Flujo[OrderCtx]:
    return Flujo(PIPELINE, context_model=OrderCtx, state_backend=backend,
                 pipeline_name="concurrency-campaign", pipeline_version="1")


# -- a worker --------------------------------------------------------------------------------

async def worker(store: Store, runs: int, seed: int, start_at: float) -> None:
    backend = store.open()
    save_state = backend.save_state
    latencies: list[float] = []

    async def timed_save(run_id: str, state: Any, *, expected_revision: int | None = None,
                         claim: RunClaim | None = None) -> int:
        began = time.perf_counter()
        try:
            return await save_state(run_id, state, expected_revision=expected_revision,
                                    claim=claim)
        finally:
            latencies.append(time.perf_counter() - began)
            if len(latencies) >= 20:
                _flush(latencies)

    backend.save_state = timed_save  # type: ignore[method-assign]
    runner = build_runner(backend)
    pending = [rid(i) for i in range(runs)]
    random.Random(seed).shuffle(pending)
    busy_streak = 0
    retries = 0
    await asyncio.sleep(max(0.0, start_at - time.monotonic()))
    try:
        while pending:
            run_id = pending.pop(0)
            try:
                result = await runner.run_async(f"in-{run_id}", run_id=run_id)
            except RunInProgressError:
                pending.append(run_id)
                retries += 1
                busy_streak += 1
                if busy_streak >= len(pending):  # everything left is held by others
                    await asyncio.sleep(0.002)
                    busy_streak = 0
                continue
            busy_streak = 0
            if not result.success:
                raise RuntimeError(f"{run_id} failed: {result.step_history[-1].feedback}")
    finally:
        _flush(latencies)
        _write(f"{G.latency_file}.retries", f"{retries}\n")
        await backend.close()


def _write(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def _flush(latencies: list[float]) -> None:
    if latencies:
        _write(G.latency_file, "".join(f"{x:.7f}\n" for x in latencies))
        latencies.clear()


# -- the driver ------------------------------------------------------------------------------

@dataclass
class Report:
    backend: str
    workers: int
    runs: int
    killed_workers: int = 0
    runs_completed_exact: int = 0
    step_executions: int = 0
    extra_executions_after_kills: int = 0
    exactly_once_violations: int = 0
    overlapping_executions: int = 0
    runs_taken_over: int = 0
    max_takeover_seconds: float = 0.0
    retries_on_run_in_progress: int = 0
    saves: int = 0
    save_latency_p50_ms: float = 0.0
    save_latency_p99_ms: float = 0.0
    wall_seconds: float = 0.0
    runs_per_second: float = 0.0
    worker_errors: int = 0
    problems: list[str] = field(default_factory=list)

    def problem(self, text: str) -> None:
        if len(self.problems) < 50:
            self.problems.append(text)

    @property
    def ok(self) -> bool:
        return (not self.problems and self.runs_completed_exact == self.runs
                and self.exactly_once_violations == 0 and self.overlapping_executions == 0)

    def to_json(self) -> dict[str, Any]:
        return {**self.__dict__, "ok": self.ok}


def _fork(store: Store, runs: int, seed: int, start_at: float, errors: str,
          die_at_step: int = 0, die_late: bool = False) -> int:
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid:
        return pid
    code = 3
    try:
        G.latency_file = os.path.join(G.effects_dir, f"latency-{os.getpid()}.txt")
        G.die_at_step, G.die_late, G.steps_entered = die_at_step, die_late, 0
        asyncio.run(worker(store, runs, seed, start_at))
        code = 0
    except BaseException:
        _write(errors, f"--- worker {os.getpid()}\n{traceback.format_exc()}")
    finally:
        os._exit(code)


async def _expected(runs: int) -> dict[str, Any]:
    saved = G.effects_dir
    G.effects_dir = ""
    try:
        runner = build_runner(InMemoryBackend())
        results = {}
        for index in range(runs):
            result = await runner.run_async(f"in-{rid(index)}", run_id=rid(index))
            results[rid(index)] = (result.output, result.final_pipeline_context)
        return results
    finally:
        G.effects_dir = saved


async def _verify_results(store: Store, expected: dict[str, Any], report: Report) -> None:
    backend = store.open()
    try:
        runner = build_runner(backend)
        for run_id, (output, context) in expected.items():
            record = await backend.load_record(run_id)
            if record is None or record.state.status != "completed":
                report.problem(f"{run_id} not completed: "
                               f"{None if record is None else record.state.status}")
                continue
            result = await runner.run_async("ignored", run_id=run_id)  # the stored result
            found = (difference(result.output, output, "output")
                     or difference(result.final_pipeline_context, context, "context"))
            if found:
                report.problem(f"{run_id}: {found}")
            else:
                report.runs_completed_exact += 1
    finally:
        await backend.close()


def _check_effects(effects: Path, killed: dict[int, float], report: Report) -> None:
    # executions[(run, step)] = [(start, end or None, pid)]
    executions: dict[tuple[str, str], list[list[Any]]] = defaultdict(list)
    for step in STEP_NAMES:
        path = effects / f"{step}.log"
        if not path.exists():
            continue
        open_runs: dict[tuple[str, int], list[Any]] = {}
        for line in path.read_text().splitlines():
            kind, run_id, pid_text, stamp = line.split()
            pid = int(pid_text)
            if kind == "S":
                entry: list[Any] = [float(stamp), None, pid]
                executions[(run_id, step)].append(entry)
                open_runs[(run_id, pid)] = entry
            else:
                open_runs.pop((run_id, pid))[1] = float(stamp)
    by_run: dict[str, list[list[Any]]] = defaultdict(list)
    for (run_id, step), entries in executions.items():
        entries.sort(key=lambda e: e[0])
        report.step_executions += len(entries)
        *earlier, last = entries
        for start, _end, pid in earlier:
            if pid in killed and start <= killed[pid]:
                report.extra_executions_after_kills += 1
            else:
                report.exactly_once_violations += 1
                report.problem(f"{run_id}/{step} executed {len(entries)} times: {entries}")
        if last[1] is None:
            report.exactly_once_violations += 1
            report.problem(f"{run_id}/{step}: the last execution never ended: {entries}")
        for entry in entries:
            end = entry[1] if entry[1] is not None else killed.get(entry[2], float("inf"))
            by_run[run_id].append([entry[0], end, entry[2]])
    missing = report.runs * len(STEP_NAMES) - len(executions)
    if missing:
        report.exactly_once_violations += missing
        report.problem(f"{missing} (run, step) pairs never executed")
    for run_id, spans in by_run.items():
        spans.sort()
        pids = {pid for _, _, pid in spans}
        if len(pids) > 1:
            report.runs_taken_over += 1
            for dead in pids & set(killed):
                resumed = [start for start, _, pid in spans
                           if pid != dead and start >= killed[dead]]
                if resumed:  # how long the run waited for another worker after the kill
                    report.max_takeover_seconds = max(report.max_takeover_seconds,
                                                      round(min(resumed) - killed[dead], 4))
        for (_s1, e1, p1), (s2, _e2, p2) in itertools.pairwise(spans):
            if p1 != p2 and s2 < e1:
                report.overlapping_executions += 1
                report.problem(f"{run_id}: pid {p2} started at {s2} while pid {p1} "
                               f"ran until {e1}")


def run_campaign(kind: str, workdir: Path, *, workers: int, runs: int, kill_workers: int,
                 seed: int, dsn: str | None = None, schema: str | None = None,
                 step_seconds: float = 0.001) -> Report:
    workdir.mkdir(parents=True, exist_ok=True)
    effects = workdir / f"effects-{kind}"
    effects.mkdir(exist_ok=True)
    errors = str(workdir / f"worker-errors-{kind}.log")
    G.effects_dir = str(effects)
    G.step_seconds = step_seconds
    store = make_store(kind, workdir, dsn=dsn, schema=schema, name=f"concurrency_{kind}")
    report = Report(kind, workers, runs)
    rng = random.Random(seed)
    expected = asyncio.run(_expected(runs))
    asyncio.run(_prepare(store))
    start_at = time.monotonic() + 0.3
    pids = []
    for number in range(workers):
        victim = number < kill_workers  # dies inside a random step of one of its first runs
        pids.append(_fork(store, runs, rng.randrange(2**31), start_at, errors,
                          die_at_step=rng.randint(1, 12) if victim else 0,
                          die_late=victim and rng.random() < 0.5))
    alive = set(pids)
    finished_at = start_at
    signalled: set[int] = set()
    while alive:
        now = time.monotonic()
        for pid in list(alive):
            done, status = os.waitpid(pid, os.WNOHANG)
            if not done:
                continue
            alive.discard(pid)
            finished_at = time.monotonic()
            if os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL:
                signalled.add(pid)
            elif not (os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0):
                report.worker_errors += 1
                report.problem(f"worker {pid} ended with status {status} (see {errors})")
        if now - start_at > 600:
            for pid in alive:
                os.kill(pid, signal.SIGKILL)
            report.problem("workers did not finish in 600 s")
            break
        time.sleep(0.002)
    killed: dict[int, float] = {}
    kills_log = effects / "kills.log"
    if kills_log.exists():
        for line in kills_log.read_text().splitlines():
            pid_text, stamp = line.split()
            killed[int(pid_text)] = float(stamp)
    if set(killed) != signalled:
        report.problem(f"killed {sorted(killed)} but saw SIGKILL deaths of {sorted(signalled)}")
    report.killed_workers = len(killed)
    report.wall_seconds = round(finished_at - start_at, 3)
    report.runs_per_second = round(runs / report.wall_seconds, 1)
    latencies: list[float] = []
    retries = 0
    for path in effects.glob("latency-*.txt"):
        latencies += [float(x) for x in path.read_text().split()]
    for path in effects.glob("latency-*.txt.retries"):
        retries += sum(int(x) for x in path.read_text().split())
    report.saves = len(latencies)
    report.save_latency_p50_ms = round(percentile(latencies, 50) * 1000, 2)
    report.save_latency_p99_ms = round(percentile(latencies, 99) * 1000, 2)
    report.retries_on_run_in_progress = retries
    G.effects_dir = ""
    asyncio.run(_verify_results(store, expected, report))
    _check_effects(effects, killed, report)
    return report


async def _prepare(store: Store) -> None:
    """Create the store's layout once, so the timing is about runs, not set-up."""
    backend = store.open()
    try:
        await backend.load_record("warm-up")
    finally:
        await backend.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=("sqlite", "postgres", "file"), required=True)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--kill-workers", type=int, default=2)
    parser.add_argument("--step-seconds", type=float, default=0.001,
                        help="how long each step works (asyncio.sleep)")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--workdir")
    parser.add_argument("--dsn", default=None)
    parser.add_argument("--schema", default=None,
                        help="PostgreSQL schema to use (kept); default: a new one, dropped")
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.randrange(2**31)
    with contextlib.ExitStack() as stack:
        workdir = Path(args.workdir) if args.workdir else Path(
            stack.enter_context(tempfile.TemporaryDirectory(prefix="flujo-conc-")))
        dsn = schema = None
        if args.backend == "postgres":
            dsn = args.dsn or postgres_dsn()
            schema = args.schema or stack.enter_context(postgres_schema(dsn, "flujo_conc"))
        report = run_campaign(args.backend, workdir, workers=args.workers, runs=args.runs,
                              kill_workers=args.kill_workers, seed=seed, dsn=dsn,
                              schema=schema, step_seconds=args.step_seconds)
    data = report.to_json()
    data["seed"] = seed
    write_json(args.json, data)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
