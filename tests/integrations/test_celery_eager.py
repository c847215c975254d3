"""The Celery integration's contract, with Celery in eager mode (tasks run in the caller):
what a message does to its run, duplicates, pauses, busy and unreachable stores, recovery.
Real workers and a real broker: tests/reliability/test_celery_campaign.py."""

from __future__ import annotations

import asyncio
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, Field

pytest.importorskip("celery")

from celery import Celery

import flujo.integrations.celery as celery_integration
from flujo import Flujo, Pipeline, PipelineContext, Step
from flujo.exceptions import (
    BackendUnavailableError,
    PipelineError,
    PipelineMismatchError,
    RunInProgressError,
    RunNotFoundError,
    RunNotQueuedError,
)
from flujo.integrations.celery import FlujoTask, flujo_task
from flujo.serialization import register_type
from flujo.state import SQLiteBackend


class Order(BaseModel):
    sku: str
    amount: Decimal


class Approval(BaseModel):
    approved: bool


register_type(Order, name="tests.celery.order")
register_type(Approval, name="tests.celery.approval")


class Ctx(PipelineContext):
    calls: list[str] = Field(default_factory=list)

# Tasks resume runs whose states are a few hundred bytes: their saves are deltas here, so
# that a task meets a chain at the head.
pytestmark = pytest.mark.usefixtures("states_in_deltas")


def pipeline(log: list[str], *, human: bool = False) -> Pipeline:
    def make(name: str) -> Step:
        def step(data: Any, *, context: Ctx) -> Any:
            log.append(name)
            context.calls.append(name)
            return data
        return Step.from_callable(step, name=name)

    steps = make("reserve") >> make("charge")
    if human:
        steps = steps >> Step.human("approve", input_model=Approval)
    return steps >> make("ship")


def eager_app() -> Celery:
    app = Celery(f"tests-{uuid.uuid4().hex[:8]}", set_as_current=False)
    app.conf.task_always_eager = True
    # False: with it, Celery raises a retry out of the call instead of retrying at once
    app.conf.task_eager_propagates = False
    app.conf.task_store_eager_result = False
    return app


def make(tmp_path: Path, *, human: bool = False,
         **options: Any) -> tuple[FlujoTask, list[str], SQLiteBackend]:
    log: list[str] = []
    backend = SQLiteBackend(tmp_path / "state.db")
    runner = Flujo(pipeline(log, human=human), context_model=Ctx, state_backend=backend,
                   pipeline_name="orders")
    return flujo_task(eager_app(), runner, **options), log, backend


def status(backend: SQLiteBackend, run_id: str) -> str | None:
    state = asyncio.run(backend.load_state(run_id))
    return None if state is None else str(state["status"])


def test_submit_saves_the_run_then_a_worker_runs_it_with_its_typed_input(
        tmp_path: Path) -> None:
    orders, log, _ = make(tmp_path)
    order = Order(sku="A-1", amount=Decimal("9.90"))
    run_id = orders.submit(order, run_id="order-1")
    assert run_id == "order-1"
    assert log == ["reserve", "charge", "ship"]
    state = orders.runner.state_at(run_id)
    assert state.status == "completed"
    output = state.last_step_output
    assert type(output) is Order and output == order
    assert orders.runner.restore_context(state).calls == ["reserve", "charge", "ship"]


def test_the_message_holds_only_the_run_id(tmp_path: Path) -> None:
    orders, _, _ = make(tmp_path)
    sent: list[tuple[Any, dict[str, Any]]] = []
    orders.task.apply_async = lambda args, **options: sent.append((args, options))  # type: ignore[method-assign]
    run_id = orders.submit(Order(sku="B", amount=Decimal(1)), queue="orders")
    assert sent == [((run_id,), {"queue": "orders"})]
    assert orders.runner.state_at(run_id).current_step_index == 0  # saved, not run


def test_a_duplicate_message_for_a_finished_run_runs_nothing(tmp_path: Path) -> None:
    orders, log, _ = make(tmp_path)
    run_id = orders.submit("x")
    outcome = orders.task.apply(args=(run_id,)).get()
    assert outcome == {"run_id": run_id, "status": "completed"}
    assert log == ["reserve", "charge", "ship"]


def test_submitting_one_run_id_twice_runs_it_once_and_keeps_the_first_input(
        tmp_path: Path) -> None:
    orders, log, _ = make(tmp_path)
    orders.submit("first", run_id="same")
    orders.submit("second", run_id="same")
    assert log == ["reserve", "charge", "ship"]
    assert orders.runner.state_at("same").last_step_output == "first"


def test_a_paused_run_stays_paused_until_answered(tmp_path: Path) -> None:
    orders, log, _ = make(tmp_path, human=True)
    run_id = orders.submit("x")
    assert log == ["reserve", "charge"]
    assert orders.task.apply(args=(run_id,)).get()["status"] == "paused"
    assert log == ["reserve", "charge"]
    orders.runner.resume(run_id, Approval(approved=True))
    assert log == ["reserve", "charge", "ship"]
    assert orders.task.apply(args=(run_id,)).get()["status"] == "completed"


def test_a_message_for_an_unknown_run_creates_nothing(tmp_path: Path) -> None:
    orders, log, backend = make(tmp_path)
    assert orders.task.apply(args=("deleted",)).get() == {"run_id": "deleted",
                                                          "status": "not-found"}
    assert log == [] and status(backend, "deleted") is None
    with pytest.raises(RunNotFoundError, match="create=False"):
        orders.runner.run(run_id="deleted", create=False)


def test_a_run_another_worker_holds_is_retried_until_it_is_free(tmp_path: Path) -> None:
    orders, log, backend = make(tmp_path, busy_retry_delay=0.05)
    run_id = orders.runner.create_run("x")
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        async def main() -> None:
            async with backend.claim(run_id):
                held.set()
                await asyncio.to_thread(release.wait)
        asyncio.run(main())

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait(10)
    attempts: list[int] = []
    original = orders.runner.run_async

    def counted(*args: Any, **kwargs: Any) -> Any:
        attempts.append(1)
        if len(attempts) == 3:
            release.set()
            holder.join()
        return original(*args, **kwargs)

    orders.runner.run_async = counted  # type: ignore[method-assign]
    assert orders.task.apply(args=(run_id,)).get()["status"] == "completed"
    assert len(attempts) >= 3
    assert log == ["reserve", "charge", "ship"]


def test_an_unreachable_store_is_retried_a_bounded_number_of_times(tmp_path: Path) -> None:
    orders, _, _ = make(tmp_path, unavailable_retry_delay=0.01, unavailable_retries=2)
    attempts: list[str] = []

    def unreachable(*args: Any, **kwargs: Any) -> Any:
        attempts.append(kwargs["run_id"])
        raise BackendUnavailableError("the store is down")

    orders.runner.run_async = unreachable  # type: ignore[method-assign]
    with pytest.raises(BackendUnavailableError, match="the store is down"):
        orders.task.apply(args=("r1",)).get()
    assert attempts == ["r1"] * 3


def test_submit_fails_loudly_and_queues_nothing_when_the_store_is_unreachable(
        tmp_path: Path) -> None:
    app = eager_app()
    (tmp_path / "a-file").write_text("not a folder")
    runner = Flujo(pipeline([]), context_model=Ctx,
                   state_backend=SQLiteBackend(tmp_path / "a-file" / "state.db"))
    orders = flujo_task(app, runner)
    sent: list[Any] = []
    orders.task.apply_async = lambda *a, **k: sent.append(a)  # type: ignore[method-assign]
    with pytest.raises(BackendUnavailableError):
        orders.submit("x")
    assert sent == []


def test_recover_resubmits_only_unattended_running_runs(tmp_path: Path) -> None:
    orders, log, backend = make(tmp_path)
    lost = orders.runner.create_run("lost")  # saved, its message never sent
    done = orders.submit("done")
    log.clear()
    assert orders.recover(older_than=timedelta(hours=1)) == []  # too recent
    found = orders.recover(older_than=timedelta(0), dry_run=True)
    assert [(r.run_id, r.resubmitted) for r in found] == [(lost, False)]
    assert log == [] and status(backend, lost) == "running"
    found = orders.recover(older_than=timedelta(0))
    assert [(r.run_id, r.resubmitted) for r in found] == [(lost, True)]
    assert log == ["reserve", "charge", "ship"]
    assert status(backend, lost) == "completed" and status(backend, done) == "completed"


def test_recover_leaves_a_run_a_worker_executes(tmp_path: Path) -> None:
    orders, _, backend = make(tmp_path)
    run_id = orders.runner.create_run("x")

    async def main() -> list[Any]:
        async with backend.claim(run_id):
            return await orders.recover_async(older_than=timedelta(0))

    assert asyncio.run(main()) == []


def test_recover_finds_runs_beyond_one_page_oldest_first(tmp_path: Path) -> None:
    orders, _, _ = make(tmp_path)
    ids = [orders.runner.create_run(run_id=f"r{i:04d}") for i in range(520)]
    found = orders.recover(older_than=timedelta(0), dry_run=True, limit=600)
    assert sorted(r.run_id for r in found) == ids
    assert [r.updated_at for r in found] == sorted(r.updated_at for r in found)
    assert len(orders.recover(older_than=timedelta(0), dry_run=True, limit=7)) == 7


def test_the_task_is_registered_under_the_pipelines_name_with_redelivery_settings(
        tmp_path: Path) -> None:
    orders, _, _ = make(tmp_path)
    task = orders.app.tasks["flujo.orders"]  # orders.task: Celery's proxy of it
    assert orders.task.name == task.name == "flujo.orders"
    assert task.acks_late is True and task.reject_on_worker_lost is True


@pytest.mark.parametrize(("option", "value"), [
    ("busy_retry_delay", 0), ("busy_retry_delay", True), ("unavailable_retry_delay", -1),
    ("unavailable_retries", -1), ("unavailable_retries", 1.5), ("run_retries", -1),
    ("run_retries", True), ("run_retry_delay", 0)])
def test_bad_options_are_refused(tmp_path: Path, option: str, value: Any) -> None:
    runner = Flujo(pipeline([]), state_backend=SQLiteBackend(tmp_path / "s.db"))
    with pytest.raises(PipelineError, match=option):
        flujo_task(eager_app(), runner, **{option: value})


def test_recover_refuses_a_negative_age(tmp_path: Path) -> None:
    orders, _, _ = make(tmp_path)
    with pytest.raises(PipelineError, match="older_than"):
        orders.recover(older_than=timedelta(seconds=-1))


def flaky_runner(tmp_path: Path, failing_series: int) -> tuple[Flujo[Ctx], list[str]]:
    """A run whose 'charge' step fails in its first ``failing_series`` attempt series."""
    log: list[str] = []

    def charge(data: Any, *, context: Ctx) -> Any:
        log.append("charge")
        if len(log) <= failing_series * 2:  # two attempts per series (retries=1)
            raise ConnectionError("the bank is down")
        return data

    steps = Step.from_callable(charge, name="charge", retries=1, backoff=0.001)
    return Flujo(steps, context_model=Ctx, state_backend=SQLiteBackend(tmp_path / "s.db"),
                 pipeline_name="flaky"), log


def test_a_failed_run_is_run_again_as_a_whole_up_to_run_retries(tmp_path: Path) -> None:
    runner, log = flaky_runner(tmp_path, failing_series=2)
    orders = flujo_task(eager_app(), runner, run_retries=2, run_retry_delay=0.01)
    run_id = orders.submit("x")
    state = runner.state_at(run_id)
    assert state.status == "completed" and len(log) == 5
    [charge] = state.step_history
    assert [a.series for a in charge.failed_attempts] == [1, 1, 2, 2]
    assert charge.attempts == 5


def test_a_run_that_keeps_failing_stays_failed_and_records_each_series(
        tmp_path: Path) -> None:
    runner, log = flaky_runner(tmp_path, failing_series=10)
    orders = flujo_task(eager_app(), runner, run_retries=1, run_retry_delay=0.01)
    run_id = orders.submit("x")
    state = runner.state_at(run_id)
    assert state.status == "failed" and len(log) == 4
    assert [a.series for a in state.failure.failed_attempts] == [1, 1, 2, 2]
    # a duplicate or recovered message does not run it a third time
    assert orders.task.apply(args=(run_id,)).get() == {"run_id": run_id, "status": "failed"}
    assert len(log) == 4


def test_without_run_retries_a_failed_run_is_not_run_again(tmp_path: Path) -> None:
    runner, log = flaky_runner(tmp_path, failing_series=1)
    orders = flujo_task(eager_app(), runner)
    run_id = orders.submit("x")
    assert orders.task.apply(args=(run_id,)).get()["status"] == "failed"
    assert len(log) == 2 and runner.state_at(run_id).status == "failed"
    assert runner.run(run_id=run_id).status == "completed"  # by hand: its next series


@pytest.fixture
def shutdown() -> Iterator[Callable[[], None]]:
    """Starts a worker's shutdown (as Celery's worker_shutting_down does); undone after."""
    def start() -> None:
        celery_integration._SHUTTING_DOWN.value = 1

    try:
        yield start
    finally:
        celery_integration._SHUTTING_DOWN.value = 0


def test_a_shutting_down_worker_stops_the_run_after_its_step_and_queues_it_again(
        tmp_path: Path, shutdown: Callable[[], None]) -> None:
    log: list[str] = []

    def make(name: str) -> Step:
        def step(data: Any, *, context: Ctx) -> Any:
            log.append(name)
            if name == "charge":
                shutdown()  # SIGTERM arrives while the worker is inside 'charge'
            return data
        return Step.from_callable(step, name=name)

    runner = Flujo(make("reserve") >> make("charge") >> make("pack") >> make("ship"),
                   context_model=Ctx, state_backend=SQLiteBackend(tmp_path / "s.db"))
    orders = flujo_task(eager_app(), runner)
    deliveries: list[int] = []
    original = runner.run_async

    def counted(*args: Any, **kwargs: Any) -> Any:
        deliveries.append(1)
        return original(*args, **kwargs)

    runner.run_async = counted  # type: ignore[method-assign]
    run_id = orders.submit("x")
    # Each delivery after the shutdown began ran one step, saved it, released the claim and
    # queued the run again (here, eagerly, at once): no step ran twice, none was skipped.
    assert log == ["reserve", "charge", "pack", "ship"]
    assert len(deliveries) == 3  # reserve+charge, pack, ship
    assert runner.state_at(run_id).status == "completed"
    assert asyncio.run(runner.backend.claim_holders([run_id])) == {}
    assert celery_integration.shutting_down()


@pytest.mark.parametrize("bad", ["5m", -1, True, float("nan"), 1e300])
def test_the_recover_task_refuses_a_bad_age(tmp_path: Path, bad: Any) -> None:
    orders, _, _ = make(tmp_path)
    outcome = orders.recover_task.apply(kwargs={"older_than_s": bad})
    with pytest.raises(PipelineError, match="older_than_s"):
        outcome.get()


def test_the_recover_task_resubmits_unattended_runs(tmp_path: Path) -> None:
    orders, log, _ = make(tmp_path)
    lost = orders.runner.create_run("lost")
    assert orders.recover_task.apply(kwargs={"older_than_s": 0}).get() == [lost]
    assert log == ["reserve", "charge", "ship"]


# -- found by review: budgets, lost retry messages, delayed starts, names, bad input -------

def test_store_outages_have_their_own_budget_which_busy_retries_do_not_spend(
        tmp_path: Path) -> None:
    orders, log, _ = make(tmp_path, busy_retry_delay=0.01, unavailable_retry_delay=0.01,
                          unavailable_retries=2)
    run_id = orders.runner.create_run("x")
    original = orders.runner.run_async
    calls: list[str] = []

    def flaky(*args: Any, **kwargs: Any) -> Any:
        calls.append("busy" if len(calls) < 3 else "down" if len(calls) < 5 else "real")
        if calls[-1] == "busy":
            raise RunInProgressError("held elsewhere")
        if calls[-1] == "down":
            raise BackendUnavailableError("the store is down")
        return original(*args, **kwargs)

    orders.runner.run_async = flaky  # type: ignore[method-assign]
    assert orders.task.apply(args=(run_id,)).get()["status"] == "completed"
    assert calls == ["busy", "busy", "busy", "down", "down", "real"]
    assert log == ["reserve", "charge", "ship"]


def test_a_failed_run_owed_a_retry_whose_message_was_lost_is_recovered(
        tmp_path: Path) -> None:
    runner, log = flaky_runner(tmp_path, failing_series=1)
    orders = flujo_task(eager_app(), runner, run_retries=1, run_retry_delay=0.01)
    run_id = runner.create_run("x")
    assert runner.run(run_id=run_id).status == "failed"  # by hand: no retry message sent
    time.sleep(0.05)  # unsaved for run_retry_delay, as a retry's message would have been
    [found] = orders.recover(older_than=timedelta(0))
    assert found.run_id == run_id and found.resubmitted
    assert runner.state_at(run_id).status == "completed" and len(log) == 3
    # spent: a failed run with no retry left is not recovered
    spent, _ = flaky_runner(tmp_path / "spent", failing_series=10)
    spent_task = flujo_task(eager_app(), spent, run_retries=1, run_retry_delay=0.01)
    spent_id = spent_task.submit("y")
    assert spent.state_at(spent_id).status == "failed"
    assert spent_task.recover(older_than=timedelta(0)) == []


@pytest.mark.parametrize("option", ["countdown", "eta"])
def test_a_delayed_start_is_refused_before_anything_is_saved(tmp_path: Path,
                                                            option: str) -> None:
    orders, _, backend = make(tmp_path)
    with pytest.raises(PipelineError, match=f"{option}: a delayed start is not supported"):
        orders.submit("x", run_id="later", **{option: 3600})
    assert status(backend, "later") is None
    with pytest.raises(PipelineError, match=option):
        orders.resubmit("later", **{option: 3600})


def test_two_runners_cannot_share_a_task_name(tmp_path: Path) -> None:
    app = eager_app()
    first = Flujo(pipeline([]), state_backend=SQLiteBackend(tmp_path / "a.db"))
    second = Flujo(pipeline([]), state_backend=SQLiteBackend(tmp_path / "b.db"))
    flujo_task(app, first)
    with pytest.raises(PipelineError, match=re.escape("already has a task named 'flujo.pipeline'")):
        flujo_task(app, second)
    assert flujo_task(app, second, name="second").task.name == "second"


@pytest.mark.parametrize(("app", "runner", "name", "says"), [
    (None, "ok", None, "app must be a celery.Celery"),
    ("ok", None, None, "runner must be a flujo.Flujo"),
    ("ok", "ok", "", "name must be a non-empty str"),
    ("ok", "ok", 123, "name must be a non-empty str")])
def test_bad_apps_runners_and_names_are_refused(tmp_path: Path, app: Any, runner: Any,
                                                name: Any, says: str) -> None:
    real = Flujo(pipeline([]), state_backend=SQLiteBackend(tmp_path / "s.db"))
    with pytest.raises(PipelineError, match=says):
        flujo_task(eager_app() if app == "ok" else app, real if runner == "ok" else runner,
                   name=name)


@pytest.mark.parametrize("delay", [float("inf"), 1e300, float("nan"), 400 * 86_400])
def test_delays_beyond_a_year_are_refused(tmp_path: Path, delay: float) -> None:
    runner = Flujo(pipeline([]), state_backend=SQLiteBackend(tmp_path / "s.db"))
    with pytest.raises(PipelineError, match="at most a year"):
        flujo_task(eager_app(), runner, run_retry_delay=delay)


def test_recover_with_an_age_older_than_time_finds_nothing(tmp_path: Path) -> None:
    orders, _, _ = make(tmp_path)
    orders.runner.create_run("x")
    assert orders.recover(older_than=timedelta.max) == []
    assert orders.runner.unattended_runs(older_than=timedelta.max) == []


def test_submitting_another_pipelines_run_id_is_refused(tmp_path: Path) -> None:
    orders, _, backend = make(tmp_path)
    other = Flujo(pipeline([]), state_backend=backend, pipeline_name="invoices")
    other.create_run("theirs", run_id="shared-id")
    with pytest.raises(PipelineMismatchError, match="belongs to pipeline 'invoices'"):
        orders.submit("mine", run_id="shared-id")


def test_create_run_refuses_to_report_a_run_another_process_holds_but_never_saved(
        tmp_path: Path) -> None:
    orders, _, backend = make(tmp_path)

    async def main() -> None:
        async with backend.claim("order-7"):  # another submitter, before its save
            with pytest.raises(RunInProgressError):
                await orders.runner.create_run_async("x", run_id="order-7")

    asyncio.run(main())
    assert status(backend, "order-7") is None


def test_an_unreachable_broker_is_a_typed_error_carrying_the_saved_run(
        tmp_path: Path) -> None:
    app = Celery(f"tests-{uuid.uuid4().hex[:8]}", broker="redis://127.0.0.1:1/0",
                 set_as_current=False)
    app.conf.task_publish_retry = False
    app.conf.broker_connection_timeout = 1
    runner = Flujo(pipeline([]), state_backend=SQLiteBackend(tmp_path / "s.db"))
    orders = flujo_task(app, runner)
    with pytest.raises(RunNotQueuedError, match="could not be sent") as raised:
        orders.submit("x", run_id="order-9")
    assert raised.value.run_id == "order-9"
    assert runner.state_at("order-9").status == "running"  # saved: recover sends it later
    [found] = orders.recover(older_than=timedelta(0))
    assert (found.run_id, found.resubmitted) == ("order-9", False)
    assert found.error is not None and "could not be sent" in found.error


def test_a_run_this_worker_cannot_resume_is_logged_and_left_as_saved(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    orders, log, backend = make(tmp_path)
    run_id = orders.runner.create_run("x")
    renamed = Flujo(pipeline([]) >> Step.from_callable(lambda x: x, name="audit"),
                    context_model=Ctx, state_backend=backend, pipeline_name="orders")
    newer = flujo_task(eager_app(), renamed)
    assert newer.task.apply(args=(run_id,)).get() == {"run_id": run_id,
                                                      "status": "cannot-resume"}
    assert "cannot be resumed here" in caplog.text and log == []
    assert status(backend, run_id) == "running"
    assert orders.task.apply(args=(run_id,)).get()["status"] == "completed"  # the right one
