"""The runner: durable pipelines that resume by run id."""

from ._models import PipelineContext, PipelineResult, StepResult
from ._pipeline import Pipeline, Step
from ._runner import STATE_URI_ENV, Flujo, RunHandle, VersionMigration

__all__ = [
    "STATE_URI_ENV",
    "Flujo",
    "Pipeline",
    "PipelineContext",
    "PipelineResult",
    "RunHandle",
    "Step",
    "StepResult",
    "VersionMigration",
]
