"""Reversible, schema-checked serialization of Python values to JSON data.

``safe_serialize`` turns a value into JSON-compatible data in which every non-JSON value is a
small tagged object ``{"$t": "name@version", "v": ...}``; ``safe_deserialize`` turns it back
into the same types. See docs/format.md for the format and docs/custom-types.md for
registering your own types.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from functools import partial
from typing import Any, Literal, TypeVar, overload

import orjson

from ..exceptions import (
    DeserializationError,
    InvalidArgumentError,
    PurePythonWarning,
    SerializationError,
    UnknownTypeWarning,
    UnportableTypeWarning,
)

# _build first: under FLUJO_PURE_PYTHON=1 it switches compiled modules to their sources.
from ._build import PURE_PYTHON_ENV, compiled_modules
from ._codec import (
    ANCHOR,
    STATE,
    TAG,
    VALUE,
    Encoder,
    run_decoder,
    run_encoder,
)
from ._collector import PAUSE_BYTES, collector_paused, set_collector_pause
from ._explain import TypedFormReport, explain_typed
from ._inspect import NO_DEFAULT, FieldInfo, TypeInfo, inspect_type
from ._memo import EncodingMemo
from ._names import TRUSTED_MODULES_ENV, pyproject_settings
from ._plain import CIRCULAR_PLACEHOLDER, MAX_EXPANDED_VALUES, check_expanded_size, to_plain
from ._registry import DEFAULT_MAX_DEPTH, TypeRegistry
from ._schema import FORMAT_ID, tagged_format_schema, type_schema
from ._secrets import mask_secrets
from ._text import lone_surrogate_error
from ._types import JSONSchema, Migration, TypeCodec
from ._undecoded import UndecodedValue, note_version

__all__ = [
    "ANCHOR",
    "CIRCULAR_PLACEHOLDER",
    "DEFAULT_MAX_DEPTH",
    "FORMAT_ID",
    "FORMAT_VERSION",
    "JSON_DUMPS_OPTIONS",
    "MAX_EXPANDED_VALUES",
    "NO_DEFAULT",
    "PAUSE_BYTES",
    "PURE_PYTHON_ENV",
    "STATE",
    "TAG",
    "TRUSTED_MODULES_ENV",
    "VALUE",
    "EncodingMemo",
    "FieldInfo",
    "JSONSchema",
    "Migration",
    "PurePythonWarning",
    "TypeCodec",
    "TypeInfo",
    "TypeRegistry",
    "TypedFormReport",
    "UndecodedValue",
    "UnknownTypeWarning",
    "UnportableTypeWarning",
    "check_expanded_size",
    "collector_paused",
    "compiled_modules",
    "default_registry",
    "deserialize_from_json",
    "encode_with_manifest",
    "explain_typed",
    "inspect_type",
    "lone_surrogate_error",
    "mask_secrets",
    "merge_manifests",
    "pyproject_settings",
    "register_custom_deserializer",
    "register_custom_serializer",
    "register_migration",
    "register_type",
    "safe_deserialize",
    "safe_serialize",
    "serializable",
    "serialize_to_bytes",
    "serialize_to_json",
    "set_collector_pause",
    "tagged_format_schema",
    "trust_modules",
    "type_schema",
]

FORMAT_VERSION = 1
"""Version of the tagged format itself (the ``$t``/``v`` layout), not of any one type."""

_GLOBAL = TypeRegistry()
T = TypeVar("T", bound=type)
_Value = TypeVar("_Value")


def default_registry() -> TypeRegistry:
    """The process-wide registry used when no ``registry=`` is given."""
    return _GLOBAL


def _encode(obj: Any, registry: TypeRegistry | None, validate: bool | None,
            default: Callable[[Any], Any] | None, manifest: dict[str, int] | None,
            memo: EncodingMemo | None = None, *, fragments: bool = False,
            finish: Callable[[Any], Any] | None = None) -> Any:
    reg = registry or _GLOBAL
    checked = reg.validate if validate is None else validate
    if default is None and manifest is None:
        return run_encoder(reg.shared_encoder(checked, fragments), obj, finish)
    encoder = Encoder(reg, validate=checked, default=default, max_depth=reg.max_depth,
                      manifest=manifest, fragments=fragments)
    if memo is None:
        return run_encoder(encoder, obj, finish)
    encoder.memo = memo
    try:
        return run_encoder(encoder, obj, finish)
    finally:
        memo.finish()


def safe_serialize(
    obj: Any,
    *,
    mode: Literal["tagged", "json"] = "tagged",
    registry: TypeRegistry | None = None,
    validate: bool | None = None,
    default_serializer: Callable[[Any], Any] | None = None,
) -> Any:
    """Turn ``obj`` into JSON-compatible data (dict/list/str/int/float/bool/None).

    ``mode="tagged"`` (default) is reversible with ``safe_deserialize``. ``mode="json"``
    is plain JSON for people and APIs (datetimes as ISO strings, models as field dicts) and
    is not reversible. ``validate`` overrides the registry's choice of checking custom
    serializers' output against their schemas. ``default_serializer`` is a last resort for
    types nothing else handles; its output is stored as plain data (not reversible).

    Raises UnserializableTypeError, SchemaValidationError, CircularReferenceError or
    NestingTooDeepError (all SerializationError), each naming the path to the value.
    """
    if mode == "tagged":
        if default_serializer is None:  # the common call, without _encode's frame
            reg = registry or _GLOBAL
            return run_encoder(reg.shared_encoder(reg.validate if validate is None else validate),
                               obj)
        return _encode(obj, registry, validate, default_serializer, None)
    if mode == "json":
        return to_plain(obj, registry or _GLOBAL, default_serializer)
    raise InvalidArgumentError(f"mode must be 'tagged' or 'json', got {mode!r}")


def encode_with_manifest(
    obj: Any, *, registry: TypeRegistry | None = None, validate: bool | None = None,
    memo: EncodingMemo | None = None,
) -> tuple[Any, dict[str, int]]:
    """Tagged data plus ``{type name: version}`` for every tag used inside it.

    ``memo``: for a value encoded again and again as it changes in place (a run's state,
    save after save), ``EncodingMemo(last)``, where ``last`` is the memo of the previous
    encoding of that value: the records of lists it wrote then (see ``EncodingMemo``)
    that are unchanged are not checked and written again. The data is the same as without.
    """
    manifest: dict[str, int] = {}
    data = _encode(obj, registry, validate, None, manifest, memo)
    return data, dict(sorted(manifest.items()))


def merge_manifests(*manifests: Mapping[str, int]) -> dict[str, int]:
    """The manifest of a document made of parts with these manifests: each type name at the
    newest version any part holds (a list of models may be ``rows@2`` in one part and
    ``rows@3`` in another), sorted by name."""
    merged: dict[str, int] = {}
    for manifest in manifests:
        if not merged:  # (the common case: one part, or the first)
            merged.update(manifest)
            continue
        for name, version in manifest.items():
            note_version(merged, name, version)
    return dict(sorted(merged.items()))


@overload
def safe_deserialize(data: Any, expected: type[_Value], /, *,
                     registry: TypeRegistry | None = None, strict: bool = True,
                     copy: bool = True) -> _Value: ...


@overload
def safe_deserialize(data: Any, expected: None = None, /, *,
                     registry: TypeRegistry | None = None, strict: bool = True,
                     copy: bool = True) -> Any: ...


def safe_deserialize(data: Any, expected: type[Any] | None = None, /, *,
                     registry: TypeRegistry | None = None, strict: bool = True,
                     copy: bool = True) -> Any:
    """Rebuild the value that ``safe_serialize`` encoded, with its exact types.

    ``safe_deserialize(data, Order)`` also checks that the value is an ``Order`` (an
    instance of it, subclasses included), raising DeserializationError where it is not, and
    is typed as returning an ``Order``.

    Tags written by older versions of a type are upgraded by its registered migrations.
    With ``strict=False`` a tag naming no known type is kept as it is (with an
    ``UnknownTypeWarning``) instead of raising UnknownTypeError. Nothing is imported but
    modules under the registry's trusted prefixes (``trust_modules``).

    ``copy=False`` is for data parsed for this call alone (as ``deserialize_from_json``
    does): the result is then built from ``data``'s own lists and dicts, which are changed
    in place, instead of from copies of them; faster, and half the garbage to collect.
    """
    if expected is Any:  # (a class since Python 3.11, but not one isinstance takes)
        expected = None
    if expected is not None and not isinstance(expected, type):
        raise InvalidArgumentError(
            f"safe_deserialize(data, expected): expected must be a class, got {expected!r}")
    reg = registry or _GLOBAL
    value = run_decoder(reg.shared_decoder(strict), data, not copy)
    if expected is not None and not isinstance(value, expected):
        raise DeserializationError(
            f"expected {_qualified(expected)}, the data holds {_qualified(type(value))}",
            path="$")
    return value


def _qualified(cls: type) -> str:
    module = cls.__module__
    return cls.__qualname__ if module == "builtins" else f"{module}.{cls.__qualname__}"


# The json.dumps keywords serialize_to_json takes (earlier flujo passed its keywords on to
# json.dumps): the ones that format the text. The data is JSON-native by then, so default=,
# cls= and skipkeys= would have nothing to do, and are refused with the others.
JSON_DUMPS_OPTIONS = frozenset({"indent", "sort_keys", "ensure_ascii", "separators"})


def serialize_to_bytes(obj: Any, *, mode: Literal["tagged", "json"] = "tagged",
                       registry: TypeRegistry | None = None, validate: bool | None = None,
                       default_serializer: Callable[[Any], Any] | None = None) -> bytes:
    """``safe_serialize`` written as compact UTF-8 JSON: the bytes of
    ``serialize_to_json``'s text, without decoding them to a ``str``.

    The parts written in the typed form (a model's fields, the rows of a list of models)
    go from pydantic-core to the output as JSON text, without being built as Python data
    first; the bytes are the same as ``orjson.dumps(safe_serialize(obj))``.
    """
    if mode == "tagged":
        # the bytes are written inside the run, so that a large value's data is gone
        # before a paused garbage collector resumes (see _collector)
        written: bytes = _encode(obj, registry, validate, default_serializer, None,
                                 fragments=True, finish=partial(_json_bytes, obj))
        return written
    data = safe_serialize(obj, mode=mode, registry=registry, validate=validate,
                          default_serializer=default_serializer)
    return _json_bytes(obj, data)


def _json_bytes(obj: Any, data: Any) -> bytes:
    """orjson's text of ``data`` (encoded from ``obj``), its refusals as SerializationError."""
    try:
        return orjson.dumps(data)
    except (orjson.JSONEncodeError, TypeError) as exc:
        if "surrogates not allowed" in str(exc):
            raise lone_surrogate_error(obj, data, "cannot write JSON") from exc
        raise SerializationError(f"cannot write JSON: {exc}") from exc


def serialize_to_json(obj: Any, *, mode: Literal["tagged", "json"] = "tagged",
                      registry: TypeRegistry | None = None, validate: bool | None = None,
                      default_serializer: Callable[[Any], Any] | None = None,
                      **dumps_options: Any) -> str:
    """``safe_serialize`` then orjson, as a ``str`` (``serialize_to_bytes`` decoded).

    ``indent``, ``sort_keys``, ``ensure_ascii`` and ``separators`` format the text as
    ``json.dumps`` does (which then writes it instead of orjson). ``sort_keys=True`` is for
    ``mode="json"``: the order of a dict's keys is part of a tagged value, and a reference
    must follow the object it names.
    """
    unknown = sorted(set(dumps_options) - JSON_DUMPS_OPTIONS)
    if unknown:
        raise InvalidArgumentError(
            f"serialize_to_json() got unexpected keyword arguments {unknown}; of json.dumps's "
            f"it takes {sorted(JSON_DUMPS_OPTIONS)}")
    if mode == "tagged" and dumps_options.get("sort_keys"):
        raise SerializationError(
            "sort_keys=True would reorder the dicts of a tagged value (their order is part of "
            "it, and a reference must follow the object it names); use mode=\"json\" for "
            "sorted plain JSON")
    if not dumps_options:
        return serialize_to_bytes(obj, mode=mode, registry=registry, validate=validate,
                                  default_serializer=default_serializer).decode("utf-8")
    data = safe_serialize(obj, mode=mode, registry=registry, validate=validate,
                          default_serializer=default_serializer)
    _json_bytes(obj, data)  # checks the data as the text without options is checked
    # orjson has checked the data (JSON-native, no lone surrogates); json.dumps formats it
    return json.dumps(data, allow_nan=False, **dumps_options)


def deserialize_from_json(text: str | bytes, *, registry: TypeRegistry | None = None,
                          strict: bool = True) -> Any:
    """Parse JSON text written by ``serialize_to_json`` (or the bytes of
    ``serialize_to_bytes``) and decode it: ``safe_deserialize`` of the parsed data,
    which this call builds its result from instead of copying it."""
    # (exact types: a subclass's own __len__ is not called before orjson judges the input)
    kind: type = type(text)
    found: Any = text
    size = (len(found) if kind is bytes or kind is str or kind is bytearray
            else found.nbytes if kind is memoryview else 0)
    with collector_paused(size):  # a large document: see _collector
        try:
            data = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            raise SerializationError(f"not valid JSON: {exc}") from exc
        return safe_deserialize(data, registry=registry, strict=strict, copy=False)


def register_type(cls: type, **options: Any) -> TypeCodec:
    """Register ``cls`` in the global registry; see ``TypeRegistry.register_type``."""
    return _GLOBAL.register_type(cls, **options)


def register_custom_serializer(
    cls: type[_Value], serializer: Callable[[_Value], Any], *,
    deserializer: Callable[[Any], _Value] | None = None, schema: JSONSchema | None = None,
    name: str | None = None, version: int = 1, migrations: Mapping[int, Migration] | None = None,
    registry: TypeRegistry | None = None,
) -> TypeCodec:
    """Store ``cls`` as ``serializer(obj)`` (any supported value), read it with ``deserializer``.

    ``schema`` is the JSON Schema (Draft 2020-12) of the encoded output, checked on every
    write; ``name`` is the stable name written into the data (default ``module:QualName``);
    ``version`` with ``migrations={n: fn}`` upgrades data written by older versions.
    """
    return (registry or _GLOBAL).register_custom_serializer(
        cls, serializer, deserializer=deserializer, schema=schema, name=name, version=version,
        migrations=migrations)


def register_custom_deserializer(cls: type[_Value], deserializer: Callable[[Any], _Value], *,
                                 registry: TypeRegistry | None = None) -> None:
    """Attach the function that rebuilds ``cls`` from what its serializer produced."""
    (registry or _GLOBAL).register_custom_deserializer(cls, deserializer)


def register_migration(type_or_name: type | str, from_version: int, migration: Migration, *,
                       registry: TypeRegistry | None = None) -> None:
    """Register the step that upgrades a type's encoded form from ``from_version`` by one."""
    (registry or _GLOBAL).register_migration(type_or_name, from_version, migration)


def trust_modules(*prefixes: str, registry: TypeRegistry | None = None) -> None:
    """Let stored names under these module prefixes import their module, or have a generic
    model's parametrization created, when this process has not defined the class yet."""
    (registry or _GLOBAL).trust_modules(*prefixes)


def serializable(
    *, name: str | None = None, version: int = 1,
    migrations: Mapping[int, Migration] | None = None, aliases: Iterable[str] = (),
    serializer: Callable[[Any], Any] | None = None,
    deserializer: Callable[[Any], Any] | None = None, schema: JSONSchema | None = None,
    registry: TypeRegistry | None = None,
) -> Callable[[T], T]:
    """Class decorator form of ``register_type``."""
    def decorate(cls: T) -> T:
        (registry or _GLOBAL).register_type(
            cls, name=name, version=version, migrations=migrations, aliases=aliases,
            serializer=serializer, deserializer=deserializer, schema=schema)
        return cls

    return decorate
