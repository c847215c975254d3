"""Incremental encoding (``EncodingMemo``) is an optimisation with no observable difference.

A live value is changed between encodings in every way a step could change it (records
appended, inserted, removed, replaced, reordered, fields reassigned, values of the wrong type
put in, attributes added, ``model_fields_set`` edited, one record put in twice, the list
replaced), and after each change the encoding with the memo of the last one must be the
same, byte for byte, as an encoding without any memo; and must read back to the value.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, Literal
from uuid import UUID

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from flujo.serialization import (
    EncodingMemo,
    TypeRegistry,
    encode_with_manifest,
    safe_deserialize,
)
from flujo.serialization._guard import record_fields

from ._support import Color, assert_same

_START = datetime(2026, 1, 1, tzinfo=UTC)


class Event(BaseModel):
    step: int
    note: str
    score: float
    at: datetime
    color: Color = Color.RED
    kind: Literal["a", "b"] = "a"
    amount: Decimal | None = None
    ref: UUID | None = None


class LoudEvent(Event):
    """A subclass: never written as an Event's row."""


class Tagged(BaseModel):
    """Not a record class: a list field can change in place."""

    name: str
    tags: list[str]


def _event(i: int) -> Event:
    return Event(step=i, note=f"n{i}", score=i / 3, at=_START + timedelta(i),
                 color=Color.GREEN if i % 2 else Color.RED, kind="b" if i % 3 else "a",
                 amount=Decimal(i) / 4 if i % 4 else None,
                 ref=UUID(int=i) if i % 5 == 0 else None)


class Shadow(dict[str, Any]):
    """An instance dict that answers subscripts with something else than it holds."""

    def __getitem__(self, key: str) -> Any:
        return 7 if key == "step" else super().__getitem__(key)


def _apply(op: tuple[str, int, int], value: dict[str, Any]) -> None:
    """Change ``value`` in place as a step might."""
    name, i, n = op
    events: list[Any] = value["events"]
    at = i % len(events) if events else 0
    if name == "append":
        events.append(_event(n))
    elif name == "insert":
        events.insert(at, _event(n))
    elif name == "remove" and events:
        del events[at]
    elif name == "replace" and events:
        events[at] = _event(n)
    elif name == "reassign" and events:
        events[at].score = n / 7  # a new float object
    elif name == "same_value" and events:
        events[at].step = int(str(int(events[at].step)))  # an equal value, another object
    elif name == "wrong_type" and events:
        events[at].__dict__["step"] = True  # a bool where an int is declared
    elif name == "zoned" and events:
        events[at].at = datetime(2026, 1, 1, tzinfo=timezone(timedelta(hours=2), "CEST"))
    elif name == "attribute" and events:
        object.__setattr__(events[at], "extra_attr", n)  # instance state beyond the fields
    elif name == "unset" and events:
        events[at].__pydantic_fields_set__.discard("note")
    elif name == "reset" and events:
        events[at].__pydantic_fields_set__.update(Event.model_fields)
        events[at].__dict__.pop("extra_attr", None)
        events[at].__dict__["step"] = n
    elif name == "shadow" and events:
        object.__setattr__(events[at], "__dict__", Shadow(events[at].__dict__))
    elif name == "twice" and events:
        events.append(events[at])  # one object twice: shared, written with an anchor
    elif name == "subclass":
        events.append(LoudEvent(**_event(n).__dict__))
    elif name == "reverse":
        events.reverse()
    elif name == "new_list":
        value["events"] = list(events)
    elif name == "clear":
        events.clear()
    elif name == "tags" and value["tagged"]:
        value["tagged"][0].tags.append(f"t{n}")


_OPS = st.lists(st.tuples(
    st.sampled_from(["append", "append", "append", "insert", "remove", "replace", "reassign",
                     "same_value", "wrong_type", "zoned", "attribute", "unset", "reset",
                     "shadow", "twice", "subclass", "reverse", "new_list", "clear", "tags"]),
    st.integers(0, 50), st.integers(0, 10_000)), max_size=25)


def _encode(value: Any, registry: TypeRegistry,
            memo: EncodingMemo | None = None) -> tuple[bytes, dict[str, int]]:
    data, manifest = encode_with_manifest(value, registry=registry, memo=memo)
    return orjson.dumps(data), manifest


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(start=st.integers(0, 12), ops=_OPS)
def test_an_encoding_with_the_last_ones_memo_is_the_encoding_without(
        start: int, ops: list[tuple[str, int, int]]) -> None:
    registry = TypeRegistry()
    value: dict[str, Any] = {"events": [_event(i) for i in range(start)],
                             "tagged": [Tagged(name="t", tags=["x"]) for _ in range(2)]}
    memo = EncodingMemo()
    assert _encode(value, registry, memo) == _encode(value, registry)
    for op in ops:
        _apply(op, value)
        memo = EncodingMemo(memo)
        with_memo = _encode(value, registry, memo)
        assert with_memo == _encode(value, registry), op
        if not any(type(vars(event)) is Shadow for event in value["events"]):
            # (what an instance dict of another class reads back as is not the memo's
            # concern: the two encodings above agree on it)
            back = safe_deserialize(orjson.loads(with_memo[0]), registry=registry)
            assert_same(back["events"], value["events"])


_EVERY_OP = ["append", "insert", "remove", "replace", "reassign", "same_value", "wrong_type",
             "zoned", "attribute", "unset", "reset", "shadow", "twice", "subclass", "reverse",
             "new_list", "clear", "tags"]


@pytest.mark.parametrize("name", _EVERY_OP)
@pytest.mark.parametrize("at", [0, 3])
def test_each_change_is_seen(name: str, at: int) -> None:
    """Each kind of change, on its own, after an encoding that filled the memo."""
    registry = TypeRegistry()
    value: dict[str, Any] = {"events": [_event(i) for i in range(5)],
                             "tagged": [Tagged(name="t", tags=["x"])]}
    memo = EncodingMemo()
    _encode(value, registry, memo)
    _apply((name, at, 99), value)
    assert _encode(value, registry, EncodingMemo(memo)) == _encode(value, registry)


def test_unchanged_records_are_not_written_again() -> None:
    """The memo is used: a record's row is the very object the last encoding wrote, until
    the record changes."""
    registry = TypeRegistry()
    events = [_event(i) for i in range(5)]
    memo = EncodingMemo()
    first, _ = encode_with_manifest(events, registry=registry, memo=memo)
    events.append(_event(5))
    events[2].note = "changed"
    memo = EncodingMemo(memo)
    second, _ = encode_with_manifest(events, registry=registry, memo=memo)
    rows_before, rows_after = first["v"][2], second["v"][2]
    assert [a is b for a, b in zip(rows_before, rows_after, strict=False)] == [
        True, True, False, True, True]
    assert rows_after[2][1] == "changed"


def test_a_memo_keeps_only_its_own_encoding() -> None:
    """A memo made from the last one lets go of it once its own encoding is done: a run's
    memos never form a chain."""
    events = [_event(i) for i in range(3)]
    first = EncodingMemo()
    encode_with_manifest(events, memo=first)
    second = EncodingMemo(first)
    encode_with_manifest(events, memo=second)
    assert second.known == {} and len(second.written) == 1
    assert len(first.written) == 1  # the last memo itself is not changed


@pytest.mark.parametrize(("cls", "names"), [
    (Event, tuple(Event.model_fields)),
    (Tagged, None),  # a list field can change in place
])
def test_record_classes(cls: type[BaseModel], names: tuple[str, ...] | None) -> None:
    assert record_fields(cls) == names


def test_a_class_with_private_attributes_is_not_a_record_class() -> None:
    from pydantic import PrivateAttr

    class Secretive(BaseModel):
        name: str
        _cache: int = PrivateAttr(default=0)

    assert record_fields(Secretive) is None
