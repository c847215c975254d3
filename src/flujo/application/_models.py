"""What a run works on and what it returns: the context and the results."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Generic

from pydantic import BaseModel, ConfigDict, Field
from typing_extensions import TypeVar  # (a default= before Python 3.13)

from ..serialization import register_type
from ..state import PauseRequest, RunStatus

__all__ = ["FailedAttempt", "PipelineContext", "PipelineResult", "StepResult"]


class PipelineContext(BaseModel):
    """State shared by every step of a run; subclass it to add typed fields.

    ``run_id`` is set by the runner before the first step runs (FR-17b). Everything in the
    context, the scratchpad included, is saved after each step with its exact types.
    """

    model_config = ConfigDict(validate_assignment=False)

    run_id: str = ""
    initial_prompt: str = ""
    scratchpad: dict[str, Any] = Field(default_factory=dict)


class FailedAttempt(BaseModel):
    """One attempt of a step that raised: which, how long it ran, and the error.

    ``series`` counts the step's attempt series: the first call of the run makes series 1;
    re-running a run that failed once its retries were spent starts the next series.
    """

    model_config = ConfigDict(defer_build=True)  # built on first use, not on import

    attempt: int
    series: int = 1
    error: str
    latency_s: float = 0.0


class StepResult(BaseModel):
    """The outcome of one step: its output, or the exception it raised as ``feedback``.

    ``attempts`` counts every attempt of the step in this run, across series;
    ``failed_attempts`` keeps each failed one (its error and duration), in order.
    """

    model_config = ConfigDict(defer_build=True)  # built on first use, not on import

    name: str
    output: Any = None
    success: bool = True
    attempts: int = 1
    latency_s: float = 0.0
    feedback: str | None = None
    failed_attempts: list[FailedAttempt] = Field(default_factory=list)


# For type checkers: what a run's context and output are (``Flujo[Ctx, Out].run`` gives a
# ``PipelineResult[Ctx, Out]``). At run time the class is never parametrized: stored results
# are one class whatever the pipeline.
ResultContextT = TypeVar("ResultContextT", default=Any)
ResultOutputT = TypeVar("ResultOutputT", default=Any)


class PipelineResult(BaseModel, Generic[ResultContextT, ResultOutputT]):
    """The outcome of a run. ``output`` is the last step's output.

    ``status`` is the run's status as saved: ``completed`` (``success``), ``failed``,
    ``paused`` (``pause`` says for what: message, input model name and JSON Schema) or
    ``cancelled``.
    """

    model_config = ConfigDict(defer_build=True)  # built on first use, not on import

    run_id: str
    step_history: list[StepResult] = Field(default_factory=list)
    if TYPE_CHECKING:  # (the stored schema stays that of Any: one class for every pipeline)
        final_pipeline_context: ResultContextT | None = None
    else:
        final_pipeline_context: Any = None
    success: bool = False
    if TYPE_CHECKING:
        output: ResultOutputT | None = None
    else:
        output: Any = None

    if not TYPE_CHECKING:
        def __class_getitem__(cls, params: Any) -> Any:
            # Parametrized for type checkers only: at run time PipelineResult[Ctx, int] is
            # PipelineResult itself (pydantic would make a subclass of its own, stored under
            # another name and version).
            return cls
    status: RunStatus = "completed"
    pause: PauseRequest | None = None


def _step_result_v1_to_v2(value: Any) -> Any:
    """flujo 0.9 kept no failed attempts: a step result of then had none recorded."""
    if isinstance(value, dict):
        return {**value, "failed_attempts": []}
    return value


def _pipeline_result_v1_to_v2(value: Any) -> Any:
    """flujo 0.9 had no status: a run then either completed or failed, and never paused."""
    if isinstance(value, dict):
        return {**value, "status": "completed" if value.get("success") is True else "failed",
                "pause": None}
    return value


# Stable names: stored runs must not depend on where these classes live in the package.
register_type(PipelineContext, name="flujo.PipelineContext")
register_type(StepResult, name="flujo.StepResult", version=2,
              migrations={1: _step_result_v1_to_v2})
register_type(FailedAttempt, name="flujo.FailedAttempt")
register_type(PipelineResult, name="flujo.PipelineResult", version=2,
              migrations={1: _pipeline_result_v1_to_v2})
