"""Decoding owned data (``safe_deserialize(data, copy=False)``, which
``deserialize_from_json`` and the state backends use for what they parse) gives exactly what
decoding a copy gives: the same values, types, shared objects and errors.

Owned decoding keeps the parsed lists and dicts and decodes what they hold in place; the
reference is the copying decoder, which builds new containers and leaves its input alone.
"""

from __future__ import annotations

import copy
import warnings
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel

from flujo.exceptions import DeserializationError, SerializationError
from flujo.serialization import (
    UnknownTypeWarning,
    deserialize_from_json,
    safe_deserialize,
    serialize_to_bytes,
)
from flujo.testing import assert_identical

from ._support import make_registry, values
from .test_roundtrip_property import PROPERTY_SETTINGS

REGISTRY = make_registry()


def _both(text: bytes, **options: Any) -> tuple[Any, Any]:
    document = orjson.loads(text)
    before = copy.deepcopy(document)
    copied = safe_deserialize(document, registry=REGISTRY, **options)
    assert document == before, "the copying decoder changed its input"
    owned = safe_deserialize(orjson.loads(text), registry=REGISTRY, copy=False, **options)
    return copied, owned


@PROPERTY_SETTINGS
@given(values)
def test_owned_decoding_gives_what_copying_gives(value: Any) -> None:
    text = serialize_to_bytes(value, registry=REGISTRY)
    copied, owned = _both(text)
    assert_identical(owned, copied)
    assert serialize_to_bytes(owned, registry=REGISTRY) == text
    assert_identical(deserialize_from_json(text, registry=REGISTRY), copied)


@PROPERTY_SETTINGS
@given(st.lists(values, min_size=1, max_size=3))
def test_owned_decoding_keeps_shared_objects_shared(parts: list[Any]) -> None:
    shared = list(parts)  # a container, so it is written once and referenced after
    value = {"first": shared, "again": [shared, {"deep": shared}], "other": list(parts)}
    text = serialize_to_bytes(value, registry=REGISTRY)
    copied, owned = _both(text)
    assert_identical(owned, copied)
    assert owned["first"] is owned["again"][0] is owned["again"][1]["deep"]
    assert owned["other"] is not owned["first"]


def test_owned_decoding_of_cycles() -> None:
    loop: list[Any] = [1, {"plain": [2, 3]}]
    loop.append(loop)
    holder: dict[str, Any] = {"name": "x"}
    holder["self"] = holder
    text = serialize_to_bytes({"loop": loop, "holder": holder, "sets": [{1, 2}, (3, 4)]})
    owned = deserialize_from_json(text)
    assert owned["loop"][2] is owned["loop"]
    assert owned["holder"]["self"] is owned["holder"]
    assert owned["sets"] == [{1, 2}, (3, 4)]
    assert_identical(owned, safe_deserialize(orjson.loads(text)))


def test_plain_json_comes_back_as_the_parsed_document() -> None:
    # Nothing tagged inside: owned decoding keeps every container the parse made.
    document = {"items": [{"id": 1, "tags": ["a", "b"], "dims": {"w": 2}}], "n": None}
    assert safe_deserialize(document, copy=False) is document
    assert document["items"][0]["dims"] == {"w": 2}
    assert safe_deserialize(document) is not document


def test_owned_tagged_values_replace_their_tags_in_place() -> None:
    document = orjson.loads(serialize_to_bytes({"when": [(1, 2)], "plain": [1]}))
    plain = document["plain"]
    decoded = safe_deserialize(document, copy=False)
    assert decoded is document and decoded["plain"] is plain
    assert decoded["when"] == [(1, 2)] and type(decoded["when"][0]) is tuple


_DAMAGED = [
    b'{"a": [1, {"b": {"$t": "tuple@1", "v": 3}}]}',
    b'[0, [1, [2, {"$t": "decimal@1", "v": "not a number"}]]]',
    b'{"x": {"$t": "set@1", "v": [[1], [1]]}}',
    b'{"x": [{"$t": "ref@1", "v": 9}]}',
    b'{"ok": 1, "bad": {"$t": "tuple@1", "v": [1], "extra": 2}}',
]


@pytest.mark.parametrize("text", _DAMAGED)
def test_owned_decoding_reports_what_copying_reports(text: bytes) -> None:
    outcomes = []
    for decode in (lambda: safe_deserialize(orjson.loads(text)),
                   lambda: deserialize_from_json(text)):
        with pytest.raises(SerializationError) as caught:
            decode()
        outcomes.append((type(caught.value), str(caught.value),
                         getattr(caught.value, "path", None)))
    assert outcomes[0] == outcomes[1]
    assert issubclass(outcomes[0][0], DeserializationError)


def test_unknown_tags_kept_undecoded_alike() -> None:
    text = b'{"a": [1, {"$t": "no.such.Type@1", "v": {"x": [1, 2]}}], "b": {"c": 1}}'
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnknownTypeWarning)
        copied = safe_deserialize(orjson.loads(text), strict=False)
        owned = deserialize_from_json(text, strict=False)
    assert serialize_to_bytes(owned) == serialize_to_bytes(copied) == text.replace(b" ", b"")


class _Order(BaseModel):
    id: str


def test_the_typed_form_checks_the_class_asked_for() -> None:
    text = serialize_to_bytes(_Order(id="a"))
    order = safe_deserialize(orjson.loads(text), _Order)
    assert type(order) is _Order and order.id == "a"
    assert safe_deserialize(orjson.loads(serialize_to_bytes(True)), int) is True  # a subclass
    with pytest.raises(DeserializationError,
                       match=r"expected .*_Order, the data holds dict \(at \$\)"):
        safe_deserialize({"id": "a"}, _Order)
    assert safe_deserialize([1], Any) == [1]  # Any checks nothing
    with pytest.raises(TypeError, match="expected must be a class, got list"):
        safe_deserialize([], list[int])  # type: ignore[arg-type]


class _Money:
    def __init__(self, amount: int, meta: Any) -> None:
        self.amount, self.meta = amount, meta


def test_what_a_migration_returns_is_decoded_by_copying() -> None:
    # A migration may return objects the parse did not make: a module's constant (here
    # holding a tagged set), one sub-object used twice. Decoding them in place would change
    # the constant and share it between the decoded objects.
    default_meta = {"seen": {"$t": "set@1", "v": []}}
    old, new = make_registry(), make_registry()
    old.register_custom_serializer(_Money, lambda m: {"amount": m.amount},
                                   deserializer=lambda d: _Money(d["amount"], None),
                                   name="t.money", version=1)
    new.register_custom_serializer(
        _Money, lambda m: {"amount": m.amount, "meta": m.meta},
        deserializer=lambda d: _Money(d["amount"], d["meta"]), name="t.money", version=2,
        migrations={1: lambda v: {**v, "meta": default_meta, "again": default_meta}})
    text = serialize_to_bytes([_Money(1, None), _Money(2, None)], registry=old)
    for decode in (lambda: safe_deserialize(orjson.loads(text), registry=new),
                   lambda: deserialize_from_json(text, registry=new)):
        first, second = decode()
        assert first.meta == {"seen": set()} and first.meta is not second.meta
        assert default_meta == {"seen": {"$t": "set@1", "v": []}}  # the constant unchanged
