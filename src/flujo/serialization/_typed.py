"""The typed fast path for pydantic models: pydantic-core writes and reads whole models.

A model instance whose every value has *exactly* the type its schema declares (no subclass,
no bool in an int field, no ZoneInfo datetime, no NaN, no int beyond 64 bits, ...) and that
is nothing but its fields (every field set, no extras, private values or other attributes)
can be written as the model's own JSON by pydantic-core; one that leaves defaulted fields
unset, as rows that name them (``rows@2``, ``_rows``). pydantic itself does not check
that: it writes a ``str`` subclass, a bool in an ``int`` field or a subclass instance in a
model field without complaint, and they come back as something else. So each eligible class
gets a *guard* (``_guard``): Python code generated from the class's core schema that checks
all of it in one pass. Values that fail the guard take the generic path.

Eligible classes use only these core-schema nodes: str, int, float, bool, decimal, uuid,
date, datetime, enum (str/int values), literal (str/int/bool/None values), any (holding
exactly JSON), list, dict with str keys, nullable, default, nested eligible models,
definitions; validators, constraints and aliases are allowed (they change
how pydantic validates, not what it writes); serializers, computed or excluded fields, extra
fields and config that changes what pydantic writes are not.

Reading never runs the class's validator: ``TypedReader`` reads by the class's structure
(``_structure``), then builds each instance as the generic path does and rebuilds
pydantic's fixed-offset ``TzInfo`` as ``datetime.timezone``, by closures composed from that
structure.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Callable
from datetime import datetime, timezone, tzinfo
from functools import partial
from typing import Any, Final, TypeGuard
from zoneinfo import ZoneInfo

from orjson import Fragment
from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic_core import PydanticSerializationError, PydanticUndefined, SchemaValidator

from ..exceptions import DeserializationError, SerializationError, caused
from ._codec import _PLAIN_DEPTH
from ._core_schema import SchemaWalker
from ._guard import UNSET, Ineligible, Uncompilable, build_guards, build_row_reader
from ._objects import slot_setter
from ._paths import key_segment, note_path
from ._rows import (
    Shape,
    check_rows,
    refuse_unknown,
    row_serializer,
    row_to_dict,
    rows_to_dicts,
    shape_of,
    unknown_fields,
    unknown_keys,
)
from ._structure import DATETIME, MODEL_CLASS, structure_schema

__all__ = ["TypedModel", "TypedReader", "core_schema_of", "fill_private_defaults",
           "typed_model"]

# pydantic's TzInfo -> the datetime.timezone of its offset. TzInfo compares equal to that
# timezone but does not hash equal, so the TzInfo itself is the key (equal TzInfos, one entry
# per offset).
_ZONES: Final[dict[tzinfo, timezone]] = {}
# Rows are written, and read back through pydantic-core's dicts, this many models at a time:
# the row tuples and dicts of a long list never all exist at once, and each chunk's are still
# in the CPU cache when pydantic-core reads them (see _rows).
_ROWS_CHUNK: Final = 512


def _zone_for(tz: tzinfo) -> timezone:
    offset = tz.utcoffset(None)
    assert offset is not None
    zone = timezone(offset)  # timedelta(0) gives the timezone.utc singleton
    if len(_ZONES) < 4096:  # more offsets than exist in minutes; never reached by real data
        _ZONES[tz] = zone
    return zone


_combine = datetime.combine


def _rebuild_zone(value: datetime | None) -> datetime | None:
    if value is None:  # a nullable field: one call instead of a wrapper and this
        return value
    tz = value.tzinfo
    if tz is None or type(tz) is timezone or type(tz) is ZoneInfo:  # (the last: rows@3)
        return value
    zone = _ZONES.get(tz)
    # The same wall time (fold included) with an equal offset: the same instant. combine()
    # costs a third of astimezone() and a quarter of replace(tzinfo=).
    return _combine(value.date(), value.time(), zone if zone is not None else _zone_for(tz))


Fixer = Callable[[Any], Any]


class _Builder(SchemaWalker):
    """Composes closures that turn what pydantic-core reads with a structure schema
    (``_structure``) into what the generic form gives:

    - each model's ``(fields, extras, fields_set)`` into the instance, made as unpickling
      makes it (``object.__new__`` and the instance state; no ``__init__``, no hook), its
      private attributes set to their defaults as the generic path does;
    - pydantic's fixed-offset ``TzInfo`` into ``datetime.timezone``.

    Built from closures, not generated code: this runs while decoding, and decoding compiles
    nothing. ``None`` means the value needs nothing.
    """

    def __init__(self) -> None:
        super().__init__()
        self.models: dict[type, list[Fixer | None]] = {}

    def value(self, node: dict[str, Any]) -> Fixer | None:
        node = self.resolve(node)
        kind = node.get("type")
        if (node.get("metadata") or {}).get(DATETIME):
            return _rebuild_zone
        if kind in ("nullable", "default"):
            inner = self.value(node["schema"])
            if inner is None or inner is _rebuild_zone:  # which takes None itself
                return inner
            return lambda v: v if v is None else inner(v)
        if kind == "list":
            item = self.value(node.get("items_schema", {}))
            if item is None:
                return None
            return lambda v: [item(x) for x in v]
        if kind == "dict":
            entry = self.value(node.get("values_schema", {}))
            if entry is None:
                return None
            return lambda v: {k: entry(x) for k, x in v.items()}
        if kind == "model-fields":
            return self.model(node)
        if kind == "any":  # pydantic-core hands back the stored lists and dicts themselves
            return _fresh_json
        return None

    def model(self, node: dict[str, Any]) -> Fixer:
        cls: type[BaseModel] = node["metadata"][MODEL_CLASS]
        known = self.models.get(cls)
        if known is not None:  # a recursive model: its builder, once it is made
            def build_later(read: Any) -> Any:
                build = known[0]
                assert build is not None
                return build(read)

            return build_later
        cell: list[Fixer | None] = [None]
        self.models[cls] = cell
        fields = [(name, self.value(field["schema"])) for name, field in node["fields"].items()]
        fixers = [(name, fix) for name, fix in fields if fix is not None]
        private = _private_defaults(cls)
        allows_extra = node.get("extra_behavior") == "allow"
        new = object.__new__
        set_dict = slot_setter(cls, "__dict__")
        set_fields_set = slot_setter(cls, "__pydantic_fields_set__")
        set_extra = slot_setter(cls, "__pydantic_extra__")
        set_private = slot_setter(cls, "__pydantic_private__")

        def build_model(read: Any) -> Any:
            state, extra, fields_set = read
            for name, fix in fixers:
                # only stored values: a field the class gained since holds today's default,
                # already what the class makes (a model instance, not what is read)
                if name in fields_set:
                    state[name] = fix(state[name])
            unset = state.pop(UNSET, None)  # the structure gives every model one (_structure)
            if unset is not None or UNSET in fields_set:
                fields_set = _unset_applied(cls, state, fields_set, unset)
            obj = new(cls)
            set_dict(obj, state)
            set_fields_set(obj, fields_set)
            set_extra(obj, extra if allows_extra else None)
            set_private(obj, private() if private is not None else None)
            return obj

        cell[0] = build_model
        return build_model

    def build(self, node: dict[str, Any]) -> Fixer:
        root = self.resolve(node)
        assert root.get("type") == "model-fields"
        return self.model(root)


# An Any value is written at most 32 levels deep (_codec.plain_json); deeper stored data is
# damaged, and is refused rather than copied without end.
_FRESH_DEPTH: Final = 64


def _fresh_json(value: Any, depth: int = 0) -> Any:
    """A copy of the lists and dicts of an ``Any`` value read from the typed form, as the
    generic form builds them: a decoded object never shares them with the stored data (or
    with another decode of it)."""
    t = type(value)
    if t is not list and t is not dict:
        return value
    if depth >= _FRESH_DEPTH:
        raise DeserializationError(f"an Any value is nested deeper than {_FRESH_DEPTH} "
                                   "levels, which the typed form never writes")
    if t is list:
        return [_fresh_json(item, depth + 1) for item in value]
    return {key: _fresh_json(item, depth + 1) for key, item in value.items()}


def _unset_applied(cls: type, state: dict[str, Any], fields_set: set[str],
                   unset: list[str] | None) -> set[str]:
    """``fields_set`` without the stored model's unset fields (``rows@2``)."""
    fields_set.discard(UNSET)
    for name in unset or ():
        if name not in state:
            raise DeserializationError(
                f"{cls.__qualname__}: the stored {UNSET} names {name!r}, which is not one of "
                "the model's fields")
        fields_set.discard(name)
    return fields_set


def fill_private_defaults(private: dict[str, Any], attributes: dict[str, Any]) -> dict[str, Any]:
    """``private`` with the default of each private attribute (``attributes``, the class's
    ``__private_attributes__``) it lacks, as pydantic sets them when it makes an instance."""
    for name, attribute in attributes.items():
        if name not in private:
            default = attribute.get_default()
            if default is not PydanticUndefined:
                private[name] = default
    return private


def _private_defaults(cls: type[BaseModel]) -> Callable[[], dict[str, Any]] | None:
    """What the generic path gives a model's private attributes when none were stored."""
    attributes = dict(cls.__private_attributes__)
    if not attributes:
        return None

    def defaults() -> dict[str, Any]:
        return fill_private_defaults({}, attributes)

    return defaults


def core_schema_of(cls: type[BaseModel]) -> dict[str, Any]:
    """The class's core schema, built now if pydantic deferred it (``defer_build``)."""
    if not cls.__pydantic_complete__:
        try:
            cls.model_rebuild()
        except Exception as exc:  # PydanticUndefinedAnnotation, a forward reference...
            raise caused(DeserializationError(
                f"{cls.__qualname__}: pydantic cannot build the class's schema: {exc}"), exc)
    return cls.__pydantic_core_schema__  # type: ignore[return-value]


class TypedReader:
    """Reads the typed form of one model class, by its structure (``_structure``): none of
    the class's validators, constraints or hooks run, whatever the class looks like now."""

    def __init__(self, cls: type[BaseModel], name: str) -> None:
        self.name = name
        schema = core_schema_of(cls)
        try:
            structure = structure_schema(schema)
            self._validate = SchemaValidator(structure).validate_python
            self._validate_list = SchemaValidator(
                structure_schema(schema, many=True)).validate_python
        except Exception as exc:  # a class pydantic-core cannot describe by its structure
            raise caused(DeserializationError(
                f"{name}: stored in the typed form, which this class can no longer be read "
                f"into ({exc}); bump its version and register a migration"), exc)
        self._build = _Builder().build(structure)
        shape = shape_of(schema, cyclic=True)
        assert shape is not None
        self.shape = shape

    def _error(self, exc: ValidationError, offset: int = 0) -> DeserializationError:
        """The first of pydantic's errors, at its place in the data (``$.c[3].balance``)."""
        first = exc.errors(include_url=False)[0]
        loc = list(first["loc"])
        if offset and loc and type(loc[0]) is int:
            loc[0] += offset
        error = DeserializationError(
            f"{self.name}: the typed form does not fit the class: {first['msg']}")
        for part in reversed(loc):  # innermost first, as the containers note theirs
            note_path(error, f"[{part}]" if type(part) is int else key_segment(part), None)
        return caused(error, exc)

    def read(self, data: Any) -> BaseModel:
        # A stored field the class no longer has is refused, never dropped (pydantic
        # ignores it): faster than pydantic's extra="forbid", which costs a quarter of a
        # model's validation.
        refuse_unknown(unknown_keys(data, self.shape), self.name)
        try:
            read = self._validate(data)
        except ValidationError as exc:
            raise self._error(exc)
        obj: BaseModel = self._build(read)
        return obj

    def read_list(self, items: list[Any]) -> list[BaseModel]:
        for item in items:
            refuse_unknown(unknown_keys(item, self.shape), self.name)
        return self._read_list(items, 0)

    def _read_list(self, items: list[Any], offset: int) -> list[BaseModel]:
        try:
            read: list[Any] = self._validate_list(items)
        except ValidationError as exc:
            raise self._error(exc, offset)
        build = self._build
        return [build(model) for model in read]

    def read_row(self, row: Any, stored: Shape) -> BaseModel:
        """The model of the one-row form (``[fields, row]``)."""
        refuse_unknown(unknown_fields(stored, self.shape), self.name)
        try:
            read = self._validate(row_to_dict(row, stored))
        except ValidationError as exc:
            raise self._error(exc)
        obj: BaseModel = self._build(read)
        return obj

    def read_rows(self, rows: Any, stored: Shape) -> list[BaseModel]:
        """The models ``rows`` (with the stored fields ``stored``) stand for, read chunk by
        chunk."""
        refuse_unknown(unknown_fields(stored, self.shape), self.name)
        rows = check_rows(rows)
        objs: list[BaseModel] = []
        for start in range(0, len(rows), _ROWS_CHUNK):
            chunk = rows_to_dicts(rows, stored, start, start + _ROWS_CHUNK)
            objs += self._read_list(chunk, start)  # positions in the whole list
        return objs


# JSON text from pydantic-core (``Encoder.fragments``) is written only where the document
# around it and its own nesting stay this shallow: orjson refuses to write deeper data (255
# levels), and no nesting orjson would refuse may pass inside JSON text it does not look
# into. An encoder level is at most 3 of JSON (a dict with other keys: its tagged dict, its
# list of pairs, a pair).
_TEXT_DEPTH: Final = 240
_LEAF_KINDS: Final = frozenset({"str", "int", "float", "bool", "decimal", "uuid", "date",
                                "datetime", "enum", "literal", "none"})


class _JSONDepth(SchemaWalker):
    """How deeply a model's typed JSON (its own JSON, or its row) nests arrays and objects;
    None when there is no bound: a model that contains itself, or a node not known here.

    With ``root``, a class that contains itself: the depth of its JSON with every model of
    ``root`` inside counted as 0 deep, and (``steps``) how deep in it each of those starts.
    A value whose models of ``root`` nest ``L`` levels (its levelled guard's count) is then at
    most ``depth + (L - 1) * max(steps)`` deep."""

    def __init__(self, root: type | None = None) -> None:
        super().__init__()
        self.open: set[Any] = set()
        self.root = root
        self.steps: list[int] = []

    def of(self, node: dict[str, Any], above: int = 0) -> int | None:
        """The depth of ``node``'s JSON, which starts ``above`` levels into the root's."""
        node = self.resolve(node)
        kind = node.get("type")
        if kind in _LEAF_KINDS:
            return 0
        if kind in ("nullable", "default"):
            return self.of(node["schema"], above)
        if kind == "any":  # exactly JSON, at most this deep (_codec.plain_json)
            return _PLAIN_DEPTH + 1
        if kind in ("list", "dict"):
            inner = self.of(node.get("items_schema" if kind == "list" else "values_schema",
                                     {"type": "any"}), above + 1)
            return None if inner is None else inner + 1
        if kind != "model":
            return None
        cls = node["cls"]
        if cls in self.open:
            if cls is not self.root:
                return None
            self.steps.append(above)  # a model of the root inside it: the next level
            return 0
        self.open.add(cls)
        deepest = 0
        for field in self.resolve(node["schema"])["fields"].values():
            depth = self.of(field["schema"], above + 2)
            if depth is None:
                return None
            deepest = max(deepest, depth)
        self.open.discard(cls)
        return deepest + 2  # the model's object or row, and the names of its unset fields


def _levels_depth(cls: type[BaseModel], core_schema: dict[str, Any]) -> tuple[int, int] | None:
    """For a class that contains itself and nothing else that does: the depth of its JSON
    with its own models inside counted as 0 deep, and the most levels of JSON from one of its
    models to one inside it (``_JSONDepth``); None for any other class."""
    walker = _JSONDepth(cls)
    depth = walker.of(core_schema)
    if depth is None or not walker.steps:
        return None
    return depth, max(walker.steps)


class TypedModel:
    """The typed path of one eligible model class: its guards and pydantic's serializers."""

    def __init__(self, cls: type[BaseModel], guard: Any, list_guard: Any) -> None:
        self.cls = cls
        self.guard = guard
        self.list_guard = list_guard
        self.to_python = cls.__pydantic_serializer__.to_python
        self.to_json = cls.__pydantic_serializer__.to_json
        core_schema: dict[str, Any] = cls.__pydantic_core_schema__  # type: ignore[assignment]
        self.shape: Shape | None = shape_of(core_schema)
        # What only lists need is built when the first list is written: a class's first
        # model then costs one guard's compilation, not three serializers and two guards.
        self._list_serializer: Any = None
        # Rows: the row reader collects the field values (checking them as the list guard
        # does), pydantic-core writes them. Only for classes that have rows.
        self._row_writer: tuple[Any, Any] | None = None
        # The general rows (rows@2 and rows@3: unset fields noted, datetimes of any zone),
        # for lists the rows above cannot hold; built when first needed.
        self.general_shape: Shape | None = shape_of(core_schema, unset=True)
        self._general_writer: tuple[Any, Any] | None = None
        self.json_depth: int | None = _JSONDepth().of(core_schema)
        # A tree's depth is its value's: from the levels its guard counted (_levels_depth).
        self.levels_depth = None if self.json_depth is not None else _levels_depth(
            cls, core_schema)

    def as_text(self, depth: int) -> bool:
        """Whether the typed JSON of a value at encoder level ``depth`` (of this class, or a
        list of it) may be written as JSON text (``_TEXT_DEPTH``)."""
        nested = self.json_depth
        return nested is not None and 3 * depth + nested + 4 <= _TEXT_DEPTH

    def text_room(self, depth: int) -> int:
        """How deeply the typed JSON of a model at encoder level ``depth`` may nest to be
        written as JSON text (``_TEXT_DEPTH``); ``as_text`` is ``json_depth <= text_room``."""
        return _TEXT_DEPTH - 3 * depth - 4

    # Methods, not properties returning the callables: compiled, a property called at once
    # would not be.
    def list_serializer(self) -> Any:
        """pydantic-core's serializer of ``list[cls]`` (built on first use)."""
        serializer = self._list_serializer
        if serializer is None:
            adapter: Any = TypeAdapter(list[self.cls])  # type: ignore[name-defined]
            serializer = self._list_serializer = adapter.serializer
        return serializer

    def _rows(self) -> tuple[Any, Any]:
        """The row reader and the rows' serializer (for a class with a ``shape``)."""
        writer = self._row_writer
        if writer is None:
            core_schema: dict[str, Any] = self.cls.__pydantic_core_schema__  # type: ignore[assignment]
            writer = self._row_writer = (build_row_reader(self.cls), row_serializer(core_schema))
        return writer

    def _general_rows(self) -> tuple[Any, Any]:
        """The general row reader and the rows' serializer (``rows@3``)."""
        writer = self._general_writer
        if writer is None:
            core_schema: dict[str, Any] = self.cls.__pydantic_core_schema__  # type: ignore[assignment]
            writer = self._general_writer = (build_row_reader(self.cls, general=True),
                                             row_serializer(core_schema, general=True))
        return writer

    def dump(self, obj: BaseModel, keep: Callable[[Any], Any], room: int = -1) -> Any | None:
        """The model's JSON form, or None when a value is not exactly of its declared type.

        ``keep`` is called with the model and every model, list and dict inside it (the
        objects whose identity the encoder keeps, ``Encoder.seen``). When its JSON nests at
        most ``room`` levels (``text_room``; -1: never), the JSON itself, as an
        ``orjson.Fragment`` (``Encoder.fragments``)."""
        try:
            levels = self.guard(obj, keep)
            if not levels:
                return None
            nested = self.json_depth
            tree = self.levels_depth
            if tree is not None and type(levels) is int:  # a levelled guard's count
                nested = tree[0] + (levels - 1) * tree[1]
            # The guard has proven every type exact; pydantic's own checks would only repeat it
            # (and "error" mode costs 40 % more). A mismatch would still warn, never pass silently.
            if nested is not None and nested <= room:
                return Fragment(self.to_json(obj))
            return self.to_python(obj, mode="json")
        except (RecursionError, PydanticSerializationError, ValueError):
            # a cycle or a very deep chain (pydantic-core's own limit raises ValueError):
            # the generic path reports it properly
            return None

    def dump_list(self, items: list[Any], keep: Callable[[Any], Any],
                  text: bool = False) -> Any | None:
        try:
            if not self.list_guard(items, keep):
                return None
            serializer = self.list_serializer()
            if text:
                return Fragment(serializer.to_json(items))
            return serializer.to_python(items, mode="json")
        except (RecursionError, PydanticSerializationError, ValueError):
            return None

    def dump_general_rows(self, items: list[Any], keep: Callable[[Any], Any],
                          text: bool = False) -> tuple[Any, bool] | None:
        """The general rows of ``items`` (fields may be unset, datetimes of any zone) and
        whether a datetime is written as its text (then they are ``rows@3``, else
        ``rows@2``), or None (see ``dump_rows``); only for classes with a
        ``general_shape``."""
        written = self._general_written(items, keep, text)
        if written is None or not text:
            return written
        return _array_of(written[0]), written[1]

    def dump_rows(self, items: list[Any], keep: Callable[[Any], Any],
                  text: bool = False) -> Any | None:
        """The rows of ``items`` (``_rows``), or None when the list must be written another
        way: a value not exactly of its declared type, or a class that contains itself.
        With ``text``, their JSON array, as ``orjson.Fragment`` parts (``_array_of``)."""
        if self.shape is None:
            return None
        try:
            read_rows, serializer = self._rows()
        except (Ineligible, Uncompilable):  # as for a class without rows: another form
            self.shape = None
            return None
        try:
            written = _written_rows(read_rows, serializer, items, keep, text)
            return _array_of(written) if text and written is not None else written
        except (RecursionError, PydanticSerializationError, ValueError):
            return None

    def dump_general_row(self, obj: BaseModel, keep: Callable[[Any], Any],
                         text: bool = False) -> tuple[Any, bool] | None:
        """The general row of one model (see ``dump_general_rows``)."""
        written = self._general_written([obj], keep, text)
        if written is None:
            return None
        rows, zoned = written
        return (Fragment(rows[0]) if text else rows[0]), zoned  # one model: one row

    def _general_written(self, items: list[Any], keep: Callable[[Any], Any],
                         text: bool) -> tuple[Any, bool] | None:
        """``_written_rows`` by the general row reader, and whether it wrote a datetime's
        text."""
        zoned: list[bool] = []
        try:
            read_rows, serializer = self._general_rows()
            written = _written_rows(partial(_reading_zoned, read_rows, zoned), serializer,
                                    items, keep, text)
        except _NOT_WRITTEN:
            return None
        return None if written is None else (written, bool(zoned))


# What makes the general rows give way to the generic form, which then writes the value or
# says why it cannot: a cycle or a chain too deep (RecursionError, pydantic-core's
# ValueError), a zone flujo cannot store (SerializationError, from the datetime's text), a
# row reader that could not be built (the last two).
_NOT_WRITTEN: Final = (RecursionError, PydanticSerializationError, ValueError,
                       SerializationError, Ineligible, Uncompilable)


def _reading_zoned(read_rows: Any, zoned: list[bool], items: list[Any],
                   keep: Callable[[Any], Any]) -> Any:
    return read_rows(items, keep, zoned)


def _written_rows(read_rows: Any, serializer: Any, items: list[Any],
                  keep: Callable[[Any], Any], text: bool) -> Any | None:
    """The rows of ``items``, ``_ROWS_CHUNK`` models at a time: read (and checked) by
    ``read_rows``, written by pydantic-core, as data or (``text``) as the JSON text of each
    chunk's rows, ``row,row,...`` without the brackets of its array."""
    written: list[Any] = []
    for start in range(0, len(items), _ROWS_CHUNK):
        rows: list[Any] | None = read_rows(items[start:start + _ROWS_CHUNK], keep)
        if rows is None:
            return None
        if text:
            written.append(serializer.to_json(rows)[1:-1])  # "[row,...]": never empty
        else:
            written += serializer.to_python(rows, mode="json")
    return written


def _array_of(parts: list[bytes]) -> list[Fragment]:
    """The JSON array of rows whose text is ``parts`` (each ``row,row,...``), as orjson
    writes it: ``[`` the parts joined by commas ``]``. Not joined into one text here: a
    large list's rows then exist once as text before orjson copies them into its output,
    not three times (the parts, their join, the brackets added)."""
    return [Fragment(part) for part in parts]


def _model_class(cls: type) -> TypeGuard[type[BaseModel]]:
    return isinstance(cls, type) and issubclass(cls, BaseModel) and cls is not BaseModel


_TYPED: weakref.WeakKeyDictionary[type, TypedModel | None] = weakref.WeakKeyDictionary()


def typed_model(cls: type) -> TypedModel | None:
    """The typed path of ``cls``, or None when it is not eligible (cached per class)."""
    if not _model_class(cls):
        return None
    try:
        return _TYPED[cls]
    except KeyError:
        pass
    typed: TypedModel | None = None
    # Ineligible or Uncompilable: written in the generic form (the typed form stays readable)
    with contextlib.suppress(Ineligible, Uncompilable):
        typed = TypedModel(cls, *build_guards(cls))
    _TYPED[cls] = typed
    return typed

