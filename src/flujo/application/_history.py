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
from ._models import PipelineContext
from ._restore import context_fields, problems
from .control import choose_checkpoint, describe_run, save_run, stored_step_names

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
