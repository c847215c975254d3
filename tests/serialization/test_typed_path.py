"""The typed fast path: pydantic-core writes a model only when that loses nothing.

Every trap below is a value pydantic itself would write without complaint and read back as
something else; each must make flujo fall back to the generic (tagged) form and still
round-trip exactly.
"""

from __future__ import annotations

import enum
from datetime import UTC, date, datetime, timedelta, timezone, tzinfo
from decimal import Decimal
from functools import cached_property
from typing import Any, Literal
from uuid import UUID
from zoneinfo import ZoneInfo

import orjson
import pytest
from pydantic import BaseModel, ConfigDict, Field, computed_field, field_validator
from pydantic_core import TzInfo

from flujo.exceptions import UnserializableTypeError
from flujo.serialization import (
    TAG,
    VALUE,
    TypeRegistry,
    encode_with_manifest,
    safe_deserialize,
    safe_serialize,
)
from flujo.serialization._datetimes import datetime_text

from ._support import assert_same


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Level(enum.IntEnum):
    LOW = 1


class Child(BaseModel):
    name: str


class SpecialChild(Child):
    secret: int = 7


class Record(BaseModel):
    s: str
    i: int
    f: float
    d: Decimal
    u: UUID
    at: datetime
    day: date
    color: Color
    tags: list[str]
    child: Child | None = None
    counts: dict[str, int] = Field(default_factory=dict)

    @cached_property
    def shout(self) -> str:
        return self.s.upper()


class Loud(str):
    pass


class Later(datetime):
    pass


def good(**changes: Any) -> Record:
    values: dict[str, Any] = {
        "s": "x", "i": 3, "f": 1.5, "d": Decimal("1.10"), "u": UUID(int=5),
        "at": datetime(2024, 1, 2, 3, 4, 5, 6, tzinfo=UTC), "day": date(2024, 1, 2),
        "color": Color.RED, "tags": ["a", "b"], "child": Child(name="c"), "counts": {"n": 1}}
    values.update(changes)
    return Record.model_construct(**values)


def round_trip(value: Any, registry: TypeRegistry) -> tuple[Any, Any]:
    data = safe_serialize(value, registry=registry)
    return data, safe_deserialize(orjson.loads(orjson.dumps(data)), registry=registry)


@pytest.fixture
def registry() -> TypeRegistry:
    return TypeRegistry()


def test_an_exactly_typed_model_is_written_in_its_own_json(registry: TypeRegistry) -> None:
    data, back = round_trip(good(), registry)
    assert type(data[VALUE]) is list and data[VALUE][0]["d"] == "1.10"
    assert_same(back, good())
    assert back.at.tzinfo is UTC  # a datetime.timezone again, not pydantic's TzInfo


def test_a_datetime_subclass_is_refused_not_flattened(registry: TypeRegistry) -> None:
    with pytest.raises(UnserializableTypeError, match="Later"):
        safe_serialize(good(at=Later(2024, 1, 1, tzinfo=UTC)), registry=registry)


def test_a_str_subclass_in_a_str_field_keeps_its_class_not_flattened(
        registry: TypeRegistry) -> None:
    loud = Loud("x")
    loud.volume = 11  # type: ignore[attr-defined]
    data, back = round_trip(good(s=loud), registry)
    assert type(data[VALUE]) is dict  # the generic form: the typed one holds plain JSON types
    assert type(back.s) is Loud and back.s == "x" and back.s.volume == 11


@pytest.mark.parametrize("trap", [
    {"i": True},
    {"i": Level.LOW},
    {"i": 2**70},
    {"f": 1},
    {"f": float("nan")},
    {"f": float("inf")},
    {"d": Decimal("NaN")},
    {"child": SpecialChild(name="c")},
    {"tags": ("a", "b")},
    {"counts": {"n": True}},
    {"color": "red"},
], ids=lambda trap: next(iter(trap)) + ":" + type(next(iter(trap.values()))).__name__)
def test_a_value_pydantic_would_change_takes_the_generic_path(
        registry: TypeRegistry, trap: dict[str, Any]) -> None:
    value = good(**trap)
    data, back = round_trip(value, registry)
    assert type(data[VALUE]) is dict, "the trap must not be written by pydantic-core"
    assert_same(back, value)


def test_pydantic_tzinfo_is_typed_and_reads_back_as_timezone(registry: TypeRegistry) -> None:
    value = good(at=datetime(2024, 1, 1, tzinfo=TzInfo(3600)))
    data, back = round_trip(value, registry)
    assert type(data[VALUE]) is list
    assert back.at == value.at and back.at.tzinfo == timezone(timedelta(hours=1))


def test_a_cached_property_in_the_instance_dict_is_not_stored(registry: TypeRegistry) -> None:
    value = good()
    assert value.shout == "X"  # now in value.__dict__
    data, back = round_trip(value, registry)
    assert type(data[VALUE]) is dict  # the extra __dict__ entry: generic, which skips it
    assert_same(back, good())


class WithValidator(BaseModel):
    n: int

    @field_validator("n")
    @classmethod
    def double(cls, n: int) -> int:
        return n * 2


class WithAlias(BaseModel):
    n: int = Field(alias="N")


class WithComputed(BaseModel):
    n: int

    @computed_field  # type: ignore[prop-decorator]
    @property
    def m(self) -> int:
        return self.n + 1


class WithExtra(BaseModel):
    model_config = ConfigDict(extra="allow")
    n: int


class WithAny(BaseModel):
    n: Any


@pytest.mark.parametrize("value", [
    WithValidator.model_construct(n=3), WithAlias.model_construct(n=3),
], ids=lambda v: type(v).__name__)
def test_validators_and_aliases_do_not_change_what_pydantic_writes_so_they_take_the_typed_form(
        registry: TypeRegistry, value: BaseModel) -> None:
    # model_construct bypassed the validator (n=3 is below its bound); reading does not run
    # it either, and the field is read by its name, not its alias
    data, back = round_trip(value, registry)
    assert data[VALUE] == [{"n": 3}]
    assert_same(back, value)


@pytest.mark.parametrize("value", [
    WithComputed(n=3), WithExtra(n=3, more=datetime(2024, 1, 1)), WithAny(n=Decimal("1")),
], ids=lambda v: type(v).__name__)
def test_classes_pydantic_would_not_round_trip_exactly_stay_generic(
        registry: TypeRegistry, value: BaseModel) -> None:
    data, back = round_trip(value, registry)
    assert type(data[VALUE]) is dict
    assert_same(back, value)


def test_a_list_of_one_typed_class_is_one_rows_object(registry: TypeRegistry) -> None:
    values = [good(i=n) for n in range(3)]
    data, back = round_trip(values, registry)
    assert data[TAG] == "rows@2"
    assert data[VALUE][0] == f"{Record.__module__}:Record@1" and len(data[VALUE][2]) == 3
    assert_same(back, values)


@pytest.mark.parametrize("odd_one", [good(i=True), Child(name="x"), None])
def test_a_list_with_any_odd_item_is_written_item_by_item(
        registry: TypeRegistry, odd_one: Any) -> None:
    values = [good(), odd_one, good(i=9)]
    data, back = round_trip(values, registry)
    assert type(data) is list
    assert_same(back, values)


def test_typed_models_off_still_reads_the_typed_form() -> None:
    writer, reader = TypeRegistry(), TypeRegistry(typed_models=False)
    assert type(safe_serialize(good(), registry=reader)[VALUE]) is dict
    data = safe_serialize([good(), good()], registry=writer)
    assert_same(safe_deserialize(data, registry=reader), [good(), good()])


def test_migrations_receive_the_form_that_was_stored() -> None:
    class ItemV1(BaseModel):
        name: str

    class Item(BaseModel):
        name: str
        qty: int

    seen: list[Any] = []

    def v1_to_v2(v: Any) -> Any:
        """v1 had no qty: add it in whichever form the value was written."""
        seen.append(type(v).__name__)
        if type(v) is list:
            return [{**v[0], "qty": 1}]
        return {**v, "qty": 1}

    old = TypeRegistry()
    old.register_type(ItemV1, name="item", version=1)
    written_typed = safe_serialize(ItemV1(name="a"), registry=old)
    written_batch = safe_serialize([ItemV1(name="b"), ItemV1(name="b")], registry=old)
    assert type(written_typed[VALUE]) is list and written_batch[TAG] == "rows@2"
    new = TypeRegistry()
    new.register_type(Item, name="item", version=2, migrations={1: v1_to_v2})
    assert safe_deserialize(written_typed, registry=new) == Item(name="a", qty=1)
    assert safe_deserialize(written_batch, registry=new) == [Item(name="b", qty=1)] * 2
    legacy_batch = {TAG: "models@1", VALUE: [written_batch[VALUE][0], [{"name": "b"}] * 2]}
    assert safe_deserialize(legacy_batch, registry=new) == [Item(name="b", qty=1)] * 2
    assert safe_deserialize({TAG: "item@1", VALUE: {"name": "c"}}, registry=new) == Item(
        name="c", qty=1)
    assert seen == ["list", "list", "list", "list", "list", "dict"]


def test_the_typed_form_is_refused_for_a_class_flujo_would_not_write_that_way() -> None:
    from flujo.exceptions import DeserializationError

    class Pairs(BaseModel):
        pairs: set[tuple[int, int]]

    registry = TypeRegistry()
    assert type(safe_serialize(Pairs(pairs={(1, 2)}), registry=registry)[VALUE]) is dict
    forged = {TAG: f"{Pairs.__module__}:{Pairs.__qualname__}@1", VALUE: [{"pairs": [[1, 2]]}]}
    with pytest.raises(DeserializationError, match=r"Pairs\.pairs is now typed as 'set'.*"
                                                   r"migration \(at \$\.pairs\)"):
        safe_deserialize(forged, registry=registry)


@pytest.mark.parametrize("at", [
    datetime(2024, 3, 31, 2, 30, tzinfo=ZoneInfo("Europe/Paris")),  # a gap: +01:00 read as +02:00
    datetime(2024, 10, 27, 2, 30, tzinfo=ZoneInfo("Europe/Paris")),  # repeated wall time
    datetime(2024, 10, 27, 2, 30, fold=1, tzinfo=ZoneInfo("Europe/Paris")),
    datetime(1850, 1, 1, tzinfo=ZoneInfo("Europe/Paris")),  # local mean time: +00:09:21
    datetime(2024, 1, 1, tzinfo=timezone(timedelta(hours=-5), "EST")),
    datetime(2024, 1, 1, tzinfo=timezone(timedelta(seconds=30))),
    datetime(2021, 11, 7, 1, 30, fold=1),
    datetime(2021, 11, 7, 1, 30, fold=1, tzinfo=UTC),
], ids=repr)
def test_a_datetime_pydantic_would_change_is_written_as_its_text_in_a_row(
        registry: TypeRegistry, at: datetime) -> None:
    """pydantic-core would drop the zone, the name or the fold (or refuse the offset): the
    model takes the one-row form, its datetime flujo's own text, as rows@3."""
    value = good(at=at)
    data, manifest = encode_with_manifest(value, registry=registry)
    fields, row = data[VALUE]
    assert row[fields.index("at")] == datetime_text(at)
    assert manifest["rows"] == 3
    back = safe_deserialize(orjson.loads(orjson.dumps(data)), registry=registry)
    assert_same(back, value)


def test_the_datetime_of_a_typed_model_is_its_iso_text_as_pydantic_writes_it(
        registry: TypeRegistry) -> None:
    value = good(at=datetime(2024, 1, 1, 12, tzinfo=timezone(timedelta(hours=2))))
    data, manifest = encode_with_manifest(value, registry=registry)
    assert data[VALUE] == [value.model_dump(mode="json")] and "rows" not in manifest


class Tree(BaseModel):
    label: str
    size: int
    children: list[Tree] = Field(default_factory=list)


class Level4(BaseModel):
    n: int


class Level3(BaseModel):
    inner: Level4


class Level2(BaseModel):
    inner: Level3


class Level1(BaseModel):
    inner: Level2


class Level0(BaseModel):
    inner: Level1


def test_a_recursive_model_is_typed_and_a_trap_deep_inside_is_found(
        registry: TypeRegistry) -> None:
    def tree(depth: int, size: Any = 1) -> Tree:
        kids = [tree(depth - 1, size)] if depth else []
        return Tree.model_construct(label=f"t{depth}", size=size if not depth else 1,
                                    children=kids)

    data, back = round_trip(tree(6), registry)
    assert type(data[VALUE]) is list
    assert_same(back, tree(6))
    trapped = tree(6, size=True)  # a bool in an int field at the deepest level
    data, back = round_trip(trapped, registry)
    assert type(data[VALUE]) is dict
    assert_same(back, trapped)


def test_models_nested_past_the_inlined_levels_are_still_checked(
        registry: TypeRegistry) -> None:
    def chain(n: Any) -> Level0:
        return Level0(inner=Level1(inner=Level2(inner=Level3(inner=Level4.model_construct(n=n)))))

    data, back = round_trip(chain(5), registry)
    assert type(data[VALUE]) is list
    for trap in (True, 2**70, Level.LOW):
        data, back = round_trip(chain(trap), registry)
        assert type(data[VALUE]) is dict, trap
        assert_same(back, chain(trap))


def test_a_field_swapped_for_a_stray_attribute_fails_the_guard() -> None:
    from flujo.serialization._typed import typed_model

    typed = typed_model(Child)
    assert typed is not None
    child = Child(name="c")
    assert typed.guard(child, [].append)
    del child.__dict__["name"]
    child.__dict__["stray"] = "c"  # same number of entries, but not the declared field
    assert not typed.guard(child, [].append)


def _nested_lists(levels: int, inner: Any) -> Any:
    kind = inner
    for _ in range(levels):
        kind = list[kind]
    return kind


@pytest.mark.parametrize("levels", [18, 19, 20, 21, 25])
def test_a_field_of_deeply_nested_lists_round_trips(registry: TypeRegistry, levels: int) -> None:
    # CPython compiles at most 20 nested loops and try blocks in one function: a guard
    # past that is not compiled, and such values are written in the generic form.
    from pydantic import create_model

    deep = create_model(f"Deep{levels}", x=(_nested_lists(levels, int), ...))
    value: Any = 1
    for _ in range(levels):
        value = [value]
    for written in (deep(x=value), [deep(x=value), deep(x=value)]):
        _, back = round_trip(written, registry)
        assert_same(back, written)


def test_nested_models_too_deep_to_inline_together_are_still_typed(
        registry: TypeRegistry) -> None:
    from pydantic import create_model

    leaf = create_model("DeepLeaf", m=(_nested_lists(7, int), []))
    mid = create_model("DeepMid", ls=(_nested_lists(6, leaf), []))
    top = create_model("DeepTop", ms=(_nested_lists(6, mid), []))
    value = top(ms=[[[[[[mid(ls=[[[[[[leaf(m=[[[[[[[1]]]]]]])]]]]]])]]]]]])
    data, back = round_trip(value, registry)
    assert type(data[VALUE]) is list  # typed, one guard function per class
    assert_same(back, value)


def test_wide_nested_models_get_one_guard_per_class_instead_of_inlined_code(
        registry: TypeRegistry) -> None:
    from pydantic import create_model

    inner = create_model("WideInner", **{f"i{n}": (int, n) for n in range(30)})
    middle = create_model("WideMiddle", **{f"m{n}": (inner, inner()) for n in range(30)})
    outer = create_model("WideOuter", **{f"o{n}": (middle, middle()) for n in range(30)})
    value = outer.model_validate(outer().model_dump())  # every field set: the typed form
    data, back = round_trip(value, registry)
    assert type(data[VALUE]) is list
    assert_same(back, value)


def test_the_generated_guard_source_is_shown_in_tracebacks() -> None:
    import linecache
    import traceback

    from flujo.serialization._typed import typed_model

    typed = typed_model(Record)
    assert typed is not None
    filename = typed.guard.__code__.co_filename
    assert "Record" in filename
    assert linecache.getline(filename, 1).startswith("def _guard")

    def explode(obj: Any) -> None:
        raise RuntimeError("inside the guard")

    with pytest.raises(RuntimeError) as info:
        typed.guard(good(), explode)
    shown = "".join(traceback.format_exception(info.value))
    assert "keep(o)" in shown  # the generated line itself, not just a file name


class Call(BaseModel):
    role: Literal["user", "assistant"]
    flag: Literal[1, True, None, "x"]
    arguments: dict[str, Any]
    extra: Any
    items: list[Any]


def _call(**changes: Any) -> Call:
    values: dict[str, Any] = {
        "role": "user", "flag": True, "extra": None, "items": [1, "a", [2.5, {"b": None}]],
        "arguments": {"q": "x", "n": 3, "f": -0.0, "big": 2**64 - 1, "$t": "not a tag",
                      "nested": {"deep": [True, None, {"k": "v"}]}}}
    values.update(changes)
    return Call.model_construct(**values)


def test_literal_and_any_fields_holding_exactly_json_take_the_typed_form(
        registry: TypeRegistry) -> None:
    value = _call()
    data, back = round_trip(value, registry)
    assert type(data[VALUE]) is list, "written by pydantic-core"
    assert data[VALUE][0]["arguments"]["$t"] == "not a tag"  # never read as a tag
    assert_same(back, value)
    assert back.flag is True and type(back.arguments["big"]) is int
    data, back = round_trip([_call(flag=n) for n in (1, True, None, "x")], registry)
    assert data[TAG] == "rows@2"
    assert [(type(c.flag), c.flag) for c in back] == [
        (int, 1), (bool, True), (type(None), None), (str, "x")]


@pytest.mark.parametrize("trap", [
    {"flag": 1.0}, {"flag": False}, {"role": Loud("user")},
    {"extra": (1, 2)}, {"extra": Decimal("1")}, {"extra": float("nan")}, {"extra": 2**64},
    {"extra": datetime(2024, 1, 1, tzinfo=UTC)}, {"extra": {1: "a"}}, {"extra": Loud("a")},
    {"extra": Level.LOW}, {"items": [{1, 2}]},
    {"items": [Color.RED]},
], ids=lambda trap: next(iter(trap)) + ":" + type(next(iter(trap.values()))).__name__)
def test_a_literal_or_any_value_pydantic_would_change_takes_the_generic_path(
        registry: TypeRegistry, trap: dict[str, Any]) -> None:
    value = _call(**trap)
    data, back = round_trip(value, registry)
    assert type(data[VALUE]) is dict, "the trap must not be written by pydantic-core"
    assert_same(back, value)


def test_a_key_pydantic_would_rewrite_in_an_any_value_takes_the_generic_path(
        registry: TypeRegistry) -> None:
    # pydantic-core writes a key's lone surrogate as U+FFFD; the generic form keeps the key
    # (and writing it as JSON then fails with an error naming it, as for any such text)
    data = safe_serialize(_call(arguments={"k": {"\ud800": 1}}), registry=registry)
    assert type(data[VALUE]) is dict and data[VALUE]["arguments"]["k"] == {"\ud800": 1}


def test_a_list_shared_inside_any_fields_keeps_its_identity(registry: TypeRegistry) -> None:
    shared = [1, 2]
    value = _call(extra=shared, items=[shared])
    data, back = round_trip(value, registry)
    assert type(data[VALUE]) is dict
    assert back.extra is back.items[0] and back.extra == [1, 2]


def test_any_values_nested_deeper_than_the_typed_form_takes_are_written_generically(
        registry: TypeRegistry) -> None:
    deep: Any = "leaf"
    for _ in range(40):
        deep = {"d": deep}
    data, back = round_trip(_call(extra=deep), registry)
    assert type(data[VALUE]) is dict
    assert_same(back, _call(extra=deep))


@pytest.mark.parametrize("levels", [31, 32, 33])
def test_any_values_in_a_dict_or_list_field_reach_as_deep_as_in_an_any_field(
        registry: TypeRegistry, levels: int) -> None:
    """The items of a ``dict[str, Any]`` or ``list[Any]`` field are checked (in one call of
    plain_json) to the depth an ``Any`` field's value is: 32 levels of containers."""
    deep: Any = "leaf"
    for _ in range(levels):
        deep = {"d": deep}
    typed = levels <= 32
    for changes in ({"extra": deep}, {"arguments": {"k": deep}}, {"items": [deep]},
                    {"items": [1, deep]}):
        value = _call(**changes)
        data, back = round_trip(value, registry)
        assert (type(data[VALUE]) is list) is typed, (levels, next(iter(changes)))
        assert_same(back, value)


def test_a_literal_of_enum_members_stays_generic(registry: TypeRegistry) -> None:
    class Pick(BaseModel):
        color: Literal[Color.RED]

    data, back = round_trip(Pick(color=Color.RED), registry)
    assert type(data[VALUE]) is dict and back.color is Color.RED


def test_typed_literal_and_any_values_read_as_stored_after_the_class_changed() -> None:
    """Reading runs no validation: a value today's Literal no longer allows comes back as it
    was stored, as unpickling would bring it back."""
    class Before(BaseModel):
        role: Literal["user", "tool"]
        data: dict[str, Any]

    registry = TypeRegistry()
    registry.register_type(Before, name="t.Message")
    stored = orjson.loads(orjson.dumps(safe_serialize(
        Before(role="tool", data={"a": [1]}), registry=registry)))
    assert type(stored[VALUE]) is list

    class After(BaseModel):
        role: Literal["user"]
        data: dict[str, Any]

    later = TypeRegistry()
    later.register_type(After, name="t.Message")
    back = safe_deserialize(stored, registry=later)
    assert type(back) is After and back.role == "tool" and back.data == {"a": [1]}


class Usage(BaseModel):
    tokens: int
    cached: bool = False


class Reply(BaseModel):
    text: str
    name: str | None = None
    usage: Usage | None = None
    tags: list[str] = Field(default_factory=list)


def test_a_model_with_unset_fields_takes_the_one_row_form_and_keeps_its_fields_set(
        registry: TypeRegistry) -> None:
    # parsed from an API's JSON: the absent optional fields are unset, as in SDK objects
    value = Reply.model_validate({"text": "hi", "usage": {"tokens": 3}})
    data, back = round_trip(value, registry)
    fields, row = data[VALUE]
    assert fields == ["text", "name", {"usage": ["tokens", "cached", "$unset"]}, "tags",
                      "$unset"]
    assert row == ["hi", None, [3, False, ["cached"]], [], ["name", "tags"]]
    assert_same(back, value)
    assert back.model_fields_set == {"text", "usage"} and back.usage is not None
    assert back.usage.model_fields_set == {"tokens"}
    # every field set: the model's own JSON, as before
    assert safe_serialize(Reply(text="a", name=None, usage=None, tags=[]),
                          registry=registry)[VALUE] == [
        {"text": "a", "name": None, "usage": None, "tags": []}]


def test_an_unset_field_keeps_its_stored_value_not_the_default(registry: TypeRegistry) -> None:
    # model_construct may leave a field unset with any value; unpickling keeps it
    value = Reply.model_construct(_fields_set={"text"}, text="x", name="not the default",
                                  usage=None, tags=["t"])
    data, back = round_trip(value, registry)
    assert type(data[VALUE]) is list and data[VALUE][1][-1] == ["name", "tags", "usage"]
    assert_same(back, value)


def test_lists_with_unset_fields_are_rows_noting_them(registry: TypeRegistry) -> None:
    values = [Reply.model_validate(item) for item in (
        {"text": "a"}, {"text": "b", "name": "n", "usage": {"tokens": 1, "cached": True},
                        "tags": ["x"]}, {"text": "c", "tags": []})]
    data, back = round_trip(values, registry)
    assert data[TAG] == "rows@2"
    assert data[VALUE][1][-1] == "$unset"
    assert [row[-1] for row in data[VALUE][2]] == [["name", "tags", "usage"], None,
                                                   ["name", "usage"]]
    assert_same(back, values)
    # no model with an unset field: the same rows without the unset names
    full = [Reply(text="a", name=None, usage=None, tags=[]) for _ in range(2)]
    assert safe_serialize(full, registry=registry)[VALUE][1] == [
        "text", "name", {"usage": ["tokens", "cached"]}, "tags"]


def test_the_one_row_form_reads_after_the_class_changed() -> None:
    """A changed default does not replace the stored value of an unset field; a field
    the class lost is refused, unset or not."""
    class Before(BaseModel):
        text: str
        mood: str = "calm"
        gone: int = 0

    registry = TypeRegistry()
    registry.register_type(Before, name="t.Reply")
    stored = orjson.loads(orjson.dumps(safe_serialize(Before(text="x"), registry=registry)))

    class After(BaseModel):
        text: str
        mood: str = "angry"
        gone: int = 0
        added: list[int] = Field(default_factory=list)

    later = TypeRegistry()
    later.register_type(After, name="t.Reply")
    back = safe_deserialize(stored, registry=later)
    assert type(back) is After and back.mood == "calm" and back.added == []
    assert back.model_fields_set == {"text"}

    class Smaller(BaseModel):
        text: str
        mood: str = "calm"

    smaller = TypeRegistry()
    smaller.register_type(Smaller, name="t.Reply")
    from flujo.exceptions import DeserializationError

    with pytest.raises(DeserializationError, match=r"\['gone'\] no longer exist"):
        safe_deserialize(stored, registry=smaller)


@pytest.mark.parametrize("forged, message", [
    ([["text", "$unset"], ["x", ["nope"]]], "names 'nope', which is not one of"),
    ([["text", "$unset"], ["x", [1]]], "typed form does not fit"),
    ([["$unset", "text"], [None, "x"]], "is the last field"),
    ([["text", {"$unset": ["a"]}], ["x", None]], "is the last field"),
    ([["text"], ["x", None]], "expected a row of 1 values"),
])
def test_a_forged_one_row_form_is_refused(forged: list[Any], message: str) -> None:
    from flujo.exceptions import DeserializationError

    registry = TypeRegistry()
    registry.register_type(Reply, name="t.Reply")
    with pytest.raises(DeserializationError, match=message) as info:
        safe_deserialize({"a": {TAG: "t.Reply@1", VALUE: forged}}, registry=registry)
    # at the model (or inside it), never at a row index the one-row form does not have
    assert info.value.path.startswith("$.a") and not info.value.path.startswith("$.a[0]")


def test_a_fields_set_that_is_not_a_set_takes_the_generic_path(registry: TypeRegistry) -> None:
    value = Reply(text="a")
    object.__setattr__(value, "__pydantic_fields_set__", frozenset({"text"}))
    data = safe_serialize(value, registry=registry)
    assert type(data[VALUE]) is dict


def test_migrations_receive_models_with_unset_fields_in_the_one_model_form() -> None:
    class NoteV1(BaseModel):
        text: str
        lang: str = "en"

    class Note(BaseModel):
        body: str
        lang: str = "en"

    seen: list[Any] = []

    def v1_to_v2(v: Any) -> Any:
        """text was renamed body; the unset names (when any) come along with the fields."""
        seen.append(v)
        model = dict(v[0])
        model["body"] = model.pop("text")
        return [model]

    old = TypeRegistry()
    old.register_type(NoteV1, name="note", version=1)
    one = safe_serialize(NoteV1(text="a"), registry=old)
    many = safe_serialize([NoteV1(text="b"), NoteV1(text="c", lang="fr")], registry=old)
    assert len(one[VALUE]) == 2 and many[TAG] == "rows@2"  # the one-row form, rows@2
    new = TypeRegistry()
    new.register_type(Note, name="note", version=2, migrations={1: v1_to_v2})
    back = safe_deserialize(orjson.loads(orjson.dumps(one)), registry=new)
    assert back == Note(body="a") and back.model_fields_set == {"body"}
    back_many = safe_deserialize(orjson.loads(orjson.dumps(many)), registry=new)
    assert [n.model_fields_set for n in back_many] == [{"body"}, {"body", "lang"}]
    assert seen[0] == [{"text": "a", "lang": "en", "$unset": ["lang"]}]
    assert seen[2] == [{"text": "c", "lang": "fr", "$unset": None}]


def test_without_rows_a_model_with_unset_fields_is_written_as_earlier_releases_read_it() -> None:
    registry = TypeRegistry(model_rows=False)  # for readers before 0.12 (docs/format.md)
    value = Reply.model_validate({"text": "hi"})
    assert type(safe_serialize(value, registry=registry)[VALUE]) is dict
    assert safe_serialize([value, Reply(text="a", name=None, usage=None, tags=[])],
                          registry=registry)[0][TAG] == f"{Reply.__module__}:Reply@1"
    assert_same(safe_deserialize(safe_serialize(value, registry=registry)), value)


def test_an_unhashable_value_in_a_literal_field_takes_the_generic_path(
        registry: TypeRegistry) -> None:
    # was: TypeError (the guard hashed the value to look it up among the literal's values)
    class Mixed(BaseModel):
        a: Literal[1, True]
        b: list[Literal["x", None]] = []

    odd = Mixed(a=1)
    odd.a = [1]  # type: ignore[assignment]  # no validate_assignment
    for value in (odd, [odd, Mixed(a=True)], Mixed.model_construct(a=1, b=[{"k": 1}])):
        _, back = round_trip(value, registry)
        assert_same(back, value)


def test_any_values_read_from_the_typed_form_are_fresh_objects(registry: TypeRegistry) -> None:
    # was: the decoded model held the stored data's own lists and dicts (two decodes shared
    # them, and mutating one changed the input)
    value = _call(extra={"k": [1]}, items=[[2]])
    data = orjson.loads(orjson.dumps(safe_serialize(value, registry=registry)))
    for stored in (data, orjson.loads(orjson.dumps(safe_serialize([value, _call()],
                                                                   registry=registry)))):
        first, second = (safe_deserialize(stored, registry=registry) for _ in range(2))
        one, two = (first, second) if isinstance(first, Call) else (first[0], second[0])
        assert one.extra == two.extra and one.extra is not two.extra
        assert one.items[0] is not two.items[0] and one.arguments["nested"] is not \
            two.arguments["nested"]
        one.extra["k"].append("changed")
        assert two.extra == {"k": [1]}
    assert data == orjson.loads(orjson.dumps(safe_serialize(value, registry=registry)))


def test_a_deeply_nested_forged_any_value_is_refused(registry: TypeRegistry) -> None:
    from flujo.exceptions import DeserializationError

    deep: Any = 1
    for _ in range(100):
        deep = [deep]
    data = safe_serialize(_call(), registry=registry)
    data[VALUE][0]["extra"] = deep
    with pytest.raises(DeserializationError, match="deeper than"):
        safe_deserialize(data, registry=registry)


def test_typed_data_reads_after_the_class_gained_a_model_field_with_a_default() -> None:
    # was: "not enough values to unpack": today's default instance went through the
    # builder of a stored model
    class Inner(BaseModel):
        x: int = 0

    class NoteV1(BaseModel):
        text: str

    class Note(BaseModel):
        text: str
        inner: Inner = Field(default_factory=Inner)
        more: list[Inner] = [Inner(x=2)]

    old, new = TypeRegistry(), TypeRegistry()
    old.register_type(NoteV1, name="t.note")
    new.register_type(Note, name="t.note")
    for value in (NoteV1(text="a"), [NoteV1(text="a"), NoteV1(text="b")]):
        stored = orjson.loads(orjson.dumps(safe_serialize(value, registry=old)))
        back = safe_deserialize(stored, registry=new)
        for note in back if isinstance(back, list) else [back]:
            assert type(note) is Note and note.inner == Inner() and note.more == [Inner(x=2)]
            assert note.model_fields_set == {"text"}


class Stamped(BaseModel):
    at: datetime


def test_the_answer_for_a_zone_is_remembered_by_identity_not_by_equality() -> None:
    from flujo.serialization import _codec

    plain = timezone(timedelta(hours=2))
    named = timezone(timedelta(hours=2), "CEST")  # equal to plain, but its name is stored
    parsed = Stamped.model_validate_json('{"at": "2026-01-02T03:04:05+02:00"}').at.tzinfo
    assert plain == named and type(parsed) is TzInfo
    for _ in range(3):  # asked again: answered from what was remembered
        assert _codec.plain_offset(plain) and not _codec.plain_offset(named)
        assert _codec.plain_offset(parsed)
    assert id(plain) in _codec._PLAIN_ZONES and id(named) in _codec._PLAIN_ZONES

    class Own(tzinfo):  # any other tzinfo may change its answers: asked every time
        def utcoffset(self, dt: datetime | None) -> timedelta:
            return timedelta(hours=1)

    own = Own()
    assert not _codec.plain_offset(own) and id(own) not in _codec._PLAIN_ZONES
    registry = TypeRegistry()
    values = [Stamped(at=datetime(2026, 1, 2, tzinfo=zone)) for zone in (plain, named, plain)]
    back = safe_deserialize(orjson.loads(orjson.dumps(safe_serialize(values, registry=registry))),
                            registry=registry)
    assert [v.at.tzname() for v in back] == ["UTC+02:00", "CEST", "UTC+02:00"]
    assert_same(values, back)
