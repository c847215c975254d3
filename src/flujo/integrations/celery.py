"""Durable runs executed by Celery workers (``pip install 'flujo[celery]'``).

::

    from celery import Celery
    from flujo import Flujo
    from flujo.integrations.celery import flujo_task

    app = Celery("shop", broker="redis://127.0.0.1:6379/0")
    runner = Flujo(pipeline, state_backend="postgresql://shop@db/shop",
                   pipeline_name="orders")
    orders = flujo_task(app, runner)          # at import, in the workers too

    run_id = orders.submit({"order": 42})     # saved, then queued; returns at once

flujo does not queue anything itself: Celery delivers, flujo's store decides.

* **What a message holds.** Only the run id. ``FlujoTask.submit`` first saves the new
  run (its input and context, with their exact types, in flujo's store), then sends the
  message; a worker's task resumes the saved run with ``runner.run(run_id=...,
  create=False)``. Celery never serializes your data, and a lost message loses no input:
  the saved run is found again by ``FlujoTask.recover``.
* **Redelivery.** The task acknowledges its message only once the run has stopped
  (``acks_late``), and a worker process that dies mid-run gives it back to the broker
  (``reject_on_worker_lost``), so another worker resumes the run from its last saved step.
* **Stopping.** A worker that begins a warm shutdown (SIGTERM) stops each run it executes
  once the step it is in has been saved, releases its claim and queues it again.
* **Duplicates are harmless.** Whatever delivers a message twice, the run's claim and its
  saved state decide: a finished run returns its stored status (nothing runs again), a
  paused run stays paused, and a run another worker executes at that moment is retried
  later (``busy_retry_delay``) rather than run twice. No two workers are ever inside one
  run: one holds its claim.

The broker's side of redelivery is the application's Celery configuration; see
docs/distributed.md for the settings (``worker_prefetch_multiplier``, Redis's
``visibility_timeout``) and what each guarantees.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from ..application import control
from ..exceptions import (
    BackendUnavailableError,
    ClaimLostError,
    CorruptStateError,
    PipelineError,
    PipelineMismatchError,
    RunInProgressError,
    RunNotFoundError,
    RunNotQueuedError,
)

if TYPE_CHECKING:
    from ..application import Flujo, PipelineResult

try:
    import celery
    import celery.signals
    from celery.exceptions import Retry
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "flujo.integrations.celery needs Celery: pip install 'flujo[celery]'") from exc

__all__ = ["FlujoTask", "RecoveredRun", "TaskOutcome", "flujo_task", "shutting_down"]

logger = logging.getLogger("flujo.integrations.celery")

# Set by a worker's main process when it begins a warm shutdown (SIGTERM), read by the
# processes that execute runs: shared memory, inherited by prefork children; a plain store
# of a byte, safe in the signal handler Celery sends worker_shutting_down from.
_SHUTTING_DOWN = multiprocessing.RawValue("b", 0)
# What _run returns instead of a result: a failed run whose retries are spent, a run
# stopped by a shutdown (queued again at once, for another worker).
_SPENT, _STOPPED = "spent", "stopped"
_SHUTDOWN_REQUEUE_S = 0.0
# How many of the most recently saved failed runs a recovery reads, looking for runs owed a
# whole-run retry whose message was lost.
_FAILED_LOOKED_AT = 1_000


def shutting_down() -> bool:
    """Whether this worker began shutting down (Celery's ``worker_shutting_down``): a run
    it executes stops after its current step, and its message is queued again."""
    return bool(_SHUTTING_DOWN.value)


def _on_worker_shutting_down(**_: Any) -> None:
    _SHUTTING_DOWN.value = 1


celery.signals.worker_shutting_down.connect(_on_worker_shutting_down, weak=False)


@dataclass(frozen=True)
class TaskOutcome:
    """What one execution of the task did with its run (also the task's return value, as a
    plain dict: ``{"run_id": ..., "status": ...}``).

    ``status`` is the run's status when the task stopped (``completed``, ``paused``,
    ``failed``, ``cancelled``), or ``handed-over`` when this worker lost its claim to
    another (which now owns the run's outcome), ``not-found`` when no saved run has the id
    (deleted since it was submitted), ``cannot-resume`` when this worker cannot resume it
    (PipelineMismatchError: the pipeline changed without a version migration;
    CorruptStateError: a damaged record), logged as an error."""

    run_id: str
    status: str

    def as_dict(self) -> dict[str, str]:
        return {"run_id": self.run_id, "status": self.status}


@dataclass(frozen=True)
class RecoveredRun:
    """A run ``FlujoTask.recover`` found unattended: resubmitted (unless a dry run), or,
    when its message could not be sent, ``error`` says why (the next recovery tries again).
    """

    run_id: str
    updated_at: datetime
    resubmitted: bool
    error: str | None = None


class FlujoTask:
    """A ``Flujo`` runner as a Celery task; made by ``flujo_task``.

    ``task`` is the registered Celery task (its message: one argument, the run id);
    ``recover_task`` (named ``<name>.recover``, argument ``older_than_s``) calls
    ``recover``, for celery beat to run periodically."""

    def __init__(self, app: celery.Celery, runner: Flujo[Any], *, name: str,
                 busy_retry_delay: float, unavailable_retry_delay: float,
                 unavailable_retries: int, run_retries: int, run_retry_delay: float) -> None:
        self.app = app
        self.runner = runner
        self.busy_retry_delay = busy_retry_delay
        self.unavailable_retry_delay = unavailable_retry_delay
        self.unavailable_retries = unavailable_retries
        self.run_retries = run_retries
        self.run_retry_delay = run_retry_delay

        def execute_run(task: celery.Task, run_id: str, outages: int = 0) -> dict[str, str]:
            return self._execute(task, run_id, outages).as_dict()

        # acks_late and reject_on_worker_lost: a message is given back, not lost, when the
        # worker process executing its run dies. max_retries=None: _retry bounds retries.
        register: Any = app.task(bind=True, name=name, acks_late=True,
                                 reject_on_worker_lost=True, max_retries=None,
                                 serializer="json", shared=False)
        self.task: celery.Task = register(execute_run)

        def recover_runs(older_than_s: float = 300.0) -> list[str]:
            age = _seconds(f"{name}.recover: older_than_s", older_than_s, zero=True)
            return [found.run_id for found in self.recover(older_than=timedelta(seconds=age))
                    if found.resubmitted]

        # For celery beat (docs/distributed.md): two schedulers, or a run recovered twice,
        # still run each run once.
        register = app.task(name=f"{name}.recover", shared=False, ignore_result=True)
        self.recover_task: celery.Task = register(recover_runs)

    # -- submitting ---------------------------------------------------------------------
    def submit(self, initial_input: Any = None, *, run_id: str | None = None,
               initial_context_data: Mapping[str, Any] | None = None,
               **options: Any) -> str:
        """Save a new run (``runner.create_run``), queue it, and return its id at once.

        A run of this pipeline that already exists under ``run_id`` is left as it is and
        queued again, which is harmless (see the module's docs): submitting twice with one
        ``run_id`` runs it once (unless the runner deletes completed runs,
        ``delete_on_completion``: then a second submit after the first completed starts the
        run anew). ``options`` go to Celery's ``apply_async`` (``queue``, ``priority``...),
        except ``countdown`` and ``eta``: the run is saved as running now, and ``recover``
        would start it before its time (schedule the submit itself instead).
        RunNotQueuedError (with the saved run's ``run_id``) when the message cannot be
        sent."""
        _check_options(options)
        rid = self.runner.create_run(initial_input, run_id=run_id,
                                     initial_context_data=initial_context_data)
        self.resubmit(rid, **options)
        return rid

    async def submit_async(self, initial_input: Any = None, *, run_id: str | None = None,
                           initial_context_data: Mapping[str, Any] | None = None,
                           **options: Any) -> str:
        """``submit`` from a coroutine (the message is sent off the event loop)."""
        _check_options(options)
        rid = await self.runner.create_run_async(initial_input, run_id=run_id,
                                                 initial_context_data=initial_context_data)
        await asyncio.to_thread(self.resubmit, rid, **options)
        return rid

    def resubmit(self, run_id: str, **options: Any) -> None:
        """Queue a message for the saved run ``run_id`` (after it was lost, say);
        RunNotQueuedError when it cannot be sent."""
        _check_options(options)
        try:
            self.task.apply_async(args=(run_id,), **options)
        except Exception as exc:  # kombu's connection errors, and whatever a transport raises
            raise RunNotQueuedError(
                f"run {run_id!r} is saved, but its message could not be sent to the workers"
                f" ({type(exc).__name__}: {exc}); recover sends it later, or submit it again"
                " with this run_id", run_id) from exc

    # -- recovery -----------------------------------------------------------------------
    def recover(self, *, older_than: timedelta = timedelta(minutes=5),
                dry_run: bool = False, limit: int = 10_000) -> list[RecoveredRun]:
        """Resubmit the runs of this runner's pipeline that no worker executes and that
        nobody has saved for ``older_than``: runs saved as ``running`` (their message was
        lost: a broker restarted without persistence, say) and, with ``run_retries``, failed
        runs still owed a whole-run retry whose message was lost (nobody saved them for
        ``run_retry_delay`` either). A run whose claim a worker holds is left alone; a run
        resubmitted twice still runs once. Returns what was found, oldest first; blocking."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(self.recover_async(older_than=older_than, dry_run=dry_run,
                                                  limit=limit))
        raise PipelineError("FlujoTask.recover() cannot block inside a running event loop;"
                            " use `await task.recover_async(...)`")

    async def recover_async(self, *, older_than: timedelta = timedelta(minutes=5),
                            dry_run: bool = False, limit: int = 10_000) -> list[RecoveredRun]:
        found = await self.runner.unattended_runs_async(older_than=older_than, limit=limit)
        if self.run_retries and len(found) < limit:
            retry_age = max(older_than, timedelta(seconds=self.run_retry_delay))
            found = sorted([*found, *await self._owed_a_retry(retry_age, limit - len(found))],
                           key=lambda item: item[1])
        return [await asyncio.to_thread(self._recovered, run_id, updated_at, dry_run)
                for run_id, updated_at in found]

    async def _owed_a_retry(self, older_than: timedelta,
                            limit: int) -> list[tuple[str, datetime]]:
        """Failed runs of this pipeline whose failed step has whole-run retries left, saved
        longer ago than ``older_than``, whose claim nobody holds: among the
        ``_FAILED_LOOKED_AT`` most recently saved failed runs (each is read, and runs whose
        retries are spent stay failed for good)."""
        backend = self.runner.backend
        cutoff = control.saved_before(older_than)
        if cutoff is None:
            return []
        rows = await backend.list_runs(status="failed", pipeline_name=self.runner.pipeline_name,
                                       limit=_FAILED_LOOKED_AT)
        owed: list[tuple[str, datetime]] = []
        for row in rows:
            if row["updated_at"] > cutoff:
                continue
            series = _failed_series(await backend.load_state(row["run_id"]))
            if series is not None and series <= self.run_retries and \
                    await control.unclaimed(backend, row["run_id"]):
                owed.append((row["run_id"], row["updated_at"]))
                if len(owed) >= limit:
                    break
        return owed

    def _recovered(self, run_id: str, updated_at: datetime, dry_run: bool) -> RecoveredRun:
        if dry_run:
            return RecoveredRun(run_id, updated_at, resubmitted=False)
        try:
            self.resubmit(run_id)
        except RunNotQueuedError as exc:
            logger.error("flujo: %s", exc)
            return RecoveredRun(run_id, updated_at, resubmitted=False, error=str(exc))
        logger.warning("flujo: resubmitted run %r, unattended since %s", run_id,
                       updated_at.isoformat())
        return RecoveredRun(run_id, updated_at, resubmitted=True)

    # -- the task -----------------------------------------------------------------------
    def _execute(self, task: celery.Task, run_id: str, outages: int) -> TaskOutcome:
        try:
            result = asyncio.run(self._run(run_id))
            if isinstance(result, str):
                if result == _SPENT:  # failed, and its whole-run retries are spent
                    return TaskOutcome(run_id, "failed")
                # _STOPPED: the worker shuts down; the run stopped after a saved step, its
                # claim is released, and another worker goes on from there
                logger.warning("flujo: the worker is shutting down; run %r stops after its "
                               "last saved step and is queued again", run_id)
                raise self._retry(task, None, _SHUTDOWN_REQUEUE_S)
        except ClaimLostError as exc:
            # another worker claimed the run after this one's lease ran out: it resumes from
            # the last save this worker made, and owns the outcome
            logger.warning("flujo: %s", exc)
            return TaskOutcome(run_id, "handed-over")
        except RunInProgressError as exc:
            # a duplicate message, or a dead worker's claim that has not expired yet: ask
            # again later; by then the run has finished (nothing to do) or is free
            raise self._retry(task, exc, self.busy_retry_delay) from exc
        except RunNotFoundError:
            logger.warning("flujo: run %r is not in the store (deleted since it was "
                           "submitted?); nothing to run", run_id)
            return TaskOutcome(run_id, "not-found")
        except (PipelineMismatchError, CorruptStateError) as exc:
            # this worker cannot resume the run (its pipeline changed without a version
            # migration, its record is damaged): it stays as saved, for a worker that can
            # (a rolling upgrade) or an operator; retrying here would fail the same way
            logger.error("flujo: run %r cannot be resumed here: %s", run_id, exc)
            return TaskOutcome(run_id, "cannot-resume")
        except BackendUnavailableError as exc:
            # its own count, carried by the message: other retries do not spend it
            if outages >= self.unavailable_retries:
                raise
            raise self._retry(task, exc, self.unavailable_retry_delay,
                              outages=outages + 1) from exc
        series = _series(result.step_history) if result.status == "failed" else None
        if series is not None and series <= self.run_retries:
            # the whole run again, later: its failed step starts its next attempt series,
            # counted in the store (FailedAttempt.series), so a recovered run keeps count
            logger.warning("flujo: run %r failed (attempt series %d); running it again in "
                           "%s s", run_id, series, self.run_retry_delay)
            raise self._retry(task, None, self.run_retry_delay)
        return TaskOutcome(run_id, result.status)

    async def _run(self, run_id: str) -> PipelineResult | str:
        """The run resumed (never started: ``create=False``) and its result; ``_SPENT`` for a
        failed run whose whole-run retries are spent (a duplicate or recovered message must
        not run it again, as ``run`` would, as a new attempt series); ``_STOPPED`` when the
        worker began shutting down: the run stopped after the step it was in."""
        series = _failed_series(await self.runner.backend.load_state(run_id))
        if series is not None and series > self.run_retries:
            return _SPENT
        last = self.runner.pipeline.step_names[-1]  # step names are unique in a pipeline
        async with self.runner.run_async(run_id=run_id, create=False) as handle:
            async for step in handle:  # each step's outcome is saved before it is handed out
                # after the last step, or a failed one, the run ends without running another
                if shutting_down() and step.success and step.name != last:
                    return _STOPPED
            return handle.result

    @staticmethod
    def _retry(task: celery.Task, exc: Exception | None, delay: float, *,
               outages: int = 0) -> Retry:
        """Celery's Retry of this message, ``delay`` seconds from now (slept here in eager
        mode, which retries at once), carrying the store outages counted so far."""
        if task.request.is_eager:
            time.sleep(delay)
        try:
            task.retry(exc=exc, countdown=delay, max_retries=None,
                       kwargs={"outages": outages} if outages else {})
        except Retry as retry:
            return retry
        raise PipelineError("Celery's Task.retry returned instead of raising Retry")


def _failed_series(saved: dict[str, Any] | None) -> int | None:
    """The attempt series a stored failed run's failed step has used; None for a run that
    is not failed (or not stored)."""
    if saved is None or saved.get("status") != "failed":
        return None
    return _series([saved.get("failure")])


def _series(steps: list[Any]) -> int:
    """The attempt series the last failed step among ``steps`` (StepResults, or their dicts
    from a backend of the earlier dict-only contract) has used: 1 for its first."""
    failed = [step for step in steps if _field(step, "success") is False]
    attempts = _field(failed[-1], "failed_attempts") if failed else None
    return max((int(_field(attempt, "series") or 1) for attempt in attempts or ()),
               default=1)


def _field(value: Any, name: str) -> Any:
    return value.get(name) if isinstance(value, dict) else getattr(value, name, None)


def flujo_task(app: celery.Celery, runner: Flujo[Any], *, name: str | None = None,
               busy_retry_delay: float = 10.0, unavailable_retry_delay: float = 5.0,
               unavailable_retries: int = 12, run_retries: int = 0,
               run_retry_delay: float = 60.0) -> FlujoTask:
    """Register ``runner`` as a Celery task of ``app`` and return its ``FlujoTask``.

    Call it where both the submitting code and the workers import it (the module that
    defines the app, say), so that both know the task by ``name`` (default:
    ``flujo.<pipeline_name>``; one name per runner: a second task of that name would take
    the first one's messages). ``busy_retry_delay``: seconds before a message whose run
    another worker executes is tried again. ``unavailable_retry_delay`` and
    ``unavailable_retries``: when the store cannot be reached, how long to wait and how
    many times to try before the task fails (its run stays saved, for ``recover``).
    ``run_retries``: how many more attempt series the step a run failed at gets, each by
    running the run again ``run_retry_delay`` seconds later (the bound is per step: a run
    that then fails at a later step gives that step its own); each series is recorded in
    the run (``FailedAttempt.series``). Delays are seconds > 0, at most a year."""
    from ..application import Flujo

    if not isinstance(app, celery.Celery):
        raise PipelineError(f"app must be a celery.Celery application, got {app!r}")
    if not isinstance(runner, Flujo):
        raise PipelineError(f"runner must be a flujo.Flujo runner, got {runner!r}")
    task_name = f"flujo.{runner.pipeline_name}" if name is None else name
    if not isinstance(task_name, str) or not task_name:
        raise PipelineError(f"name must be a non-empty str, got {name!r}")
    for taken in (task_name, f"{task_name}.recover"):
        if taken in app.tasks:
            raise PipelineError(
                f"app {app.main!r} already has a task named {taken!r}: give this runner"
                " another name= (two tasks of one name would take each other's messages)")
    for what, count in (("unavailable_retries", unavailable_retries),
                        ("run_retries", run_retries)):
        if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= 10_000:
            raise PipelineError(f"{what} must be an int from 0 to 10000, got {count!r}")
    return FlujoTask(app, runner, name=task_name,
                     busy_retry_delay=_seconds("busy_retry_delay", busy_retry_delay),
                     unavailable_retry_delay=_seconds("unavailable_retry_delay",
                                                      unavailable_retry_delay),
                     unavailable_retries=unavailable_retries, run_retries=run_retries,
                     run_retry_delay=_seconds("run_retry_delay", run_retry_delay))


#: The longest delay or age taken, in seconds (a year): beyond, Celery cannot schedule it.
_MAX_SECONDS = 366 * 86_400.0


def _seconds(what: str, value: Any, *, zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) \
            or not (value >= 0 if zero else value > 0) or not value <= _MAX_SECONDS:
        raise PipelineError(f"{what} must be seconds {'>=' if zero else '>'} 0 and at most a"
                            f" year ({_MAX_SECONDS:.0f}), got {value!r}")
    return float(value)


def _check_options(options: dict[str, Any]) -> None:
    delayed = sorted({"countdown", "eta"} & set(options))
    if delayed:
        raise PipelineError(
            f"{', '.join(delayed)}: a delayed start is not supported: the run is saved as"
            " running at once, and recover would start it before its time; schedule the"
            " submit itself instead")
