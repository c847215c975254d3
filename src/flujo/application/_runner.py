"""``Flujo``: runs a pipeline, saving its full state after every step, and resumes it by run id.

Resume rules (docs/durable-pipelines.md): the state saved after step *i* says "the next step
is *i + 1*, its input is the output of step *i*". A crash anywhere before the next save is
therefore repaired by re-running the unfinished step; a step that raised is re-run on
resume, never skipped, from the state saved before it (its own changes to the context are
dropped, as a crash would drop them); a completed run returns its stored result without
running anything. Only one worker executes a run at a time (the backend's per-run claim).
A claim that can end while held (a PostgreSQL lease) is watched: when it is lost, an async
step is cancelled, a sync step (which cannot be interrupted) is not followed by anything,
nothing more is saved, and ClaimLostError is raised.

A step that pauses (``Step.human``, ``PauseForInput``) saves the run as ``paused``; an answer
is applied by one compare-and-set save (``control``). Retries save after every failed
attempt, so a crash during a backoff resumes the same attempt series. A cancellation is
carried out at a step boundary (or at once for an interruptible step, or during a backoff);
``KeyboardInterrupt`` and task cancellation save the run as ``cancelled`` before going on.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Generic

from pydantic import BaseModel
from typing_extensions import TypeVar  # (a default= before Python 3.13)

from ..exceptions import (
    ClaimLostError,
    CorruptStateError,
    PauseForInput,
    PipelineError,
    PipelineMismatchError,
    RunInProgressError,
    RunNotFoundError,
    StateConflictError,
)
from ..state import Checkpoint, ForkOrigin, PauseRequest, StateBackend, WorkflowState
from ..state.backends.base import RunClaim, shown
from . import _history, control
from ._attempts import CancelRequested, attempt, wait_before_retry
from ._handle import RunHandle
from ._human import accept_answer, input_model_for, pause_request
from ._models import FailedAttempt, PipelineContext, PipelineResult, StepResult
from ._pipeline import Pipeline, Step, is_seconds
from ._restore import (
    STATE_URI_ENV,
    choose_run_id,
    context_fields,
    resolve_backend,
    restore_context,
    stored_step,
)

__all__ = ["STATE_URI_ENV", "Flujo", "RunHandle", "VersionMigration"]

ContextT = TypeVar("ContextT", bound=PipelineContext)
# What the pipeline's last step gives, for type checkers (``Flujo[Ctx]`` leaves it Any).
OutputT = TypeVar("OutputT", default=Any)
T = TypeVar("T")
VersionMigration = Callable[[WorkflowState], WorkflowState]
_NO_ANSWER: Any = object()  # resume_input not given (None is an answer a caller may give)


@dataclass
class _Run:
    """Where a run being executed stands: what the next save writes."""

    rid: str
    claim: RunClaim | None
    revision: int
    context: PipelineContext
    data: Any
    history: list[StepResult]
    status: str
    failure: StepResult | None = None
    outcome: list[PipelineResult] = field(default_factory=list)
    forked_from: ForkOrigin | None = None  # kept by every save of a forked run


class Flujo(Generic[ContextT, OutputT]):
    """Runs ``pipeline`` durably.

    ``state_backend``: a ``StateBackend``, a URI (``"sqlite:///state.db"``,
    ``"file:///var/flujo"``, ``"postgresql://..."``, ``"memory://"``), or None for the
    ``FLUJO_STATE_URI`` environment variable, else an in-memory store that lives as long as
    this runner (nothing is written to disk unasked). ``pipeline_version`` is stored with
    each run; resuming a run saved by another version needs ``version_migrations[old]``.
    ``claim_timeout``: seconds to wait for another worker's claim on the same run (default:
    fail at once with RunInProgressError). ``cancel_poll_interval``: how often an
    interruptible step or a backoff asks the store whether the run's cancellation was
    requested. ``initial_context_data``: context fields of every new run (earlier flujo's
    argument; per run, pass it to ``run``).
    """

    __module__ = "flujo"  # its public home, in reprs, tracebacks and pickles

    def __init__(
        self,
        pipeline: Pipeline[Any, OutputT] | Step[Any, OutputT],
        *,
        context_model: type[ContextT] = PipelineContext,  # type: ignore[assignment]
        state_backend: StateBackend | str | None = None,
        pipeline_name: str = "pipeline",
        pipeline_version: str = "1",
        delete_on_completion: bool = False,
        version_migrations: Mapping[str, VersionMigration] | None = None,
        claim_timeout: float | None = None,
        cancel_poll_interval: float = 0.5,
        initial_context_data: Mapping[str, Any] | None = None,
    ) -> None:
        self.pipeline = pipeline if isinstance(pipeline, Pipeline) else Pipeline([pipeline])
        if not (isinstance(context_model, type) and issubclass(context_model, PipelineContext)):
            raise PipelineError(
                f"context_model must subclass PipelineContext, got {context_model!r}")
        if not is_seconds(cancel_poll_interval, zero=False):
            raise PipelineError(
                f"cancel_poll_interval must be seconds > 0, got {cancel_poll_interval!r}")
        self.context_model = context_model
        self.backend = resolve_backend(state_backend)
        self.pipeline_name = pipeline_name
        self.pipeline_version = pipeline_version
        self.delete_on_completion = delete_on_completion
        self.version_migrations = dict(version_migrations or {})
        self.claim_timeout = claim_timeout
        self.cancel_poll_interval = float(cancel_poll_interval)
        self.initial_context_data = dict(initial_context_data or {})

    # -- entry points -------------------------------------------------------------------
    def run(self, initial_input: Any = None, *, run_id: str | None = None,
            initial_context_data: Mapping[str, Any] | None = None,
            resume_input: Any = _NO_ANSWER, resume_cancelled: bool = False,
            create: bool = True) -> PipelineResult[ContextT, OutputT]:
        """Run (or resume, given the ``run_id`` of a saved run) until it ends or pauses;
        blocking. See ``run_async`` for the other arguments."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            handle = self._handle(initial_input, run_id, initial_context_data, resume_input,
                                  resume_cancelled, create)
            return _blocking(handle)
        raise PipelineError("Flujo.run() cannot block inside a running event loop; "
                            "use `await runner.run_async(...)`")

    def run_async(self, initial_input: Any = None, *, run_id: str | None = None,
                  initial_context_data: Mapping[str, Any] | None = None,
                  resume_input: Any = _NO_ANSWER, resume_cancelled: bool = False,
                  create: bool = True) -> RunHandle[ContextT, OutputT]:
        """Like ``run``, as ``await runner.run_async(...)`` or ``async for step in ...``.

        ``resume_input``: the answer to the pause of the paused run ``run_id``; it is
        validated against the model the pause declared, becomes the pausing step's output
        and the run goes on. ``resume_cancelled``: run a cancelled run on from where it
        stopped (a cancelled run is otherwise returned as it is). ``create=False``: only
        resume; RunNotFoundError when no saved run has the id, instead of starting one
        (what a worker executing runs saved by ``create_run`` wants).
        """
        return self._handle(initial_input, run_id, initial_context_data, resume_input,
                            resume_cancelled, create)

    def create_run(self, initial_input: Any = None, *, run_id: str | None = None,
                   initial_context_data: Mapping[str, Any] | None = None) -> str:
        """Save a new run without running a step, and return its id; blocking.

        ``run(run_id=...)``, in any process sharing the store, then executes it from its
        first step, with ``initial_input`` (both saved with their exact types). A run of
        this pipeline that already exists under ``run_id`` is left as it is, as ``run`` would
        resume it rather than start over (PipelineMismatchError for another pipeline's;
        RunInProgressError while another process holds an unsaved one). This is how work is
        handed to other workers (``flujo.integrations.celery``)."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return _blocking(self.create_run_async(initial_input, run_id=run_id,
                                                   initial_context_data=initial_context_data))
        raise PipelineError("Flujo.create_run() cannot block inside a running event loop; "
                            "use `await runner.create_run_async(...)`")

    async def create_run_async(self, initial_input: Any = None, *, run_id: str | None = None,
                               initial_context_data: Mapping[str, Any] | None = None) -> str:
        data = {**self.initial_context_data, **(initial_context_data or {})}
        rid = choose_run_id(run_id, data, stacklevel=3)
        try:
            async with self._claim(rid) as claim:
                saved, revision, _ = await self._load(rid)
                if saved is None:
                    context = self._new_context(rid, initial_input, data)
                    run = _Run(rid, claim, revision, context, initial_input, [], "running")
                    await self._save(run, 0)
        except RunInProgressError:
            # Held: by a worker executing it, or by another process creating it, which
            # may not have saved it yet (or may fail to): only a saved run is created.
            saved, _, _ = await self._load(rid)
            if saved is None:
                raise
        if saved is not None and saved.pipeline_name != self.pipeline_name:
            raise PipelineMismatchError(
                f"run {rid!r} already exists and belongs to pipeline"
                f" {saved.pipeline_name!r}, not {self.pipeline_name!r}; choose another run_id")
        return rid

    def unattended_runs(self, *, older_than: timedelta,
                        limit: int = 10_000) -> list[tuple[str, datetime]]:
        """The runs of this pipeline saved as ``running`` that no worker executes (nobody
        holds their claim) and that nobody saved for ``older_than``: each run's id and when
        it was last saved, oldest first; blocking. A crashed worker leaves such runs, and so
        does a message lost on its way to a worker: ``run(run_id=...)`` resumes them."""
        return _blocking(self.unattended_runs_async(older_than=older_than, limit=limit))

    async def unattended_runs_async(self, *, older_than: timedelta,
                                    limit: int = 10_000) -> list[tuple[str, datetime]]:
        return await control.unattended_runs(self.backend, self.pipeline_name,
                                              older_than=older_than, limit=limit)

    def resume(self, run_id: str, answer: Any) -> PipelineResult[ContextT, OutputT]:
        """Answer the pause of the paused run ``run_id`` and run it on; blocking."""
        return self.run(run_id=run_id, resume_input=answer)

    def cancel(self, run_id: str) -> str:
        """Cancel ``run_id``; blocking. See ``cancel_async``."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return _blocking(self.cancel_async(run_id))
        raise PipelineError("Flujo.cancel() cannot block inside a running event loop; "
                            "use `await runner.cancel_async(...)`")

    # -- checkpoints ----------------------------------------------------------------------
    def history(self, run_id: str) -> list[Checkpoint]:
        """The run's checkpoints (one per save: step, attempt, status, time, size), oldest
        first; blocking. RunNotFoundError for an unknown run."""
        return _blocking(self.history_async(run_id))

    async def history_async(self, run_id: str) -> list[Checkpoint]:
        return await _history.checkpoints_of(self.backend, run_id)

    def state_at(self, run_id: str, step: str | int | None = None, *,
                 revision: int | None = None) -> WorkflowState:
        """The exact state saved right after ``step`` (a step name or index) finished, or at
        checkpoint ``revision``, or the latest; blocking. ``restore_context(state)`` gives
        its typed context. CheckpointNotFoundError when there is none (never reached, or
        pruned)."""
        return _blocking(self.state_at_async(run_id, step, revision=revision))

    async def state_at_async(self, run_id: str, step: str | int | None = None, *,
                             revision: int | None = None) -> WorkflowState:
        state, _ = await _history.state_after(self, run_id, step=step, revision=revision)
        return state

    def fork(self, run_id: str, *, at_step: str | int | None = None,
             revision: int | None = None, new_run_id: str | None = None,
             edit: Callable[[ContextT], ContextT | None] | None = None) -> str:
        """Start a new run from the state after ``at_step`` (or at ``revision``; the latest
        when neither) of ``run_id``; blocking. Returns the new run's id (``new_run_id``, or
        ``<run_id>-fork-<random>``); run it with ``run(run_id=...)``, which runs the
        remaining steps.

        ``edit(context)`` may change the context first (in place, or by returning a new
        one); the result is validated by the context model and saved like any state. The
        new run records where it came from (``WorkflowState.forked_from``)."""
        return _blocking(self.fork_async(run_id, at_step=at_step, revision=revision,
                                         new_run_id=new_run_id, edit=edit))

    async def fork_async(self, run_id: str, *, at_step: str | int | None = None,
                         revision: int | None = None, new_run_id: str | None = None,
                         edit: Callable[[ContextT], ContextT | None] | None = None) -> str:
        return await _history.fork_run(self, run_id, at_step=at_step, revision=revision,
                                       new_run_id=new_run_id, edit=edit)

    async def cancel_async(self, run_id: str) -> str:
        """Cancel ``run_id`` from any process sharing the store; return its status then.

        A run no worker executes (paused, failed, interrupted) is saved as ``cancelled`` at
        once: ``"cancelled"``. A run a worker executes is asked to stop: that worker saves it
        as ``cancelled`` at its next step boundary (at once for an ``interruptible`` step or
        during a retry's backoff): ``"running"``. A completed run stays ``"completed"``.
        """
        return await control.cancel_run(self.backend, run_id)

    def _handle(self, initial_input: Any, run_id: str | None,
                initial_context_data: Mapping[str, Any] | None, answer: Any,
                resume_cancelled: bool, create: bool = True) -> RunHandle[ContextT, OutputT]:
        data = {**self.initial_context_data, **(initial_context_data or {})}
        rid = choose_run_id(run_id, data, stacklevel=4)
        outcome: list[PipelineResult[ContextT, OutputT]] = []
        steps = self._execute(rid, initial_input, data, answer, resume_cancelled, outcome,
                              create)
        return RunHandle(steps, outcome)

    # -- the run ------------------------------------------------------------------------
    async def _execute(self, rid: str, initial_input: Any, context_data: dict[str, Any],
                       answer: Any, resume_cancelled: bool,
                       outcome: list[PipelineResult],
                       create: bool) -> AsyncIterator[StepResult]:
        async with self._claim(rid) as claim:
            saved, revision, legacy = await self._load(rid)
            if saved is None:
                if answer is not _NO_ANSWER:
                    raise RunNotFoundError(f"{self._describe(rid)}: no such run to answer")
                if not create:
                    raise RunNotFoundError(
                        f"{self._describe(rid)}: no saved run to resume (create=False)")
                context = self._new_context(rid, initial_input, context_data)
                run = _Run(rid, claim, revision, context, initial_input, [], "running")
                run.revision = await self._save(run, 0)
                start = 0
            else:
                state, context = self._resume_point(saved, legacy)
                run = _Run(rid, claim, revision, context, state.last_step_output,
                           list(state.step_history), state.status, state.failure,
                           forked_from=state.forked_from)
                start = state.current_step_index
                if state.status == "completed" or (
                        state.status == "cancelled" and not resume_cancelled):
                    if answer is not _NO_ANSWER:
                        control.pause_of(self._describe(rid), state)  # raises: not paused
                    outcome.append(self._result(run, state.status))
                    return
                # A run paused by earlier flujo stores no pause: it runs on, as it used to.
                if state.status == "paused" and state.pause is not None:
                    if answer is _NO_ANSWER:
                        outcome.append(self._result(run, "paused", state.pause))
                        return
                    done = await self._answer(run, state, answer)
                    yield done
                    start += 1
                elif answer is not _NO_ANSWER:
                    control.pause_of(self._describe(rid), state)  # raises: not paused
                if resume_cancelled:
                    await self._clear_cancel_request(rid)
            try:
                async for result in self._steps_from(run, start):
                    yield result
            except (KeyboardInterrupt, asyncio.CancelledError):
                if claim is None or not claim.lost:
                    await self._save_interrupted(run)
                raise
        if run.outcome and run.outcome[0].status == "completed":
            # A request that came too late to matter is dropped, once the claim is released:
            # one written while this worker was finishing was seen by ``cancel``'s own check
            # (it takes the claim after writing), or is cleared here.
            await self._clear_cancel_request(rid)
        outcome.extend(run.outcome)

    async def _steps_from(self, run: _Run, start: int) -> AsyncIterator[StepResult]:
        for index in range(start, len(self.pipeline)):
            step = self.pipeline.steps[index]
            if run.claim is not None:
                run.claim.check()  # never start a step under a lost claim
            if await self._cancel_requested(run.rid):
                await self._stop_cancelled(run, index)
                return
            try:
                done = await self._attempts(run, index, step)
            except _Paused as paused:
                await self._pause(run, index, paused.request)
                return
            except CancelRequested:  # during an interruptible step or a backoff
                await self._stop_cancelled(run, index, reload=True)
                return
            if not done.success:
                yield done
                if await self._cancel_requested(run.rid):  # asked while the step ran
                    await self._stop_cancelled(run, index)
                    return
                run.outcome.append(self._result(run, "failed", history=[*run.history, done]))
                return
            run.history.append(done)
            run.data, run.failure = done.output, None
            last = index + 1 == len(self.pipeline)
            run.status = "completed" if last else "running"
            run.revision = await self._save(run, index + 1)
            if last:  # before the last yield: a caller may stop iterating at it
                await self._delete_completed(run)
            yield done
        if start == len(self.pipeline):  # nothing ran: an answer completed the run
            await self._delete_completed(run)
        run.outcome.append(self._result(run, "completed"))

    async def _delete_completed(self, run: _Run) -> None:
        if self.delete_on_completion:
            if run.claim is not None:
                run.claim.check()
            await self.backend.delete_state(run.rid)

    async def _attempts(self, run: _Run, index: int, step: Step[Any, Any]) -> StepResult:
        """Run ``step`` until it succeeds or its retries are spent; every failed attempt is
        saved (the state from before the step, with the attempts so far) before the next.
        A step that pauses raises _Paused with its (checked) request."""
        prior = run.failure if isinstance(run.failure, StepResult) and \
            run.failure.name == step.name else None
        failed = list(prior.failed_attempts) if prior is not None else []
        total = prior.attempts if prior is not None else 0
        series = failed[-1].series if failed else 1
        if prior is not None and run.status == "failed":
            series += 1  # a run that failed for good, run again: a new attempt series
        used = sum(1 for f in failed if f.series == series)
        check = self._cancel_check(run.rid)
        registry = control.registry_of(self.backend)
        while True:
            total += 1
            used += 1
            started = time.perf_counter()
            try:
                try:
                    output = await attempt(step, run.data, run.context, run.claim, check,
                                           self.cancel_poll_interval)
                except PauseForInput as signal:
                    # A pause the runner cannot store is this attempt's error.
                    raise _Paused(pause_request(step.name, signal.input_model, signal.message,
                                                registry)) from None
            except (_Paused, CancelRequested):
                if failed:  # the attempts before this one stay in the step's record
                    run.failure = StepResult(name=step.name, success=False, attempts=total,
                                             feedback=failed[-1].error,
                                             failed_attempts=list(failed))
                raise
            except Exception as exc:
                if isinstance(exc, ClaimLostError) and run.claim is not None and run.claim.lost:
                    raise  # this worker's claim, not the step's own error: stop here
                latency = time.perf_counter() - started
                error = f"{type(exc).__name__}: {exc}"
                retry = used <= step.retries and isinstance(exc, step.retry_on)
                delay = 0.0
                if retry:
                    try:
                        delay = step.backoff_delay(used)
                    except PipelineError as problem:  # the run fails, saying why
                        retry, error = False, f"{error} (not retried: {problem})"
                failed.append(FailedAttempt(attempt=total, series=series, error=error,
                                            latency_s=latency))
                result = StepResult(name=step.name, success=False, attempts=total,
                                    latency_s=latency, feedback=error,
                                    failed_attempts=list(failed))
                # The step may have changed its context and input in place before it
                # raised; what is saved is the state from before it, as a crash here would
                # leave it, so that every attempt starts the step from the same state.
                run.context, run.data = await self._before_step(run, step.name)
                run.failure = result
                run.status = "running" if retry else "failed"
                run.revision = await self._save(run, index, error=error)
                if not retry:
                    return result
                await wait_before_retry(delay, run.claim, check, self.cancel_poll_interval)
                continue
            return StepResult(name=step.name, output=output, attempts=total,
                              latency_s=time.perf_counter() - started,
                              failed_attempts=failed)

    # -- pauses, answers, cancellation --------------------------------------------------
    async def _pause(self, run: _Run, index: int, pause: PauseRequest) -> None:
        """Save the run as paused at step ``index`` (its failed attempts, if any, kept in
        ``failure`` for the answer's record), or as cancelled if that was asked meanwhile."""
        if await self._cancel_requested(run.rid):
            await self._stop_cancelled(run, index)
            return
        run.status = "paused"
        run.revision = await self._save(run, index, pause=pause)
        run.outcome.append(self._result(run, "paused", pause))

    async def _answer(self, run: _Run, state: WorkflowState, answer: Any) -> StepResult:
        """Apply ``answer`` to the paused ``state``: one compare-and-set save, so an answer
        is consumed once, or not at all (an invalid one leaves the run paused)."""
        what = self._describe(run.rid)
        pause = control.pause_of(what, state)
        step = self.pipeline.steps[state.current_step_index] \
            if state.current_step_index < len(self.pipeline) else None
        if step is None or step.name != pause.step:
            raise CorruptStateError(
                f"{what}: the run paused at step {pause.step!r}, but its next step is"
                f" {shown(None if step is None else step.name)} (the record was altered)")
        registry = control.registry_of(self.backend)
        model = input_model_for(what, pause, step, registry)
        value: BaseModel = accept_answer(what, pause, model, answer, registry)
        answered, done = control.answered_state(state, value)
        run.history = list(answered.step_history)
        run.data, run.failure, run.status = value, None, answered.status
        run.revision = await self._save(run, answered.current_step_index)
        return done

    def _cancel_check(self, rid: str) -> Callable[[], Any] | None:
        if type(self.backend).cancel_requested is StateBackend.cancel_requested:
            return None  # a backend that keeps no requests: none can come

        async def check() -> bool:
            return await self._cancel_requested(rid)

        return check

    async def _cancel_requested(self, rid: str) -> bool:
        try:
            return await self.backend.cancel_requested(rid)
        except NotImplementedError:
            return False

    async def _clear_cancel_request(self, rid: str) -> None:
        with contextlib.suppress(NotImplementedError):
            await self.backend.clear_cancel_request(rid)

    async def _stop_cancelled(self, run: _Run, index: int, *, reload: bool = False) -> None:
        """Save the run as cancelled at step ``index``, with the state from before that step
        (``reload``: read back from the store, for a step that may have changed it)."""
        if reload:
            run.context, run.data = await self._before_step(run, self.pipeline.steps[index].name)
        run.status = "cancelled"
        run.revision = await self._save(run, index)
        await self._clear_cancel_request(run.rid)
        run.outcome.append(self._result(run, "cancelled"))

    async def _save_interrupted(self, run: _Run) -> None:
        """After KeyboardInterrupt or task cancellation: mark the stored run ``cancelled``,
        on top of whatever it holds (a save that was under way may have landed)."""
        for _ in range(3):
            with contextlib.suppress(StateConflictError):
                state, revision, _ = await control.load_run(self.backend, run.rid)
                if state is None or state.status in ("completed", "cancelled"):
                    return
                await control.save_run(self.backend,
                                        state.model_copy(update={"status": "cancelled"}),
                                        revision, run.claim)
                return

    # -- state --------------------------------------------------------------------------
    def _describe(self, rid: str) -> str:
        return control.describe_run(self.backend, rid)

    def _result(self, run: _Run, status: str, pause: Any = None, *,
                history: list[StepResult] | None = None) -> PipelineResult[ContextT, OutputT]:
        return PipelineResult(
            run_id=run.rid, step_history=list(run.history if history is None else history),
            final_pipeline_context=run.context, success=status == "completed",
            output=run.data if status == "completed" else None, status=status, pause=pause)

    async def _load(self, rid: str) -> tuple[WorkflowState | None, int, bool]:
        return await control.load_run(self.backend, rid)

    def _resume_point(self, saved: WorkflowState,
                      legacy: bool) -> tuple[WorkflowState, PipelineContext]:
        """The checked (and, for another pipeline version, migrated) state of a saved run,
        and the context the next step gets, rebuilt from it."""
        state = self._check_resumable(saved, legacy=legacy)
        return state, self._restore_context(state, validate=legacy)

    async def _before_step(self, run: _Run, step_name: str) -> tuple[PipelineContext, Any]:
        """The context and input the current step started from, rebuilt from the state saved
        before it (``run.revision``): the step cannot have changed what the store holds."""
        saved, found, legacy = await self._load(run.rid)
        if saved is None or found != run.revision:
            now = "was deleted" if saved is None else f"is at revision {found}"
            raise StateConflictError(
                f"{self._describe(run.rid)}: step {step_name!r} ended, and the saved run {now}"
                f" instead of revision {run.revision}; another writer changed it, so the"
                " outcome is not recorded")
        state, context = self._resume_point(saved, legacy)
        return context, state.last_step_output

    async def _save(self, run: _Run, next_index: int, *, error: str | None = None,
                    pause: Any = None) -> int:
        state = WorkflowState(
            run_id=run.rid, pipeline_name=self.pipeline_name,
            pipeline_version=self.pipeline_version, current_step_index=next_index,
            pipeline_context=context_fields(run.context), last_step_output=run.data,
            step_history=list(run.history), status=run.status, error=error,
            step_names=self.pipeline.step_names, failure=run.failure, pause=pause,
            forked_from=run.forked_from,
        )
        return await control.save_run(self.backend, state, run.revision, run.claim)

    def _check_resumable(self, state: WorkflowState, *, legacy: bool = False) -> WorkflowState:
        if state.pipeline_name != self.pipeline_name:
            raise PipelineMismatchError(
                f"run {state.run_id!r} belongs to pipeline {state.pipeline_name!r}, not "
                f"{self.pipeline_name!r}")
        if state.pipeline_version != self.pipeline_version:
            migrate = self.version_migrations.get(state.pipeline_version)
            if migrate is None:
                raise PipelineMismatchError(
                    f"run {state.run_id!r} was saved by pipeline version "
                    f"{state.pipeline_version!r}; this is {self.pipeline_version!r}. Register "
                    f"Flujo(..., version_migrations={{{state.pipeline_version!r}: fn}}) to "
                    "adapt its state")
            state = migrate(state)
            state = state.model_copy(update={"pipeline_version": self.pipeline_version,
                                             "step_names": self.pipeline.step_names})
        what = self._describe(state.run_id)
        if state.step_names is not None and state.step_names != self.pipeline.step_names:
            raise PipelineMismatchError(
                f"run {state.run_id!r} was saved by a pipeline with steps {state.step_names}; "
                f"this pipeline has {self.pipeline.step_names}")
        if not 0 <= state.current_step_index <= len(self.pipeline):
            raise PipelineMismatchError(
                f"run {state.run_id!r} is at step {shown(state.current_step_index)} of a "
                f"{len(self.pipeline)}-step pipeline")
        for position, item in enumerate(state.step_history):
            stored_step(what, f"step_history[{position}]", item)
        if state.failure is not None:
            # A backend of the earlier dict-only contract gives back the dict it stored.
            stored_step(what, "failure", state.failure, legacy=legacy)
            if isinstance(state.failure, dict):
                state = state.model_copy(
                    update={"failure": StepResult.model_validate(state.failure)})
        return state

    def _new_context(self, rid: str, initial_input: Any,
                     initial_context_data: Mapping[str, Any]) -> PipelineContext:
        data = dict(initial_context_data)
        data["run_id"] = rid
        if "initial_prompt" not in data and isinstance(initial_input, str):
            data["initial_prompt"] = initial_input
        return self.context_model.model_validate(data)

    def restore_context(self, state: WorkflowState) -> ContextT:
        """The context model instance of a saved state, exactly as it was saved."""
        return self._restore_context(state, validate=False)

    def _restore_context(self, state: WorkflowState, *, validate: bool) -> ContextT:
        return restore_context(self.context_model, state, validate=validate)

    def _claim(self, rid: str) -> contextlib.AbstractAsyncContextManager[RunClaim | None]:
        """The backend's claim on the run, waiting up to ``claim_timeout`` for another
        worker's (None, with a warning, for a backend that has no claims)."""
        def unsupported() -> None:
            warnings.warn(
                f"{type(self.backend).__name__} provides no run claim: two workers could "
                "execute the same run at once", RuntimeWarning, stacklevel=6)

        return control.claimed(self.backend, rid, timeout=self.claim_timeout,
                                unsupported=unsupported)


class _Paused(Exception):
    """A step paused; ``request`` is what the run will wait for (checked, storable)."""

    def __init__(self, request: PauseRequest) -> None:
        super().__init__(request.step)
        self.request = request


def _blocking(awaitable: Awaitable[T]) -> T:
    """``asyncio.run(awaitable)``, its result passed out beside the task: Python 3.11's
    ``asyncio.run`` formats the main task, result included, when it restores the SIGINT
    handler, which for a long run's result costs milliseconds."""
    box: list[T] = []

    async def main() -> None:
        box.append(await awaitable)

    asyncio.run(main())
    return box[0]

