"""The row reader is an optimisation of ``rows@1`` with no observable difference.

``rows@1`` is defined by the models' own JSON: each model's row holds the values of
``model_dump(mode="json")`` in field order, nested models as rows. flujo writes rows another
way (``_guard``'s row reader collects the field values as tuples while it checks their
types, ``_rows.row_serializer`` has pydantic-core write them), so these tests generate
model classes and instances and compare the two, byte for byte, and check that the row
reader refuses exactly what the list guard refuses.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Annotated, Any, Literal
from uuid import UUID

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    Field,
    NaiveDatetime,
    TypeAdapter,
    create_model,
)

from flujo.serialization import TAG, VALUE, TypeRegistry, safe_deserialize, safe_serialize
from flujo.serialization._guard import GuardWriter
from flujo.serialization._rows import LIST, ROW, Shape
from flujo.serialization._typed import typed_model

from ._support import Color, Priority, assert_same


class Text(str):
    """A str subclass: the row reader must refuse it where a str is declared."""


_ZONES = [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(-timedelta(hours=14))]
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-2**63, 2**64 - 1) | st.text(max_size=3)
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner,
                                                                max_size=3),
    max_leaves=6)


def _deep(levels: int) -> list[Any]:
    """JSON nested past what the typed form takes in an Any field (the generic form checks
    such a value against max_depth)."""
    value: list[Any] = []
    for _ in range(levels):
        value = [value]
    return value
_NAMES = itertools.count()

# A field type: its annotation, a strategy of exactly typed values and one of values the
# guard must refuse (None when every value of the right JSON shape would pass).
Kind = tuple[Any, st.SearchStrategy[Any], st.SearchStrategy[Any] | None]

_LEAVES: list[Kind] = [
    (str, st.text(max_size=4), st.builds(Text, st.text(max_size=3))),
    (int, st.integers(-2**63, 2**63 - 1), st.just(True) | st.just(2**64)),
    (float, st.floats(allow_nan=False, allow_infinity=False), st.just(float("nan")) | st.just(1)),
    (bool, st.booleans(), st.just(1)),
    (Decimal, st.decimals(allow_nan=False, allow_infinity=False), st.just(Decimal("NaN"))),
    (UUID, st.uuids(), st.just("0" * 32)),
    (date, st.dates(), st.just(datetime(2024, 1, 1))),
    (NaiveDatetime, st.datetimes(), st.just(datetime(2024, 1, 1, tzinfo=UTC))),
    (AwareDatetime, st.datetimes(timezones=st.sampled_from(_ZONES)),
     st.just(datetime(2024, 1, 1))),
    (datetime, st.datetimes(timezones=st.none() | st.sampled_from(_ZONES)),
     st.just(datetime(2024, 10, 27, 2, 30, fold=1))),
    (Color, st.sampled_from(Color), st.just("red")),
    (Priority, st.sampled_from(Priority), st.just(1)),
    # a literal's values with their types: 1 == True == 1.0, and a str subclass is not a str
    (Literal["a", "b"], st.sampled_from(["a", "b"]), st.builds(Text, st.just("a"))),
    (Literal[1, True, None, "x"], st.sampled_from([1, True, None, "x"]),
     st.sampled_from([1.0, False, 0, Text("x")])),
    # Any holds exactly JSON: anything else would come back as its JSON type
    (Any, _JSON, st.sampled_from([(1, 2), Decimal("1"), float("nan"), 2**64, {1: "a"},
                                  datetime(2024, 1, 1), {"k": {"\ud800": 1}}, [{3.5}]])
     | st.builds(Text, st.text(max_size=2)) | st.builds(_deep, st.just(40))),
]


def _without_fold(values: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return values.map(lambda v: v.replace(fold=0) if isinstance(v, datetime) else v)


@st.composite
def kinds(draw: st.DrawFn, depth: int = 0) -> Kind:
    """A field type with the strategies of its values; models nest up to 5 levels, past
    the 3 levels that the guards inline."""
    choice = draw(st.integers(0, 5 if depth < 5 else 0))
    if choice == 0:
        annotation, good, bad = draw(st.sampled_from(_LEAVES))
        return annotation, _without_fold(good), bad
    if choice == 5:
        return draw(models(depth + 1))
    annotation, good, bad = draw(kinds(depth + 1))
    if choice == 1:
        return (list[annotation], st.lists(good, max_size=3),  # type: ignore[valid-type]
                None if bad is None else st.lists(bad, min_size=1, max_size=2))
    if choice == 2:
        return (dict[str, annotation], st.dictionaries(st.text(max_size=3), good, max_size=3),  # type: ignore[valid-type]
                None if bad is None else st.dictionaries(st.text(max_size=3), bad, min_size=1,
                                                         max_size=1))
    if choice == 3:
        return annotation | None, st.none() | good, bad
    # a validator changes how pydantic validates, not what the row holds
    return Annotated[annotation, AfterValidator(_unchanged)], good, bad


def _unchanged(value: Any) -> Any:
    return value


@st.composite
def models(draw: st.DrawFn, depth: int = 0) -> Kind:
    """A generated model class, and strategies of its instances (built with
    ``model_construct``: every field set, no validation, as flujo stores them)."""
    fields = draw(st.lists(kinds(depth), min_size=0 if depth else 1, max_size=4))
    with_default = draw(st.booleans()) and bool(fields)
    definitions: dict[str, Any] = {}
    for index, (annotation, _, _) in enumerate(fields):
        default = Field(default=None) if with_default and index == 0 else ...
        definitions[f"f{index}"] = (annotation, default)
    cls = create_model(f"Generated{next(_NAMES)}", **definitions)

    def build(values: list[Any]) -> BaseModel:
        return cls.model_construct(**{f"f{i}": v for i, v in enumerate(values)})

    good = st.tuples(*(g for _, g, _ in fields)).map(lambda vs: build(list(vs)))
    bad_fields = [(i, b) for i, (_, _, b) in enumerate(fields) if b is not None]
    bad = None
    if bad_fields:
        @st.composite
        def spoiled(draw: st.DrawFn) -> BaseModel:
            values = list(draw(st.tuples(*(g for _, g, _ in fields))))
            index, strategy = draw(st.sampled_from(bad_fields))
            values[index] = draw(strategy)
            return build(values)
        bad = spoiled()
    return cls, good, bad


def reference_row(data: Any, shape: Shape) -> Any:
    """The row of one model dict of pydantic's JSON, by ``rows@1``'s definition: its values
    in the order of the class's fields (pydantic writes them in the instance's ``__dict__``
    order, which need not be that)."""
    if shape.kind == ROW:
        assert data.keys() == set(shape.names)
        row = [data[name] for name in shape.names]
        for position, inner in shape.nested:
            if row[position] is not None:
                row[position] = reference_row(row[position], inner)
        return row
    assert shape.inner is not None
    if shape.kind == LIST:
        return [None if v is None else reference_row(v, shape.inner) for v in data]
    return {k: None if v is None else reference_row(v, shape.inner) for k, v in data.items()}


def _distinct(items: list[Any]) -> list[Any]:
    """Copies, so that no object is in two items: shared objects are written as references
    (test_references.py), never as rows."""
    return [copy.deepcopy(item) for item in items]


def _row_readers(cls: type[BaseModel]) -> list[Callable[[list[Any], Any], Any]]:
    """The inlined row reader flujo uses, and the one-function-per-class form it falls
    back to for classes too large to inline."""
    schema: dict[str, Any] = cls.__pydantic_core_schema__  # type: ignore[assignment]
    return [GuardWriter(rows=True).build(schema)[1],
            GuardWriter(inline=False, rows=True).build(schema)[1]]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_rows_are_the_models_own_json_without_the_names(data: st.DataObject) -> None:
    cls, good, bad = data.draw(models())
    typed = typed_model(cls)
    assert typed is not None and typed.shape is not None
    items = _distinct(data.draw(st.lists(good, min_size=2, max_size=4)))
    rows = typed.dump_rows(items, [].append)
    assert rows is not None
    reference = [reference_row(d, typed.shape)
                 for d in typed.list_serializer().to_python(items, mode="json")]
    assert orjson.dumps(rows) == orjson.dumps(reference)
    for read in _row_readers(cls):
        assert orjson.dumps(typed._rows()[1].to_python(read(items, [].append), mode="json")) == \
            orjson.dumps(reference)
    if bad is not None:  # one value not exactly of its type: refused as the guard refuses it
        spoiled = [*items, data.draw(bad)]
        assert not typed.list_guard(spoiled, [].append)
        assert typed.dump_rows(spoiled, [].append) is None
        assert all(read(spoiled, [].append) is None for read in _row_readers(cls))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_generated_models_round_trip_through_rows(data: st.DataObject) -> None:
    cls, good, _ = data.draw(models())
    items = _distinct(data.draw(st.lists(good, min_size=2, max_size=4)))
    registry = TypeRegistry()
    encoded = safe_serialize(items, registry=registry)
    assert encoded[TAG] == "rows@2"
    assert_same(safe_deserialize(orjson.loads(orjson.dumps(encoded)), registry=registry), items)
    shape = typed_model(cls).shape  # type: ignore[union-attr]
    assert shape is not None
    dicts = TypeAdapter(list[cls]).dump_python(items, mode="json")  # type: ignore[valid-type]
    assert encoded[VALUE][2] == [reference_row(d, shape) for d in dicts]


class Empty(BaseModel):
    pass


class HoldsEmpty(BaseModel):
    a: int
    e: Empty
    es: list[Empty]


def test_models_without_fields_have_rows_too() -> None:
    """A class without fields (or holding one) keeps the typed form: its row is ``[]``."""
    items = [HoldsEmpty(a=n, e=Empty(), es=[Empty() for _ in range(n)]) for n in range(3)]
    encoded = safe_serialize(items)
    assert encoded[TAG] == "rows@2"
    assert encoded[VALUE][1:] == [["a", {"e": []}, {"es": {"list": []}}],
                                  [[0, [], []], [1, [], [[]]], [2, [], [[], []]]]]
    assert_same(safe_deserialize(orjson.loads(orjson.dumps(encoded))), items)
    assert safe_serialize([Empty(), Empty()])[VALUE][1:] == [[], [[], []]]


def test_rows_follow_the_class_fields_whatever_the_instance_dict_order() -> None:
    """A field popped from ``__dict__`` and set again moves to its end; pydantic writes the
    dict's order, the row holds the class's."""
    items = [HoldsEmpty(a=n, e=Empty(), es=[]) for n in range(2)]
    moved = items[0].__dict__.pop("a")
    items[0].__dict__["a"] = moved
    assert list(items[0].__dict__) == ["e", "es", "a"]
    encoded = safe_serialize(items)
    assert encoded[VALUE][2] == [[0, [], []], [1, [], []]]
    back = safe_deserialize(orjson.loads(orjson.dumps(encoded)))
    # the same fields and values; the instance dict in the class's order again
    assert back == items and all(type(b) is HoldsEmpty for b in back)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_generated_models_with_unset_fields_round_trip_through_rows(
        data: st.DataObject) -> None:
    """Models left with some fields unset (as SDK objects parsed from JSON are) keep the
    typed form, one model or a list, and come back with the same ``model_fields_set``."""
    cls, good, _ = data.draw(models())
    items = _distinct(data.draw(st.lists(good, min_size=1, max_size=4)))
    names = set(cls.model_fields)
    # only a field with a default can be unset but by model_construct; rows note those
    optional = sorted(n for n, f in cls.model_fields.items() if not f.is_required())
    for item in items:
        unset = data.draw(st.sets(st.sampled_from(optional))) if optional else set()
        object.__setattr__(item, "__pydantic_fields_set__", names - unset)
    registry = TypeRegistry()
    for value in (items, items[0]):
        encoded = safe_serialize(value, registry=registry)
        for tagged in (encoded,) if type(encoded) is dict else encoded:
            assert type(tagged[VALUE]) is list, "a typed form"
        assert_same(safe_deserialize(orjson.loads(orjson.dumps(encoded)), registry=registry),
                    value)


def _guards_with_table(cls: type[BaseModel], table_min: int) -> list[Any]:
    """The guard, list guard and row reader of ``cls``, with the fields ``exact_fields``
    checks checked by it once a model has ``table_min`` of them."""
    from flujo.serialization import _guard

    schema: dict[str, Any] = cls.__pydantic_core_schema__  # type: ignore[assignment]
    saved = _guard._TABLE_MIN
    _guard._TABLE_MIN = table_min
    try:
        return [*GuardWriter().build(schema), GuardWriter(rows=True).build(schema)[1]]
    finally:
        _guard._TABLE_MIN = saved


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_checking_fields_in_one_compiled_call_changes_nothing(data: st.DataObject) -> None:
    """``exact_fields`` (wide models' fields in one call) accepts, refuses, reads and notes
    exactly what the inline checks do: the same generated models, with every such field in
    the call and with none."""
    cls, good, bad = data.draw(models())
    table, inline = _guards_with_table(cls, 1), _guards_with_table(cls, 10**9)
    items = _distinct(data.draw(st.lists(good, min_size=1, max_size=3)))
    if bad is not None:
        items.append(data.draw(bad))
    for one in items:
        noted: tuple[list[int], list[int]] = ([], [])
        verdicts = [guard(one, lambda o, n=n: n.append(id(o)))
                    for guard, n in ((table[0], noted[0]), (inline[0], noted[1]))]
        assert verdicts[0] == verdicts[1]
        if verdicts[0]:
            assert sorted(noted[0]) == sorted(noted[1])
    assert table[1](items, [].append) == inline[1](items, [].append)
    assert table[2](items, [].append) == inline[2](items, [].append)


def test_a_wide_models_guard_checks_its_simple_fields_in_one_call() -> None:
    from flujo.serialization import _guard

    wide = create_model("Wide60", **{f"f{i}": ((int, str, float | None, AwareDatetime,
                                                 list[int], Decimal)[i % 6], ...)
                                     for i in range(60)})
    writer = GuardWriter()
    writer.build(wide.__pydantic_core_schema__)  # type: ignore[arg-type]
    source = "\n".join(writer.sources)
    assert source.count("_exact(") == 2  # the model's guard, and the list's (inlined)
    assert "d0['f59']" not in source and _guard._TABLE_MIN <= 60
    values = {f"f{i}": (1, "s", None, datetime(2024, 1, 1, tzinfo=UTC), [1, 2],
                        Decimal("1.5"))[i % 6] for i in range(60)}
    obj = wide.model_construct(**values)
    assert writer.namespace["_guard0"](obj, [].append)
    for name, wrong in (("f0", True), ("f2", float("inf")), ("f3", datetime(2024, 1, 1)),
                        ("f4", [1, "2"]), ("f5", Decimal("NaN")), ("f1", None)):
        spoiled = wide.model_construct(**{**values, name: wrong})
        assert not writer.namespace["_guard0"](spoiled, [].append), name
    assert safe_deserialize(safe_serialize([obj, obj.model_copy()]))[1] == obj
