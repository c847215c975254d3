"""Rows: the compact typed form of a list of one model class (``rows@1``).

``{"$t": "rows@1", "v": [tag, fields, [row, ...]]}`` holds the same models as the
``models@1`` batch ``[tag, [json, ...]]``, with the field names taken out of every model's
JSON and written once, in ``fields``; each model is the array of its field values, in that
order. ``fields`` also describes the models nested inside a field, which are rows as well::

    fields := [field, ...]
    field  := "name"            a value with no model inside
            | {"name": node}    a value holding models
    node   := fields            one model, as a row
            | {"list": node}    an array of nodes
            | {"dict": node}    an object whose values are nodes

``null`` stands for itself wherever a node is expected. ``rows@2`` (flujo 0.12) adds one
name: a field list may end with ``"$unset"`` (``UNSET``, which no Python field can be
named), and each row of that node then ends with ``null`` or the sorted names of its model's
fields that are not in ``model_fields_set``; ``rows@1`` is ``rows@2`` without it.
``rows@3`` (flujo 0.14) is ``rows@2`` whose datetime values may also be flujo's datetime
text (``_datetimes``: ``…-05:00[America/New_York]``), for the datetimes pydantic-core cannot
write without losing something (an IANA zone, ``fold=1``); a list is written as ``rows@3``
only when it holds such a datetime, so that other lists stay readable by flujo 0.12 and 0.13.

Why rows: a model becomes an array instead of an object, so the JSON loses its repeated
keys (about a third of it) and the Python form built before ``orjson.dumps`` holds lists
instead of dicts (on the benchmark's large payload, 16 MB instead of 25 MB).

Writing takes each model's field values in declaration order, as tuples (the row reader
that ``_guard`` generates, which also checks every type), and has pydantic-core write those
tuples with the fields' own schemas (``row_serializer``): exactly the values of the model's
own JSON, without a dict per model. Reading turns rows back into the model dicts by the
*stored* field names, so a class that has since gained a defaulted field or reordered its
fields reads them; a stored field the class no longer has is refused (``unknown_fields``,
once per list). The names are only ever dict keys, never looked up as code.

The same shapes check the typed forms stored as dicts (one model, ``models@1``) for fields
the class no longer has (``unknown_keys``): pydantic would drop them silently.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any, Final

from pydantic_core import SchemaSerializer

from ..exceptions import DeserializationError
from ._codec import _too_deep
from ._core_schema import SchemaWalker
from ._guard import UNSET, has_defaults
from ._paths import key_segment, note_path
from ._secrets import preview

__all__ = ["UNSET", "Shape", "check_rows", "header_of", "parse_header",
           "refuse_unknown", "row_serializer", "row_to_dict", "rows_to_dicts", "shape_of",
           "unknown_fields", "unknown_keys"]

ROW: Final = 0
LIST: Final = 1
DICT: Final = 2
_NODE_KEYS: Final[dict[str, int]] = {"list": LIST, "dict": DICT}
_ANY: Final[dict[str, Any]] = {"type": "any"}


class Shape:
    """One node of ``fields``: a row (``names`` and the positions of ``nested`` nodes), or
    a list or dict of the node ``inner``. The shape of a class that contains itself is a
    cycle (``shape_of(..., cyclic=True)``): fine for checking data, never written. ``names``
    may end with ``UNSET``: the rows then end with the names of the model's unset fields."""

    def __init__(self, kind: int, names: list[str], nested: list[tuple[int, Shape]],
                 inner: Shape | None) -> None:
        self.kind = kind
        self.names = names
        # UNSET is never a field the class lacks: it is what the typed reader applies
        self.known = frozenset(names) | {UNSET}
        # Every field is required: a dict with as many keys as there are fields either holds
        # exactly them or fails validation (a required field is missing), so the key check
        # can skip comparing names (it costs more than reading the model's fields).
        self.all_required = False
        self.nested = nested
        self.inner = inner


class Recursive(Exception):
    """The model contains itself: its rows would need an endless ``fields``."""


class _ShapeBuilder(SchemaWalker):
    """Reads the shape of an eligible model class from its core schema."""

    def __init__(self, *, cyclic: bool, unset: bool = False) -> None:
        super().__init__()
        self.cyclic = cyclic
        self.unset = unset
        self.building: dict[Any, Shape] = {}  # the classes being read, outermost first

    def node(self, schema: dict[str, Any]) -> Shape | None:
        """The node of a value typed ``schema``; None when no model is inside."""
        schema = self.resolve(schema)
        kind = schema.get("type")
        if kind in ("nullable", "default"):
            return self.node(schema["schema"])
        if kind in ("list", "dict"):
            inner = self.node(schema.get("items_schema" if kind == "list" else "values_schema",
                                         {}))
            if inner is None:
                return None
            return Shape(LIST if kind == "list" else DICT, [], [], inner)
        if kind == "model":
            return self.row(schema)
        return None

    def row(self, schema: dict[str, Any]) -> Shape:
        cls = schema["cls"]
        outer = self.building.get(cls)
        if outer is not None:
            if not self.cyclic:
                raise Recursive(cls.__qualname__)
            return outer
        fields_node = self.resolve(schema["schema"])
        fields: dict[str, Any] = fields_node["fields"]
        names = list(fields)
        defaulted = has_defaults(fields_node, self.resolve)
        if self.unset and defaulted:
            names.append(UNSET)
        shape = Shape(ROW, names, [], None)
        shape.all_required = not defaulted
        self.building[cls] = shape
        for position, name in enumerate(fields):
            inner = self.node(fields[name]["schema"])
            if inner is not None:
                shape.nested.append((position, inner))
        del self.building[cls]
        return shape


def shape_of(core_schema: dict[str, Any], *, cyclic: bool = False,
             unset: bool = False) -> Shape | None:
    """The row shape of an eligible model class. A model that contains itself has none
    (None), unless ``cyclic``: then its shape refers to itself. With ``unset``, the rows of
    classes with defaulted fields end with ``UNSET`` (``rows@2``)."""
    builder = _ShapeBuilder(cyclic=cyclic, unset=unset)
    try:
        return builder.row(builder.resolve(core_schema))
    except Recursive:
        return None


def header_of(shape: Shape) -> list[Any]:
    """``fields`` for a row shape: what the writer stores."""
    fields: list[Any] = list(shape.names)
    for position, inner in shape.nested:
        fields[position] = {shape.names[position]: _node_json(inner)}
    return fields


def _node_json(shape: Shape) -> Any:
    if shape.kind == ROW:
        return header_of(shape)
    assert shape.inner is not None
    return {"list" if shape.kind == LIST else "dict": _node_json(shape.inner)}


def parse_header(data: Any, depth: int, limit: int, max_depth: int) -> Shape:
    """The row shape stored as ``fields``; refuses anything but the grammar above."""
    if depth > limit:
        raise _too_deep("data", depth, max_depth)
    if type(data) is not list:
        raise DeserializationError(f"rows: fields must be an array, got {preview(data)}")
    names: list[str] = []
    nested: list[tuple[int, Shape]] = []
    for field in data:
        if type(field) is str:
            names.append(field)
            continue
        if type(field) is not dict or len(field) != 1:
            raise DeserializationError(
                f"rows: a field is a name or {{name: node}}, got {preview(field)}")
        name, node = next(iter(field.items()))
        if type(name) is not str:  # data that never went through JSON
            raise DeserializationError(f"rows: a field name must be a string, got {preview(name)}")
        nested.append((len(names), _parse_node(node, depth + 1, limit, max_depth)))
        names.append(name)
    if len(set(names)) != len(names):
        raise DeserializationError(f"rows: fields name a field twice: {preview(names, 120)}")
    if UNSET in names and (names[-1] != UNSET or (nested and nested[-1][0] == len(names) - 1)):
        raise DeserializationError(
            f"rows: {UNSET!r} is the last field, a plain name, got {preview(data, 120)}")
    return Shape(ROW, names, nested, None)


def _parse_node(data: Any, depth: int, limit: int, max_depth: int) -> Shape:
    if type(data) is list:
        return parse_header(data, depth, limit, max_depth)
    if depth > limit:
        raise _too_deep("data", depth, max_depth)
    if type(data) is dict and len(data) == 1:
        key, inner = next(iter(data.items()))
        kind = _NODE_KEYS.get(key)
        if kind is not None:
            return Shape(kind, [], [], _parse_node(inner, depth + 1, limit, max_depth))
    raise DeserializationError(
        f"rows: a node is fields, {{\"list\": node}} or {{\"dict\": node}}, got {preview(data)}")


def unknown_fields(stored: Shape, current: Shape, prefix: str = "") -> list[str]:
    """The stored field names (dotted into nested models) that the class no longer has.

    Every row holds exactly the stored names, so checking them once stands for pydantic's
    ``extra="forbid"`` on every model. Where the stored and current nodes differ in kind,
    the validator judges the values themselves.
    """
    known = current.known  # holds UNSET
    unknown = [prefix + name for name in stored.names if name not in known]
    current_nested = {current.names[position]: node for position, node in current.nested}
    for position, node in stored.nested:
        name = stored.names[position]
        inner: Shape | None = node
        now = current_nested.get(name)
        while inner is not None and now is not None and inner.kind == now.kind:
            if inner.kind == ROW:
                unknown += unknown_fields(inner, now, f"{prefix}{name}.")
                break
            inner, now = inner.inner, now.inner
    return unknown


def refuse_unknown(unknown: Collection[str], owner: str) -> None:
    """Raise for stored fields that no longer exist on the class ``owner`` names."""
    if unknown:
        raise DeserializationError(
            f"{owner}: stored field(s) {sorted(unknown)} no longer exist on the class; bump "
            "the type's version and register a migration that moves or drops them")


def unknown_keys(data: Any, shape: Shape) -> list[str]:
    """The keys of the model dict ``data``, and of the model dicts nested in it, that are not
    fields of their class (dotted paths), for the typed forms stored as dicts. A walk of
    the data along ``shape``; values of other types are left to the validator.

    Past ``_RECURSION`` levels the check goes on with ``_collect_unknown``, which keeps its
    own stack instead of recursing: stored data may nest far deeper than the C stack of
    compiled code allows (pydantic refuses it afterwards, at 255 models deep, with an error
    instead of a crash).
    """
    if not _has_unknown(data, shape, 0):  # the common case, without building paths
        return []
    return _collect_unknown(data, shape)


_RECURSION: Final = 100


def _has_unknown(value: Any, shape: Shape, depth: int) -> bool:
    if depth > _RECURSION:
        return bool(_collect_unknown(value, shape))
    kind = shape.kind
    if kind == ROW:
        if type(value) is not dict:
            return False
        fields: dict[Any, Any] = value
        if not (shape.all_required and len(fields) == len(shape.names)) and \
                not fields.keys() <= shape.known:
            return True
        for position, inner in shape.nested:
            field = fields.get(shape.names[position])
            if field is not None and _has_unknown(field, inner, depth + 1):
                return True
        return False
    inner_shape = shape.inner
    assert inner_shape is not None
    for item in _node_items(value, kind):
        if item is not None and _has_unknown(item, inner_shape, depth + 1):
            return True
    return False


def _collect_unknown(data: Any, shape: Shape) -> list[str]:
    """The paths ``unknown_keys`` returns, by a walk with a stack of its own."""
    unknown: list[str] = []
    pending: list[tuple[Any, Shape, str]] = [(data, shape, "")]
    while pending:
        value, node, prefix = pending.pop()
        if node.kind != ROW:
            inner = node.inner
            assert inner is not None
            pending += [(item, inner, prefix) for item in _node_items(value, node.kind)
                        if item is not None]
            continue
        if type(value) is not dict:
            continue
        for key in value:
            path = f"{prefix}{key}"
            if key not in node.known and path not in unknown:
                unknown.append(path)
        for position, nested in node.nested:
            name = node.names[position]
            field = value.get(name)
            if field is not None:
                pending.append((field, nested, f"{prefix}{name}."))
    return unknown


def _node_items(value: Any, kind: int) -> Any:
    """The items of a list node's list or a dict node's dict; nothing for other values."""
    if kind == LIST and type(value) is list:
        return value
    if kind == DICT and type(value) is dict:
        return value.values()
    return ()


# -- writing: the row reader's tuples -> rows ---------------------------------------------
class _RowSchema(SchemaWalker):
    """The core schema that writes a model's row tuple (``_guard``'s row reader) as its
    row: each model a ``tuple`` of its fields' schemas, in field order, inside the same
    lists, dicts and nullables. The row reader has proven every value exactly of its
    declared type, and an eligible class changes nothing pydantic writes for those types
    (no serializers, no ``ser_json_*`` config), so each leaf is written as its model's own
    JSON writes it (a differential test compares the two)."""

    # The general rows: a class with defaulted fields has the unset names last, and a
    # datetime may be its text (pydantic's "any" writes a datetime as "datetime" does).
    general = False

    def node(self, schema: dict[str, Any]) -> dict[str, Any]:
        schema = self.resolve(schema)
        kind = schema["type"]
        if kind == "default":
            return self.node(schema["schema"])
        if kind == "nullable":
            return {"type": "nullable", "schema": self.node(schema["schema"])}
        if kind == "list":
            return {"type": "list",
                    "items_schema": self.node(schema.get("items_schema", _ANY))}
        if kind == "dict":
            return {"type": "dict", "keys_schema": {"type": "str"},
                    "values_schema": self.node(schema.get("values_schema", _ANY))}
        if kind == "model":
            fields_node = self.resolve(schema["schema"])
            items = [self.node(field["schema"]) for field in fields_node["fields"].values()]
            if self.general and has_defaults(fields_node, self.resolve):
                items.append({"type": "nullable", "schema": {
                    "type": "list", "items_schema": {"type": "str"}}})
            return {"type": "tuple", "items_schema": items}
        if kind == "enum":
            return {key: schema[key] for key in ("type", "cls", "members", "sub_type")
                    if key in schema}
        if kind == "literal":  # one of its values, which the row reader has checked
            return dict(_ANY)
        if kind == "datetime" and self.general:
            return dict(_ANY)
        return {"type": kind}  # str, int, bool, float, decimal, uuid, date, datetime, any


def row_serializer(core_schema: dict[str, Any], *, general: bool = False) -> SchemaSerializer:
    """The serializer of a list of row tuples of the eligible, non-recursive model class
    whose core schema this is (``to_python(rows, mode="json")`` gives ``rows@1``'s rows;
    with ``general``, ``rows@3``'s, from the general row reader)."""
    writer = _RowSchema()
    writer.general = general
    return SchemaSerializer({"type": "list", "items_schema": writer.node(core_schema)})


# -- reading: rows -> the dicts pydantic validates -----------------------------------------
def check_rows(rows: Any) -> list[Any]:
    if type(rows) is not list:
        raise DeserializationError(f"rows: expected an array of rows, got {preview(rows)}")
    return rows


def rows_to_dicts(rows: list[Any], shape: Shape, start: int = 0,
                  stop: int | None = None) -> list[dict[str, Any]]:
    """The model dicts that ``rows[start:stop]`` stand for; errors name the row (its index
    in ``rows``) and the field."""
    end = len(rows) if stop is None else min(stop, len(rows))
    out: list[dict[str, Any]] = []
    for index in range(start, end):  # an index, not a slice: no copy of the chunk
        try:
            out.append(_row_dict(rows[index], shape))
        except DeserializationError as exc:
            note_path(exc, f"[{index}]", None)
            raise
    return out


def row_to_dict(row: Any, shape: Shape) -> dict[str, Any]:
    """The model dict that one row stands for (the one-row typed form)."""
    return _row_dict(row, shape)


def _row_dict(row: Any, shape: Shape) -> dict[str, Any]:
    names = shape.names
    if type(row) is not list or len(row) != len(names):
        raise DeserializationError(
            f"rows: expected a row of {len(names)} values ({', '.join(names)[:120]}), "
            f"got {preview(row)}")
    values: list[Any] = row  # typed, so that compiled code indexes the list directly
    data: dict[str, Any] = {}
    for position in range(len(names)):
        data[names[position]] = values[position]
    for position, inner in shape.nested:
        value = values[position]
        if value is not None:
            name = names[position]
            try:
                data[name] = _from_rows(value, inner)
            except DeserializationError as exc:
                note_path(exc, key_segment(name), None)
                raise
    return data


def _from_rows(value: Any, shape: Shape) -> Any:
    kind = shape.kind
    if kind == ROW:
        return _row_dict(value, shape)
    inner = shape.inner
    assert inner is not None
    if kind == LIST:
        if type(value) is not list:
            raise DeserializationError(f"rows: expected an array, got {preview(value)}")
        return [_item_from_rows(item, inner, index) for index, item in enumerate(value)]
    if type(value) is not dict:
        raise DeserializationError(f"rows: expected an object, got {preview(value)}")
    return {key: _item_from_rows(entry, inner, key) for key, entry in value.items()}


def _item_from_rows(value: Any, shape: Shape, where: int | str) -> Any:
    """An item of a list (``where``: its index) or dict (its key) of nodes."""
    if value is None:
        return None
    try:
        return _from_rows(value, shape)
    except DeserializationError as exc:
        note_path(exc, f"[{where}]" if type(where) is int else key_segment(where), None)
        raise
