"""The JSON edits a delta checkpoint stores: applying ``diff(old, new)`` to ``old`` gives
``new`` exactly, JSON types and object key order included."""

from __future__ import annotations

import copy
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flujo.exceptions import CorruptStateError
from flujo.state._delta import apply_edits, diff

# JSON values that Python's == confuses: 1 == 1.0 == True, 0.0 == -0.0 == 0 == False.
_SCALARS = st.one_of(st.none(), st.booleans(), st.sampled_from([0, 1, -1, 0.0, -0.0, 1.0]),
                     st.integers(-2**63, 2**64 - 1),
                     st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=5))
_KEYS = st.sampled_from(["a", "b", "c", "$t", "v", "id", ""])
JSON = st.recursive(_SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=5), st.dictionaries(_KEYS, inner, max_size=5)), max_leaves=25)


def _text(data: Any) -> bytes:
    return orjson.dumps(data, option=orjson.OPT_PASSTHROUGH_DATACLASS)


def _grown(data: Any, draw: st.DrawFn) -> Any:
    """``data`` changed the way a step changes a context: appended to, a key replaced,
    removed or added, or left as it is."""
    if isinstance(data, list):
        return [*data, *draw(st.lists(JSON, max_size=3))] if draw(st.booleans()) else \
            [_grown(item, draw) for item in data]
    if isinstance(data, dict):
        changed = {k: _grown(v, draw) for k, v in data.items() if draw(st.booleans()) or True}
        for key in draw(st.lists(_KEYS, max_size=2)):
            if draw(st.booleans()):
                changed.pop(key, None)
            else:
                changed[key] = draw(JSON)
        return changed
    return draw(JSON) if draw(st.integers(0, 3)) == 0 else data


@settings(max_examples=400, deadline=None)
@given(old=JSON, new=JSON)
def test_any_two_documents(old: Any, new: Any) -> None:
    before = _text(old)
    edits = diff(old, new)
    assert _text(old) == before  # diff changes neither document
    # The edits go through JSON (they are stored), and apply to a copy read back.
    rebuilt = apply_edits(orjson.loads(before), orjson.loads(_text(edits)), what="t")
    assert _text(rebuilt) == _text(new)


@settings(max_examples=300, deadline=None)
@given(old=JSON, data=st.data())
def test_a_step_sized_change_takes_few_edits(old: Any, data: st.DataObject) -> None:
    new = _grown(copy.deepcopy(old), data.draw)
    edits = diff(old, new)
    rebuilt = apply_edits(orjson.loads(_text(old)), orjson.loads(_text(edits)), what="t")
    assert _text(rebuilt) == _text(new)
    if _text(old) == _text(new):
        assert edits == []


def test_an_append_is_stored_as_the_new_items_only() -> None:
    old = {"ctx": {"rows": [[i, f"row {i}"] for i in range(1000)]}, "n": 1}
    new = {"ctx": {"rows": [*old["ctx"]["rows"], [1000, "row 1000"]]}, "n": 2}
    assert diff(old, new) == [["+", ["ctx", "rows"], [[1000, "row 1000"]]], ["=", ["n"], 2]]


@pytest.mark.parametrize(("old", "new"), [
    (1, True), (1, 1.0), (0.0, -0.0), (False, 0), ([1], [True]), ({"a": 1}, {"a": 1.0})])
def test_values_python_calls_equal_are_different_json(old: Any, new: Any) -> None:
    edits = diff({"x": old}, {"x": new})
    assert edits, "a change of JSON type was taken for no change"
    assert _text(apply_edits({"x": old}, edits, what="t")) == _text({"x": new})


def test_key_order_is_kept() -> None:
    old = {"a": 1, "b": 2}
    new = {"b": 2, "a": 1}
    assert list(apply_edits(copy.deepcopy(old), diff(old, new), what="t")) == ["b", "a"]


@pytest.mark.parametrize("edits", [
    "nope", [["?", ["a"], 1]], [["=", "a", 1]], [["-", ["missing"]]], [["+", ["a"], [1]]],
    [["=", ["a", "b", "c"], 1]], [["=", ["list", 5], 1]], [["-", []]], [["="]],
])
def test_edits_that_do_not_fit_are_refused_naming_the_record(edits: Any) -> None:
    with pytest.raises(CorruptStateError, match="run 'r'"):
        apply_edits({"a": 1, "list": [1]}, edits, what="run 'r'")
