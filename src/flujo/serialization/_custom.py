"""The codec of a class registered with its own serializer (``register_custom_serializer``).

Its plans run once per object, so they are kept apart from the registry's bookkeeping: this
module is compiled with mypyc (see setup.py), the registry is not.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from ..exceptions import DeserializationError, FlujoError, SerializationError, caused
from ._codec import TAG, is_finite, is_plain_int
from ._paths import note_path
from ._types import JSONSchema, Migration, TypeCodec
from ._validation import CompiledSchema

if TYPE_CHECKING:
    from ._codec import Decoder, Encoder


def custom_codec(
    cls: type, *, serializer: Callable[[Any], Any],
    deserializer: Callable[[Any], Any] | None, schema: JSONSchema | None, name: str,
    version: int, migrations: Mapping[int, Migration], validate: bool,
    description: str | None,
) -> TypeCodec:
    checker = CompiledSchema(schema) if schema is not None and validate else None
    is_valid = checker.fast_check if checker is not None else None
    label = cls.__qualname__

    def encode_value(enc: Encoder, obj: Any, depth: int) -> Any:
        try:
            raw = serializer(obj)
        except FlujoError:
            raise
        except Exception as exc:
            raise caused(SerializationError(
                f"the serializer registered for {label} ({name!r}) raised {exc!r}"
            ), exc)
        if type(raw) is type(obj):
            raise SerializationError(
                f"the serializer registered for {label} ({name!r}) returned a {label} "
                "again; it must return a JSON-compatible value"
            )
        # The usual output, a flat dict of JSON-native values, is checked here: two calls
        # fewer per object than Encoder.encode -> encode_dict (whose depth check this
        # keeps: what is written must be readable within max_depth).
        native = type(raw) is dict and TAG not in raw and depth < enc.limit
        if native:
            for key, item in raw.items():
                ti = type(item)
                if type(key) is not str or not (
                        ti is str or ti is bool or item is None
                        or (ti is int and is_plain_int(item))
                        or (ti is float and is_finite(item))):
                    native = False
                    break
        # A value with shared objects is written in three passes (_codec.Encoder): the first
        # has no references and checks the schema; the later ones check it only where the
        # serializer's output holds no reference (a schema describes it without them).
        marks = -1 if enc.shared is None else (
            -2 if enc.hits is not None else enc.anchors + enc.refs)
        if native:
            value = raw
        else:
            fragments = enc.fragments  # the schema check reads the output: data, no JSON text
            if fragments and is_valid is not None and enc.validate:
                enc.fragments = False
            try:
                value = enc.encode(raw, depth + 1)
            except SerializationError as exc:
                # Containers may call this plan directly (not through Encoder.encode):
                # note the object here, so a cycle through a serializer is reported as one.
                note_path(exc, None, obj)
                raise
            finally:
                enc.fragments = fragments
        if is_valid is not None and enc.validate and (
                marks == -1 or marks == enc.anchors + enc.refs) and not is_valid(value):
            assert checker is not None
            checker.raise_for(value, type_name=name)
        return value

    def decode_value(dec: Decoder, v: Any, depth: int) -> Any:
        value = dec.decode(v, depth)
        try:
            return deserializer(value)  # type: ignore[misc]
        except FlujoError:
            raise
        except Exception as exc:
            raise caused(DeserializationError(
                f"the deserializer registered for {label} ({name!r}) raised {exc!r}"
            ), exc)

    return TypeCodec(
        name, version, "custom", cls, encode_value,
        decode_value if deserializer is not None else None,
        schema if schema is not None else {}, validate=checker is not None,
        migrations=dict(migrations), description=description or "",
        declared_schema=schema is not None, serializer=serializer, deserializer=deserializer,
    )
