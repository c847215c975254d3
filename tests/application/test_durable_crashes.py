"""Real crashes around pauses, answers, retries and cancellation (SIGKILLed child processes).

No answer may be lost or applied twice, no finished step run again, no attempt series
restarted by a crash, and no cancellation request forgotten.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from crash_pipeline import Approval, build_flaky_runner, build_hitl_runner
from test_crash_resume import _spawn

from conftest import Store
from flujo.exceptions import RunNotPausedError

pytestmark = pytest.mark.slow
ANSWER = json.dumps({"approved": True, "reviewer": "ana"})


@pytest.fixture
def log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The side-effect log of the children and of this process's own resumes."""
    path = tmp_path / "steps.log"
    monkeypatch.setenv("FLUJO_TEST_LOG", str(path))
    return path


def _log(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


async def _wait_until(check: Any, child: Any, *, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert child.poll() is None, child.communicate()
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


def _kill(child: Any) -> None:
    child.send_signal(signal.SIGKILL)
    child.communicate(timeout=30)
    assert child.returncode == -signal.SIGKILL


async def test_kill_while_paused_then_answer(durable_store: Store, log: Path) -> None:
    rid = f"paused-{uuid.uuid4().hex[:8]}"
    child = _spawn(durable_store, rid, FLUJO_TEST_PIPELINE="hitl", FLUJO_TEST_LOG=str(log),
                   FLUJO_TEST_HANG_AFTER="1")
    backend = durable_store.open()
    try:
        async def paused() -> bool:
            state = await backend.load_state(rid)
            return state is not None and state["status"] == "paused"

        await _wait_until(paused, child)
        _kill(child)
        runner = build_hitl_runner(backend)
        runner.claim_timeout = 10.0  # a killed worker's PostgreSQL lease, at most
        again = await runner.run_async(run_id=rid)
        assert again.status == "paused"  # nothing was lost with the process
        result = await runner.run_async(run_id=rid, resume_input=ANSWER)
        assert result.success and result.output == "ana: yes"
        assert type(result.step_history[1].output) is Approval
    finally:
        await backend.close()
    assert _log(log) == ["draft", "apply"]


async def test_kill_while_resuming_with_an_answer(durable_store: Store, log: Path) -> None:
    rid = f"answer-{uuid.uuid4().hex[:8]}"
    child = _spawn(durable_store, rid, FLUJO_TEST_PIPELINE="hitl", FLUJO_TEST_LOG=str(log))
    out, err = child.communicate(timeout=60)
    assert (child.returncode, out.strip()) == (0, "paused"), err
    # The worker that applies the answer dies in the step after it.
    child = _spawn(durable_store, rid, FLUJO_TEST_PIPELINE="hitl", FLUJO_TEST_LOG=str(log),
                   FLUJO_TEST_ANSWER=ANSWER, FLUJO_TEST_CRASH_AT="apply")
    _, err = child.communicate(timeout=60)
    assert child.returncode == -signal.SIGKILL, err
    backend = durable_store.open()
    try:
        runner = build_hitl_runner(backend)
        runner.claim_timeout = 10.0
        # The answer was saved before "apply" ran: giving it again is refused, not re-applied.
        with pytest.raises(RunNotPausedError):
            await runner.run_async(run_id=rid, resume_input=ANSWER)
        result = await runner.run_async(run_id=rid)
        assert result.success and result.output == "ana: yes"
        assert [s.name for s in result.step_history] == ["draft", "approve", "apply"]
    finally:
        await backend.close()
    assert _log(log) == ["draft", "apply", "apply"]  # the killed step once more, nothing else


async def test_kill_during_a_retrys_backoff_continues_the_series(
        durable_store: Store, log: Path) -> None:
    rid = f"backoff-{uuid.uuid4().hex[:8]}"
    child = _spawn(durable_store, rid, FLUJO_TEST_PIPELINE="flaky", FLUJO_TEST_LOG=str(log),
                   FLUJO_TEST_FAIL_FETCH="1")
    backend = durable_store.open()
    try:
        async def waiting() -> bool:  # the first attempt failed and was saved: the backoff
            state = await backend.load_state(rid)
            return state is not None and state["failure"] is not None

        await _wait_until(waiting, child)
        _kill(child)
        stored = await backend.load_state(rid)
        assert stored is not None and stored["status"] == "running"
        assert stored["pipeline_context"]["counter"] == 0  # the state from before the step
        runner = build_flaky_runner(backend)
        runner.claim_timeout = 10.0
        result = await runner.run_async(run_id=rid)  # FLUJO_TEST_FAIL_FETCH unset here
    finally:
        await backend.close()
    assert result.success and result.output == "fetched order with counter 1"
    fetch = result.step_history[1]
    assert fetch.attempts == 2
    assert [(f.attempt, f.series) for f in fetch.failed_attempts] == [(1, 1)]  # same series
    assert _log(log) == ["prepare", "fetch", "fetch"]  # "prepare" not run again


async def test_kill_during_a_cancellation_keeps_the_request(
        durable_store: Store, log: Path) -> None:
    rid = f"cancel-{uuid.uuid4().hex[:8]}"
    child = _spawn(durable_store, rid, FLUJO_TEST_PIPELINE="flaky", FLUJO_TEST_LOG=str(log),
                   FLUJO_TEST_HANG_AT="fetch")
    backend = durable_store.open()
    try:
        async def hanging() -> bool:
            return "fetch" in _log(log)

        await _wait_until(hanging, child)
        runner = build_flaky_runner(backend)
        assert await runner.cancel_async(rid) == "running"  # the child holds the run
        _kill(child)  # before it reached a step boundary
        assert await backend.cancel_requested(rid)
        runner.claim_timeout = 10.0
        result = await runner.run_async(run_id=rid)
        assert result.status == "cancelled"
        stored = await backend.load_state(rid)
        assert stored is not None and stored["status"] == "cancelled"
        assert stored["current_step_index"] == 1
        assert not await backend.cancel_requested(rid)
    finally:
        await backend.close()
    assert _log(log) == ["prepare", "fetch"]  # the cancelled run started nothing more
