"""The schema compatibility rules, on a corpus of compatible and breaking schema pairs."""

from __future__ import annotations

from typing import Any

import pytest

from flujo.schema import narrowings

OBJ: dict[str, Any] = {"type": "object",
                       "properties": {"a": {"type": "string"}, "n": {"type": "integer"}},
                       "required": ["a"], "additionalProperties": False}


def with_(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    return {**base, **changes}


BREAKING = [
    ("field removed", OBJ, with_(OBJ, properties={"a": {"type": "string"}}), "$.n",
     "field 'n' removed"),
    ("type narrowed", {"type": ["string", "null"]}, {"type": "string"}, "$",
     "type narrowed from null/string to string"),
    ("number to integer", {"type": "number"}, {"type": "integer"}, "$", "type narrowed"),
    ("nested type narrowed", OBJ, with_(OBJ, properties={"a": {"type": "integer"},
                                                         "n": {"type": "integer"}}),
     "$.a", "type narrowed from string to integer"),
    ("new required without default", OBJ,
     with_(OBJ, properties={**OBJ["properties"], "b": {"type": "string"}},
           required=["a", "b"]), "$.b", "new required property 'b'"),
    ("enum value removed", {"enum": ["x", "y", "z"]}, {"enum": ["x", "y"]}, "$",
     "enum value(s) removed: ['z']"),
    ("enum introduced", {"type": "string"}, {"type": "string", "enum": ["x"]}, "$",
     "values restricted"),
    ("additionalProperties closed", {"type": "object", "properties": {"a": {}}},
     {"type": "object", "properties": {"a": {}}, "additionalProperties": False}, "$",
     "additionalProperties closed"),
    ("minimum raised", {"type": "integer", "minimum": 0}, {"type": "integer", "minimum": 1},
     "$", "minimum raised to 1"),
    ("maxLength lowered", {"type": "string", "maxLength": 10},
     {"type": "string", "maxLength": 5}, "$", "maxLength lowered to 5"),
    ("pattern added", {"type": "string"}, {"type": "string", "pattern": "^a"}, "$",
     "pattern changed"),
    ("array items narrowed", {"type": "array", "items": {"type": ["string", "integer"]}},
     {"type": "array", "items": {"type": "string"}}, "$[*]", "type narrowed"),
    ("alternative removed", {"anyOf": [{"type": "string"}, {"type": "integer"}]},
     {"anyOf": [{"type": "string"}]}, "$", "alternative 1 type narrowed"),
    ("const changed", {"const": "a"}, {"const": "b"}, "$", "value fixed to 'b'"),
    ("everything rejected", {"type": "string"}, False, "$", "rejects every value"),
    ("through $ref", {"$ref": "#/$defs/t", "$defs": {"t": {"type": ["string", "null"]}}},
     {"$ref": "#/$defs/t", "$defs": {"t": {"type": "string"}}}, "$", "type narrowed"),
]

COMPATIBLE = [
    ("identical", OBJ, OBJ),
    ("optional field added",
     OBJ, with_(OBJ, properties={**OBJ["properties"], "b": {"type": "string"}})),
    ("type widened", {"type": "string"}, {"type": ["string", "null"]}),
    ("integer to number", {"type": "integer"}, {"type": "number"}),
    ("enum value added", {"enum": ["x"]}, {"enum": ["x", "y"]}),
    ("required dropped", OBJ, with_(OBJ, required=[])),
    ("additionalProperties opened", OBJ, with_(OBJ, additionalProperties=True)),
    ("minimum lowered", {"minimum": 5}, {"minimum": 1}),
    ("alternative added", {"anyOf": [{"type": "string"}]},
     {"anyOf": [{"type": "string"}, {"type": "integer"}]}),
    ("branch folded into anyOf", {"type": "string"},
     {"anyOf": [{"type": "string"}, {"type": "null"}]}),
    ("description only", {"type": "string"}, {"type": "string", "description": "x"}),
    ("recursive $ref", {"$ref": "#/$defs/n", "$defs": {"n": {"type": "array",
                                                             "items": {"$ref": "#/$defs/n"}}}},
     {"$ref": "#/$defs/n", "$defs": {"n": {"type": "array", "items": {"$ref": "#/$defs/n"}}}}),
]


@pytest.mark.parametrize(("label", "old", "new", "path", "reason"), BREAKING,
                         ids=[case[0] for case in BREAKING])
def test_breaking_changes_are_reported_with_path_and_reason(
        label: str, old: Any, new: Any, path: str, reason: str) -> None:
    found = narrowings(old, new)
    assert any(n.path == path and reason in n.reason for n in found), found


@pytest.mark.parametrize(("label", "old", "new"), COMPATIBLE, ids=[c[0] for c in COMPATIBLE])
def test_compatible_changes_are_not_reported(label: str, old: Any, new: Any) -> None:
    assert narrowings(old, new) == []


def test_forward_is_backward_with_the_roles_swapped() -> None:
    widened = {"type": ["string", "null"]}
    assert narrowings({"type": "string"}, widened) == []
    assert narrowings(widened, {"type": "string"}) != []
