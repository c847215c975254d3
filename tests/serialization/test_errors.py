"""Errors: the right type, the right builtin base, a path, and never a bare RecursionError."""

from __future__ import annotations

import sys
import threading
import warnings
from collections import OrderedDict, defaultdict, deque
from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from types import ModuleType
from typing import Any
from uuid import UUID

import pytest
from pydantic import BaseModel, ConfigDict

from flujo.exceptions import (
    CircularReferenceError,
    DeserializationError,
    FlujoError,
    FutureVersionError,
    MissingDeserializerError,
    MissingMigrationError,
    NestingTooDeepError,
    RegistrationError,
    SchemaValidationError,
    SerializationError,
    UnknownTypeError,
    UnserializableTypeError,
)
from flujo.serialization import (
    TAG,
    VALUE,
    TypeRegistry,
    UnknownTypeWarning,
    deserialize_from_json,
    safe_deserialize,
    safe_serialize,
)
from flujo.serialization._registry import MAX_UNKNOWN_NAMES

from ._support import Box, Money, Pair, Point, assert_same, make_registry


class Secret:
    """Its repr must never leak into an error message."""

    def __repr__(self) -> str:
        return "Secret(password='hunter2')"


class Node(BaseModel):
    name: str
    child: Any = None


@pytest.fixture
def registry() -> TypeRegistry:
    return make_registry()


# -- the exception tree ---------------------------------------------------------------------
@pytest.mark.parametrize(("exc", "bases"), [
    (SerializationError, (FlujoError, ValueError)),
    (UnserializableTypeError, (SerializationError, FlujoError, TypeError, ValueError)),
    (CircularReferenceError, (SerializationError, FlujoError, ValueError)),
    (NestingTooDeepError, (SerializationError, FlujoError, ValueError)),
    (SchemaValidationError, (SerializationError, FlujoError, ValueError)),
    (DeserializationError, (SerializationError, FlujoError, ValueError)),
    (UnknownTypeError, (DeserializationError, FlujoError, LookupError, ValueError)),
    (MissingDeserializerError, (UnknownTypeError, FlujoError, LookupError)),
    (MissingMigrationError, (DeserializationError, FlujoError, ValueError)),
    (FutureVersionError, (DeserializationError, FlujoError, ValueError)),
    (RegistrationError, (FlujoError, ValueError)),
])
def test_exception_hierarchy(exc: type[Exception], bases: tuple[type, ...]) -> None:
    for base in bases:
        assert issubclass(exc, base), f"{exc.__name__} is not a {base.__name__}"


# -- unknown tags -----------------------------------------------------------------------------
def test_unknown_tag_names_the_tag_and_how_to_register(registry: TypeRegistry) -> None:
    data = {"a": [{TAG: "acme.billing:Invoice@1", VALUE: {"n": 1}}]}
    with pytest.raises(UnknownTypeError) as info:
        safe_deserialize(data, registry=registry)
    err = info.value
    assert err.tag == "acme.billing:Invoice@1"
    assert err.path == "$.a[0]"
    message = str(err)
    assert "acme.billing:Invoice@1" in message
    assert "register_custom_serializer" in message
    assert "import 'acme.billing' before reading, or trust it" in message
    assert "$.a[0]" in message
    assert isinstance(err, LookupError)


def test_non_strict_keeps_unknown_tags_and_warns(registry: TypeRegistry) -> None:
    unknown = {TAG: "acme:Thing@1", VALUE: {"x": [1, 2]}}
    data = {"known": {TAG: "set@1", VALUE: [1]}, "unknown": unknown}
    with pytest.warns(UnknownTypeWarning, match="acme:Thing@1") as caught:
        back = safe_deserialize(data, registry=registry, strict=False)
    assert caught[0].filename == __file__  # the warning points at the caller
    nested = {"a": [[{"b": unknown}]]}
    with pytest.warns(UnknownTypeWarning) as caught:
        safe_deserialize(nested, registry=registry, strict=False)
    assert caught[0].filename == __file__
    assert back["known"] == {1}
    assert back["unknown"] == unknown


def _count_searches(monkeypatch: pytest.MonkeyPatch, registry: TypeRegistry) -> list[str]:
    """The names the registry searches the process for, from now on."""
    searched: list[str] = []
    find = registry._names.find

    def counted(name: str) -> type | None:
        searched.append(name)
        return find(name)

    monkeypatch.setattr(registry._names, "find", counted)
    return searched


def test_non_strict_searches_for_an_unknown_name_once(
        registry: TypeRegistry, monkeypatch: pytest.MonkeyPatch) -> None:
    # Each search walks every class of the process (100-250 µs): a record of many unknown
    # tags read with strict=False would cost that for each.
    searched = _count_searches(monkeypatch, registry)
    data = [{TAG: f"acme:Thing@{version}", VALUE: i} for i in range(50) for version in (1, 2)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnknownTypeWarning)
        assert safe_deserialize(data, registry=registry, strict=False) == data
        assert safe_deserialize(data, registry=registry, strict=False) == data
    assert searched == (["acme:Thing"] if registry.auto_resolve else [])


def test_strict_reads_search_again_every_time(
        registry: TypeRegistry, monkeypatch: pytest.MonkeyPatch) -> None:
    searched = _count_searches(monkeypatch, registry)
    for _ in range(2):
        with pytest.raises(UnknownTypeError):
            safe_deserialize({TAG: "acme:Thing@1", VALUE: 1}, registry=registry)
    assert len(searched) == (2 if registry.auto_resolve else 0)


def test_a_name_found_unknown_is_seen_once_registered_or_imported(
        registry: TypeRegistry, monkeypatch: pytest.MonkeyPatch) -> None:
    class Thing(BaseModel):
        x: int

    stored = {TAG: "acme:Thing@1", VALUE: {"x": 1}}
    with pytest.warns(UnknownTypeWarning):
        assert safe_deserialize(stored, registry=registry, strict=False) == stored
    registry.register_type(Thing, name="acme:Thing")
    assert safe_deserialize(stored, registry=registry, strict=False) == Thing(x=1)
    if not registry.auto_resolve:
        return
    # A module imported since the search may define the class: searched again.
    searched = _count_searches(monkeypatch, registry)
    other = {TAG: "acme:Other@1", VALUE: 1}
    with pytest.warns(UnknownTypeWarning):
        safe_deserialize([other, other], registry=registry, strict=False)
    monkeypatch.setitem(sys.modules, "acme_stand_in", ModuleType("acme_stand_in"))
    with pytest.warns(UnknownTypeWarning):
        safe_deserialize(other, registry=registry, strict=False)
    assert searched == ["acme:Other", "acme:Other"]


def test_the_names_remembered_as_unknown_are_bounded(registry: TypeRegistry) -> None:
    data = [{TAG: f"acme:Thing{i}@1", VALUE: i} for i in range(MAX_UNKNOWN_NAMES + 500)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnknownTypeWarning)
        assert safe_deserialize(data, registry=registry, strict=False) == data
    assert len(registry._unknown_names) <= MAX_UNKNOWN_NAMES


def test_strict_mode_does_not_warn(registry: TypeRegistry) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(UnknownTypeError):
            safe_deserialize({TAG: "acme:Thing@1", VALUE: None}, registry=registry)


# -- unserializable values --------------------------------------------------------------------
def test_unserializable_names_type_and_path_never_repr(registry: TypeRegistry) -> None:
    state = {"steps": [{"ok": 1}, {"out": Box(payload={"k": Secret()})}]}
    with pytest.raises(UnserializableTypeError) as info:
        safe_serialize(state, registry=registry)
    err = info.value
    assert isinstance(err, TypeError)
    assert err.value_type is Secret
    assert err.path == "$.steps[1].out.payload.k"
    message = str(err)
    assert f"{__name__}.Secret" in message
    assert "$.steps[1].out.payload.k" in message
    assert "hunter2" not in message


@pytest.mark.parametrize(("value", "path"), [
    ({1: "a", 2: Secret()}, "$[2]"),
    ({"a": 1, 2: Secret()}, "$[2]"),
    ({"$t": 1, "x": Secret()}, "$.x"),
    ({(1, 2): [Secret()]}, "$[(1, 2)][0]"),
    ([(0, Secret())], "$[0][1]"),
    ({"s": {frozenset({1}): Secret()}}, "$.s[frozenset({1})]"),
    ({"bad key": Secret()}, "$['bad key']"),
    (deque([0, Secret()]), "$[1]"),
])
def test_unserializable_paths_through_containers(
        registry: TypeRegistry, value: Any, path: str) -> None:
    with pytest.raises(UnserializableTypeError) as info:
        safe_serialize(value, registry=registry)
    assert info.value.path == path
    assert f"(at {path})" in str(info.value)


def test_subclass_of_builtin_is_not_silently_its_base(registry: TypeRegistry) -> None:
    class Tags(list[str]):
        pass

    with pytest.raises(UnserializableTypeError, match="Tags"):
        safe_serialize({"t": Tags(["a"])}, registry=registry)


def test_default_serializer_is_a_last_resort(registry: TypeRegistry) -> None:
    data = safe_serialize({"s": Secret()}, registry=registry, default_serializer=lambda o: "x")
    assert data == {"s": "x"}


# -- cycles --------------------------------------------------------------------------------------
# With references=False (for readers before 0.9) a cycle is refused, naming its path; by
# default it is written with references (test_references.py).
@pytest.fixture
def no_references() -> TypeRegistry:
    return make_registry(references=False)


def test_list_containing_itself(no_references: TypeRegistry) -> None:
    loop: list[Any] = [1]
    loop.append(loop)
    with pytest.raises(CircularReferenceError) as info:
        safe_serialize({"a": loop}, registry=no_references)
    assert info.value.path == "$.a[1]"
    assert "$.a[1]" in str(info.value)
    assert "$.a" in str(info.value)


def test_dict_cycle(no_references: TypeRegistry) -> None:
    a: dict[str, Any] = {}
    b: dict[str, Any] = {"a": a}
    a["b"] = b
    with pytest.raises(CircularReferenceError) as info:
        safe_serialize({"root": a}, registry=no_references)
    assert info.value.path == "$.root.b.a"


@pytest.mark.parametrize("key", [1, "$t"])
def test_escaped_dict_cycle(no_references: TypeRegistry, key: Any) -> None:
    loop: dict[Any, Any] = {}
    loop[key] = loop
    with pytest.raises(CircularReferenceError) as info:
        safe_serialize(loop, registry=no_references)
    assert info.value.path == f"$[{key!r}]"


def test_model_cycle(no_references: TypeRegistry) -> None:
    node = Node(name="a")
    node.child = Node(name="b", child=[node])
    with pytest.raises(CircularReferenceError) as info:
        safe_serialize({"tree": node}, registry=no_references)
    assert info.value.path == "$.tree.child.child[0]"


def test_cycle_through_a_tuple(no_references: TypeRegistry) -> None:
    holder: list[Any] = []
    holder.append((holder,))
    with pytest.raises(CircularReferenceError):
        safe_serialize(holder, registry=no_references)


def test_shared_references_are_not_cycles(registry: TypeRegistry) -> None:
    shared = [1, 2]
    assert safe_deserialize(safe_serialize([shared, shared, {"x": shared}], registry=registry),
                            registry=registry) == [[1, 2], [1, 2], {"x": [1, 2]}]


# -- deep nesting --------------------------------------------------------------------------------
def _nest(depth: int, wrap: Any) -> Any:
    value: Any = 0
    for _ in range(depth):
        value = wrap(value)
    return value


ENCODE_NESTINGS = {
    "list": lambda v: [v],
    "dict": lambda v: {"k": v},
    "tuple": lambda v: (v,),
    "escaped-dict": lambda v: {1: v},
    "reserved-key-dict": lambda v: {"$t": v},
    "set-of-frozensets": lambda v: frozenset([v]),
    "deque": lambda v: deque([v]),
    "ordereddict": lambda v: OrderedDict(k=v),
    "defaultdict": lambda v: defaultdict(None, k=v),
    "namedtuple": lambda v: Point(v, None),
    "dataclass": Pair,
    "model": lambda v: Box(payload=v),
}


@pytest.mark.parametrize("wrap", ENCODE_NESTINGS.values(), ids=ENCODE_NESTINGS.keys())
def test_ten_thousand_levels_on_encode(registry: TypeRegistry, wrap: Any) -> None:
    with pytest.raises(NestingTooDeepError) as info:
        safe_serialize(_nest(10_000, wrap), registry=registry)
    assert "max_depth" in str(info.value)


DECODE_NESTINGS = {
    "list": lambda v: [v],
    "dict": lambda v: {"k": v},
    "tuple": lambda v: {TAG: "tuple@1", VALUE: [v]},
    "escaped-dict": lambda v: {TAG: "dict@1", VALUE: [[1, v]]},
    "deque": lambda v: {TAG: "deque@1", VALUE: {"items": [v], "maxlen": None}},
    "defaultdict": lambda v: {TAG: "defaultdict@1", VALUE: {"factory": None, "items": [[1, v]]}},
    "custom": lambda v: {TAG: "money@1", VALUE: v},
    "model": lambda v: {TAG: f"{Box.__module__}:Box@1", VALUE: {"payload": v}},
}


@pytest.mark.parametrize("wrap", DECODE_NESTINGS.values(), ids=DECODE_NESTINGS.keys())
def test_ten_thousand_levels_on_decode(registry: TypeRegistry, wrap: Any) -> None:
    with pytest.raises(NestingTooDeepError):
        safe_deserialize(_nest(10_000, wrap), registry=registry)


def test_deep_nesting_in_a_worker_thread(registry: TypeRegistry) -> None:
    results: list[BaseException | None] = []

    def run() -> None:
        try:
            safe_serialize(_nest(10_000, ENCODE_NESTINGS["escaped-dict"]), registry=registry)
        except BaseException as exc:
            results.append(exc)
        else:  # pragma: no cover
            results.append(None)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    assert isinstance(results[0], NestingTooDeepError)


@pytest.mark.parametrize("wrap", ENCODE_NESTINGS.values(), ids=ENCODE_NESTINGS.keys())
def test_nesting_within_max_depth_round_trips(registry: TypeRegistry, wrap: Any) -> None:
    # 199 containers (and the leaf at depth 199, or a model's own dict field at 199) are
    # within the default max_depth of 200: what encodes must decode, and neither may run
    # out of Python stack first.
    value = _nest(199, wrap)
    back = safe_deserialize(safe_serialize(value, registry=registry), registry=registry)
    assert_same(value, back)


def test_max_depth_is_configurable() -> None:
    registry = TypeRegistry(max_depth=5)
    with pytest.raises(NestingTooDeepError) as info:
        safe_serialize(_nest(10, lambda v: [v]), registry=registry)
    assert info.value.path.startswith("$[0][0][0][0][0]")
    assert info.value.path in str(info.value)
    with pytest.raises(NestingTooDeepError):
        safe_deserialize(_nest(10, lambda v: [v]), registry=registry)


class _Leaf(BaseModel):
    model_config = ConfigDict(frozen=True)  # hashable, to sit in a frozenset
    n: int


@pytest.mark.parametrize("wrap", [
    lambda v: [v], lambda v: (v,), lambda v: {"k": v}, lambda v: frozenset([v]),
    lambda v: Box(payload=v),
], ids=["list", "tuple", "dict", "frozenset", "model"])
@pytest.mark.parametrize("leaf", [
    UUID(int=5), date(2024, 1, 1), Decimal("1.5"), float("nan"), _Leaf(n=1), Money(Decimal(1)),
], ids=lambda leaf: type(leaf).__name__)
def test_whatever_encodes_within_max_depth_also_decodes(wrap: Any, leaf: Any) -> None:
    # Containers call leaf and custom plans directly; one level past max_depth they must
    # refuse the value as the decoder would, not write what cannot be read back.
    for registry, value in _around_max_depth(leaf, wrap):
        try:
            data = safe_serialize(value, registry=registry)
        except NestingTooDeepError:
            continue
        assert_same(safe_deserialize(data, registry=registry), value)


def _around_max_depth(leaf: Any, wrap: Any) -> Iterator[tuple[TypeRegistry, Any]]:
    """``leaf`` wrapped 0 to 5 times, with registries of max_depth 0 to 3."""
    for max_depth in range(4):
        registry = make_registry()
        registry.max_depth = max_depth
        value = leaf
        for _ in range(6):
            yield registry, value
            value = wrap(value)


@pytest.mark.parametrize("wrap", [lambda v: [v], lambda v: {"k": v}, lambda v: Box(payload=v)],
                         ids=["list", "dict", "model"])
@pytest.mark.parametrize("leaf", [
    UUID(int=5), date(2024, 1, 1), Decimal("1.5"), datetime(2024, 1, 1, tzinfo=UTC), b"\x00",
], ids=lambda leaf: type(leaf).__name__)
def test_what_is_refused_when_written_is_refused_when_read(wrap: Any, leaf: Any) -> None:
    # Text leaves (UUID, Decimal, ...) are read without their plan; past max_depth they must
    # still be refused, as the encoder refuses them.
    for registry, value in _around_max_depth(leaf, wrap):
        data = safe_serialize(value, registry=make_registry())
        try:
            safe_serialize(value, registry=registry)
        except NestingTooDeepError:
            with pytest.raises(NestingTooDeepError):
                safe_deserialize(data, registry=registry)
        else:
            assert_same(safe_deserialize(data, registry=registry), value)


@pytest.mark.parametrize(("tag", "text"), [
    ("decimal@1", "1.2.3"), ("date@1", "2024-13-01"), ("uuid@1", "not-a-uuid"),
    ("datetime@1", "2024-01-01T00:00:00+00:00[Nowhere/Land]"), ("datetime@1", "yesterday"),
    ("time@1", "25:00"), ("bytes@1", "%%"), ("bytearray@1", "abc"),
])
@pytest.mark.parametrize(("wrap", "path"), [
    (lambda v: {"k": v}, "$.k"), (lambda v: [1, v], "$[1]"), (lambda v: {"$t": "tuple@1", "v": [v]},
                                                             "$[0]"),
], ids=["dict", "list", "tuple"])
def test_a_bad_text_leaf_fails_the_same_way_wherever_it_sits(
        tag: str, text: str, wrap: Any, path: str) -> None:
    bad = {"$t": tag, "v": text}
    with pytest.raises(DeserializationError) as alone:
        safe_deserialize(bad)
    with pytest.raises(DeserializationError) as inside:
        safe_deserialize(wrap(bad))
    assert type(inside.value) is type(alone.value)
    assert inside.value.path == path
    assert str(inside.value).removesuffix(f" (at {path})") == \
        str(alone.value).removesuffix(" (at $)")
    assert type(inside.value.__cause__) is type(alone.value.__cause__)


def test_a_changed_max_depth_applies_to_the_next_call() -> None:
    # The registry shares one encoder and decoder per setting between calls.
    registry = TypeRegistry(max_depth=20)
    nested = _nest(10, lambda v: [v])
    assert safe_deserialize(safe_serialize(nested, registry=registry), registry=registry) == nested
    registry.max_depth = 5
    with pytest.raises(NestingTooDeepError):
        safe_serialize(nested, registry=registry)
    with pytest.raises(NestingTooDeepError):
        safe_deserialize(nested, registry=registry)


# -- malformed data ---------------------------------------------------------------------------
MALFORMED = {
    "extra-key": {TAG: "set@1", VALUE: [], "x": 1},
    "missing-v": {TAG: "set@1"},
    "tag-not-str": {TAG: 5, VALUE: []},
    "no-version": {TAG: "set", VALUE: []},
    "empty-name": {TAG: "@1", VALUE: []},
    "version-zero": {TAG: "set@0", VALUE: []},
    "version-leading-zero": {TAG: "set@01", VALUE: []},
    "version-negative": {TAG: "set@-1", VALUE: []},
    "version-not-ascii": {TAG: "set@\u0661", VALUE: []},
    "version-superscript": {TAG: "set@\u00b9", VALUE: []},
    "version-fullwidth": {TAG: "set@\uff11", VALUE: []},
    "datetime-int": {TAG: "datetime@1", VALUE: 5},
    "datetime-garbage": {TAG: "datetime@1", VALUE: "yesterday"},
    "datetime-bad-zone": {TAG: "datetime@1", VALUE: "2024-01-01T00:00:00+00:00[No/Where]"},
    "datetime-zone-no-offset": {TAG: "datetime@1", VALUE: "2024-01-01T00:00:00[UTC]"},
    "datetime-wrong-offset": {TAG: "datetime@1",
                              VALUE: "2024-07-01T00:00:00+03:00[America/New_York]"},
    "decimal-garbage": {TAG: "decimal@1", VALUE: "one"},
    "uuid-garbage": {TAG: "uuid@1", VALUE: "xyz"},
    "int-decimal-text": {TAG: "int@1", VALUE: "123"},
    "int-not-str": {TAG: "int@1", VALUE: 123},
    "float-bad": {TAG: "float@1", VALUE: "NaN"},
    "bytes-bad-base64": {TAG: "bytes@1", VALUE: "***"},
    "bytes-non-ascii": {TAG: "bytes@1", VALUE: "AAé="},
    "bytes-not-str": {TAG: "bytes@1", VALUE: 12},
    "bytes-bad-padding": {TAG: "bytes@1", VALUE: "AAA"},
    "bytearray-bad-base64": {TAG: "bytearray@1", VALUE: "A A="},
    "date-not-str": {TAG: "date@1", VALUE: 20240101},
    "timedelta-short": {TAG: "timedelta@1", VALUE: [1, 2]},
    "complex-short": {TAG: "complex@1", VALUE: [1.0]},
    "complex-ints": {TAG: "complex@1", VALUE: [1, 2]},
    "set-unhashable": {TAG: "set@1", VALUE: [[1]]},
    "set-not-list": {TAG: "set@1", VALUE: {"a": 1}},
    "dict-bad-pairs": {TAG: "dict@1", VALUE: [[1, 2, 3]]},
    "dict-unhashable-key": {TAG: "dict@1", VALUE: [[[1], 2]]},
    "deque-missing-items": {TAG: "deque@1", VALUE: {"maxlen": 1}},
    "deque-bad-maxlen": {TAG: "deque@1", VALUE: {"items": [], "maxlen": "x"}},
    "defaultdict-not-object": {TAG: "defaultdict@1", VALUE: []},
    "enum-bad-value": {TAG: f"{Box.__module__}:Color@1", VALUE: "purple"},
    "model-missing-field": {TAG: f"{Box.__module__}:Item@1", VALUE: {"name": "x"}},
    "model-unknown-field": {TAG: f"{Box.__module__}:Animal@1", VALUE: {"name": "x", "y": 1}},
    "model-not-object": {TAG: f"{Box.__module__}:Animal@1", VALUE: ["x"]},
    "namedtuple-width": {TAG: f"{Box.__module__}:Point@1", VALUE: [1]},
    "path-not-str": {TAG: "path.posix@1", VALUE: 1},
}


@pytest.mark.parametrize("data", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_tagged_objects(registry: TypeRegistry, data: Any) -> None:
    with pytest.raises(DeserializationError) as info:
        safe_deserialize({"x": [data]}, registry=registry)
    assert info.value.path.startswith("$.x[0]")
    assert not isinstance(info.value, UnknownTypeError) or "@" in info.value.tag


def test_non_json_input_to_decode(registry: TypeRegistry) -> None:
    with pytest.raises(DeserializationError):
        safe_deserialize({"a": object()}, registry=registry)
    with pytest.raises(DeserializationError):
        safe_deserialize({1: "a"}, registry=registry)


def test_invalid_json_text(registry: TypeRegistry) -> None:
    with pytest.raises(SerializationError):
        deserialize_from_json("{not json", registry=registry)


def test_failing_custom_serializer_and_deserializer(registry: TypeRegistry) -> None:
    class Fragile:
        pass

    def boom(_: Any) -> Any:
        raise RuntimeError("boom")

    registry.register_custom_serializer(Fragile, boom, deserializer=boom, name="fragile")
    with pytest.raises(SerializationError, match="boom") as info:
        safe_serialize({"f": Fragile()}, registry=registry)
    assert info.value.path == "$.f"
    assert isinstance(info.value.__cause__, RuntimeError)
    with pytest.raises(DeserializationError, match="boom"):
        safe_deserialize({TAG: "fragile@1", VALUE: 1}, registry=registry)


def test_serializer_returning_its_own_type_is_refused(registry: TypeRegistry) -> None:
    class Same:
        pass

    registry.register_custom_serializer(Same, lambda s: Same(), name="same")
    with pytest.raises(SerializationError, match="JSON-compatible"):
        safe_serialize(Same(), registry=registry)
