"""A run's checkpoints seen from its pipeline: list them, read the state after a step, fork.

Steps are named by the pipeline (a step's name, or its index); a checkpoint "after step k"
is the first save at which ``k + 1`` steps were done: the save right after that step
finished.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from ..exceptions import (
    CheckpointNotFoundError,
    InvalidStateError,
    PipelineError,
    RunNotFoundError,
    StateConflictError,
)
from ..state import (
    Checkpoint,
    EnvelopeStateBackend,
    ForkOrigin,
    StateBackend,
    WorkflowState,
    fork_run_id,
    forked_state,
    validate_run_id,
)
from ._control import describe_run, save_run
from ._models import PipelineContext
from ._restore import context_fields, problems

if TYPE_CHECKING:
    from ._runner import Flujo

__all__ = ["checkpoints_of", "choose_checkpoint", "fork_run", "state_after", "stored_step_names"]

#: ``edit`` of ``Flujo.fork``: gets the context at the checkpoint; changes it in place or
#: returns the context to use instead.
ContextEdit = Callable[[Any], Any]


def _history_backend(backend: StateBackend) -> EnvelopeStateBackend:
    if not isinstance(backend, EnvelopeStateBackend):
        raise PipelineError(
            f"{type(backend).__name__} keeps no checkpoints (it implements the earlier"
            " save/load/delete contract only): history, state_at and fork need a backend"
            " built on EnvelopeStateBackend")
    return backend


async def checkpoints_of(backend: StateBackend, run_id: str) -> list[Checkpoint]:
    """The run's checkpoints, oldest first; RunNotFoundError for an unknown run."""
    found = await _history_backend(backend).history(validate_run_id(run_id))
    if not found:
        raise RunNotFoundError(f"{describe_run(backend, run_id)}: no such run")
    return found


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


async def state_after(runner: Flujo[Any], run_id: str, *, step: str | int | None,
                      revision: int | None) -> tuple[WorkflowState, Checkpoint]:
    """The state saved after ``step`` (or at ``revision``; the latest when neither). A step
    is named as the run's own pipeline version named it (the runner's own names for a run
    that stored none)."""
    backend = _history_backend(runner.backend)
    what = describe_run(backend, run_id)
    checkpoints = await checkpoints_of(backend, run_id)
    names = None if step is None else await stored_step_names(backend, run_id)
    chosen = choose_checkpoint(checkpoints, names or runner.pipeline.step_names, what,
                               step=step, revision=revision)
    record = await backend.state_at(run_id, chosen.revision)
    if record is None:  # pruned or compacted between the two reads
        raise CheckpointNotFoundError(f"{what}: the checkpoint at revision {chosen.revision}"
                                      " is no longer stored (pruned meanwhile)")
    return record.state, chosen


async def fork_run(runner: Flujo[Any], run_id: str, *, at_step: str | int | None,
                   revision: int | None, new_run_id: str | None,
                   edit: ContextEdit | None) -> str:
    """Start a new run from a checkpoint of ``run_id``; return the new run's id."""
    state, chosen = await state_after(runner, run_id, step=at_step, revision=revision)
    new_id = validate_run_id(new_run_id if new_run_id is not None
                             else fork_run_id(run_id, uuid.uuid4().hex[:8]))
    origin = ForkOrigin(run_id=run_id, revision=chosen.revision, step=chosen.step,
                        steps_done=chosen.steps_done)
    fields = None
    if edit is not None:
        context = runner.restore_context(state)
        edited = edit(context)
        fields = _checked_context(runner, context if edited is None else edited, new_id)
    forked = forked_state(state, new_id, origin, fields)
    try:
        await save_run(runner.backend, forked, 0, None)  # a new run: refused if the id is taken
    except StateConflictError as exc:
        raise StateConflictError(f"run {new_id!r} already exists: give the fork another"
                                 " new_run_id") from exc
    return new_id


def _checked_context(runner: Flujo[Any], context: Any, new_id: str) -> dict[str, Any]:
    """The fields of an edited context, validated by the runner's context model (its
    validators run, its field types are checked) as a new context would be."""
    model = runner.context_model
    if not isinstance(context, PipelineContext):
        raise InvalidStateError(
            f"the edit of the fork must leave or return a {model.__name__}, got"
            f" {type(context).__name__}")
    fields = {**context_fields(context), "run_id": new_id}
    try:
        checked = model.model_validate(fields)
    except ValidationError as exc:
        raise InvalidStateError(
            f"the edited context of the fork is not a valid {model.__name__}:"
            f" {problems(exc)}") from exc
    return context_fields(checked)
