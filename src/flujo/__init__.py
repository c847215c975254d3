"""flujo: durable, resumable pipelines whose persisted state keeps its exact Python types.

``import flujo`` loads only this module and ``flujo.exceptions``; each other name below
is imported the first time it is used (PEP 562), as ``import pydantic`` does, so a process
that only needs the version or one submodule (the CLI's ``--version``, a worker importing
``flujo.state``) does not pay for the runner, the serializer and pydantic's models.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .exceptions import FlujoError, PauseForInput

if TYPE_CHECKING:
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

__version__ = "0.18.4"

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

# Where each lazily imported name lives.
_LAZY: dict[str, str] = {
    **dict.fromkeys(
        ("FailedAttempt", "Flujo", "Pipeline", "PipelineContext", "PipelineResult",
         "RunHandle", "Step", "StepResult"),
        "flujo.application"),
    **dict.fromkeys(
        ("TypeRegistry", "deserialize_from_json", "register_custom_deserializer",
         "register_custom_serializer", "safe_deserialize", "safe_serialize", "serializable",
         "serialize_to_bytes", "serialize_to_json"),
        "flujo.serialization"),
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'flujo' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups do not come back here
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
