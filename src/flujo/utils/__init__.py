"""The serialization helpers under the names the FSD-07 spec and earlier flujo releases use."""

from ..serialization import (
    TypeRegistry,
    default_registry,
    deserialize_from_json,
    register_custom_deserializer,
    register_custom_serializer,
    register_migration,
    register_type,
    safe_deserialize,
    safe_serialize,
    serializable,
    serialize_to_json,
    trust_modules,
)

__all__ = [
    "TypeRegistry",
    "default_registry",
    "deserialize_from_json",
    "register_custom_deserializer",
    "register_custom_serializer",
    "register_migration",
    "register_type",
    "safe_deserialize",
    "safe_serialize",
    "serializable",
    "serialize_to_json",
    "trust_modules",
]
