"""The plans the registry builds: what runs for one type (encoding) or one tag (decoding).

A plan is the closure that the encoder or decoder calls for each value; building it once per
type or tag, with everything it needs bound, keeps the per-value work to the conversion.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from ..exceptions import (
    DeserializationError,
    FlujoError,
    MigrationError,
    MissingMigrationError,
    SerializationError,
    UnserializableTypeError,
    caused,
)
from ._codec import (
    MODELS_NAME,
    MODELS_TAG,
    MODELS_VERSION,
    ROWS_NAME,
    ROWS_TAG,
    ROWS_VERSION,
    STATE,
    TAG,
    UNZONED_ROWS_VERSION,
    VALUE,
    ZONED_ROWS_TAG,
    BatchPlan,
    DecodePlan,
    Decoder,
    EncodePlan,
    Encoder,
    WithState,
)
from ._rows import Shape, check_rows, header_of, parse_header, row_to_dict, rows_to_dicts
from ._typed import TypedModel
from ._types import Migration, TypeCodec, changes_nothing
from ._undecoded import note_version

# Values whose identity is kept (docs/format.md, "Shared references and cycles"): mutable
# containers, models, dataclasses and registered types. Strings, numbers, dates, tuples,
# frozensets, NamedTuples and enum members are values: equal is as good as identical.
_IDENTITY_KINDS = frozenset({"custom", "model", "dataclass", "v1model"})
_MUTABLE_BUILTINS = frozenset({"set", "deque", "defaultdict", "ordereddict", "counter",
                               "bytearray", "array", "numpy.ndarray"})


def keeps_identity(codec: TypeCodec) -> bool:
    return codec.kind in _IDENTITY_KINDS or (
        codec.kind == "builtin" and codec.name in _MUTABLE_BUILTINS)


def tagging_plan(codec: TypeCodec) -> EncodePlan:
    tag, name, version = codec.tag, codec.name, codec.version
    encode_value = codec.encode_value
    assert encode_value is not None
    convert = codec.leaf
    if convert is not None:
        assert not keeps_identity(codec)  # a leaf plan is called without Encoder.encode
        def leaf_plan(enc: Encoder, obj: Any, depth: int) -> dict[str, Any]:
            manifest = enc.manifest
            if manifest is not None:
                manifest[name] = version
            return {TAG: tag, VALUE: convert(obj)}

        return leaf_plan

    encode_object = codec.encode_object
    if encode_object is not None:
        keep = keeps_identity(codec)  # not subclasses of str, int, ...: values

        def object_plan(enc: Encoder, obj: Any, depth: int) -> dict[str, Any]:
            if keep:
                enc.note(obj)  # models and dataclasses
            manifest = enc.manifest
            if manifest is not None:
                manifest[name] = version
            value, state = encode_object(enc, obj, depth)
            if state is None:
                return {TAG: tag, VALUE: value}
            return {TAG: tag, VALUE: value, STATE: state}

        return object_plan

    if keeps_identity(codec):
        def identity_plan(enc: Encoder, obj: Any, depth: int) -> dict[str, Any]:
            enc.note(obj)
            manifest = enc.manifest
            if manifest is not None:
                manifest[name] = version
            return {TAG: tag, VALUE: encode_value(enc, obj, depth)}

        return identity_plan

    def plan(enc: Encoder, obj: Any, depth: int) -> dict[str, Any]:
        manifest = enc.manifest
        if manifest is not None:
            manifest[name] = version
        return {TAG: tag, VALUE: encode_value(enc, obj, depth)}

    return plan


def typed_plan(codec: TypeCodec, typed: TypedModel, *, rows: bool) -> EncodePlan:
    """The plan of a typed-eligible model class: its typed form when the guard passes, else
    its generic form, written here rather than by calling the generic plan (``tagging_plan``'s
    ``object_plan``): a model nested in a model nested in ... costs one Python frame less a
    level, so max_depth stays reachable in the pure-Python form too. With ``rows``, a model
    that leaves fields unset, or holds a datetime pydantic-core cannot write as it is, takes
    the one-row form (``rows@2``, ``rows@3``)."""
    tag, name, version = codec.tag, codec.name, codec.version
    encode_object = codec.encode_object
    assert encode_object is not None and keeps_identity(codec)
    # the one-row form is a form of rows: not with TypeRegistry(model_rows=False)
    general_shape = typed.general_shape if rows else None
    general_header = header_of(general_shape) if general_shape is not None else None

    def plan(enc: Encoder, obj: Any, depth: int) -> dict[str, Any]:
        seen = enc.seen
        start = len(seen)
        # A method call, not a bound method: direct when compiled. The guard notes obj and
        # the models, lists and dicts inside it in seen; the typed form holds no reference,
        # so none of those may be shared (obj itself may: its tagged object takes an anchor).
        room = typed.text_room(depth) if enc.fragments else -1
        data = typed.dump(obj, enc.walking(obj), room)
        manifest = enc.manifest
        if manifest is not None:
            manifest[name] = version
        if data is not None and enc.unshared(start + 1):
            return {TAG: tag, VALUE: [data]}
        del seen[start:]
        if general_shape is not None:  # fields left unset (SDK objects), zoned datetimes?
            written = typed.dump_general_row(obj, enc.walking(obj),
                                             enc.fragments and typed.as_text(depth))
            if written is not None and enc.unshared(start + 1):
                row, zoned = written
                if manifest is not None:
                    note_version(manifest, ROWS_NAME,
                                 ROWS_VERSION if zoned else UNZONED_ROWS_VERSION)
                return {TAG: tag, VALUE: [general_header, row]}
            del seen[start:]
        # some value is not exactly of its declared type, or something is shared: the
        # generic form, as object_plan writes it
        enc.note(obj)
        value, state = encode_object(enc, obj, depth)
        if state is None:
            return {TAG: tag, VALUE: value}
        return {TAG: tag, VALUE: value, STATE: state}

    return plan


def batch_plan(codec: TypeCodec, typed: TypedModel, *, rows: bool) -> BatchPlan:
    tag, name, version = codec.tag, codec.name, codec.version
    shape = typed.shape if rows else None  # None also when the class contains itself
    if shape is not None:  # rows@3 only where a datetime is written as its text
        form_name, form_version, form_tag = ROWS_NAME, UNZONED_ROWS_VERSION, ROWS_TAG
    else:
        form_name, form_version, form_tag = MODELS_NAME, MODELS_VERSION, MODELS_TAG

    general_shape = typed.general_shape if shape is not None else None
    general_header = header_of(general_shape) if general_shape is not None else None

    def plan(enc: Encoder, items: list[Any], depth: int) -> dict[str, Any] | None:
        body: list[Any] | None = None
        zoned = False
        seen = enc.seen
        start = len(seen)  # the list itself is noted already: see typed_plan
        text = enc.fragments and typed.as_text(depth)
        if shape is not None:
            memo = enc.memo
            values = (typed.dump_rows(items, enc.walking(), text) if memo is None
                      else memo.dump_rows(typed, items, enc.walking()))
            if values is not None:
                body = [tag, header_of(shape), values]
            elif general_shape is not None:  # fields left unset (SDK objects), zoned datetimes?
                del seen[start:]
                written = typed.dump_general_rows(items, enc.walking(), text)
                if written is not None:
                    body = [tag, general_header, written[0]]
                    zoned = written[1]
        else:
            data = typed.dump_list(items, enc.walking(), text)
            if data is not None:
                body = [tag, data]
        if body is None or not enc.unshared(start):
            # some value is not exactly of its declared type, or something is shared
            del seen[start:]
            return None
        manifest = enc.manifest
        if manifest is not None:
            manifest[name] = version
            note_version(manifest, form_name, ROWS_VERSION if zoned else form_version)
        return {TAG: ZONED_ROWS_TAG if zoned else form_tag, VALUE: body}

    return plan


def fallback_plan(default: Callable[[Any], Any]) -> EncodePlan:
    def plan(enc: Encoder, obj: Any, depth: int) -> Any:
        try:
            replacement = default(obj)
        except FlujoError:
            raise
        except Exception as exc:
            raise caused(SerializationError(f"default_serializer raised {exc!r}"), exc)
        if type(replacement) is type(obj):
            raise UnserializableTypeError(
                type(obj), hint="default_serializer returned the same type again"
            )
        return enc.encode(replacement, depth + 1)

    return plan


def migrating_plan(codec: TypeCodec, stored: int, decode_value: DecodePlan) -> DecodePlan:
    steps: list[tuple[int, Migration]] = []
    for version in range(stored, codec.version):
        step = codec.migrations.get(version)
        if step is None:
            raise MissingMigrationError(
                f"cannot read {codec.name!r} v{stored}: no migration from v{version} to "
                f"v{version + 1} is registered (register_migration({codec.name!r}, {version}, fn))"
            )
        steps.append((version, step))
    if all(changes_nothing(step) for _, step in steps):
        return decode_value  # the stored version reads as the current one, as it is
    one_row = codec.kind == "model"

    def plan(dec: Decoder, v: Any, depth: int) -> Any:
        state: Any = None
        if type(v) is WithState:  # migrations upgrade v; the object's state passes through
            state = v.state
            v = v.value
        if one_row and type(v) is list and len(v) == 2:
            # the one-row typed form: migrations take the one-model form, [{field: value}]
            # (with "$unset" when fields are unset), whichever typed form was stored
            v = [row_to_dict(v[1], parse_header(v[0], depth + 1, dec.limit, dec.max_depth))]
        value = copy.deepcopy(v)  # migrations may mutate; the caller's data may not
        for version, step in steps:
            try:
                value = step(value)
            except FlujoError:
                raise
            except Exception as exc:
                raise caused(MigrationError(
                    f"migration of {codec.name!r} from v{version} to v{version + 1} raised {exc!r}"
                ), exc)
        if state is not None:
            value = WithState(value, state)
        # What a migration returns may hold objects the parse did not make (a module's
        # constant, one sub-object used twice): it is decoded by copying, never in place.
        owned = dec.owned
        dec.owned = False
        try:
            return decode_value(dec, value, depth)
        finally:
            dec.owned = owned

    return plan


def read_models(dec: Decoder, tag: Any, items: Any, depth: int) -> list[Any]:
    """Read ``models@1``: ``[tag, [json, ...]]`` means ``[{"$t": tag, "v": [json]}, ...]``;
    at the tag's current version, pydantic reads the whole list in one call."""
    if type(tag) is not str or type(items) is not list:
        raise DeserializationError("models: expected [tag, [model JSON, ...]]")
    plan = dec.plans.get(tag) or dec.registry._decode_plan_for(tag, not dec.strict)
    codec: TypeCodec | None = dec.registry.current_codec(tag)
    if codec is not None and codec.read_typed_list is not None:
        return codec.read_typed_list(items)
    return [plan(dec, [item], depth) for item in items]


def read_model_rows(dec: Decoder, tag: str, stored: Shape, rows: Any,
                    depth: int) -> list[Any]:
    """Read rows (``_rows``): the rows stand for a ``models@1`` list."""
    plan = dec.plans.get(tag) or dec.registry._decode_plan_for(tag, not dec.strict)
    codec: TypeCodec | None = dec.registry.current_codec(tag)
    if codec is not None and codec.read_typed_rows is not None:
        return codec.read_typed_rows(rows, stored)
    # an older version, whose migrations take each model in the one-model typed form
    return [plan(dec, [item], depth) for item in rows_to_dicts(check_rows(rows), stored)]
