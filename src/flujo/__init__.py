"""flujo: durable, resumable pipelines whose persisted state keeps its exact Python types."""

from .exceptions import FlujoError
from .serialization import (
    TypeRegistry,
    deserialize_from_json,
    register_custom_deserializer,
    register_custom_serializer,
    safe_deserialize,
    safe_serialize,
    serializable,
    serialize_to_json,
)

__version__ = "0.7.0"

__all__ = [
    "FlujoError",
    "TypeRegistry",
    "__version__",
    "deserialize_from_json",
    "register_custom_deserializer",
    "register_custom_serializer",
    "safe_deserialize",
    "safe_serialize",
    "serializable",
    "serialize_to_json",
]
