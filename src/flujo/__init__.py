"""flujo: durable, resumable pipelines whose persisted state keeps its exact Python types."""

from .application import (
    FailedAttempt,
    Flujo,
    Pipeline,
    PipelineContext,
    PipelineResult,
    RunHandle,
    Step,
    StepResult,
)
from .exceptions import FlujoError, PauseForInput
from .serialization import (
    TypeRegistry,
    deserialize_from_json,
    register_custom_deserializer,
    register_custom_serializer,
    safe_deserialize,
    safe_serialize,
    serializable,
    serialize_to_bytes,
    serialize_to_json,
)

__version__ = "0.14.0"

__all__ = [
    "FailedAttempt",
    "Flujo",
    "FlujoError",
    "PauseForInput",
    "Pipeline",
    "PipelineContext",
    "PipelineResult",
    "RunHandle",
    "Step",
    "StepResult",
    "TypeRegistry",
    "__version__",
    "deserialize_from_json",
    "register_custom_deserializer",
    "register_custom_serializer",
    "safe_deserialize",
    "safe_serialize",
    "serializable",
    "serialize_to_bytes",
    "serialize_to_json",
]
