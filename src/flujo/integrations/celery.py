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

* **What a message holds.** Only the run id. :meth:`FlujoTask.submit` first saves the new
  run (its input and context, with their exact types, in flujo's store), then sends the
  message; a worker's task resumes the saved run with ``runner.run(run_id=...,
  create=False)``. Celery never serializes your data, and a lost message loses no input:
  the saved run is found again by :meth:`FlujoTask.recover`.
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

from ..exceptions import (
    BackendUnavailableError,
    ClaimLostError,
    PipelineError,
    RunInProgressError,
    RunNotFoundError,
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
_MAX_AGE_S = 86_400.0 * 3650  # what recover_task accepts as older_than_s: ten years


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
    another (which now owns the run's outcome), or ``not-found`` when no saved run has the
    id (deleted since it was submitted)."""

    run_id: str
    status: str

    def as_dict(self) -> dict[str, str]:
        return {"run_id": self.run_id, "status": self.status}


@dataclass(frozen=True)
class RecoveredRun:
    """A run :meth:`FlujoTask.recover` found unattended (and resubmitted, unless dry)."""

    run_id: str
    updated_at: datetime
    resubmitted: bool


class FlujoTask:
    """A :class:`~flujo.Flujo` runner as a Celery task; made by :func:`flujo_task`.

    ``task`` is the registered Celery task (its message: one argument, the run id);
    ``recover_task`` (named ``<name>.recover``, argument ``older_than_s``) calls
    :meth:`recover`, for celery beat to run periodically."""

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

        def execute_run(task: celery.Task, run_id: str) -> dict[str, str]:
            return self._execute(task, run_id).as_dict()

        # acks_late and reject_on_worker_lost: a message is given back, not lost, when the
        # worker process executing its run dies. max_retries=None: _retry bounds retries.
        register: Any = app.task(bind=True, name=name, acks_late=True,
                                 reject_on_worker_lost=True, max_retries=None,
                                 serializer="json", shared=False)
        self.task: celery.Task = register(execute_run)

        def recover_runs(older_than_s: float = 300.0) -> list[str]:
            if isinstance(older_than_s, bool) or not isinstance(older_than_s, int | float) \
                    or not 0 <= older_than_s <= _MAX_AGE_S:
                raise PipelineError(f"{name}.recover: older_than_s must be seconds >= 0,"
                                    f" got {older_than_s!r}")
            return [found.run_id for found in
                    self.recover(older_than=timedelta(seconds=older_than_s))]

        # For celery beat (docs/distributed.md): two schedulers, or a run recovered twice,
        # still run each run once.
        register = app.task(name=f"{name}.recover", shared=False, ignore_result=True)
        self.recover_task: celery.Task = register(recover_runs)

    # -- submitting ---------------------------------------------------------------------
    def submit(self, initial_input: Any = None, *, run_id: str | None = None,
               initial_context_data: Mapping[str, Any] | None = None,
               **options: Any) -> str:
        """Save a new run (``runner.create_run``), queue it, and return its id at once.

        A run that already exists under ``run_id`` is left as it is and queued again,
        which is harmless (see the module's docs): submitting twice with one ``run_id``
        runs it once. ``options`` go to Celery's ``apply_async`` (``queue``,
        ``countdown``, ``priority``...)."""
        rid = self.runner.create_run(initial_input, run_id=run_id,
                                     initial_context_data=initial_context_data)
        self.resubmit(rid, **options)
        return rid

    async def submit_async(self, initial_input: Any = None, *, run_id: str | None = None,
                           initial_context_data: Mapping[str, Any] | None = None,
                           **options: Any) -> str:
        """:meth:`submit` from a coroutine (the message is sent off the event loop)."""
        rid = await self.runner.create_run_async(initial_input, run_id=run_id,
                                                 initial_context_data=initial_context_data)
        await asyncio.to_thread(self.resubmit, rid, **options)
        return rid

    def resubmit(self, run_id: str, **options: Any) -> None:
        """Queue a message for the saved run ``run_id`` (after it was lost, say)."""
        self.task.apply_async(args=(run_id,), **options)

    # -- recovery -----------------------------------------------------------------------
    def recover(self, *, older_than: timedelta = timedelta(minutes=5),
                dry_run: bool = False, limit: int = 10_000) -> list[RecoveredRun]:
        """Resubmit the runs of this runner's pipeline that are ``running`` but that no
        worker executes and that nobody has saved for ``older_than``: their message was
        lost (a broker restarted without persistence, say). A run whose claim a worker
        holds is left alone; a run resubmitted twice still runs once. Returns what was
        found, oldest first."""
        found = self.runner.unattended_runs(older_than=older_than, limit=limit)
        return [self._recovered(run_id, updated_at, dry_run) for run_id, updated_at in found]

    async def recover_async(self, *, older_than: timedelta = timedelta(minutes=5),
                            dry_run: bool = False, limit: int = 10_000) -> list[RecoveredRun]:
        found = await self.runner.unattended_runs_async(older_than=older_than, limit=limit)
        return [await asyncio.to_thread(self._recovered, run_id, updated_at, dry_run)
                for run_id, updated_at in found]

    def _recovered(self, run_id: str, updated_at: datetime, dry_run: bool) -> RecoveredRun:
        if not dry_run:
            self.resubmit(run_id)
            logger.warning("flujo: resubmitted run %r, unattended since %s", run_id,
                           updated_at.isoformat())
        return RecoveredRun(run_id, updated_at, resubmitted=not dry_run)

    # -- the task -----------------------------------------------------------------------
    def _execute(self, task: celery.Task, run_id: str) -> TaskOutcome:
        try:
            result = asyncio.run(self._run(run_id))
            if isinstance(result, str):
                if result == _SPENT:  # failed, and its whole-run retries are spent
                    return TaskOutcome(run_id, "failed")
                # _STOPPED: the worker shuts down; the run stopped after a saved step, its
                # claim is released, and another worker goes on from there
                logger.warning("flujo: the worker is shutting down; run %r stops after its "
                               "last saved step and is queued again", run_id)
                raise self._retry(task, None, _SHUTDOWN_REQUEUE_S, None)
        except ClaimLostError as exc:
            # another worker claimed the run after this one's lease ran out: it resumes from
            # the last save this worker made, and owns the outcome
            logger.warning("flujo: %s", exc)
            return TaskOutcome(run_id, "handed-over")
        except RunInProgressError as exc:
            # a duplicate message, or a dead worker's claim that has not expired yet: ask
            # again later; by then the run has finished (nothing to do) or is free
            raise self._retry(task, exc, self.busy_retry_delay, None) from exc
        except RunNotFoundError:
            logger.warning("flujo: run %r is not in the store (deleted since it was "
                           "submitted?); nothing to run", run_id)
            return TaskOutcome(run_id, "not-found")
        except BackendUnavailableError as exc:
            raise self._retry(task, exc, self.unavailable_retry_delay,
                              self.unavailable_retries) from exc
        if result.status == "failed" and _series(result.step_history) <= self.run_retries:
            # the whole run again, later: its failed step starts its next attempt series,
            # counted in the store (FailedAttempt.series), so a recovered run keeps count
            logger.warning("flujo: run %r failed (attempt series %d); running it again in "
                           "%s s", run_id, _series(result.step_history), self.run_retry_delay)
            raise self._retry(task, None, self.run_retry_delay, None)
        return TaskOutcome(run_id, result.status)

    async def _run(self, run_id: str) -> PipelineResult | str:
        """The run resumed (never started: ``create=False``) and its result; ``_SPENT`` for a
        failed run whose whole-run retries are spent (a duplicate or recovered message must
        not run it again, as ``run`` would, as a new attempt series); ``_STOPPED`` when the
        worker began shutting down: the run stopped after the step it was in."""
        saved = await self.runner.backend.load_state(run_id)
        if saved is not None and saved.get("status") == "failed" and \
                _series([saved.get("failure")]) > self.run_retries:
            return _SPENT
        last = self.runner.pipeline.step_names[-1]  # step names are unique in a pipeline
        async with self.runner.run_async(run_id=run_id, create=False) as handle:
            async for step in handle:  # each step's outcome is saved before it is handed out
                # after the last step, or a failed one, the run ends without running another
                if shutting_down() and step.success and step.name != last:
                    return _STOPPED
            return handle.result

    @staticmethod
    def _retry(task: celery.Task, exc: Exception | None, delay: float,
               max_retries: int | None) -> Retry:
        retries = task.request.retries or 0
        if max_retries is not None and retries >= max_retries and exc is not None:
            raise exc
        if task.request.is_eager:
            # eager mode (tests) retries at once, inside this call: wait here instead
            time.sleep(delay)
        try:
            task.retry(exc=exc, countdown=delay, max_retries=None)
        except Retry as retry:
            return retry
        raise PipelineError("Celery's Task.retry returned instead of raising Retry")


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
    """Register ``runner`` as a Celery task of ``app`` and return its :class:`FlujoTask`.

    Call it where both the submitting code and the workers import it (the module that
    defines the app, say), so that both know the task by ``name`` (default:
    ``flujo.<pipeline_name>``). ``busy_retry_delay``: seconds before a message whose run
    another worker executes is tried again. ``unavailable_retry_delay`` and
    ``unavailable_retries``: when the store cannot be reached, how long to wait and how
    many times to try before the task fails (its run stays saved, for ``recover``).
    ``run_retries``: how many times a run that failed (its failed step's own retries
    spent) is run again as a whole, ``run_retry_delay`` seconds later; each time its failed
    step starts a new attempt series, recorded in the run (``FailedAttempt.series``)."""
    for what, value in (("busy_retry_delay", busy_retry_delay),
                        ("unavailable_retry_delay", unavailable_retry_delay),
                        ("run_retry_delay", run_retry_delay)):
        if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
            raise PipelineError(f"{what} must be seconds > 0, got {value!r}")
    for what, count in (("unavailable_retries", unavailable_retries),
                        ("run_retries", run_retries)):
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise PipelineError(f"{what} must be an int >= 0, got {count!r}")
    return FlujoTask(app, runner, name=name or f"flujo.{runner.pipeline_name}",
                     busy_retry_delay=float(busy_retry_delay),
                     unavailable_retry_delay=float(unavailable_retry_delay),
                     unavailable_retries=unavailable_retries, run_retries=run_retries,
                     run_retry_delay=float(run_retry_delay))
