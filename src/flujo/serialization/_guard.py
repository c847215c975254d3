"""Guards of the typed form: per eligible model class, generated Python that checks every
value has *exactly* the type the class's core schema declares.

The same generator writes the *row reader* of a class (``build_row_reader``): the guard of
a list of it that also collects each model's field values as a tuple (its nested models as
tuples too), in the order of the class's fields. pydantic-core then writes those tuples as
the rows of ``rows@1`` (``_rows.row_serializer``) without building a dict per model.

pydantic itself writes a ``str`` subclass, a bool in an ``int`` field, a subclass instance in a
model field, a ZoneInfo datetime or NaN without complaint, and they come back as something
else; a value that fails its guard takes the generic path instead. The code is generated from
the class's core schema, by flujo, from flujo's own templates: never from stored data, and
never while decoding.
"""

from __future__ import annotations

import itertools
import linecache
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, Final
from uuid import UUID

from pydantic import BaseModel

from ._codec import (
    AWARE_DATETIME,
    BOOL,
    DATE,
    DATETIME,
    DECIMAL,
    FLOAT,
    INT,
    INT_MAX,
    INT_MIN,
    LIST_OF,
    NAIVE_DATETIME,
    NULLABLE,
    NULLABLE_LIST,
    STR,
    UUID_,
    _repeats,
    datetime_cell,
    exact_fields,
    is_unicode,
    plain_json,
    plain_offset,
)
from ._core_schema import SchemaWalker
from ._pickling import own_pickling_hook

__all__ = ["UNSET", "GuardWriter", "Ineligible", "Uncompilable", "build_guards",
           "build_row_reader", "has_defaults", "record_fields"]

# The pseudo-field of a row that names its model's unset fields (``_rows``); no field of a
# Python class can be named so.
UNSET: Final = "$unset"
_COMMON = frozenset({"type", "ref", "metadata"})
# Keys that change only how a value is *validated*: the writer may ignore them, since the
# typed form is read by the class's structure alone (``_structure``), none of them applied.
_STRICT = frozenset({"strict"})
_NUMBER = _STRICT | {"gt", "ge", "lt", "le", "multiple_of"}
_SIZED = _STRICT | {"min_length", "max_length"}
_TEMPORAL = _NUMBER | {"now_op", "now_utc_offset", "microseconds_precision"}
_ALLOWED_KEYS: dict[str, frozenset[str]] = {
    "str": _COMMON | _SIZED | {"pattern", "strip_whitespace", "to_lower", "to_upper",
                              "regex_engine", "coerce_numbers_to_str"},
    "int": _COMMON | _NUMBER, "bool": _COMMON | _STRICT,
    "decimal": _COMMON | _NUMBER | {"max_digits", "decimal_places", "allow_inf_nan"},
    "uuid": _COMMON | _STRICT | {"version"},
    "date": _COMMON | _TEMPORAL, "float": _COMMON | _NUMBER | {"allow_inf_nan"},
    "datetime": _COMMON | _TEMPORAL | {"tz_constraint"},
    "enum": _COMMON | _STRICT | {"cls", "members", "sub_type", "missing"},
    "list": _COMMON | _SIZED | {"items_schema", "fail_fast"},
    "dict": _COMMON | _SIZED | {"keys_schema", "values_schema", "fail_fast"},
    "nullable": _COMMON | _STRICT | {"schema"},
    "default": _COMMON | {"schema", "default", "default_factory", "default_factory_takes_data",
                          "validate_default", "copy_default", "on_error"},
    "model": _COMMON | _STRICT | {"cls", "schema", "config", "custom_init", "root_model",
                                  "post_init", "generic_origin", "frozen", "revalidate_instances"},
    "model-fields": _COMMON | _STRICT | {"fields", "model_name", "computed_fields",
                                         "extra_behavior", "from_attributes"},
    "model-field": _COMMON | {"schema", "frozen", "validation_alias", "serialization_alias"},
    "definitions": _COMMON | {"schema", "definitions"},
    "definition-ref": _COMMON | {"schema_ref"},
    "any": _COMMON,
    "literal": _COMMON | {"expected"},
    # validators: the writer checks the type they wrap (none of them runs when reading)
    "function-after": _COMMON | {"function", "schema"},
    "function-before": _COMMON | {"function", "schema", "json_schema_input_schema"},
    "function-wrap": _COMMON | {"function", "schema", "json_schema_input_schema"},
}
# Model config that changes only validation, never what pydantic writes for the types the
# typed form holds (``ser_json_*``, ``serialize_by_alias`` and anything unknown do, or may).
_VALIDATION_CONFIG = frozenset({
    "title", "strict", "extra_fields_behavior", "typed_dict_total", "from_attributes",
    "loc_by_alias", "revalidate_instances", "validate_default", "str_max_length",
    "str_min_length", "str_strip_whitespace", "str_to_lower", "str_to_upper", "allow_inf_nan",
    "val_json_bytes", "val_temporal_unit", "hide_input_in_errors", "validation_error_cause",
    "coerce_numbers_to_str", "regex_engine", "cache_strings", "validate_by_alias",
    "validate_by_name", "populate_by_name", "frozen", "validate_assignment",
})
_MODEL_SLOTS = frozenset({"__dict__", "__weakref__", "__pydantic_fields_set__",
                          "__pydantic_extra__", "__pydantic_private__"})
_SIMPLE_CHECKS = {
    # Failure conditions; {first} is the value's first use (it may bind it), {v} the others.
    "str": "type({first}) is not str",
    "bool": "type({first}) is not bool",
    "int": "type({first}) is not int or not (INT_MIN <= {v} <= INT_MAX)",
    "float": "type({first}) is not float or {v} - {v} != 0.0",
    "decimal": "type({first}) is not Decimal or not {v}.is_finite()",
    "uuid": "type({first}) is not UUID",
    "date": "type({first}) is not date",
}
# The fields ``exact_fields`` (compiled) checks, by its codes: those of _SIMPLE_CHECKS and
# datetimes, each maybe nullable. A model with this many such fields checks them all in
# one call of it: fewer lines to compile, and no slower to run.
_TABLE_CHECKS = {"str": STR, "bool": BOOL, "int": INT, "float": FLOAT, "decimal": DECIMAL,
                 "uuid": UUID_, "date": DATE}
_DATETIME_CHECKS = {None: DATETIME, "aware": AWARE_DATETIME, "naive": NAIVE_DATETIME}
_TABLE_MIN = 6
# A levelled guard (``GuardWriter``) walks at most this many levels of its class: a value
# deeper (or a cycle) fails it, and the generic form writes it or says why it cannot. Each
# level nests the JSON at least once more, and orjson writes no deeper JSON than this.
MAX_LEVELS: Final = 255
# A level of more models than this is checked for a model held twice, and every level past
# this many for one held before (``_repeats_in``).
_DISTINCT_WIDTH: Final = 1024
_DISTINCT_LEVELS: Final = 16


def _repeats_in(models: list[Any], met: set[int] | None) -> bool:
    """Whether a level of a levelled guard holds a model twice or (``met``: the ids of the
    levels before, which it takes this level's) one held before. Such a value is shared (a
    DAG) or holds a cycle, and its guard fails: the typed form holds no references, and
    walking on would multiply the levels (each holding the one below twice doubles them)
    or repeat a cycle's up to MAX_LEVELS. At C speed (compiled)."""
    if met is None:  # by reference counts, as Encoder.note's look for repeats (_repeats)
        return _repeats(models)
    size = len(met)
    met.update(map(id, models))
    return len(met) != size + len(models)


# Nested models are checked inline, without a call, down to this many levels, unless the
# guard code would pass this many lines (wide models nest cubically) or cannot be compiled
# (CPython allows 20 nested loops and try blocks in one function): then each model class
# gets its own function.
_INLINE_LEVELS = 3
_MAX_INLINED_LINES = 1500


class Ineligible(Exception):
    """The class (or a class it contains) cannot take the typed path."""


class Uncompilable(Exception):
    """The guard of an eligible class is too deeply nested for CPython to compile: its
    values are written in the generic form (the typed form stays readable)."""


class GuardWriter(SchemaWalker):
    """Generates one guard function per model class from its core schema.

    A guard takes the model and ``keep``, which it calls with the model and every model, list
    and dict inside it (the objects whose identity the encoder keeps). It reads fields by
    subscript inside one ``try`` (a missing field is a ``KeyError``, a
    deleted pydantic slot an ``AttributeError``: the generic form refuses that instance),
    joins the simple checks of consecutive fields into one ``if``, and checks nested models
    inline: a call per nested model would cost more than its checks.

    With ``rows``, the functions are row readers: each returns the tuple of its model's field
    values (nested models as tuples, in lists, dicts or ``None`` as declared) where a guard
    returns True, and None where a guard returns False; the list function returns the list
    of those tuples.

    The guard of a class that contains itself (a tree) is *levelled*: it checks the models
    of the class level by level, pushing the ones it meets inside a model onto the next
    level, instead of calling itself for each (a call per node cost more than its checks),
    and returns the number of levels (at least 1) where a guard returns True: how deeply
    the value nests, for ``TypedModel.dump``. (It returns True when some of its models are
    checked by a call of its own function from another class's, whose levels it does not
    count.) It fails a tree that holds one of its models twice where it looks
    (``_repeats_in``): wide levels, and every level past the first few. Not for row
    readers.
    """

    def __init__(self, *, inline: bool = True, rows: bool = False, general: bool = False,
                 level_trees: bool = True) -> None:
        super().__init__()
        # ``level_trees=False``: a class that contains itself gets a guard that calls itself,
        # the reference the levelled guard is tested against.
        self.level_trees = level_trees
        # The general row reader (``general``): models of a class with defaulted fields may
        # leave fields unset (their rows end with an item more, None or the sorted names of
        # the unset fields), and a datetime pydantic-core cannot write as it is (a zone that
        # is not a fixed offset, fold=1) is in its row as flujo's datetime text; the
        # functions then take a third argument, a list, to which the first such datetime
        # adds True (``rows@3``).
        self.general = general and rows
        self.args = "keep, zoned" if self.general else "keep"
        self.namespace: dict[str, Any] = {
            "INT_MIN": INT_MIN, "INT_MAX": INT_MAX, "Decimal": Decimal, "UUID": UUID,
            "date": date, "datetime": datetime, "UTC": UTC, "_plain_offset": plain_offset,
            "_unicode": is_unicode, "_plain_json": plain_json, "_exact": exact_fields,
            "_datetime_cell": datetime_cell, "_repeats_in": _repeats_in,
        }
        self.inline = inline
        self.rows = rows
        self.fail = "return None" if rows else "return False"
        self.functions: dict[type, str] = {}
        self.sources: list[str] = []
        self.counter = 0
        self.collected = 0  # names the locals that collect nested rows
        self.inlining: list[type] = []
        # The class whose levelled guard is being written (its models inside are pushed onto
        # the next level), and whether one was; the classes whose functions are being
        # written, and those of them a function written meanwhile calls: their levelled
        # guard's count misses the levels of that call's walk, and is not returned.
        self.levelled: type | None = None
        self.pushed = False
        self.writing: list[type] = []
        self.called_inside: set[type] = set()

    def constant(self, value: object) -> str:
        self.counter += 1
        name = f"_c{self.counter}"
        self.namespace[name] = value
        return name

    def collector(self) -> str:
        self.collected += 1
        return f"r{self.collected}"

    def model_function(self, node: dict[str, Any]) -> str:
        """The name of the function that checks a model of ``node``'s class (written on
        first use): a levelled guard if the class contains itself (see the class)."""
        if node.get("type") != "model":  # e.g. a plain validator in place of the model
            raise Ineligible(f"pydantic core schema {node.get('type')!r} has no exact check")
        cls = node["cls"]
        if cls in self.functions:
            return self.functions[cls]
        name = f"_guard{len(self.functions)}"
        self.functions[cls] = name
        outer = self.levelled, self.pushed  # (a class's function written inside another's)
        self.levelled = cls if self.level_trees and not self.rows else None
        self.pushed = False
        self.writing.append(cls)
        try:  # written at the indent of a levelled guard's loop; moved out if none is
            body, row = self.model_checks(node, "o", 4, 0, 0)
            pushed = self.pushed
        finally:
            self.levelled, self.pushed = outer
            self.writing.pop()
        if pushed:
            counted = "levels" if cls not in self.called_inside else "True"
            self.sources.append("\n".join([
                f"def {name}(o, keep):", "    level = [o]", "    levels = 0", "    met = set()",
                "    try:", "        while level:", "            levels += 1",
                f"            if levels > {MAX_LEVELS}: return False",
                "            following = []", "            push = following.append",
                "            for o in level:", *body,
                f"            if levels >= {_DISTINCT_LEVELS}:",
                "                if _repeats_in(following, met): return False",
                f"            elif len(following) > {_DISTINCT_WIDTH} and"
                " _repeats_in(following, None): return False",
                "            level = following",
                f"        return {counted}", "    except (KeyError, AttributeError):",
                "        return False"]))
            return name
        body = [line[8:] for line in body]  # every line is indented 16 spaces or more
        success = f"return {row}" if self.rows else "return True"
        self.sources.append("\n".join([
            f"def {name}(o, {self.args}):", "    try:", *body, f"        {success}",
            "    except (KeyError, AttributeError):", f"        {self.fail}"]))
        return name

    def model_checks(self, node: dict[str, Any], var: str, indent: int, level: int,
                     depth: int) -> tuple[list[str], str]:
        """Statements that fail unless model ``var`` has exactly its types, and the
        expression of its row (a tuple of its field values; meaningful with ``rows``)."""
        check_keys(node)
        if node.get("type") != "model":
            raise Ineligible(f"pydantic core schema {node.get('type')!r} has no exact check")
        cls = node["cls"]
        if node.get("root_model"):
            raise Ineligible(f"{cls.__qualname__} is a RootModel")
        config = node.get("config") or {}
        unusual = set(config) - _VALIDATION_CONFIG
        if config.get("extra_fields_behavior") == "allow":
            raise Ineligible(f"{cls.__qualname__} allows extra fields")
        if unusual:
            raise Ineligible(f"{cls.__qualname__} has model_config settings the guard cannot"
                             f" account for: {', '.join(sorted(unusual))}")
        if any(slot not in _MODEL_SLOTS for klass in cls.__mro__
               for slot in _declared_slots(klass)):
            raise Ineligible(f"{cls.__qualname__} declares slots of its own")
        if own_pickling_hook(cls) is not None:  # refused by the generic form, with the reason
            raise Ineligible(f"{cls.__qualname__} has pickle hooks of its own")
        fields_node = self.resolve(node["schema"])
        check_keys(fields_node)
        if fields_node["type"] != "model-fields" or fields_node.get("computed_fields") or \
                fields_node.get("extra_behavior") == "allow":
            raise Ineligible(f"{cls.__qualname__} has computed or extra fields")
        pad = "    " * indent
        fail = self.fail
        state, value = f"d{level}", f"v{level}"
        if UNSET in fields_node["fields"]:
            raise Ineligible(f"{cls.__qualname__} has a field named {UNSET!r}")
        names = self.constant(frozenset(fields_node["fields"]))
        # Exactly the fields as instance state, all of them set (or, with unset, the unset
        # ones noted in the row), no extras and no private values: what the typed form holds
        # (the rest of the state is the generic form's).
        private = (f"({value} := {var}.__pydantic_private__) is None or {value}"
                   if cls.__private_attributes__ else f"{var}.__pydantic_private__ is not None")
        stateful = self.general and has_defaults(fields_node, self.resolve)
        unset = self.collector() if stateful else ""
        fields_set = (f"type({unset} := {var}.__pydantic_fields_set__) is not set or not "
                      f"{unset} <= {names}" if stateful
                      else f"{var}.__pydantic_fields_set__ != {names}")
        lines = [f"{pad}keep({var})",  # the objects whose identity is kept: Encoder.seen
                 f"{pad}{state} = {var}.__dict__",
                 f"{pad}if len({state}) != {len(fields_node['fields'])} or "
                 f"{var}.__pydantic_extra__ or {fields_set} "
                 f"or {private}: {fail}"]
        if stateful:  # into its local at once: the next model at this level rebinds it
            lines.append(f"{pad}{unset} = None if len({unset}) == {len(fields_node['fields'])}"
                         f" else sorted({names} - {unset})")
        pending: list[str] = []  # simple failure conditions, joined into one statement
        # The row's items: a field's value by subscript (``value`` is rebound by the next
        # field), or the local that collected the rows of the models inside it.
        items: list[str] = []

        def flush() -> None:
            if pending:
                lines.append(f"{pad}if {' or '.join(pending)}: {fail}")
                pending.clear()

        self.inlining.append(cls)
        simple = {name: code for name, field in fields_node["fields"].items()
                  if (code := self.table_check(field)) is not None}
        if len(simple) < _TABLE_MIN:
            simple = {}
        else:
            pending.append(f"not _exact({state}, {self.constant(tuple(simple))},"
                           f" {self.constant(tuple(simple.values()))}, keep)")
        for field_name, field in fields_node["fields"].items():
            check_keys(field)
            schema = self.resolve(field["schema"])
            item = f"{state}[{field_name!r}]"
            if field_name in simple:
                items.append(item)
                continue
            condition = self.condition(schema, item, value)
            if condition is not None:
                pending.append(f"({condition})")
                items.append(item)
                continue
            flush()
            lines.append(f"{pad}{value} = {item}")
            checks, converted = self.check(schema, value, indent, depth, level)
            lines += checks
            items.append(item if converted == value else converted)
        flush()
        self.inlining.pop()
        if stateful:
            items.append(unset)
        return lines, f"({', '.join(items)},)" if items else "()"

    def inspect(self, node: dict[str, Any]) -> None:
        check_keys(node)

    def table_check(self, field: dict[str, Any]) -> int | None:
        """The ``exact_fields`` code of a field whose type it checks (behind a default or
        not, nullable or not, or a list of such values), else None."""
        check_keys(field)
        node = self.resolve(field["schema"])
        if node["type"] == "default":
            check_keys(node)
            node = self.resolve(node["schema"])
        nullable = self.unwrap_nullable(node)
        inner = node if nullable is None else nullable
        if inner["type"] == "list" and "items_schema" in inner:
            check_keys(inner)
            item = self.kind_check(self.resolve(inner["items_schema"]))
            if item is None:
                return None
            return item | LIST_OF | (0 if nullable is None else NULLABLE_LIST)
        return self.kind_check(node)

    def unwrap_nullable(self, node: dict[str, Any]) -> dict[str, Any] | None:
        if node["type"] != "nullable":
            return None
        check_keys(node)
        return self.resolve(node["schema"])

    def kind_check(self, node: dict[str, Any]) -> int | None:
        """The code of a value of ``node``'s type (maybe nullable), else None."""
        nullable = self.unwrap_nullable(node)
        flag = 0 if nullable is None else NULLABLE
        node = node if nullable is None else nullable
        kind = node["type"]
        if kind in _TABLE_CHECKS:
            check_keys(node)
            return _TABLE_CHECKS[kind] | flag
        if kind == "datetime" and node.get("tz_constraint") in _DATETIME_CHECKS and \
                not self.general:  # there, zoned datetimes are converted, not refused
            check_keys(node)
            return _DATETIME_CHECKS[node.get("tz_constraint")] | flag
        return None

    def condition(self, node: dict[str, Any], item: str, value: str) -> str | None:
        """One expression, true when ``item`` is not exactly of type ``node``; None when the
        check needs statements. ``value`` is the name it may bind ``item`` to."""
        kind = node["type"]
        if kind in _SIMPLE_CHECKS:
            check_keys(node)
            template = _SIMPLE_CHECKS[kind]
            bind = "{v}" in template and item != value
            return template.format(first=f"({value} := {item})" if bind else item, v=value)
        if kind == "enum":
            check_keys(node)
            return f"type({item}) is not {self.enum_class(node)}"
        if kind == "literal":
            check_keys(node)
            return self.literal_condition(node, item)
        if kind == "any":
            check_keys(node)
            # a str inline (the common case); anything else exactly JSON (plain_json)
            first = f"({value} := {item})" if item != value else item
            return f"type({first}) is not str and not _plain_json({value}, keep, 0)"
        if kind == "default":
            check_keys(node)
            return self.condition(self.resolve(node["schema"]), item, value)
        if kind in ("dict", "list") and self.of_any(node):
            # a dict[str, Any] or list[Any] (an SDK object's metadata, a tool call's
            # arguments) in one compiled call: plain_json checks the keys as the dict check
            # below does, and at depth -1 it counts the items' depth from 0, as there
            first = f"({value} := {item})" if item != value else item
            return f"type({first}) is not {kind} or not _plain_json({value}, keep, -1)"
        return None

    def of_any(self, node: dict[str, Any]) -> bool:
        """Whether ``node`` is a ``dict[str, Any]`` or a ``list[Any]``, constraints aside."""
        check_keys(node)
        inner = node.get("values_schema" if node["type"] == "dict" else "items_schema",
                         {"type": "any"})
        if node["type"] == "dict":
            keys = self.resolve(node.get("keys_schema", {"type": "any"}))
            if keys.get("type") != "str" or set(keys) - _COMMON:
                return False
        inner = self.resolve(inner)
        return inner.get("type") == "any" and not set(inner) - _COMMON

    def literal_condition(self, node: dict[str, Any], item: str) -> str:
        """True when ``item`` is not exactly one of the literal's values: its type too, since
        ``1 == True == 1.0`` (pydantic writes what it is given, and it would come back as
        another value)."""
        expected = node["expected"]
        if not all(v is None or type(v) in (str, bool) or (type(v) is int and
                                                            INT_MIN <= v <= INT_MAX)
                   for v in expected) or not all(is_unicode(v) for v in expected
                                                 if type(v) is str):
            raise Ineligible(f"literal of {expected!r}")  # enum members, bytes, ...
        if all(type(v) is str for v in expected):
            return f"type({item}) is not str or {item} not in {self.constant(frozenset(expected))}"
        # the type first: only values of the literal's types are hashed (a list is not)
        types = self.constant(frozenset(type(v) for v in expected))
        pairs = self.constant(frozenset((type(v), v) for v in expected))
        return f"type({item}) not in {types} or (type({item}), {item}) not in {pairs}"

    def enum_class(self, node: dict[str, Any]) -> str:
        cls = node["cls"]
        values = [member.value for member in node["members"]]
        if not all(type(v) is str or (type(v) is int and INT_MIN <= v <= INT_MAX)
                   for v in values):
            raise Ineligible(f"enum {cls.__qualname__} has non-JSON values")
        return self.constant(cls)

    def check(self, node: dict[str, Any], var: str, indent: int, depth: int,
              level: int) -> tuple[list[str], str]:
        """Statements that fail unless ``var`` has exactly the type of ``node``, and the
        expression of its value in a row: ``var`` itself, or (with ``rows``, where models
        are inside) the local that holds it with its models as tuples."""
        node = self.resolve(node)
        check_keys(node)
        kind = node["type"]
        pad = "    " * indent
        fail = self.fail
        condition = self.condition(node, var, var)
        if condition is not None:
            return [f"{pad}if {condition}: {fail}"], var
        if kind == "datetime":
            return self.datetime_check(node, var, pad, depth)
        if kind == "default":
            return self.check(node["schema"], var, indent, depth, level)
        if kind == "nullable":
            inner, converted = self.check(node["schema"], var, indent + 1, depth, level)
            if converted == var:
                return [f"{pad}if {var} is not None:", *inner], var
            rows = self.collector()
            return [f"{pad}{rows} = None", f"{pad}if {var} is not None:", *inner,
                    f"{pad}    {rows} = {converted}"], rows
        if kind == "list":
            item = f"x{depth}"
            inner, converted = self.check(node.get("items_schema", {"type": "any"}), item,
                                          indent + 1, depth + 1, level)
            lines = [f"{pad}if type({var}) is not list: {fail}", f"{pad}keep({var})"]
            if converted == item:
                return [*lines, f"{pad}for {item} in {var}:", *inner], var
            rows = self.collector()
            return [*lines, f"{pad}{rows} = []", f"{pad}for {item} in {var}:", *inner,
                    f"{pad}    {rows}.append({converted})"], rows
        if kind == "dict":
            keys = self.resolve(node.get("keys_schema", {"type": "any"}))
            if keys.get("type") != "str" or set(keys) - _COMMON:
                raise Ineligible("dict keys other than plain str")
            key, item = f"k{depth}", f"x{depth}"
            inner, converted = self.check(node.get("values_schema", {"type": "any"}), item,
                                          indent + 1, depth + 1, level)
            lines = [f"{pad}if type({var}) is not dict: {fail}", f"{pad}keep({var})",
                     f"{pad}for {key}, {item} in {var}.items():",
                     # pydantic-core writes a key's lone surrogates as U+FFFD: a changed key
                     f"{pad}    if type({key}) is not str or not ({key}.isascii() or "
                     f"_unicode({key})): {fail}", *inner]
            if converted == item:
                return lines, var
            rows = self.collector()
            return [f"{pad}{rows} = {{}}", *lines, f"{pad}    {rows}[{key}] = {converted}"], rows
        if kind == "model":
            cls = self.constant(node["cls"])
            lines = [f"{pad}if type({var}) is not {cls}: {fail}"]
            if node["cls"] is self.levelled:  # checked with its level, by the loop
                self.pushed = True
                return [*lines, f"{pad}push({var})"], var
            if (not self.inline or node["cls"] in self.inlining
                    or level + 1 >= _INLINE_LEVELS):
                if node["cls"] in self.writing:  # a walk inside the walk of its class
                    self.called_inside.add(node["cls"])
                function = self.model_function(node)
                if not self.rows:
                    return [*lines, f"{pad}if not {function}({var}, keep): {fail}"], var
                row = self.collector()
                return [*lines, f"{pad}{row} = {function}({var}, {self.args})",
                        f"{pad}if {row} is None: {fail}"], row
            checks, row_items = self.model_checks(node, var, indent, level + 1, depth)
            if not self.rows:
                return [*lines, *checks], var
            # Into a local at once: the expression reads d{level + 1}, which the next model
            # at that level rebinds.
            row = self.collector()
            return [*lines, *checks, f"{pad}{row} = {row_items}"], row
        raise Ineligible(f"pydantic core schema {kind!r} has no exact check")

    def datetime_check(self, node: dict[str, Any], var: str, pad: str,
                       depth: int) -> tuple[list[str], str]:
        """``check`` of a datetime: one pydantic-core writes as it is (no zone, UTC or a
        fixed offset, fold 0); in the general row reader, any other becomes its text."""
        constraint = node.get("tz_constraint")
        tz, fail = f"t{depth}", self.fail
        if constraint == "aware":
            writable = f"{tz} is UTC or ({tz} is not None and _plain_offset({tz}))"
            required = f"{tz} is None"
        elif constraint == "naive":
            writable, required = f"{tz} is None", f"{tz} is not None"
        elif constraint is None:
            writable = f"{tz} is None or {tz} is UTC or _plain_offset({tz})"
            required = ""
        else:
            raise Ineligible(f"datetime tz_constraint {constraint!r}")
        lines = [f"{pad}if type({var}) is not datetime: {fail}", f"{pad}{tz} = {var}.tzinfo"]
        if not self.general:
            return [*lines, f"{pad}if {var}.fold or not ({writable}): {fail}"], var
        text = self.collector()
        if required:  # a field that must be naive (aware) holds no zoned (naive) datetime
            lines.append(f"{pad}if {required}: {fail}")
        # the common zones tested here, any other in one call (which tests them again)
        return [*lines, f"{pad}{text} = {var} if ({tz} is None or {tz} is UTC) and not"
                        f" {var}.fold else _datetime_cell({var}, zoned)"], text

    def list_function(self, node: dict[str, Any], root: str) -> str:
        """A guard over a whole list of the root class (its row reader with ``rows``): the
        model's checks in the loop, so a list of records costs no call per record (a call
        per record when not inlining)."""
        cls = self.constant(node["cls"])
        if self.inline:
            body, row = self.model_checks(node, "o", 3, 0, 0)
        else:
            row = "row"
            body = ([f"            row = {root}(o, {self.args})",
                     f"            if row is None: {self.fail}"]
                    if self.rows else [f"            if not {root}(o, keep): return False"])
        collect = [f"            rows.append({row})"] if self.rows else []
        self.sources.append("\n".join([
            f"def _guard_list(items, {self.args}):", *(["    rows = []"] if self.rows else []),
            "    try:",
            "        for o in items:",
            f"            if type(o) is not {cls}: {self.fail}", *body, *collect,
            "    except (KeyError, AttributeError):", f"        {self.fail}",
            f"    return {'rows' if self.rows else 'True'}"]))
        return "_guard_list"

    def build(self, node: dict[str, Any], label: str = "") -> tuple[Any, Any]:
        """The guard of the root class and the guard of a list of it (their row readers
        with ``rows``). Raises Uncompilable when the code is too large to inline or too
        deeply nested to compile. The source is registered with ``linecache`` under a name
        of its own (``label``: the class), so that tracebacks and debuggers show it."""
        root_node = self.resolve(node)
        root = self.model_function(root_node)
        many = self.list_function(root_node, root)
        source = "\n\n".join(self.sources) + "\n"
        if self.inline and source.count("\n") > _MAX_INLINED_LINES:
            raise Uncompilable(f"{source.count(chr(10))} lines of inlined guard code")
        filename = f"<flujo typed guard {label}{' rows' if self.rows else ''} #{next(_BUILT)}>"
        try:
            code = compile(source, filename, "exec")
        except (SyntaxError, RecursionError) as exc:  # too many nested blocks, too deep
            raise Uncompilable(str(exc)) from None
        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
        exec(code, self.namespace)  # flujo's own templates, never stored data
        return self.namespace[root], self.namespace[many]


def build_guards(cls: type[BaseModel]) -> tuple[Any, Any]:
    """The guards of ``cls``, inlined when that compiles, else one function per class."""
    return _build(cls, rows=False)


def build_row_reader(cls: type[BaseModel], *, general: bool = False) -> Any:
    """The row reader of a list of ``cls`` (see ``GuardWriter``): the list of its models'
    rows as tuples, or None when a value is not exactly of its declared type. The
    ``general`` one (``rows@3``) takes a third argument, a list (see ``GuardWriter``):
    models of classes with defaulted fields may leave fields unset (their rows end with the
    unset names, ``_rows``), and its datetimes may be of any zone."""
    return _build(cls, rows=True, general=general)[1]


# Field types whose values are immutable: the same object is the same value, now and later.
_IMMUTABLE_KINDS = frozenset({"str", "bool", "int", "float", "decimal", "uuid", "date", "datetime",
                              "enum", "literal"})


def record_fields(cls: type[BaseModel]) -> tuple[str, ...] | None:
    """The field names of an eligible class whose every field holds an immutable value (a
    str, number, bool, date, datetime, UUID, enum member or literal, or None where nullable)
    and that has no private attributes: a model of it that holds the same objects as before
    (by identity) has the same row, and ``_memo`` reuses it. None for any other class."""
    if cls.__private_attributes__:
        return None
    walker = SchemaWalker()
    node = walker.resolve(cls.__pydantic_core_schema__)  # type: ignore[arg-type]
    if node.get("type") != "model":
        return None
    fields_node = walker.resolve(node["schema"])
    if fields_node.get("type") != "model-fields":
        return None
    for field in fields_node["fields"].values():
        schema = walker.resolve(field["schema"])
        if schema["type"] == "default":
            schema = walker.resolve(schema["schema"])
        if schema["type"] == "nullable":
            schema = walker.resolve(schema["schema"])
        if schema["type"] not in _IMMUTABLE_KINDS:
            return None
    return tuple(fields_node["fields"])


def has_defaults(fields_node: dict[str, Any], resolve: Any) -> bool:
    """Whether a model-fields node has a field with a default: the models whose rows carry
    the unset names (``_rows``)."""
    return any(resolve(field["schema"]).get("type") == "default"
               for field in fields_node["fields"].values())


# Numbers the guards' source names: linecache keeps one entry per name.
_BUILT = itertools.count(1)


def _build(cls: type[BaseModel], *, rows: bool, general: bool = False) -> tuple[Any, Any]:
    schema: dict[str, Any] = cls.__pydantic_core_schema__  # type: ignore[assignment]
    label = f"{cls.__module__}.{cls.__qualname__}{' general' if general else ''}"
    try:
        return GuardWriter(rows=rows, general=general).build(schema, label)
    except Uncompilable:
        return GuardWriter(inline=False, rows=rows, general=general).build(schema, label)


def _declared_slots(klass: type) -> tuple[str, ...]:
    slots = klass.__dict__.get("__slots__", ())
    return (slots,) if isinstance(slots, str) else tuple(slots)


def check_keys(node: dict[str, Any]) -> None:
    kind = node.get("type")
    allowed = _ALLOWED_KEYS.get(kind)  # type: ignore[arg-type]
    if allowed is None:
        raise Ineligible(f"pydantic core schema {kind!r} has no exact check")
    extra = set(node) - allowed
    if extra:
        raise Ineligible(f"{kind} with {sorted(extra)}")
