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
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import time
import uuid
import warnings
from collections.abc import AsyncIterator, Callable, Generator, Mapping
from typing import Any, Generic, TypeVar, cast

from pydantic import ValidationError

from ..exceptions import (
    ClaimLostError,
    CorruptStateError,
    InvalidRunIdError,
    PipelineError,
    PipelineMismatchError,
    RunIdConflictError,
    RunInProgressError,
    StateConflictError,
)
from ..state import (
    LEGACY_CONTEXT_MARKER,
    EnvelopeStateBackend,
    InMemoryBackend,
    StateBackend,
    WorkflowState,
    backend_from_uri,
)
from ..state.backends.base import RunClaim, shown
from ._models import PipelineContext, PipelineResult, StepResult
from ._pipeline import Pipeline, Step

__all__ = ["STATE_URI_ENV", "Flujo", "RunHandle", "VersionMigration"]

STATE_URI_ENV = "FLUJO_STATE_URI"
ContextT = TypeVar("ContextT", bound=PipelineContext)
VersionMigration = Callable[[WorkflowState], WorkflowState]
_CLAIM_POLL_S = 0.05


class RunHandle:
    """What ``run_async`` returns: await it for the result, or ``async for`` its step results.

    After an ``async for`` loop ends, :attr:`result` holds the :class:`PipelineResult`.
    """

    def __init__(self, steps: AsyncIterator[StepResult], outcome: list[PipelineResult]) -> None:
        self._steps = steps
        self._outcome = outcome

    @property
    def result(self) -> PipelineResult:
        if not self._outcome:
            raise PipelineError("the run has not finished; await it or iterate it to the end")
        return self._outcome[0]

    def __aiter__(self) -> AsyncIterator[StepResult]:
        return self._steps

    async def aclose(self) -> None:
        """Stop a run left unfinished (e.g. after ``break``): its claim is released now.

        Without it, a generator abandoned mid-iteration keeps the claim until it is
        garbage-collected. ``async with runner.run_async(...) as run:`` calls it for you.
        """
        await self._steps.aclose()  # type: ignore[attr-defined]

    async def __aenter__(self) -> RunHandle:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def _finish(self) -> PipelineResult:
        async for _ in self._steps:
            pass
        return self.result

    def __await__(self) -> Generator[Any, None, PipelineResult]:
        return self._finish().__await__()


class Flujo(Generic[ContextT]):
    """Runs ``pipeline`` durably.

    ``state_backend``: a :class:`~flujo.state.StateBackend`, a URI (``"sqlite:///state.db"``,
    ``"file:///var/flujo"``, ``"postgresql://..."``, ``"memory://"``), or None for the
    ``FLUJO_STATE_URI`` environment variable, else an in-memory store that lives as long as
    this runner (nothing is written to disk unasked). ``pipeline_version`` is stored with
    each run; resuming a run saved by another version needs ``version_migrations[old]``.
    ``claim_timeout``: seconds to wait for another worker's claim on the same run (default:
    fail at once with RunInProgressError).
    """

    def __init__(
        self,
        pipeline: Pipeline | Step,
        *,
        context_model: type[ContextT] = PipelineContext,  # type: ignore[assignment]
        state_backend: StateBackend | str | None = None,
        pipeline_name: str = "pipeline",
        pipeline_version: str = "1",
        delete_on_completion: bool = False,
        version_migrations: Mapping[str, VersionMigration] | None = None,
        claim_timeout: float | None = None,
    ) -> None:
        self.pipeline = pipeline if isinstance(pipeline, Pipeline) else Pipeline([pipeline])
        if not (isinstance(context_model, type) and issubclass(context_model, PipelineContext)):
            raise PipelineError(
                f"context_model must subclass PipelineContext, got {context_model!r}")
        self.context_model = context_model
        self.backend = _resolve_backend(state_backend)
        self.pipeline_name = pipeline_name
        self.pipeline_version = pipeline_version
        self.delete_on_completion = delete_on_completion
        self.version_migrations = dict(version_migrations or {})
        self.claim_timeout = claim_timeout

    # -- entry points -------------------------------------------------------------------
    def run(self, initial_input: Any = None, *, run_id: str | None = None,
            initial_context_data: Mapping[str, Any] | None = None) -> PipelineResult:
        """Run (or resume, given the ``run_id`` of a saved run) to the end; blocking."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(self._run_to_end(initial_input, run_id, initial_context_data))
        raise PipelineError("Flujo.run() cannot block inside a running event loop; "
                            "use `await runner.run_async(...)`")

    def run_async(self, initial_input: Any = None, *, run_id: str | None = None,
                  initial_context_data: Mapping[str, Any] | None = None) -> RunHandle:
        """Like :meth:`run`, as ``await runner.run_async(...)`` or ``async for step in ...``."""
        outcome: list[PipelineResult] = []
        steps = self._execute(initial_input, run_id, initial_context_data, outcome)
        return RunHandle(steps, outcome)

    async def _run_to_end(self, initial_input: Any, run_id: str | None,
                          initial_context_data: Mapping[str, Any] | None) -> PipelineResult:
        return await self.run_async(initial_input, run_id=run_id,
                                    initial_context_data=initial_context_data)

    # -- the run ------------------------------------------------------------------------
    async def _execute(self, initial_input: Any, run_id: str | None,
                       initial_context_data: Mapping[str, Any] | None,
                       outcome: list[PipelineResult]) -> AsyncIterator[StepResult]:
        rid = _choose_run_id(run_id, initial_context_data)
        async with self._claim(rid) as claim:
            saved, revision, legacy = await self._load(rid)
            if saved is None:
                context = self._new_context(rid, initial_input, initial_context_data)
                state = WorkflowState(
                    run_id=rid, pipeline_name=self.pipeline_name,
                    pipeline_version=self.pipeline_version, current_step_index=0,
                    pipeline_context=_context_fields(context), last_step_output=initial_input,
                    step_history=[], status="running", step_names=self.pipeline.step_names,
                )
                revision = await self._save(rid, state, revision, claim)
            else:
                state, context = self._resume_point(saved, legacy)
                if state.status == "completed":
                    outcome.append(self._completed(rid, state, context))
                    return
            history: list[StepResult] = list(state.step_history)
            data = state.last_step_output
            failure = (state.model_extra or {}).get("failure")
            for index in range(state.current_step_index, len(self.pipeline)):
                step = self.pipeline.steps[index]
                attempts = 1
                if isinstance(failure, StepResult) and failure.name == step.name:
                    attempts = failure.attempts + 1
                if claim is not None:
                    claim.check()  # never start a step under a lost claim
                started = time.perf_counter()
                try:
                    output = await _guarded(step, data, context, claim)
                except Exception as exc:
                    if isinstance(exc, ClaimLostError) and claim is not None and claim.lost:
                        raise  # this worker's claim, not the step's own error: stop here
                    failed = StepResult(
                        name=step.name, success=False, attempts=attempts,
                        latency_s=time.perf_counter() - started,
                        feedback=f"{type(exc).__name__}: {exc}",
                    )
                    # The step may have changed its context and input in place before it
                    # raised; what is saved is the state from before it, as a crash here would
                    # leave it, so that every attempt starts the step from the same state.
                    context, data = await self._before_step(rid, revision, step.name)
                    state = self._state(rid, context, index, data, history, "failed",
                                        error=failed.feedback, failure=failed)
                    revision = await self._save(rid, state, revision, claim)
                    yield failed
                    outcome.append(PipelineResult(
                        run_id=rid, step_history=[*history, failed],
                        final_pipeline_context=context, success=False, output=None))
                    return
                done = StepResult(name=step.name, output=output, attempts=attempts,
                                  latency_s=time.perf_counter() - started)
                history.append(done)
                data, failure = output, None
                last = index + 1 == len(self.pipeline)
                state = self._state(rid, context, index + 1, output, history,
                                    "completed" if last else "running")
                revision = await self._save(rid, state, revision, claim)
                yield done
            result = self._completed(rid, state, context)
            if self.delete_on_completion:
                if claim is not None:
                    claim.check()
                await self.backend.delete_state(rid)
            outcome.append(result)

    def _state(self, rid: str, context: PipelineContext, next_index: int, next_input: Any,
               history: list[StepResult], status: str, *, error: str | None = None,
               failure: StepResult | None = None) -> WorkflowState:
        extra: dict[str, Any] = {"step_names": self.pipeline.step_names}
        if failure is not None:
            extra["failure"] = failure
        return WorkflowState(
            run_id=rid, pipeline_name=self.pipeline_name, pipeline_version=self.pipeline_version,
            current_step_index=next_index, pipeline_context=_context_fields(context),
            last_step_output=next_input, step_history=list(history), status=status,
            error=error, **extra,
        )

    def _completed(self, rid: str, state: WorkflowState,
                   context: PipelineContext) -> PipelineResult:
        return PipelineResult(run_id=rid, step_history=list(state.step_history),
                              final_pipeline_context=context, success=True,
                              output=state.last_step_output)

    # -- state --------------------------------------------------------------------------
    def _describe(self, rid: str) -> str:
        """How error messages name the run's record (with its file or table, if known)."""
        if isinstance(self.backend, EnvelopeStateBackend):
            return self.backend.describe(rid)
        return f"run {rid!r}"

    async def _load(self, rid: str) -> tuple[WorkflowState | None, int, bool]:
        """The saved state, its revision (-1: not tracked) and whether it predates envelopes."""
        try:
            record = await self.backend.load_record(rid)
        except NotImplementedError:  # a backend written for the earlier, dict-only contract
            loaded = await self.backend.load_state(rid)
            if loaded is None:
                return None, -1, False
            try:
                return WorkflowState.model_validate(loaded), -1, True
            except ValidationError as exc:
                raise CorruptStateError(
                    f"{self._describe(rid)}: the saved state is not a valid WorkflowState:"
                    f" {_problems(exc)}") from exc
        if record is None:
            return None, 0, False
        plain = record.envelope.stored_envelope_version == 0 or bool(
            (record.state.model_extra or {}).get(LEGACY_CONTEXT_MARKER))
        return record.state, record.revision, plain

    def _resume_point(self, saved: WorkflowState,
                      legacy: bool) -> tuple[WorkflowState, PipelineContext]:
        """The checked (and, for another pipeline version, migrated) state of a saved run,
        and the context the next step gets, rebuilt from it."""
        state = self._check_resumable(saved)
        return state, self._restore_context(state, validate=legacy)

    async def _before_step(self, rid: str, revision: int,
                           step_name: str) -> tuple[PipelineContext, Any]:
        """The context and input the current step started from, rebuilt from the state saved
        before it (``revision``): the step cannot have changed what the store holds."""
        saved, found, legacy = await self._load(rid)
        if saved is None or found != revision:
            now = "was deleted" if saved is None else f"is at revision {found}"
            raise StateConflictError(
                f"{self._describe(rid)}: step {step_name!r} failed, and the saved run {now}"
                f" instead of revision {revision}; another writer changed it, so the failure"
                " is not recorded")
        state, context = self._resume_point(saved, legacy)
        return context, state.last_step_output

    async def _save(self, rid: str, state: WorkflowState, revision: int,
                    claim: RunClaim | None) -> int:
        fenced: dict[str, Any] = {}
        if claim is not None:
            claim.check()
            if _takes_claim(self.backend.save_state):
                fenced["claim"] = claim  # the backend checks it in the write's transaction
        if revision < 0:
            await self.backend.save_state(rid, state, **fenced)
            return -1
        saved = await self.backend.save_state(rid, state, expected_revision=revision, **fenced)
        return revision + 1 if saved is None else saved

    def _check_resumable(self, state: WorkflowState) -> WorkflowState:
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
            state = state.model_copy(update={"pipeline_version": self.pipeline_version})
            if state.model_extra is not None:
                state.model_extra["step_names"] = self.pipeline.step_names
        what = self._describe(state.run_id)
        extra = state.model_extra or {}
        stored_names = extra.get("step_names")
        if stored_names is not None and not (
                isinstance(stored_names, list) and all(type(n) is str for n in stored_names)):
            raise CorruptStateError(
                f"{what}: the stored step_names, {shown(stored_names)}, is not a list of step"
                " names")
        if stored_names is not None and stored_names != self.pipeline.step_names:
            raise PipelineMismatchError(
                f"run {state.run_id!r} was saved by a pipeline with steps {stored_names}; "
                f"this pipeline has {self.pipeline.step_names}")
        if not 0 <= state.current_step_index <= len(self.pipeline):
            raise PipelineMismatchError(
                f"run {state.run_id!r} is at step {shown(state.current_step_index)} of a "
                f"{len(self.pipeline)}-step pipeline")
        for position, item in enumerate(state.step_history):
            _stored_step(what, f"step_history[{position}]", item)
        if extra.get("failure") is not None:
            _stored_step(what, "failure", extra["failure"], legacy=False)
        return state

    def _new_context(self, rid: str, initial_input: Any,
                     initial_context_data: Mapping[str, Any] | None) -> PipelineContext:
        data = dict(initial_context_data or {})
        data["run_id"] = rid
        if "initial_prompt" not in data and isinstance(initial_input, str):
            data["initial_prompt"] = initial_input
        return self.context_model.model_validate(data)

    def restore_context(self, state: WorkflowState) -> ContextT:
        """The context model instance of a saved state, exactly as it was saved."""
        return self._restore_context(state, validate=False)

    def _restore_context(self, state: WorkflowState, *, validate: bool) -> ContextT:
        fields = dict(state.pipeline_context)
        model = self.context_model
        missing = [n for n, f in model.__pydantic_fields__.items()
                   if f.is_required() and n not in fields]
        unknown = [n for n in fields if n not in model.__pydantic_fields__]
        if (missing or unknown) and model.model_config.get("extra") != "allow":
            raise PipelineMismatchError(
                f"the saved context of run {state.run_id!r} does not fit {model.__qualname__}: "
                f"missing {missing}, unknown {unknown}; register a state migration")
        fields["run_id"] = state.run_id
        if validate:  # earlier flujo stored plain JSON: let the model parse it back
            try:
                return model.model_validate(fields)
            except ValidationError as exc:
                raise PipelineMismatchError(
                    f"the saved context of run {state.run_id!r} (plain JSON, saved by earlier"
                    f" flujo) does not fit {model.__qualname__}: {_problems(exc)}; register a"
                    " state migration") from exc
        return _construct(model, fields)

    @contextlib.asynccontextmanager
    async def _claim(self, rid: str) -> AsyncIterator[RunClaim | None]:
        """The backend's claim on the run (None for backends without claims, or whose claim
        yields no RunClaim), waiting up to ``claim_timeout`` for another worker's."""
        deadline = None if self.claim_timeout is None else time.monotonic() + self.claim_timeout
        while True:
            try:
                claim = self.backend.claim(rid)
                held = await claim.__aenter__()
            except NotImplementedError:
                warnings.warn(
                    f"{type(self.backend).__name__} provides no run claim: two workers could "
                    "execute the same run at once", RuntimeWarning, stacklevel=4)
                yield None
                return
            except RunInProgressError:
                if deadline is None or time.monotonic() >= deadline:
                    raise
                await asyncio.sleep(_CLAIM_POLL_S)
                continue
            break
        try:
            yield held if isinstance(held, RunClaim) else None
        except BaseException as exc:
            if not await claim.__aexit__(type(exc), exc, exc.__traceback__):
                raise
        else:
            await claim.__aexit__(None, None, None)


def _resolve_backend(spec: StateBackend | str | None) -> StateBackend:
    if isinstance(spec, StateBackend):
        return spec
    if isinstance(spec, str):
        return backend_from_uri(spec)
    if spec is not None:
        raise PipelineError(f"state_backend must be a StateBackend or a URI, got {spec!r}")
    uri = os.environ.get(STATE_URI_ENV)
    return backend_from_uri(uri) if uri else InMemoryBackend()


def _choose_run_id(run_id: str | None, initial_context_data: Mapping[str, Any] | None) -> str:
    legacy = (initial_context_data or {}).get("run_id")
    if run_id is not None and legacy is not None and legacy != run_id:
        raise RunIdConflictError(
            f"run_id={run_id!r} and initial_context_data['run_id']={legacy!r} disagree; "
            "pass only run_id=")
    chosen = run_id if run_id is not None else legacy
    if chosen is None:
        return f"run_{uuid.uuid4().hex}"
    if not isinstance(chosen, str) or not chosen:
        raise InvalidRunIdError(f"run_id must be a non-empty str, got {chosen!r}")
    return chosen


def _construct(model: type[ContextT], fields: dict[str, Any]) -> ContextT:
    """An instance of ``model`` holding exactly ``fields``, unvalidated (the values keep the
    types they were saved with): the declared fields, and every other name as an extra."""
    declared = model.__pydantic_fields__
    extra = {name: value for name, value in fields.items() if name not in declared}
    context = cast(ContextT, model.model_construct(
        **{n: v for n, v in fields.items() if n in declared}))
    if extra:  # only for extra="allow" models (see _restore_context)
        # Set apart from model_construct, which would take ``_fields_set`` as its own argument
        # and a private attribute's name as that attribute: extras stay extras.
        object.__setattr__(context, "__pydantic_extra__",
                           {**(context.__pydantic_extra__ or {}), **extra})
    return context


def _problems(exc: ValidationError) -> str:
    """The first few errors of ``exc``, each as ``location: message``."""
    return "; ".join(f"{'.'.join(str(p) for p in err['loc']) or '$'}: {err['msg']}"
                     for err in exc.errors()[:5])


def _stored_step(what: str, where: str, value: Any, *, legacy: bool = True) -> None:
    """Refuse a step result of a saved state (``where``: ``step_history[2]``, ``failure``)
    that is not one: a StepResult whose fields have their declared types or, with
    ``legacy``, a dict that validates as one (how earlier flujo stored the history)."""
    try:
        if isinstance(value, StepResult):
            StepResult.model_validate(value.__dict__, strict=True)
            return
        if legacy and isinstance(value, dict):
            StepResult.model_validate(value)
            return
    except ValidationError as exc:
        raise CorruptStateError(
            f"{what}: the stored {where} is not a valid step result: {_problems(exc)}"
        ) from exc
    raise CorruptStateError(
        f"{what}: the stored {where}, {shown(value)}, is not a step result")


def _context_fields(context: PipelineContext) -> dict[str, Any]:
    fields = {name: getattr(context, name) for name in type(context).__pydantic_fields__}
    fields.update(context.__pydantic_extra__ or {})
    return fields


def _takes_claim(save: Callable[..., Any]) -> bool:
    """Whether a ``save_state`` accepts ``claim=`` (backends and wrappers written for earlier
    flujo do not; their saves are not fenced, the runner's own checks still apply)."""
    try:
        parameters = inspect.signature(save).parameters
    except (TypeError, ValueError):
        return False
    found = parameters.get("claim")
    if found is not None:
        return found.kind in (inspect.Parameter.KEYWORD_ONLY,
                              inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())


async def _guarded(step: Step, data: Any, context: PipelineContext,
                   claim: RunClaim | None) -> Any:
    """Run the step; if the claim is lost meanwhile, cancel it (an async step) and raise
    ClaimLostError. A sync step runs on the event loop and cannot be interrupted: its loss
    is found when it returns, and its result is dropped."""
    if claim is None or claim.watch is None:
        return await _call(step, data, context)
    running = asyncio.ensure_future(_call(step, data, context))
    lost = asyncio.ensure_future(claim.watch.wait())
    try:
        await asyncio.wait((running, lost), return_when=asyncio.FIRST_COMPLETED)
    finally:
        lost.cancel()
        if not running.done():
            # The claim was lost, or this run itself is being cancelled: either way the step
            # must have ended before anything else happens (cancellation is cooperative).
            running.cancel()
            await asyncio.wait((running,))
    claim.check()
    return running.result()


async def _call(step: Step, data: Any, context: PipelineContext) -> Any:
    kwargs = {"context": context} if step.wants_context else {}
    result = step.func(data, **kwargs)
    if inspect.isawaitable(result):
        result = await result
    return result
