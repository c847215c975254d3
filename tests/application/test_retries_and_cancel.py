"""Retries, timeouts and cancellation, on every backend."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from typing import Any

import pytest
from pydantic import Field

from flujo import FailedAttempt, Flujo, PauseForInput, PipelineContext, Step
from flujo.exceptions import (
    InvalidRunIdError,
    PipelineError,
    RunInProgressError,
    RunNotFoundError,
)
from flujo.state import InMemoryBackend, StateBackend


class Ctx(PipelineContext):
    counter: int = 0
    calls: list[str] = Field(default_factory=list)


def new_id() -> str:
    return f"rc-{uuid.uuid4().hex[:10]}"


def flaky(failures: int, error: type[Exception] = ConnectionError) -> Any:
    """A step that changes its context in place, then fails ``failures`` times."""
    seen: list[int] = []

    def fetch(data: Any, *, context: Ctx) -> str:
        context.counter += 1
        seen.append(context.counter)
        if len(seen) <= failures:
            raise error(f"attempt {len(seen)} failed")
        return f"fetched with counter {context.counter}"

    fetch.seen = seen  # type: ignore[attr-defined]
    return fetch


# -- retries -----------------------------------------------------------------------------------


async def test_retries_record_every_attempt_and_start_from_the_same_state(
        backend: StateBackend) -> None:
    fetch = flaky(2)
    delays: list[int] = []

    def backoff(retry: int) -> float:
        delays.append(retry)
        return 0.0

    runner = Flujo(Step.from_callable(fetch, retries=2, backoff=backoff), context_model=Ctx,
                   state_backend=backend)
    rid = new_id()
    result = await runner.run_async("x", run_id=rid)
    assert result.success and result.output == "fetched with counter 1"
    assert fetch.seen == [1, 1, 1]  # each attempt started from the context before the first
    assert delays == [1, 2]
    [done] = result.step_history
    assert (done.attempts, done.success) == (3, True)
    assert [(f.attempt, f.series, f.error) for f in done.failed_attempts] == [
        (1, 1, "ConnectionError: attempt 1 failed"), (2, 1, "ConnectionError: attempt 2 failed")]
    assert all(type(f) is FailedAttempt and f.latency_s >= 0 for f in done.failed_attempts)
    stored = await backend.load_state(rid)
    assert stored is not None and stored["step_history"] == result.step_history
    assert stored["failure"] is None and stored["pipeline_context"]["counter"] == 1


async def test_only_the_listed_errors_are_retried(backend: StateBackend) -> None:
    fetch = flaky(1, ValueError)
    runner = Flujo(Step.from_callable(fetch, retries=3, retry_on=(TimeoutError,)),
                   context_model=Ctx, state_backend=backend)
    result = await runner.run_async("x", run_id=new_id())
    assert not result.success and result.status == "failed"
    assert fetch.seen == [1]
    assert result.step_history[-1].attempts == 1


async def test_spent_retries_fail_the_run_and_a_rerun_starts_a_new_series(
        backend: StateBackend) -> None:
    fetch = flaky(4)
    runner = Flujo(Step.from_callable(fetch, retries=1), context_model=Ctx,
                   state_backend=backend)
    rid = new_id()
    failed = await runner.run_async("x", run_id=rid)
    assert failed.status == "failed" and not failed.success
    stored = await backend.load_state(rid)
    assert stored is not None and stored["status"] == "failed"
    assert [(f.attempt, f.series) for f in stored["failure"].failed_attempts] == [(1, 1), (2, 1)]
    assert stored["error"] == "ConnectionError: attempt 2 failed"

    again = await runner.run_async(run_id=rid)  # a new series: two more attempts
    assert again.status == "failed"
    assert [(f.attempt, f.series) for f in again.step_history[-1].failed_attempts] == [
        (1, 1), (2, 1), (3, 2), (4, 2)]
    third = await runner.run_async(run_id=rid)
    assert third.success
    assert third.step_history[-1].attempts == 5  # every attempt of the run, every error kept
    assert len(third.step_history[-1].failed_attempts) == 4


async def test_a_timeout_cancels_an_attempt_and_counts_as_its_error(
        backend: StateBackend) -> None:
    attempts: list[float] = []

    async def slow(data: Any) -> str:
        attempts.append(1)
        if len(attempts) == 1:
            await asyncio.sleep(30)
        return "quick the second time"

    runner = Flujo(Step.from_callable(slow, timeout=0.2, retries=1, retry_on=TimeoutError),
                   state_backend=backend)
    result = await runner.run_async("x", run_id=new_id())
    assert result.success and result.output == "quick the second time"
    [failure] = result.step_history[0].failed_attempts
    assert failure.error.startswith("TimeoutError: step 'slow' took over 0.2 s")


async def test_a_steps_own_timeout_error_is_not_taken_for_the_limit() -> None:
    async def call(data: Any) -> str:
        raise TimeoutError("the HTTP client gave up")

    runner = Flujo(Step.from_callable(call, timeout=10), state_backend=InMemoryBackend())
    result = await runner.run_async("x")
    assert result.step_history[0].feedback == "TimeoutError: the HTTP client gave up"


@pytest.mark.parametrize(("options", "message"), [
    ({"retries": -1}, "retries must be an int >= 0"),
    ({"retries": True}, "retries must be an int >= 0"),
    ({"backoff": float("nan")}, "backoff must be seconds"),
    ({"backoff": -1}, "backoff must be seconds"),
    ({"retry_on": (42,)}, "retry_on must be Exception classes"),
    ({"timeout": 0}, "timeout must be seconds > 0"),
])
def test_bad_policies_are_refused_when_the_step_is_defined(options: dict[str, Any],
                                                           message: str) -> None:
    async def step(data: Any) -> Any:
        return data

    with pytest.raises(PipelineError, match=message):
        Step.from_callable(step, **options)


def test_a_timeout_on_a_sync_step_is_refused_it_could_not_be_stopped() -> None:
    def blocking(data: Any) -> Any:
        return data

    with pytest.raises(PipelineError, match="need an async step"):
        Step.from_callable(blocking, timeout=1)
    with pytest.raises(PipelineError, match="need an async step"):
        Step.from_callable(blocking, interruptible=True)


async def test_a_backoff_function_returning_nonsense_fails_the_run_clearly() -> None:
    backend = InMemoryBackend()
    runner = Flujo(Step.from_callable(flaky(1), retries=1, backoff=lambda n: -5),
                   context_model=Ctx, state_backend=backend)
    result = await runner.run_async("x", run_id="nonsense")
    assert result.status == "failed"
    assert "not retried: step 'fetch': backoff(1) returned -5" in (
        result.step_history[-1].feedback or "")


def test_numeric_backoff_doubles_up_to_a_cap() -> None:
    step = Step.from_callable(flaky(0), retries=50, backoff=0.5)
    assert [step.backoff_delay(n) for n in (1, 2, 3, 4)] == [0.5, 1.0, 2.0, 4.0]
    assert step.backoff_delay(50) == 300.0


# -- cancellation ------------------------------------------------------------------------------


def gated_pipeline(gate: asyncio.Event, entered: asyncio.Event, *,
                   interruptible: bool = False) -> Any:
    async def wait(data: Any, *, context: Ctx) -> str:
        context.calls.append("wait")
        context.counter += 1
        entered.set()
        await gate.wait()
        return "waited"

    def after(data: Any, *, context: Ctx) -> str:
        context.calls.append("after")
        return "after"

    return Step.from_callable(wait, interruptible=interruptible) >> Step.from_callable(after)


async def test_cancelling_a_run_another_worker_executes_stops_it_at_the_next_boundary(
        backend: StateBackend) -> None:
    gate, entered = asyncio.Event(), asyncio.Event()
    worker = Flujo(gated_pipeline(gate, entered), context_model=Ctx, state_backend=backend,
                   cancel_poll_interval=0.05)
    rid = new_id()
    running = asyncio.ensure_future(worker.run_async("x", run_id=rid))
    await asyncio.wait_for(entered.wait(), 10)
    other = Flujo(gated_pipeline(gate, entered), context_model=Ctx, state_backend=backend)
    assert await other.cancel_async(rid) == "running"  # asked: the worker holds the run
    assert await backend.cancel_requested(rid)
    gate.set()
    result = await asyncio.wait_for(running, 10)
    assert (result.status, result.success) == ("cancelled", False)
    assert result.final_pipeline_context.calls == ["wait"]  # "after" never started
    stored = await backend.load_state(rid)
    assert stored is not None and stored["status"] == "cancelled"
    assert stored["current_step_index"] == 1  # the finished step is kept
    assert not await backend.cancel_requested(rid)  # carried out, so dropped
    # A cancelled run is not resumed unless asked; then it goes on from where it stopped.
    again = await worker.run_async(run_id=rid)
    assert again.status == "cancelled"
    resumed = await worker.run_async(run_id=rid, resume_cancelled=True)
    assert resumed.success and resumed.final_pipeline_context.calls == ["wait", "after"]


async def test_an_interruptible_step_is_cancelled_at_once(backend: StateBackend) -> None:
    gate, entered = asyncio.Event(), asyncio.Event()
    worker = Flujo(gated_pipeline(gate, entered, interruptible=True), context_model=Ctx,
                   state_backend=backend, cancel_poll_interval=0.05)
    rid = new_id()
    running = asyncio.ensure_future(worker.run_async("x", run_id=rid))
    await asyncio.wait_for(entered.wait(), 10)
    assert await worker.cancel_async(rid) == "running"
    result = await asyncio.wait_for(running, 10)  # the gate never opens
    assert result.status == "cancelled"
    stored = await backend.load_state(rid)
    assert stored is not None and stored["status"] == "cancelled"
    # The step's own changes are dropped, as for a failure: the state from before it.
    assert stored["current_step_index"] == 0 and stored["pipeline_context"]["counter"] == 0


async def test_a_cancellation_during_a_backoff_stops_at_once(backend: StateBackend) -> None:
    failed_once = asyncio.Event()

    def fetch(data: Any) -> str:
        failed_once.set()
        raise ConnectionError("down")

    worker = Flujo(Step.from_callable(fetch, retries=3, backoff=60), state_backend=backend,
                   cancel_poll_interval=0.05)
    rid = new_id()
    running = asyncio.ensure_future(worker.run_async("x", run_id=rid))
    await asyncio.wait_for(failed_once.wait(), 10)
    await asyncio.sleep(0.1)
    assert await worker.cancel_async(rid) == "running"
    result = await asyncio.wait_for(running, 10)
    assert result.status == "cancelled"
    stored = await backend.load_state(rid)
    assert stored is not None and stored["status"] == "cancelled"
    assert len(stored["failure"].failed_attempts) == 1  # the attempt made is kept


async def test_cancelling_a_paused_or_failed_run_marks_it_at_once(backend: StateBackend) -> None:
    def boom(data: Any) -> Any:
        raise RuntimeError("no")

    runner = Flujo(Step.from_callable(boom), state_backend=backend)
    rid = new_id()
    assert (await runner.run_async("x", run_id=rid)).status == "failed"
    assert await runner.cancel_async(rid) == "cancelled"
    stored = await backend.load_state(rid)
    assert stored is not None and stored["status"] == "cancelled"
    assert await runner.cancel_async(rid) == "cancelled"  # asking twice changes nothing
    with pytest.raises(RunNotFoundError):
        await runner.cancel_async(new_id())


async def test_a_completed_run_is_not_cancelled(backend: StateBackend) -> None:
    runner = Flujo(Step.from_callable(lambda x: x, name="same"), state_backend=backend)
    rid = new_id()
    assert (await runner.run_async("x", run_id=rid)).success
    assert await runner.cancel_async(rid) == "completed"
    stored = await backend.load_state(rid)
    assert stored is not None and stored["status"] == "completed"


async def test_a_request_left_by_a_dead_worker_is_honoured_by_the_next(
        backend: StateBackend) -> None:
    calls: list[str] = []
    runner = Flujo(Step.from_callable(lambda x: calls.append("a"), name="a")
                   >> Step.from_callable(lambda x: calls.append("b"), name="b"),
                   state_backend=backend)
    rid = new_id()
    await backend.request_cancel(rid)  # as if asked while a worker that then died held it
    result = await runner.run_async("x", run_id=rid)
    assert result.status == "cancelled" and calls == []
    assert not await backend.cancel_requested(rid)


async def test_task_cancellation_saves_the_run_as_cancelled(backend: StateBackend) -> None:
    entered = asyncio.Event()

    async def hang(data: Any, *, context: Ctx) -> None:
        context.counter += 1
        entered.set()
        await asyncio.sleep(60)

    runner = Flujo(Step.from_callable(hang), context_model=Ctx, state_backend=backend)
    rid = new_id()
    task = asyncio.ensure_future(runner.run_async("x", run_id=rid))
    await asyncio.wait_for(entered.wait(), 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    stored = await backend.load_state(rid)
    assert stored is not None and stored["status"] == "cancelled"
    assert stored["pipeline_context"]["counter"] == 0  # the state from before the step


def test_keyboard_interrupt_in_a_sync_step_saves_the_run_as_cancelled() -> None:
    backend = InMemoryBackend()

    def interrupted(data: Any) -> None:
        raise KeyboardInterrupt

    runner = Flujo(Step.from_callable(lambda x: x, name="first")
                   >> Step.from_callable(interrupted), state_backend=backend)
    rid = new_id()
    with pytest.raises(KeyboardInterrupt):
        runner.run("x", run_id=rid)
    stored = asyncio.run(backend.load_state(rid))
    assert stored is not None and stored["status"] == "cancelled"
    assert stored["current_step_index"] == 1
    assert runner.run(run_id=rid).status == "cancelled"


def test_cancel_is_the_blocking_form() -> None:
    runner = Flujo(Step.human("ask", input_model=Ctx), state_backend=InMemoryBackend())
    rid = new_id()
    assert runner.run(run_id=rid).status == "paused"
    assert runner.cancel(rid) == "cancelled"


# -- bookkeeping -------------------------------------------------------------------------------


async def test_created_at_is_the_first_saves_and_load_and_list_agree(
        backend: StateBackend) -> None:
    runner = Flujo(Step.from_callable(lambda x: x, name="a")
                   >> Step.from_callable(lambda x: x, name="b"), state_backend=backend)
    rid = new_id()
    await runner.run_async("x", run_id=rid)
    stored = await backend.load_state(rid)
    [row] = [r for r in await backend.list_runs() if r["run_id"] == rid]
    assert stored is not None
    assert (stored["created_at"], stored["updated_at"]) == (row["created_at"],
                                                            row["updated_at"])
    assert row["revision"] == 3 and stored["created_at"] < stored["updated_at"]
    envelope = await backend.read_envelope(rid)
    assert envelope is not None and envelope.created_at == stored["created_at"]


# -- found by review -----------------------------------------------------------------------


async def test_a_backoff_function_that_raises_fails_the_run_saying_why(
        backend: StateBackend) -> None:
    def backoff(retry: int) -> float:
        raise ValueError("no delay for you")

    runner = Flujo(Step.from_callable(flaky(5), retries=3, backoff=backoff), context_model=Ctx,
                   state_backend=backend)
    rid = new_id()
    result = await runner.run_async("x", run_id=rid)
    assert result.status == "failed"
    stored = await backend.load_state(rid)
    assert stored is not None and stored["status"] == "failed"  # not left "running"
    assert "backoff(1) raised ValueError: no delay for you" in stored["error"]
    assert len(stored["failure"].failed_attempts) == 1


def test_retry_on_takes_only_exception_classes() -> None:
    class Halt(BaseException):
        pass

    with pytest.raises(PipelineError, match="retry_on must be Exception classes"):
        Step.from_callable(flaky(0), retries=1, retry_on=Halt)


async def test_a_request_made_while_a_step_runs_that_then_fails_cancels_the_run(
        backend: StateBackend) -> None:
    started, release = asyncio.Event(), asyncio.Event()

    async def boom(data: Any) -> Any:
        started.set()
        await release.wait()
        raise RuntimeError("failed after the request")

    runner = Flujo(Step.from_callable(boom), state_backend=backend)
    rid = new_id()
    running = asyncio.ensure_future(runner.run_async("x", run_id=rid))
    await asyncio.wait_for(started.wait(), 10)
    assert await runner.cancel_async(rid) == "running"
    release.set()
    result = await asyncio.wait_for(running, 10)
    assert result.status == "cancelled"  # the request was honoured, not left behind
    stored = await backend.load_state(rid)
    assert stored is not None and stored["status"] == "cancelled"
    assert stored["failure"].feedback == "RuntimeError: failed after the request"
    assert not await backend.cancel_requested(rid)


async def test_a_request_made_while_a_step_runs_that_then_pauses_cancels_the_run(
        backend: StateBackend) -> None:
    started, release = asyncio.Event(), asyncio.Event()

    async def ask(data: Any) -> Any:
        started.set()
        await release.wait()
        raise PauseForInput(Ctx, message="?")

    runner = Flujo(Step.from_callable(ask), state_backend=backend)
    rid = new_id()
    running = asyncio.ensure_future(runner.run_async("x", run_id=rid))
    await asyncio.wait_for(started.wait(), 10)
    assert await runner.cancel_async(rid) == "running"
    release.set()
    assert (await asyncio.wait_for(running, 10)).status == "cancelled"
    assert not await backend.cancel_requested(rid)


class _FinishesFirst(InMemoryBackend):
    """A store whose run is held by a worker that finishes just after ``cancel`` asks."""

    def __init__(self) -> None:
        super().__init__()
        self.busy = True

    @contextlib.asynccontextmanager
    async def claim(self, run_id: str) -> Any:  # type: ignore[override]
        if self.busy:
            self.busy = False  # the worker ends now: the next claim succeeds
            raise RunInProgressError("held")
        async with super().claim(run_id) as held:
            yield held


async def test_a_request_that_arrives_after_the_run_completed_is_dropped() -> None:
    backend = _FinishesFirst()
    backend.busy = False
    runner = Flujo(Step.from_callable(lambda x: x, name="same"), state_backend=backend,
                   delete_on_completion=False)
    rid = new_id()
    assert (await runner.run_async("x", run_id=rid)).success
    backend.busy = True
    assert await runner.cancel_async(rid) == "completed"  # looked again after asking
    assert not await backend.cancel_requested(rid)  # nothing left to cancel a later run


async def test_an_interruptible_step_that_swallows_its_cancellation_is_still_cancelled(
        backend: StateBackend) -> None:
    entered = asyncio.Event()

    async def stubborn(data: Any) -> str:
        entered.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            return "swallowed"
        return "slept"

    runner = Flujo(Step.from_callable(stubborn, interruptible=True), state_backend=backend,
                   cancel_poll_interval=0.05)
    rid = new_id()
    running = asyncio.ensure_future(runner.run_async("x", run_id=rid))
    await asyncio.wait_for(entered.wait(), 10)
    assert await runner.cancel_async(rid) == "running"
    result = await asyncio.wait_for(running, 10)
    assert result.status == "cancelled" and result.output is None


async def test_cancel_needs_a_run_id() -> None:
    runner = Flujo(Step.from_callable(lambda x: x, name="same"), state_backend=InMemoryBackend())
    with pytest.raises(InvalidRunIdError):
        await runner.cancel_async(None)  # type: ignore[arg-type]


async def test_resuming_a_run_cancelled_during_a_backoff_continues_its_series(
        backend: StateBackend) -> None:
    failed_once = asyncio.Event()
    calls: list[int] = []

    def fetch(data: Any) -> str:
        calls.append(1)
        failed_once.set()
        if len(calls) < 3:
            raise ConnectionError("down")
        return "up"

    worker = Flujo(Step.from_callable(fetch, retries=2, backoff=lambda n: 60 if n == 1 else 0),
                   state_backend=backend, cancel_poll_interval=0.05)
    rid = new_id()
    running = asyncio.ensure_future(worker.run_async("x", run_id=rid))
    await asyncio.wait_for(failed_once.wait(), 10)
    await asyncio.sleep(0.1)
    await worker.cancel_async(rid)
    assert (await asyncio.wait_for(running, 10)).status == "cancelled"
    result = await worker.run_async(run_id=rid, resume_cancelled=True)
    assert result.success
    assert [(f.attempt, f.series) for f in result.step_history[0].failed_attempts] == [
        (1, 1), (2, 1)]  # the same series: retries=2 allowed three attempts in all


async def test_cancel_rewrites_an_encrypted_compressed_record_without_decoding_it() -> None:
    from flujo.serialization import TypeRegistry
    from flujo.state import Encryption

    key = Encryption.single(Encryption.generate_key(), "k1")
    backend = InMemoryBackend(encryption=key, compression="zlib")
    runner = Flujo(Step.human("ask", input_model=Ctx), state_backend=backend)
    await runner.run_async(run_id="enc")
    # A reader that knows none of the types cancels it (status and pause only).
    reader = InMemoryBackend(encryption=key, compression="zlib", registry=TypeRegistry())
    reader.put_raw("enc", backend.raw_records()["enc"])
    assert await Flujo(Step.from_callable(lambda x: x, name="ask"),
                       state_backend=reader).cancel_async("enc") == "cancelled"
    backend.put_raw("enc", reader.raw_records()["enc"])
    record = await backend.load_record("enc")
    assert record is not None
    assert (record.revision, record.state.status, record.state.pause) == (3, "cancelled", None)
    assert record.envelope.codec == "json+zlib+aesgcm"


class DictOnly(StateBackend):
    """A backend of the earlier contract: save/load/delete of plain JSON dicts."""

    def __init__(self) -> None:
        self.rows: dict[str, dict[str, Any]] = {}

    async def save_state(self, run_id: str, state: Any, *,
                         expected_revision: int | None = None) -> None:
        self.rows[run_id] = state.model_dump(mode="json")

    async def load_state(self, run_id: str) -> dict[str, Any] | None:
        return self.rows.get(run_id)

    async def delete_state(self, run_id: str) -> None:
        self.rows.pop(run_id, None)


async def test_retries_and_reruns_on_a_backend_of_the_earlier_contract() -> None:
    backend = DictOnly()
    fetch = flaky(3)
    with pytest.warns(RuntimeWarning, match="no run claim"):
        runner = Flujo(Step.from_callable(fetch, retries=2), context_model=Ctx,
                       state_backend=backend)
        failed = await runner.run_async("x", run_id="legacy")
    assert failed.status == "failed" and len(fetch.seen) == 3  # every attempt was made
    assert backend.rows["legacy"]["failure"]["attempts"] == 3  # stored as a plain dict
    with pytest.warns(RuntimeWarning):
        again = await runner.run_async(run_id="legacy")  # the stored dict is a failure again
    assert again.success and again.step_history[0].attempts == 4


async def test_delete_on_completion_holds_when_iteration_stops_at_the_last_step(
        backend: StateBackend) -> None:
    runner = Flujo(Step.from_callable(lambda x: x, name="a")
                   >> Step.from_callable(lambda x: x, name="b"), state_backend=backend,
                   delete_on_completion=True)
    rid = new_id()
    async with runner.run_async("x", run_id=rid) as run:
        async for step in run:
            if step.name == "b":
                break
    assert await backend.load_state(rid) is None


async def test_a_rewrite_refuses_an_altered_header_instead_of_sealing_it() -> None:
    from flujo.exceptions import CorruptStateError
    from flujo.state import Encryption

    backend = InMemoryBackend(encryption=Encryption.single(Encryption.generate_key(), "k"))
    runner = Flujo(Step.human("ask", input_model=Ctx), state_backend=backend)
    await runner.run_async(run_id="altered")
    raw = backend.raw_records()["altered"]
    envelope = await backend.read_envelope("altered")
    assert envelope is not None
    created = envelope.header()["created_at"].encode()
    backend.put_raw("altered", raw.replace(created, b"1999-01-01T00:00:00.000000+00:00", 1))
    before = backend.raw_records()["altered"]
    with pytest.raises(CorruptStateError, match="altered"):
        await runner.cancel_async("altered")
    assert backend.raw_records()["altered"] == before  # left as it was found
