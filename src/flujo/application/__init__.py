"""The runner: durable pipelines that resume by run id."""

from ._models import FailedAttempt, PipelineContext, PipelineResult, StepResult
from ._pipeline import Backoff, Pipeline, Step
from ._runner import STATE_URI_ENV, Flujo, RunHandle, VersionMigration

__all__ = [
    "STATE_URI_ENV",
    "Backoff",
    "FailedAttempt",
    "Flujo",
    "Pipeline",
    "PipelineContext",
    "PipelineResult",
    "RunHandle",
    "Step",
    "StepResult",
    "VersionMigration",
]
