"""Operations on a stored run that need no pipeline: answer its pause, cancel it.

The interface of the runner's package to the layers above it (the ``flujo`` command line,
the Celery integration); applications use ``Flujo`` and ``RunHandle`` instead.
The runner uses them under the claim it holds; ``flujo state resume`` / ``flujo state cancel``
and ``Flujo.cancel`` use them under a claim taken for the operation. Each is one
compare-and-set save: an answer is applied exactly once, and a run another process changed
meanwhile is not overwritten (StateConflictError).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import time
import weakref
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, ValidationError

from ..exceptions import (
    CheckpointNotFoundError,
    CorruptStateError,
    PipelineError,
    RunInProgressError,
    RunNotFoundError,
    RunNotPausedError,
)
from ..serialization import TypeRegistry, default_registry
from ..state import (
    LEGACY_CONTEXT_MARKER,
    Checkpoint,
    EnvelopeStateBackend,
    PauseRequest,
    RunStatus,
    StateBackend,
    WorkflowState,
    validate_run_id,
)
from ..state.backends.base import RunClaim, shown
from ..state.models import utc_now
from ._human import accept_answer, input_model_for
from ._models import StepResult
from ._restore import problems

__all__ = [
    "CLAIM_POLL_S",
    "accept_answer",
    "answered_state",
    "cancel_run",
    "choose_checkpoint",
    "claimed",
    "describe_run",
    "input_model_for",
    "load_run",
    "pause_of",
    "registry_of",
    "save_run",
    "saved_before",
    "stored_step_names",
    "takes_claim",
    "unattended_runs",
    "unclaimed",
]


#: How often a claim held by another worker is tried again while waiting for it (seconds).
CLAIM_POLL_S = 0.05


def registry_of(backend: StateBackend) -> TypeRegistry:
    """The type registry the backend stores values with."""
    if isinstance(backend, EnvelopeStateBackend):
        return backend.codec.registry
    return default_registry()


def describe_run(backend: StateBackend, run_id: str) -> str:
    """How messages name the run's record (with its file or table, if known)."""
    if isinstance(backend, EnvelopeStateBackend):
        return backend.describe(run_id)
    return f"run {run_id!r}"


async def load_run(backend: StateBackend,
                   run_id: str) -> tuple[WorkflowState | None, int, bool]:
    """The stored state, its revision (-1 for a backend that keeps none) and whether its
    context is the plain JSON earlier flujo stored (the context model parses it back)."""
    try:
        record = await backend.load_record(run_id)
    except NotImplementedError:  # a backend written for the earlier, dict-only contract
        loaded = await backend.load_state(run_id)
        if loaded is None:
            return None, -1, False
        try:
            return WorkflowState.model_validate(loaded), -1, True
        except ValidationError as exc:
            raise CorruptStateError(
                f"{describe_run(backend, run_id)}: the saved state is not a valid"
                f" WorkflowState: {problems(exc)}") from exc
    if record is None:
        return None, 0, False
    plain = record.envelope.stored_envelope_version == 0 or bool(
        (record.state.model_extra or {}).get(LEGACY_CONTEXT_MARKER))
    return record.state, record.revision, plain


async def save_run(backend: StateBackend, state: WorkflowState, revision: int,
                   claim: RunClaim | None) -> int:
    """Save ``state`` if the stored run is still at ``revision`` (-1: not tracked); return
    the new revision."""
    fenced: dict[str, Any] = {}
    if claim is not None:
        claim.check()
        if takes_claim(backend.save_state):
            fenced["claim"] = claim
    if revision < 0:
        await backend.save_state(state.run_id, state, **fenced)
        return -1
    saved = await backend.save_state(state.run_id, state, expected_revision=revision,
                                     **fenced)
    return revision + 1 if saved is None else saved


def takes_claim(save: Callable[..., Any]) -> bool:
    """Whether a ``save_state`` accepts ``claim=`` (backends and wrappers written for earlier
    flujo do not; their saves are not fenced, the runner's own checks still apply)."""
    function = getattr(save, "__func__", None)
    if function is None:
        return _takes_claim(save)
    known = _TAKES_CLAIM.get(function)
    if known is None:
        known = _TAKES_CLAIM[function] = _takes_claim(save)
    return known


# By function (a backend's save_state): the runner asks before every save.
_TAKES_CLAIM: weakref.WeakKeyDictionary[Any, bool] = weakref.WeakKeyDictionary()


def _takes_claim(save: Callable[..., Any]) -> bool:
    try:
        parameters = inspect.signature(save).parameters
    except (TypeError, ValueError):
        return False
    found = parameters.get("claim")
    if found is not None:
        return found.kind in (inspect.Parameter.KEYWORD_ONLY,
                              inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())


def pause_of(what: str, state: WorkflowState) -> PauseRequest:
    """The pause a ``paused`` state waits on; RunNotPausedError for any other status."""
    if state.status != "paused":
        raise RunNotPausedError(
            f"{what} is {state.status}, not paused: no answer is awaited and nothing was"
            " applied (an answer already saved made it run on: run it by its id)")
    if state.pause is None:
        raise RunNotPausedError(
            f"{what} was paused by earlier flujo, which stored no input model to check an"
            " answer against: run it on by its id, without an answer")
    if not isinstance(state.pause, PauseRequest):  # pragma: no cover - WorkflowState checks
        raise CorruptStateError(f"{what}: the stored pause {shown(state.pause)} is not one")
    return state.pause


def answered_state(state: WorkflowState, value: BaseModel) -> tuple[WorkflowState, StepResult]:
    """The state after ``value`` answered the pause of ``state``: the pausing step has
    ``value`` as its output, and the next step (if any) gets it as its input."""
    pause = state.pause
    assert isinstance(pause, PauseRequest)
    waited = max(0.0, (utc_now() - pause.requested_at).total_seconds())
    prior = state.failure if isinstance(state.failure, StepResult) \
        and state.failure.name == pause.step else None  # attempts that failed before it paused
    done = StepResult(name=pause.step, output=value, latency_s=waited,
                      attempts=1 if prior is None else prior.attempts,
                      failed_attempts=[] if prior is None else list(prior.failed_attempts))
    next_index = state.current_step_index + 1
    names = state.step_names
    last = names is not None and next_index >= len(names)
    answered = state.model_copy(update={
        "current_step_index": next_index, "last_step_output": value,
        "step_history": [*state.step_history, done],
        "status": "completed" if last else "running", "pause": None, "error": None,
        "failure": None,
    })
    return answered, done


@contextlib.asynccontextmanager
async def claimed(backend: StateBackend, run_id: str, *, timeout: float | None = None,
                  unsupported: Callable[[], None] | None = None
                  ) -> AsyncIterator[RunClaim | None]:
    """The backend's claim on the run: None for a backend without claims (after calling
    ``unsupported``), or whose claim yields no RunClaim. Another worker's claim is waited
    for up to ``timeout`` seconds (None: RunInProgressError at once)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        try:
            manager = backend.claim(run_id)
            held = await manager.__aenter__()
        except NotImplementedError:
            if unsupported is not None:
                unsupported()
            yield None
            return
        except RunInProgressError:
            if deadline is None or time.monotonic() >= deadline:
                raise
            await asyncio.sleep(CLAIM_POLL_S)
            continue
        break
    try:
        yield held if isinstance(held, RunClaim) else None
    except BaseException as exc:
        if not await manager.__aexit__(type(exc), exc, exc.__traceback__):
            raise
    else:
        await manager.__aexit__(None, None, None)


async def cancel_run(backend: StateBackend, run_id: str) -> RunStatus:
    """Cancel ``run_id``; return its status afterwards.

    A run nobody executes (paused, failed, or left ``running`` by a crash) is saved as
    ``cancelled`` at once. A run another worker executes gets a cancel request in the store,
    which that worker honours at its next step boundary: ``"running"`` is returned. A run
    that is completed or already cancelled is left as it is. No value of the run is decoded
    (the operator's ``flujo state cancel`` needs none of the application's types).
    """
    validate_run_id(run_id)
    try:
        return await _cancel_claimed(backend, run_id)
    except RunInProgressError:
        pass
    try:
        await backend.request_cancel(run_id)
    except NotImplementedError:
        raise PipelineError(
            f"{describe_run(backend, run_id)} is being executed by another worker, and"
            f" {type(backend).__name__} keeps no cancel requests to tell it to stop"
        ) from None
    # The worker may have finished between the claim refused above and the request: then
    # nobody would honour or drop the request. Look again; a worker still holding the run
    # sees the request (it checks before each step and when it pauses or fails).
    try:
        return await _cancel_claimed(backend, run_id)
    except RunInProgressError:
        return "running"


async def _cancel_claimed(backend: StateBackend, run_id: str) -> RunStatus:
    """Cancel a run nobody else executes (RunInProgressError when one does)."""
    what = describe_run(backend, run_id)
    async with claimed(backend, run_id) as claim:
        if isinstance(backend, EnvelopeStateBackend):
            envelope = await backend.read_envelope(run_id)
            if envelope is None:
                status: str | None = None
            else:
                status = envelope.status
                if status not in ("completed", "cancelled"):
                    await backend.rewrite_status(envelope, "cancelled", claim=claim)
        else:
            state, revision, _ = await load_run(backend, run_id)
            status = None if state is None else state.status
            if state is not None and status not in ("completed", "cancelled"):
                # A cancelled run waits for nothing (run on with resume_cancelled, a human
                # step asks again).
                await save_run(backend, state.model_copy(
                    update={"status": "cancelled", "pause": None}), revision, claim)
        with contextlib.suppress(NotImplementedError):
            await backend.clear_cancel_request(run_id)
        if status is None:
            raise RunNotFoundError(f"{what}: no such run")
        if status in ("completed", "cancelled"):
            return status  # type: ignore[return-value]
        return "cancelled"


#: Rows of ``list_runs`` read at a time while looking for unattended runs.
_PAGE = 500


async def unattended_runs(backend: StateBackend, pipeline_name: str | None, *,
                          older_than: timedelta, limit: int) -> list[tuple[str, datetime]]:
    """The runs of ``pipeline_name`` (None: of any pipeline) saved as ``running``, last saved
    more than ``older_than`` ago, whose claim nobody holds (``claim_holders``; for a backend
    without it, the claim is taken and given back at once): each run's id and when it was
    last saved, oldest first, at most ``limit``."""
    if not isinstance(older_than, timedelta) or older_than < timedelta(0):
        raise PipelineError(f"older_than must be a timedelta >= 0, got {shown(older_than)}")
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise PipelineError(f"limit must be an int >= 1, got {shown(limit)}")
    cutoff = saved_before(older_than)
    if cutoff is None:
        return []
    stale: list[tuple[str, datetime]] = []
    offset = 0
    while True:  # most recently saved first: the stale ones are at the end
        rows = await backend.list_runs(status="running", pipeline_name=pipeline_name,
                                       limit=_PAGE, offset=offset)
        stale += [(row["run_id"], row["updated_at"]) for row in rows
                  if row["updated_at"] <= cutoff]
        if len(rows) < _PAGE:
            break
        offset += _PAGE
    stale.sort(key=lambda found: found[1])
    unattended: list[tuple[str, datetime]] = []
    for run_id, updated_at in stale:
        if len(unattended) >= limit:
            break
        if await unclaimed(backend, run_id):
            unattended.append((run_id, updated_at))
    return unattended


def saved_before(older_than: timedelta) -> datetime | None:
    """The time a run saved more than ``older_than`` ago was last saved before; None when
    nothing can be that old (an age beyond what ``datetime`` counts back to)."""
    try:
        return utc_now() - older_than
    except OverflowError:
        return None


async def unclaimed(backend: StateBackend, run_id: str) -> bool:
    """Whether nobody holds ``run_id``'s claim: asked of ``claim_holders`` (which takes
    nothing, so a worker starting the run meanwhile is not turned away), else found by
    taking the claim and giving it back."""
    try:
        return run_id not in await backend.claim_holders([run_id])
    except NotImplementedError:
        pass
    try:
        async with backend.claim(run_id):
            return True
    except RunInProgressError:
        return False
    except NotImplementedError as exc:
        raise PipelineError(
            f"{type(backend).__name__} provides no run claim, so whether a worker executes "
            f"run {run_id!r} cannot be told") from exc


def _position(step: str | int, names: list[str] | None, what: str) -> int:
    if isinstance(step, bool) or not isinstance(step, str | int):
        raise PipelineError(f"step must be a step name or index, got {step!r}")
    if names is None:  # the run's names cannot be read here
        if isinstance(step, int) and step >= 0:
            return step
        raise PipelineError(f"{what}: the run's step names cannot be read without its key"
                            f" (it is encrypted), so step {step!r} cannot be found by name;"
                            " give its index, or the key")
    if isinstance(step, int):
        if not 0 <= step < len(names):
            raise PipelineError(f"{what}: step index {step} is out of range: the pipeline has"
                                f" {len(names)} steps (0 to {len(names) - 1})")
        return step
    if step not in names:
        raise PipelineError(f"{what}: no step {step!r} in the pipeline (steps: {names})")
    return names.index(step)


def choose_checkpoint(checkpoints: list[Checkpoint], names: list[str] | None, what: str, *,
                      step: str | int | None, revision: int | None) -> Checkpoint:
    """The checkpoint after ``step`` (a name or an index of ``names``; None: names not
    known, an index only), or the one at ``revision``, or (neither given) the latest."""
    if step is not None and revision is not None:
        raise PipelineError("give step or revision, not both")
    if revision is not None:
        for checkpoint in checkpoints:
            if checkpoint.revision == revision:
                return checkpoint
        kept = f"{checkpoints[0].revision} to {checkpoints[-1].revision}"
        raise CheckpointNotFoundError(
            f"{what}: no checkpoint at revision {revision!r} (kept: revisions {kept}, with"
            " gaps where none was kept)")
    if step is None:
        return checkpoints[-1]
    done = _position(step, names, what) + 1
    for checkpoint in checkpoints:
        if checkpoint.steps_done == done:
            return checkpoint
    raise CheckpointNotFoundError(
        f"{what}: step {step!r} never finished in this run, or the checkpoint saved when it"
        " did was pruned")


async def stored_step_names(backend: EnvelopeStateBackend, run_id: str) -> list[str] | None:
    """The step names the run stored (its pipeline version's), read without decoding any
    value; None when it stored none (earlier flujo)."""
    fields = await backend.plain_state(run_id)
    names = fields.get("step_names") if isinstance(fields, dict) else None
    if isinstance(names, list) and all(isinstance(name, str) for name in names):
        return names
    return None
