"""The persisted state of one pipeline run, and the small records the backends return."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, TypedDict

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from flujo.serialization import register_type

if TYPE_CHECKING:
    from ._envelope import Envelope

__all__ = [
    "ForkOrigin",
    "PauseRequest",
    "RunStatus",
    "RunSummary",
    "StateRecord",
    "WorkflowState",
    "utc_now",
]

RunStatus = Literal["running", "paused", "completed", "failed", "cancelled"]
RUN_STATUSES: tuple[str, ...] = ("running", "paused", "completed", "failed", "cancelled")


def utc_now() -> datetime:
    """The current time as an aware UTC datetime."""
    return datetime.now(UTC)


def _aware(value: datetime) -> datetime:
    # Earlier flujo wrote naive ``datetime.utcnow()`` values; read them as UTC.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


class PauseRequest(BaseModel):
    """What a paused run waits for: stored with the run, shown to operators.

    ``input_type`` is the stable name of the model the answer must validate against (its
    registered name, or the name flujo derives for it), ``input_version`` that model's version
    when the run paused, and ``input_schema`` its JSON Schema then: what a person answering
    from another machine, without the application's code, needs to write a valid answer.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    step: str
    message: str = ""
    input_type: str
    input_version: int = Field(default=1, ge=1)
    input_schema: dict[str, Any] = Field(default_factory=dict)
    requested_at: datetime = Field(default_factory=utc_now)


class ForkOrigin(BaseModel):
    """Where a forked run came from: the run, the checkpoint (its revision) and the step that
    checkpoint recorded, with how many steps were done then."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    run_id: str
    revision: int = Field(ge=1)
    step: str | None = None
    steps_done: int = Field(default=0, ge=0)


class WorkflowState(BaseModel):
    """Snapshot of a pipeline run: where it is, what it has produced, and how it ended.

    ``pipeline_context``, ``last_step_output`` and ``step_history`` hold arbitrary values; they
    are persisted through the type registry and come back with their exact types (a ``Decimal``
    stays a ``Decimal``, a user model stays that model).

    ``step_names`` are the names of the pipeline's steps (a resume checks them), ``failure``
    the ``StepResult`` of the step that failed, or whose retries are under way,
    ``pause`` what a ``paused`` run waits for, and ``forked_from`` the run and checkpoint a
    forked run started from (its lineage).

    ``created_at`` and ``updated_at`` belong to the store: a backend sets them when it saves
    (the first save's time, this save's time) and fills them in when it loads, from the
    record's header, so ``StateBackend.load_state`` and ``list_runs`` agree. The values
    a caller puts here are not saved, except ``created_at`` set explicitly on a run's first
    save (an import keeps its original creation time).

    Unknown keys are kept (``extra="allow"``): records written by earlier flujo versions carry
    fields such as ``pipeline_id`` or ``metadata`` and load without losing them. Naive
    timestamps are read as UTC. ``error_message`` (earlier flujo) fills ``error`` when ``error``
    is absent.
    """

    model_config = ConfigDict(extra="allow", validate_default=True, defer_build=True)

    run_id: str
    pipeline_name: str = ""
    pipeline_version: str = "latest"
    current_step_index: int = Field(default=0, ge=0)
    pipeline_context: dict[str, Any] = Field(default_factory=dict)
    last_step_output: Any = None
    step_history: list[Any] = Field(default_factory=list)
    status: RunStatus = "running"
    created_at: datetime = Field(default_factory=utc_now)
    updated_at: datetime = Field(default_factory=utc_now)
    error: str | None = None
    step_names: list[str] | None = None
    failure: Any = None
    pause: PauseRequest | None = None
    forked_from: ForkOrigin | None = None

    @model_validator(mode="before")
    @classmethod
    def _accept_earlier_fields(cls, data: Any) -> Any:
        if isinstance(data, dict) and "error" not in data and "error_message" in data:
            message = data["error_message"]
            if message is None or isinstance(message, str):
                data = {**data, "error": message}
        return data

    @field_validator("created_at", "updated_at")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        return _aware(value)

    @field_validator("pipeline_name")
    @classmethod
    def _no_nul(cls, value: str) -> str:
        if "\x00" in value:
            raise ValueError("pipeline_name must not contain NUL characters")
        return value

    def to_dict(self) -> dict[str, Any]:
        """The fields (and kept extra fields) as a dict, values untouched.

        Unlike ``model_dump()`` this does not turn nested models into dicts, so the values keep
        their exact types. It is what ``StateBackend.load_state`` returns.
        """
        data = dict(self.__dict__)
        if self.__pydantic_extra__:
            data.update(self.__pydantic_extra__)
        return data


class RunSummary(TypedDict):
    """One row of ``StateBackend.list_runs``; read from the envelope header only."""

    run_id: str
    pipeline_name: str
    status: str
    revision: int
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class StateRecord:
    """A loaded run: its decoded state, its revision and the envelope it came from.

    Pass ``revision`` back as ``save_state(..., expected_revision=record.revision)`` to save
    only if nobody else wrote the run in between.
    """

    state: WorkflowState
    revision: int
    envelope: Envelope


# A stable name: stored pauses must not depend on where this class lives in the package.
register_type(PauseRequest, name="flujo.PauseRequest")
register_type(ForkOrigin, name="flujo.ForkOrigin")


def fork_run_id(run_id: str, suffix: str) -> str:
    """The default id of a fork of ``run_id``: ``<run_id>-fork-<suffix>``, the source's id
    shortened as needed to keep within a run id's 200 bytes."""
    tail = f"-fork-{suffix}"
    base = run_id
    while len((base + tail).encode("utf-8")) > 200:
        base = base[:-1]
    return base.rstrip() + tail


# Fields of an earlier flujo's record that would bring back what a fork starts without.
_NOT_FORKED = frozenset({"error_message"})


def forked_state(state: WorkflowState, new_run_id: str, origin: ForkOrigin,
                 context: dict[str, Any] | None = None) -> WorkflowState:
    """A new run ``new_run_id`` starting from ``state`` (a checkpoint of ``origin.run_id``):
    its context (``context`` when given: the fields of an edited one), last output and step
    history, running, with no failure, pause or error, and its lineage."""
    fields = dict(state.pipeline_context if context is None else context)
    if "run_id" in fields:
        fields["run_id"] = new_run_id  # the context names its run (PipelineContext.run_id)
    return WorkflowState(
        run_id=new_run_id, pipeline_name=state.pipeline_name,
        pipeline_version=state.pipeline_version,
        current_step_index=state.current_step_index, pipeline_context=fields,
        last_step_output=state.last_step_output, step_history=list(state.step_history),
        status="running", step_names=state.step_names, forked_from=origin,
        **{k: v for k, v in (state.model_extra or {}).items() if k not in _NOT_FORKED})
