"""Real crashes: a child process is SIGKILLed inside a step, then the run is resumed.

Also the property that any sequence of crash points in a random pipeline ends with exactly
the result of an uninterrupted run, each step's work committed once.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from crash_pipeline import STEP_NAMES, build_runner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import Field
from test_runner import assert_same

import flujo
from conftest import Store
from flujo import Flujo, Pipeline, PipelineContext, Step
from flujo.exceptions import RunInProgressError
from flujo.state import InMemoryBackend, SQLiteBackend, StateBackend

WORKER = Path(__file__).with_name("_crash_worker.py")
pytestmark = pytest.mark.slow


def _env(**extra: str) -> dict[str, str]:
    src = str(Path(flujo.__file__).resolve().parent.parent)
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLUJO_TEST_")}
    env["PYTHONPATH"] = os.pathsep.join([src, str(WORKER.parent)])
    return {**env, **extra}


def _spawn(store: Store, rid: str, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, str(WORKER), store.kind, store.location, rid,
                             *([store.schema] if store.schema else [])],
                            env=_env(**env), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


async def _resume(store: Store, rid: str, *, wait: float | None = None) -> Any:
    """Resume the run; ``wait``: seconds to wait for another worker's claim. By default, as
    long as a killed worker's PostgreSQL lease can last (File and SQLite: not at all)."""
    backend = store.open()
    runner = build_runner(backend)
    runner.claim_timeout = wait if wait is not None or store.kind != "postgres" else 10.0
    try:
        return await runner.run_async("order", run_id=rid)
    finally:
        await backend.close()


@pytest.mark.parametrize("crash_at", STEP_NAMES)
async def test_sigkill_inside_a_step_then_resume(durable_store: Store, crash_at: str,
                                                 tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    rid = f"crash-{uuid.uuid4().hex[:8]}"
    log = tmp_path / "steps.log"
    child = _spawn(durable_store, rid, FLUJO_TEST_CRASH_AT=crash_at, FLUJO_TEST_LOG=str(log))
    _, err = child.communicate(timeout=60)
    assert child.returncode == -signal.SIGKILL, err

    straight = await build_runner(InMemoryBackend()).run_async("order", run_id=rid)
    monkeypatch.setenv("FLUJO_TEST_LOG", str(log))
    resumed = await _resume(durable_store, rid)
    assert resumed.success
    assert_same(resumed.output, straight.output)
    assert_same(resumed.final_pipeline_context, straight.final_pipeline_context)
    executions = log.read_text().split()
    crashed = STEP_NAMES.index(crash_at)
    expected = [*STEP_NAMES[:crashed + 1], *STEP_NAMES[crashed:]]
    assert executions == expected  # finished steps never re-run; the killed one re-runs once
    assert [s.attempts for s in resumed.step_history] == [1] * len(STEP_NAMES)


async def test_failed_attempts_save_what_a_sigkill_in_the_step_leaves(durable_store: Store
                                                                       ) -> None:
    # The step changes its context and input, then is killed (one run) or raises (the other
    # run, three times): the failures save exactly what the kill left, so no retry starts
    # from a previous attempt's changes.
    killed, failed = (f"{kind}-{uuid.uuid4().hex[:8]}" for kind in ("kill", "fail"))
    child = _spawn(durable_store, killed, FLUJO_TEST_PIPELINE="counting",
                   FLUJO_TEST_CRASH_AT="bump")
    _, err = child.communicate(timeout=60)
    assert child.returncode == -signal.SIGKILL, err
    for _ in range(3):
        child = _spawn(durable_store, failed, FLUJO_TEST_PIPELINE="counting")
        out, err = child.communicate(timeout=60)
        assert (child.returncode, out.strip()) == (0, "failed"), err
    backend = durable_store.open()
    try:
        after_kill = await backend.load_state(killed)
        after_failures = await backend.load_state(failed)
    finally:
        await backend.close()
    assert after_kill is not None and after_failures is not None
    assert after_failures["pipeline_context"] == {**after_kill["pipeline_context"],
                                                  "run_id": failed}
    assert after_failures["pipeline_context"]["counter"] == 0
    for field in ("current_step_index", "last_step_output"):
        assert after_failures[field] == after_kill[field]
    assert after_failures["last_step_output"] == ["order"]
    assert after_failures["failure"].attempts == 3


async def test_a_killed_worker_releases_its_claim(durable_store: Store, tmp_path: Path) -> None:
    rid = f"claim-{uuid.uuid4().hex[:8]}"
    log = tmp_path / "steps.log"
    child = _spawn(durable_store, rid, FLUJO_TEST_HANG_AT="price", FLUJO_TEST_LOG=str(log))
    try:
        deadline = time.monotonic() + 60
        while "price" not in (log.read_text() if log.exists() else ""):
            assert child.poll() is None, child.communicate()
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        with pytest.raises(RunInProgressError):
            await _resume(durable_store, rid, wait=0.0)
    finally:
        child.kill()
        child.wait(timeout=30)
    # File and SQLite: free at once (the OS drops the lock); PostgreSQL: once the killed
    # worker's lease (CLAIM_LEASE) expires.
    result = await _resume(durable_store, rid)
    assert result.success


class PropCtx(PipelineContext):
    done: list[int] = Field(default_factory=list)


def _random_pipeline(width: int, commits: dict[int, int]) -> Pipeline:
    def make(i: int) -> Step:
        def step(data: Any, *, context: PropCtx) -> Any:
            if CRASHES and CRASHES[0] == i:
                CRASHES.pop(0)
                raise _Crash(i)
            context.done.append(i)
            context.scratchpad[f"at{i}"] = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(i)
            commits[i] = commits.get(i, 0) + 1
            return (data, Decimal(i) / 7, frozenset({i}))
        return Step.from_callable(step, name=f"s{i}")

    return Pipeline([make(i) for i in range(width)])


class _Crash(BaseException):
    pass


CRASHES: list[int] = []


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(width=st.integers(1, 6), data=st.data())
def test_random_crash_points_end_like_an_uninterrupted_run(width: int, data: st.DataObject,
                                                           tmp_path: Path) -> None:
    crash_points = data.draw(st.lists(st.integers(0, width - 1), max_size=4))
    expected = Flujo(_random_pipeline(width, {}), context_model=PropCtx).run(
        "in", run_id="prop")
    backend: StateBackend = SQLiteBackend(tmp_path / f"{uuid.uuid4().hex}.db")
    commits: dict[int, int] = {}
    CRASHES[:] = sorted(crash_points)  # a run only moves forward
    runner = Flujo(_random_pipeline(width, commits), context_model=PropCtx,
                   state_backend=backend)
    for _ in range(len(crash_points) + 1):
        try:
            result = runner.run("in", run_id="prop")
            break
        except _Crash:
            continue
    assert not CRASHES
    assert result.success
    assert_same(result.output, expected.output)
    assert result.final_pipeline_context.done == list(range(width))
    assert_same(result.final_pipeline_context.scratchpad,
                expected.final_pipeline_context.scratchpad)
    assert commits == dict.fromkeys(range(width), 1)
