"""Schema contracts: the JSON Schema (Draft 2020-12) of every encoded form.

Two phases, as in msgspec: ``collect`` walks the types reachable from the requested ones
(fields of models and dataclasses, arguments of ``list[...]``, ``X | None``, ...) into a flat
map of codecs, then ``render`` writes one ``$defs`` entry per tag plus the shared ``value``
and ``tagged`` definitions. Custom types contribute the schema they declared; models,
dataclasses, enums and NamedTuples get one derived from their annotations.
"""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote

from pydantic import BaseModel

from ..exceptions import FlujoError, InvalidArgumentError, UnserializableTypeError
from ._auto import auto_kind
from ._builtins import VALUE_REF
from ._codec import ANCHOR, INT_MAX, INT_MIN, REF_TAG, STATE, TAG, VALUE
from ._inspect import inspect_type
from ._plans import keeps_identity
from ._registry import TypeRegistry
from ._scalars import scalar_base
from ._types import STATEFUL_KINDS, JSONSchema, TypeCodec

DRAFT = "https://json-schema.org/draft/2020-12/schema"
FORMAT_ID = "https://flujo.dev/schemas/tagged-format.schema.json"
TAGGED_REF: JSONSchema = {"$ref": "#/$defs/tagged"}
_SCALARS: dict[Any, JSONSchema] = {
    str: {"type": "string"},
    bool: {"type": "boolean"},
    type(None): {"type": "null"},
}


def def_ref(key: str) -> str:
    """The ``$ref`` to ``$defs[key]``: a JSON Pointer (RFC 6901) written as a URI fragment.

    Tags are free-form names ('acme/money@1', 'app:Page[Item]@1', 'f:<locals>.M@1'): '~' and
    '/' are pointer syntax and '[', '<', '%', spaces, non-ASCII... are not allowed in a URI.
    """
    token = key.replace("~", "~0").replace("/", "~1")
    return "#/$defs/" + quote(token, safe="!$&'()*+,;=:@")


def _rebase_refs(node: Any, base: str) -> Any:
    """Point pydantic's ``#/$defs/X`` refs at the same definitions nested under ``base``."""
    if isinstance(node, list):
        return [_rebase_refs(item, base) for item in node]
    if not isinstance(node, dict):
        return node
    rebased = {key: _rebase_refs(value, base) for key, value in node.items()}
    target = rebased.get("$ref")
    if isinstance(target, str) and target.startswith("#/$defs/"):
        rebased["$ref"] = base + "/$defs/" + target[len("#/$defs/"):]
    return rebased


def ref(codec: TypeCodec) -> JSONSchema:
    return {"$ref": def_ref(codec.tag)}


class _Collector:
    def __init__(self, registry: TypeRegistry) -> None:
        self.registry = registry
        self.codecs: dict[str, TypeCodec] = {}
        self.bodies: dict[str, JSONSchema] = {}
        self.extra_defs: dict[str, JSONSchema] = {}

    def add(self, codec: TypeCodec) -> None:
        if codec.tag in self.codecs:
            return
        self.codecs[codec.tag] = codec
        self.bodies[codec.tag] = codec.schema if codec.schema is not None else {}
        if codec.schema is None and codec.py_type is not None:
            self.bodies[codec.tag] = self.derive(codec)  # after the entry: recursion stops
        for version in codec.also_writes:
            # the current version's value schema, by reference: its anchors are defined once
            older = dataclasses.replace(codec, version=version, also_writes=())
            self.codecs[older.tag] = older
            self.bodies[older.tag] = {"$ref": f"{def_ref(codec.tag)}/properties/{VALUE}"}

    def derive(self, codec: TypeCodec) -> JSONSchema:
        cls = codec.py_type
        assert cls is not None
        kind = auto_kind(cls)
        if kind == "enum":
            if issubclass(cls, enum.Flag):  # any combination of flags is a member too
                return self.annotation(int)
            values = [member.value for member in cls]  # type: ignore[attr-defined]
            if all(type(v) in (str, bool) or (type(v) is int and INT_MIN <= v <= INT_MAX)
                   for v in values):  # written as themselves (a big int would be tagged)
                return {"enum": values}
            return VALUE_REF
        if kind == "scalar":
            base = scalar_base(cls)
            assert base is not None
            return self.annotation(base)
        info = inspect_type(cls)
        if kind == "namedtuple":
            return {"type": "array",
                    "prefixItems": [self.annotation(f.annotation) for f in info.fields],
                    "items": False, "minItems": len(info.fields)}
        properties = {f.name: self._described(self.annotation(f.annotation), f.description)
                      for f in info.fields}
        generic = {"type": "object", "properties": properties,
                   "required": sorted(f.name for f in info.fields if f.required),
                   "additionalProperties": VALUE_REF if info.extra_allowed else False}
        if kind == "model":
            return {"anyOf": [generic, self.typed_form(codec)]}
        return generic

    def typed_form(self, codec: TypeCodec) -> JSONSchema:
        """The typed form of a model: ``[the model's own JSON]`` (pydantic's schema of it)."""
        key = f"json:{codec.tag}"
        try:
            document = codec.py_type.model_json_schema(  # type: ignore[union-attr]
                mode="serialization")
        except Exception:  # a model pydantic cannot describe (arbitrary types): stay loose
            document = {"type": "object"}
        self.extra_defs[key] = _rebase_refs(document, def_ref(key))
        self.tagged_builtin("rows")  # the one-row form's field list is rows' grammar
        return {"anyOf": [
            {"type": "array", "prefixItems": [{"$ref": def_ref(key)}], "items": False,
             "minItems": 1, "description": "typed form: the model's own JSON, written when "
                                           "every value has exactly its declared type"},
            {"type": "array", "prefixItems": [{"$ref": "#flujo-rows-fields"},
                                              {"type": "array"}],
             "items": False, "minItems": 2,
             "description": "typed form as one row (rows@2, rows@3): [fields, row], "
                            "written when every value has exactly its declared type and "
                            "some fields are unset or a datetime is written as its text"}]}

    @staticmethod
    def _described(schema: JSONSchema, description: str | None) -> JSONSchema:
        return {**schema, "description": description} if description else schema

    def annotation(self, hint: Any) -> JSONSchema:
        """The schema of the encoded form of a value annotated ``hint``."""
        if hint in _SCALARS:
            return _SCALARS[hint]
        if hint is int:
            return {"anyOf": [{"type": "integer"}, self.tagged_builtin("int")]}
        if hint is float:
            return {"anyOf": [{"type": "number"}, self.tagged_builtin("float")]}
        origin = typing.get_origin(hint)
        args = typing.get_args(hint)
        if origin is typing.Annotated:
            return self.annotation(args[0])
        if origin in (typing.Union, types.UnionType):
            return {"anyOf": [self.annotation(a) for a in args]}
        if origin is typing.Literal:
            return {"enum": [a.value if isinstance(a, enum.Enum) else a for a in args]}
        if origin is list:
            array = {"type": "array", "items": self.annotation(args[0]) if args else VALUE_REF}
            # a list reached twice: anchored where it first occurs, a reference elsewhere
            forms = [array, self.tagged_builtin("list"), self.tagged_builtin("ref")]
            if not args or _could_hold_model(args[0]):
                # two or more instances of one typed model class may be written as `rows`
                # (or `models`, as earlier releases did)
                forms += [self.tagged_builtin("models"), self.tagged_builtin("rows")]
            return {"anyOf": forms}
        if origin is dict and args and args[0] is str:
            return {"anyOf": [{"type": "object", "propertyNames": {"not": {"const": TAG}},
                               "additionalProperties": self.annotation(args[1])},
                              self.tagged_builtin("dict"), self.tagged_builtin("ref")]}
        cls = origin if isinstance(origin, type) else hint
        if isinstance(cls, type):
            codec = self.registry.codec_for_type(cls)
            if codec is not None and cls not in (list, dict):
                self.add(codec)
                for arg in args:
                    self.annotation(arg)  # collect element types for their $defs
                if codec.kind in ("model", "dataclass", "v1model") or (
                        isinstance(cls, type) and issubclass(cls, BaseModel)):
                    return {"anyOf": [ref(codec), TAGGED_REF],  # a reference is tagged too
                            "description": f"{codec.name} or a subclass under its own tag"}
                if keeps_identity(codec):
                    return {"anyOf": [ref(codec), self.tagged_builtin("ref")]}
                return ref(codec)
        return VALUE_REF

    def tagged_builtin(self, name: str) -> JSONSchema:
        """The tagged objects of a built-in type, of each version it writes."""
        codec = self.registry.codec_named(name)
        assert codec is not None
        self.add(codec)
        if not codec.also_writes:
            return ref(codec)
        return {"anyOf": [ref(codec), *({"$ref": def_ref(f"{codec.name}@{version}")}
                                        for version in codec.also_writes)]}


def _could_hold_model(hint: Any) -> bool:
    """Whether a value annotated ``hint`` may be a pydantic model instance."""
    if hint is Any or hint is object or isinstance(hint, typing.TypeVar):
        return True
    if isinstance(hint, type):
        return issubclass(hint, BaseModel)
    origin = typing.get_origin(hint)
    if origin is typing.Annotated:
        return _could_hold_model(typing.get_args(hint)[0])
    if origin in (typing.Union, types.UnionType):
        return any(_could_hold_model(arg) for arg in typing.get_args(hint))
    return False


_NAMES: JSONSchema = {"type": "array", "items": {"type": "string"}}


def state_schema(kind: str) -> JSONSchema:
    """The ``s`` of a model's or dataclass's tagged object (docs/format.md)."""
    properties: JSONSchema = {
        "set": {**_NAMES, "description": "model_fields_set, when it is not the stored names"},
        "missing": {**_NAMES, "description": "fields that had no value"},
        "attrs": {**VALUE_REF, "description": "instance attributes that are not fields"},
    }
    if kind == "scalar":
        return {"type": "object", "properties": {"attrs": properties["attrs"]},
                "required": ["attrs"], "additionalProperties": False,
                "description": "the instance attributes"}
    if kind in ("model", "v1model"):
        properties["private"] = {"anyOf": [{"type": "null"}, VALUE_REF],
                                 "description": "the private attributes' values"}
    return {"type": "object", "minProperties": 1, "properties": properties,
            "additionalProperties": False,
            "description": "the instance state beyond the field values"}


_ANCHOR: JSONSchema = {"type": "integer", "minimum": 1,
                       "description": "the anchor of an object the value holds more than "
                                      "once, where it first occurs: 1, 2, 3, ... in document "
                                      "order; ref@1 objects name it"}


def tagged_object_schema(codec: TypeCodec, body: JSONSchema) -> JSONSchema:
    properties: JSONSchema = {TAG: {"const": codec.tag}, VALUE: body}
    if codec.kind in STATEFUL_KINDS:
        properties[STATE] = state_schema(codec.kind)
    if codec.tag != REF_TAG:
        properties[ANCHOR] = _ANCHOR
    schema: JSONSchema = {
        "title": codec.name,
        "type": "object",
        "properties": properties,
        "required": [TAG, VALUE],
        "additionalProperties": False,
    }
    if codec.description:
        schema["description"] = codec.description
    return schema


def render(collector: _Collector) -> JSONSchema:
    defs: dict[str, JSONSchema] = {
        "value": {
            "description": "any encoded value: JSON-native data or a tagged object",
            "anyOf": [
                {"type": ["null", "boolean", "number", "string"]},
                {"type": "array", "items": VALUE_REF},
                {"type": "object", "not": {"required": [TAG]},
                 "additionalProperties": VALUE_REF},
                TAGGED_REF,
            ],
        },
        "tagged": {
            "description": "a tagged object: the stable type name '@' its version, the "
                           "encoded value, for models and dataclasses their state, and for "
                           "an object the value holds more than once its anchor; known "
                           "tags are checked against their definitions",
            "type": "object",
            "properties": {TAG: {"type": "string", "pattern": "^[^@$\\s][^@\\s]*@[1-9][0-9]*$"},
                           VALUE: True, STATE: {"type": "object"}, ANCHOR: _ANCHOR},
            "required": [TAG, VALUE],
            "additionalProperties": False,
            "allOf": [
                {"if": {"properties": {TAG: {"const": tag}}},
                 "then": {"$ref": def_ref(tag)}}
                for tag in sorted(collector.codecs)
            ],
        },
    }
    for tag in sorted(collector.codecs):
        defs[tag] = tagged_object_schema(collector.codecs[tag], collector.bodies[tag])
    for key in sorted(collector.extra_defs):
        defs[key] = collector.extra_defs[key]
    return {"$schema": DRAFT, "$id": FORMAT_ID, "title": "flujo tagged value format v1",
            "$ref": "#/$defs/value", "$defs": defs}


def _no_codec(cls: object) -> FlujoError:
    """The error for a schema asked of something that is not a class this registry encodes."""
    if not isinstance(cls, type):
        return InvalidArgumentError(f"a schema is described for a class, got {cls!r}")
    return UnserializableTypeError(
        cls, hint="this registry has no codec for it, so it has no schema either")


def tagged_format_schema(registry: TypeRegistry, types: Iterable[type] = ()) -> JSONSchema:
    """The JSON Schema of the complete tagged format for ``registry``.

    It covers the built-in and registered types, plus ``types`` (e.g. the application's
    models, which need no registration) and everything reachable from their fields.
    """
    collector = _Collector(registry)
    for codec in registry.codecs():
        collector.add(codec)
    for cls in types:
        found = registry.codec_for_type(cls) if isinstance(cls, type) else None
        if found is None:
            raise _no_codec(cls)
        collector.add(found)
    return render(collector)


def type_schema(registry: TypeRegistry, cls_or_codec: type | TypeCodec) -> JSONSchema:
    """The schema of one type's tagged object, with the definitions it refers to."""
    codec: TypeCodec | None = (
        cls_or_codec if isinstance(cls_or_codec, TypeCodec)
        else registry.codec_for_type(cls_or_codec) if isinstance(cls_or_codec, type) else None)
    if codec is None:
        raise _no_codec(cls_or_codec)
    collector = _Collector(registry)
    collector.add(codec)
    document = render(collector)
    document["$ref"] = def_ref(codec.tag)
    document["title"] = codec.name
    document.pop("$id")
    return document
