"""The typed fast path for pydantic models: pydantic-core writes and reads whole models.

A model instance whose every value has *exactly* the type its schema declares (no subclass,
no bool in an int field, no ZoneInfo datetime, no NaN, no int beyond 64 bits, ...) can be
written as the model's own JSON by pydantic-core and read back by its validator with the
same types. pydantic itself does not check that: it writes a ``str`` subclass, a bool in an
``int`` field or a subclass instance in a model field without complaint, and they come back
as something else. So each eligible class gets a *guard*: Python code generated from the
class's core schema (by flujo, from flujo's own templates; never from stored data) that
checks the exact types in one pass. Values that fail the guard take the generic path.

Eligible classes use only these core-schema nodes without constraints: str, int, float,
bool, decimal, uuid, date, datetime (tz_constraint allowed), enum (str/int values), list,
dict with str keys, nullable, default, nested eligible models, definitions. No validators
or serializers of their own (reading must not run code that writing did not), no aliases,
no computed or excluded fields, no extra fields, no custom ``__init__``, not strict.

Reading rebuilds fixed-offset datetimes as ``datetime.timezone`` (as the generic path does),
through an after-validator added to a copy of the core schema.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from datetime import UTC, date, datetime, timezone, tzinfo
from decimal import Decimal
from typing import Any
from uuid import UUID

from pydantic import BaseModel, TypeAdapter
from pydantic_core import PydanticSerializationError

from ._codec import INT_MAX, INT_MIN

__all__ = ["TypedModel", "TypedReader", "typed_eligible", "typed_model"]

_COMMON = frozenset({"type", "ref", "metadata"})
_ALLOWED_KEYS: dict[str, frozenset[str]] = {
    "str": _COMMON, "int": _COMMON, "bool": _COMMON, "decimal": _COMMON, "uuid": _COMMON,
    "date": _COMMON, "float": _COMMON | {"allow_inf_nan"},
    "datetime": _COMMON | {"tz_constraint", "microseconds_precision"},
    "enum": _COMMON | {"cls", "members", "sub_type", "missing"},
    "list": _COMMON | {"items_schema"},
    "dict": _COMMON | {"keys_schema", "values_schema"},
    "nullable": _COMMON | {"schema"},
    "default": _COMMON | {"schema", "default", "default_factory", "default_factory_takes_data",
                          "validate_default", "copy_default", "on_error"},
    "model": _COMMON | {"cls", "schema", "config", "custom_init", "root_model", "post_init",
                        "generic_origin", "frozen"},
    "model-fields": _COMMON | {"fields", "model_name", "computed_fields", "extra_behavior"},
    "model-field": _COMMON | {"schema", "frozen"},
    "definitions": _COMMON | {"schema", "definitions"},
    "definition-ref": _COMMON | {"schema_ref"},
}
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


# pydantic's TzInfo -> the datetime.timezone of its offset. TzInfo compares equal to that
# timezone but does not hash equal, so the TzInfo itself is the key (equal TzInfos, one entry
# per offset).
_ZONES: dict[tzinfo, timezone] = {}


def _zone_for(tz: tzinfo) -> timezone:
    offset = tz.utcoffset(None)
    assert offset is not None
    zone = timezone(offset)  # timedelta(0) gives the timezone.utc singleton
    if len(_ZONES) < 4096:  # more offsets than exist in minutes; never reached by real data
        _ZONES[tz] = zone
    return zone


def _plain_offset(tz: tzinfo) -> bool:
    """A fixed offset in whole minutes, unnamed: what an ISO string keeps exactly."""
    if type(tz) is timezone:
        offset = tz.utcoffset(None)
        return offset.microseconds == 0 and offset.seconds % 60 == 0 and (
            tz.tzname(None) == timezone(offset).tzname(None))
    if type(tz).__module__.startswith("pydantic"):  # pydantic's own TzInfo
        fixed = tz.utcoffset(None)
        return fixed is not None and fixed.microseconds == 0 and fixed.seconds % 60 == 0
    return False


_combine = datetime.combine


def _rebuild_zone(value: datetime | None) -> datetime | None:
    if value is None:  # a nullable field: one call instead of a wrapper and this
        return value
    tz = value.tzinfo
    if tz is None or type(tz) is timezone:
        return value
    zone = _ZONES.get(tz)
    # The same wall time (fold included) with an equal offset: the same instant. combine()
    # costs a third of astimezone() and a quarter of replace(tzinfo=).
    return _combine(value.date(), value.time(), zone if zone is not None else _zone_for(tz))


class _SchemaWalker:
    """Follows a core schema's ``definitions`` / ``definition-ref`` indirections."""

    def __init__(self) -> None:
        self.definitions: dict[str, Any] = {}

    def inspect(self, node: dict[str, Any]) -> None:
        """Called on each indirection node before it is followed."""

    def resolve(self, node: dict[str, Any]) -> dict[str, Any]:
        if node.get("type") == "definitions":
            self.inspect(node)
            for definition in node["definitions"]:
                self.definitions[definition["ref"]] = definition
            return self.resolve(node["schema"])
        if node.get("type") == "definition-ref":
            self.inspect(node)
            return self.resolve(self.definitions[node["schema_ref"]])
        return node


class _GuardWriter(_SchemaWalker):
    """Generates one guard function per model class from its core schema.

    A guard reads fields by subscript inside one ``try`` (a missing field is a ``KeyError``),
    joins the simple checks of consecutive fields into one ``if``, and checks nested models
    inline: a call per nested model would cost more than its checks.
    """

    def __init__(self, *, inline: bool = True) -> None:
        super().__init__()
        self.namespace: dict[str, Any] = {
            "INT_MIN": INT_MIN, "INT_MAX": INT_MAX, "Decimal": Decimal, "UUID": UUID,
            "date": date, "datetime": datetime, "UTC": UTC, "_plain_offset": _plain_offset,
        }
        self.inline = inline
        self.functions: dict[type, str] = {}
        self.sources: list[str] = []
        self.counter = 0
        self.inlining: list[type] = []

    def constant(self, value: object) -> str:
        self.counter += 1
        name = f"_c{self.counter}"
        self.namespace[name] = value
        return name

    def model_function(self, node: dict[str, Any]) -> str:
        cls = node["cls"]
        if cls in self.functions:
            return self.functions[cls]
        name = f"_guard{len(self.functions)}"
        self.functions[cls] = name
        body = self.model_checks(node, "o", 2, 0, 0)
        self.sources.append("\n".join([
            f"def {name}(o):", "    try:", *body,
            "    except KeyError:", "        return False", "    return True"]))
        return name

    def model_checks(self, node: dict[str, Any], var: str, indent: int, level: int,
                     depth: int) -> list[str]:
        """Statements that ``return False`` unless model ``var`` has exactly its types."""
        cls = node["cls"]
        _check_keys(node)
        if node.get("custom_init") or node.get("root_model"):
            raise Ineligible(f"{cls.__qualname__} has a custom __init__ or is a RootModel")
        config = node.get("config") or {}
        if config.get("strict") or config.get("extra_fields_behavior") == "allow":
            raise Ineligible(f"{cls.__qualname__} is strict or allows extra fields")
        fields_node = self.resolve(node["schema"])
        _check_keys(fields_node)
        if fields_node["type"] != "model-fields" or fields_node.get("computed_fields") or \
                fields_node.get("extra_behavior") == "allow":
            raise Ineligible(f"{cls.__qualname__} has computed or extra fields")
        pad = "    " * indent
        state, value = f"d{level}", f"v{level}"
        lines = [f"{pad}{state} = {var}.__dict__",
                 f"{pad}if len({state}) != {len(fields_node['fields'])} or "
                 f"{var}.__pydantic_extra__: return False"]
        pending: list[str] = []  # simple failure conditions, joined into one statement

        def flush() -> None:
            if pending:
                lines.append(f"{pad}if {' or '.join(pending)}: return False")
                pending.clear()

        self.inlining.append(cls)
        for field_name, field in fields_node["fields"].items():
            _check_keys(field)
            schema = self.resolve(field["schema"])
            while schema.get("type") == "default":
                _check_keys(schema)
                schema = self.resolve(schema["schema"])
            item = f"{state}[{field_name!r}]"
            condition = self.condition(schema, item, value)
            if condition is not None:
                pending.append(f"({condition})")
                continue
            flush()
            lines.append(f"{pad}{value} = {item}")
            lines += self.check(schema, value, indent, depth, level)
        flush()
        self.inlining.pop()
        return lines

    def inspect(self, node: dict[str, Any]) -> None:
        _check_keys(node)

    def condition(self, node: dict[str, Any], item: str, value: str) -> str | None:
        """One expression, true when ``item`` is not exactly of type ``node``; None when the
        check needs statements. ``value`` is the name it may bind ``item`` to."""
        kind = node["type"]
        if kind in _SIMPLE_CHECKS:
            _check_keys(node)
            template = _SIMPLE_CHECKS[kind]
            first = f"({value} := {item})" if "{v}" in template else item
            return template.format(first=first, v=value)
        if kind == "enum":
            _check_keys(node)
            return f"type({item}) is not {self.enum_class(node)}"
        return None

    def enum_class(self, node: dict[str, Any]) -> str:
        cls = node["cls"]
        values = [member.value for member in node["members"]]
        if not all(type(v) is str or (type(v) is int and INT_MIN <= v <= INT_MAX)
                   for v in values):
            raise Ineligible(f"enum {cls.__qualname__} has non-JSON values")
        return self.constant(cls)

    def check(self, node: dict[str, Any], var: str, indent: int, depth: int,
              level: int) -> list[str]:
        """Statements that ``return False`` unless ``var`` has exactly the type of ``node``."""
        node = self.resolve(node)
        _check_keys(node)
        kind = node["type"]
        pad = "    " * indent
        if kind in _SIMPLE_CHECKS:
            return [f"{pad}if {_SIMPLE_CHECKS[kind].format(first=var, v=var)}: return False"]
        if kind == "datetime":
            constraint = node.get("tz_constraint")
            tz = f"t{depth}"
            lines = [f"{pad}if type({var}) is not datetime or {var}.fold: return False",
                     f"{pad}{tz} = {var}.tzinfo"]
            if constraint == "aware":
                lines.append(f"{pad}if {tz} is not UTC and ({tz} is None or not "
                             f"_plain_offset({tz})): return False")
            elif constraint == "naive":
                lines.append(f"{pad}if {tz} is not None: return False")
            elif constraint is None:
                lines.append(f"{pad}if {tz} is not None and {tz} is not UTC and not "
                             f"_plain_offset({tz}): return False")
            else:
                raise Ineligible(f"datetime tz_constraint {constraint!r}")
            return lines
        if kind == "enum":
            return [f"{pad}if type({var}) is not {self.enum_class(node)}: return False"]
        if kind == "default":
            return self.check(node["schema"], var, indent, depth, level)
        if kind == "nullable":
            return [f"{pad}if {var} is not None:",
                    *self.check(node["schema"], var, indent + 1, depth, level)]
        if kind == "list":
            item = f"x{depth}"
            return [f"{pad}if type({var}) is not list: return False",
                    f"{pad}for {item} in {var}:",
                    *self.check(node.get("items_schema", {"type": "any"}), item, indent + 1,
                                depth + 1, level)]
        if kind == "dict":
            keys = self.resolve(node.get("keys_schema", {"type": "any"}))
            if keys.get("type") != "str" or set(keys) - _COMMON:
                raise Ineligible("dict keys other than plain str")
            key, item = f"k{depth}", f"x{depth}"
            return [f"{pad}if type({var}) is not dict: return False",
                    f"{pad}for {key}, {item} in {var}.items():",
                    f"{pad}    if type({key}) is not str: return False",
                    *self.check(node.get("values_schema", {"type": "any"}), item, indent + 1,
                                depth + 1, level)]
        if kind == "model":
            cls = self.constant(node["cls"])
            lines = [f"{pad}if type({var}) is not {cls}: return False"]
            if (not self.inline or node["cls"] in self.inlining
                    or level + 1 >= _INLINE_LEVELS):
                function = self.model_function(node)
                return [*lines, f"{pad}if not {function}({var}): return False"]
            return [*lines, *self.model_checks(node, var, indent, level + 1, depth)]
        raise Ineligible(f"core schema node {kind!r}")

    def list_function(self, node: dict[str, Any], root: str) -> str:
        """A guard over a whole list of the root class: the model's checks in the loop, so
        a list of records costs no call per record (a call per record when not inlining)."""
        cls = self.constant(node["cls"])
        if self.inline:
            body = self.model_checks(node, "o", 3, 0, 0)
        else:
            body = [f"            if not {root}(o): return False"]
        self.sources.append("\n".join([
            "def _guard_list(items):", "    try:", "        for o in items:",
            f"            if type(o) is not {cls}: return False", *body,
            "    except KeyError:", "        return False", "    return True"]))
        return "_guard_list"

    def build(self, node: dict[str, Any]) -> tuple[Any, Any]:
        """The guard of the root class and the guard of a list of it. Raises Uncompilable
        when the code is too large to inline or too deeply nested to compile."""
        root_node = self.resolve(node)
        root = self.model_function(root_node)
        many = self.list_function(root_node, root)
        source = "\n\n".join(self.sources)
        if self.inline and source.count("\n") > _MAX_INLINED_LINES:
            raise Uncompilable(f"{source.count(chr(10))} lines of inlined guard code")
        try:
            code = compile(source, "<flujo typed guard>", "exec")
        except (SyntaxError, RecursionError) as exc:  # too many nested blocks, too deep
            raise Uncompilable(str(exc)) from None
        exec(code, self.namespace)  # flujo's own templates, never stored data
        return self.namespace[root], self.namespace[many]


def _build_guards(cls: type[BaseModel]) -> tuple[Any, Any]:
    """The guards of ``cls``, inlined when that compiles, else one function per class."""
    try:
        return _GuardWriter().build(cls.__pydantic_core_schema__)  # type: ignore[arg-type]
    except Uncompilable:
        return _GuardWriter(inline=False).build(
            cls.__pydantic_core_schema__)  # type: ignore[arg-type]


def _check_keys(node: dict[str, Any]) -> None:
    kind = node.get("type")
    allowed = _ALLOWED_KEYS.get(kind)  # type: ignore[arg-type]
    if allowed is None:
        raise Ineligible(f"core schema node {kind!r}")
    extra = set(node) - allowed
    if extra:
        raise Ineligible(f"{kind} with {sorted(extra)}")


Fixer = Callable[[Any], Any]


class _FixerBuilder(_SchemaWalker):
    """Composes closures that rebuild fixed-offset datetimes as ``datetime.timezone``.

    pydantic reads an ISO offset as its own ``TzInfo``; the generic path gives
    ``datetime.timezone``. Both paths must give the same types, so the typed path converts.
    Built from closures, not generated code: this runs while decoding, and decoding compiles
    nothing. ``None`` means there is no datetime to fix.
    """

    def __init__(self) -> None:
        super().__init__()
        self.models: dict[type, list[Fixer | None]] = {}

    def value(self, node: dict[str, Any]) -> Fixer | None:
        node = self.resolve(node)
        kind = node.get("type")
        if kind == "datetime":
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
        if kind == "model":
            return self.model(node)
        return None

    def model(self, node: dict[str, Any]) -> Fixer | None:
        cls = node["cls"]
        known = self.models.get(cls)
        if known is not None:  # a recursive model: its fixer, once built
            return lambda v: known[0](v) if known[0] is not None else v
        cell: list[Fixer | None] = [None]
        self.models[cls] = cell
        fields = [(name, self.value(field["schema"]))
                  for name, field in self.resolve(node["schema"])["fields"].items()]
        fixers = [(name, fix) for name, fix in fields if fix is not None]
        if not fixers:
            return None

        def fix_model(obj: Any) -> Any:
            state = obj.__dict__
            for name, fix in fixers:
                state[name] = fix(state[name])
            return obj

        cell[0] = fix_model
        return fix_model

    def build(self, node: dict[str, Any]) -> Fixer | None:
        return self.model(self.resolve(node))


class TypedReader:
    """Reads the typed form of one eligible model class."""

    def __init__(self, cls: type[BaseModel]) -> None:
        self._validate = cls.__pydantic_validator__.validate_python
        self._validate_list = TypeAdapter(list[cls]).validator.validate_python  # type: ignore[valid-type]
        self._fix = _FixerBuilder().build(cls.__pydantic_core_schema__)  # type: ignore[arg-type]

    def read(self, data: Any) -> BaseModel:
        obj: BaseModel = self._validate(data)
        if self._fix is not None:
            self._fix(obj)
        return obj

    def read_list(self, items: list[Any]) -> list[BaseModel]:
        objs: list[BaseModel] = self._validate_list(items)
        fix = self._fix
        if fix is not None:
            for obj in objs:
                fix(obj)
        return objs


class TypedModel:
    """The typed path of one eligible model class: its guard and pydantic's serializers."""

    def __init__(self, cls: type[BaseModel], guard: Any, list_guard: Any) -> None:
        self.cls = cls
        self.guard = guard
        self.list_guard = list_guard
        self.to_python = cls.__pydantic_serializer__.to_python
        self.list_to_python = TypeAdapter(list[cls]).serializer.to_python  # type: ignore[valid-type]

    def dump(self, obj: BaseModel) -> Any | None:
        """The model's JSON form, or None when a value is not exactly of its declared type."""
        try:
            if not self.guard(obj):
                return None
            # The guard has proven every type exact; pydantic's own checks would only repeat it
            # (and "error" mode costs 40 % more). A mismatch would still warn, never pass silently.
            return self.to_python(obj, mode="json")
        except (RecursionError, PydanticSerializationError):
            return None  # a cycle or a very deep chain: the generic path reports it properly

    def dump_list(self, items: list[Any]) -> Any | None:
        try:
            if not self.list_guard(items):
                return None
            return self.list_to_python(items, mode="json")
        except (RecursionError, PydanticSerializationError):
            return None


_ELIGIBLE: weakref.WeakKeyDictionary[type, bool] = weakref.WeakKeyDictionary()


def typed_eligible(cls: type) -> bool:
    """Whether flujo writes ``cls`` in the typed form; decides without compiling anything."""
    if not (isinstance(cls, type) and issubclass(cls, BaseModel)) or cls is BaseModel:
        return False
    try:
        return _ELIGIBLE[cls]
    except KeyError:
        pass
    writer = _GuardWriter()
    try:
        writer.model_function(writer.resolve(cls.__pydantic_core_schema__))  # type: ignore[arg-type]
        eligible = True
    except Ineligible:
        eligible = False
    _ELIGIBLE[cls] = eligible
    return eligible


_TYPED: weakref.WeakKeyDictionary[type, TypedModel | None] = weakref.WeakKeyDictionary()


def typed_model(cls: type) -> TypedModel | None:
    """The typed path of ``cls``, or None when it is not eligible (cached per class)."""
    if not (isinstance(cls, type) and issubclass(cls, BaseModel)) or cls is BaseModel:
        return None
    try:
        return _TYPED[cls]
    except KeyError:
        pass
    typed: TypedModel | None = None
    try:
        typed = TypedModel(cls, *_build_guards(cls))
    except Ineligible:
        _ELIGIBLE[cls] = False
    except Uncompilable:
        pass  # still eligible: the typed form others wrote stays readable
    else:
        _ELIGIBLE[cls] = True  # typed_eligible need not analyse the class again
    _TYPED[cls] = typed
    return typed

