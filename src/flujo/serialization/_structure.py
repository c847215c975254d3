"""The structure of a model class: its core schema without the code validation runs.

The typed form of a model (docs/format.md) is the model's own JSON, which pydantic-core reads
back in one call. Reading must give what the generic form gives, as unpickling would: no
validator, ``__init__``, ``model_post_init`` or constraint of today's class may run or
change anything, and reading must not depend on the class still being one flujo would write
in the typed form (it may since have gained validators, constraints, aliases, computed fields,
config settings...). So the typed form is read with a core schema derived from the class's
own, keeping only its *structure*:

- model (as its model-fields: flujo builds the instance itself), nullable, default
  (defaults fill fields a class gained), list, dict with str keys, enum (without a
  ``_missing_`` hook), definitions and their refs;
- validators (``function-after/before/wrap``) replaced by the schema they wrap; constraints,
  aliases, config transforms, strictness settings, ``custom_init`` and ``post_init`` dropped;
- ``$unset`` (``_rows``), the names of the model's unset fields, read as an optional field
  of every model: the builder (``_typed``) applies it to ``model_fields_set``;
- leaves read strictly from exactly the JSON type the typed writer produces: ``str``,
  ``int`` (not bool), ``bool``, ``float`` (a JSON float), and ``str`` parsed into
  ``Decimal``, ``UUID``, ``date`` or ``datetime``; a datetime's text may also be flujo's
  own (``rows@3``: ``…-05:00[America/New_York]``), read by ``_datetimes.datetime_from_text``
  when pydantic-core's parser has refused it (a node marked ``DATETIME``).

A field whose type is none of these (it changed since the data was written: a migration's
job) keeps its default, so a class may gain such a field; a stored value for it is refused
with an error naming the field (``StructureMismatch``).
"""

from __future__ import annotations

import copy
from typing import Any, Final

from pydantic_core import PydanticCustomError, core_schema

from ..exceptions import DeserializationError
from ._core_schema import WRAPPERS
from ._datetimes import datetime_from_text
from ._guard import UNSET

__all__ = ["DATETIME", "MODEL_CLASS", "structure_schema"]

# The metadata key of a model-fields node that names the model class it stands for.
MODEL_CLASS: Final = "flujo_model_class"
# The metadata key of the node that reads a datetime (its ISO text, or flujo's own).
DATETIME: Final = "flujo_datetime"

_STRICT_STR: Final = {"type": "str", "strict": True}
_ANY: Final[dict[str, Any]] = {"type": "any"}
_PARSED: Final = frozenset({"decimal", "uuid", "date", "datetime"})
_DEFAULT_KEYS: Final = ("default", "default_factory", "default_factory_takes_data",
                        "copy_default")


class _Unsupported(Exception):
    """A core-schema node the typed form cannot hold."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


def _refusal(owner: str, field: str, kind: str) -> dict[str, Any]:
    message = (f"{owner}.{field} is now typed as {kind!r}, which the typed form of the stored "
               "data cannot hold; bump the class's version and register a migration")

    def refuse(value: Any) -> Any:
        raise PydanticCustomError("flujo_field_type_changed", message)

    return core_schema.no_info_plain_validator_function(refuse)  # type: ignore[return-value]


def _zoned(text: str) -> Any:
    try:
        return datetime_from_text(text)
    except (DeserializationError, ValueError):  # the union's own error says it
        raise PydanticCustomError("flujo_datetime", "not a datetime") from None


def _datetime() -> dict[str, Any]:
    """ISO text as pydantic-core parses it, else flujo's datetime text (``rows@3``): one
    node for both, since the one-row form and a model's migrations (the one-model form)
    hold whichever was written, under the class's own tag."""
    return {"type": "union", "mode": "left_to_right", "metadata": {DATETIME: True},
            # one error, at the field (not one per choice, each under the choice's name)
            "custom_error_type": "flujo_datetime",
            "custom_error_message": "Input should be a datetime as flujo writes it: ISO 8601 "
                                    "text, with its zone in brackets if it has one",
            "choices": [{"type": "chain", "steps": [_STRICT_STR, {"type": "datetime"}]},
                        {"type": "chain", "steps": [
                            _STRICT_STR, core_schema.no_info_plain_validator_function(_zoned)]}]}


def _literal(expected: list[Any]) -> dict[str, Any]:
    """A literal's values are read by their JSON type alone, as any value of that type (the
    writer stored one of them; which ones the class allows today is validation)."""
    choices: list[dict[str, Any]] = []
    for kind, cls in (("str", str), ("bool", bool), ("int", int)):
        if any(type(value) is cls for value in expected):
            choices.append({"type": kind, "strict": True})
    if any(value is None for value in expected):
        choices.append({"type": "none"})
    if not all(value is None or type(value) in (str, bool, int) for value in expected):
        raise _Unsupported("literal")  # of enum members or bytes: never written typed
    if len(choices) == 1:
        return choices[0]
    return {"type": "union", "choices": choices, "mode": "left_to_right"}


class _Structure:
    def __init__(self) -> None:
        self.definitions: list[dict[str, Any]] = []

    def definition(self, node: dict[str, Any]) -> None:
        try:
            self.definitions.append(self.node(node))
        except _Unsupported as exc:  # never stored typed; a value there is refused
            refusal = _refusal("a definition", str(node.get("ref")), exc.kind)
            refusal["ref"] = node["ref"]
            self.definitions.append(refusal)

    def node(self, node: dict[str, Any]) -> dict[str, Any]:
        kind = node["type"]
        out: dict[str, Any]
        if kind == "definitions":
            for definition in node["definitions"]:
                self.definition(definition)
            return self.node(node["schema"])
        if kind == "definition-ref":
            out = {"type": "definition-ref", "schema_ref": node["schema_ref"]}
        elif kind in WRAPPERS:
            return self.with_ref(self.node(node["schema"]), node.get("ref"))
        elif kind == "default":
            out = {"type": "default", "schema": self.node(node["schema"])}
            for key in _DEFAULT_KEYS:
                if key in node:
                    out[key] = node[key]
        elif kind == "nullable":
            out = {"type": "nullable", "schema": self.node(node["schema"])}
        elif kind == "model":
            out = self.model(node)
        elif kind in ("str", "int", "bool"):
            out = {"type": kind, "strict": True}
        elif kind == "float":  # a JSON float: an int there means the field's type changed
            out = {"type": "is-instance", "cls": float}
        elif kind == "datetime":
            out = _datetime()
        elif kind in _PARSED:
            out = {"type": "chain", "steps": [_STRICT_STR, {"type": kind}]}
        elif kind == "enum":
            out = {key: node[key] for key in ("type", "cls", "members", "sub_type")
                   if key in node}
        elif kind == "any":  # exactly JSON when written (the guard's plain_json)
            out = {"type": "any"}
        elif kind == "literal":
            out = _literal(node["expected"])
        elif kind == "list":
            out = {"type": "list", "items_schema": self.node(node.get("items_schema", _ANY))}
        elif kind == "dict":
            keys = node.get("keys_schema", {"type": "any"})
            while keys.get("type") in WRAPPERS:
                keys = keys["schema"]
            if keys.get("type") != "str":
                raise _Unsupported("dict")
            out = {"type": "dict", "keys_schema": dict(_STRICT_STR),
                   "values_schema": self.node(node.get("values_schema", _ANY))}
        else:
            raise _Unsupported(kind)
        return self.with_ref(out, node.get("ref"))

    def with_ref(self, out: dict[str, Any], ref: str | None) -> dict[str, Any]:
        if ref is None:
            return out
        if "ref" in out:  # both a wrapper and what it wraps are referred to: keep both
            self.definitions.append(out)
            out = copy.copy(out)
        out["ref"] = ref
        return out

    def model(self, node: dict[str, Any]) -> dict[str, Any]:
        cls = node["cls"]
        if node.get("root_model"):
            raise _Unsupported("RootModel")
        fields_node = node["schema"]
        while fields_node.get("type") in WRAPPERS:
            fields_node = fields_node["schema"]
        if fields_node.get("type") != "model-fields":
            raise _Unsupported(str(fields_node.get("type")))
        allow = (fields_node.get("extra_behavior") == "allow"
                 or (node.get("config") or {}).get("extra_fields_behavior") == "allow")
        # Stored under field names; the alias is given as the name itself because
        # pydantic-core may otherwise look fields up by the class's own aliases.
        fields = {name: {"type": "model-field", "validation_alias": name,
                         "schema": self.field(field["schema"], cls.__qualname__, name)}
                  for name, field in fields_node["fields"].items()}
        if UNSET not in fields:  # any class: the stored data may have it whatever the class
            fields[UNSET] = {"type": "model-field", "validation_alias": UNSET, "schema": {
                "type": "default", "default": None, "schema": {"type": "nullable", "schema": {
                    "type": "list", "items_schema": dict(_STRICT_STR)}}}}
        # model-fields, not model: pydantic-core would validate a model schema of a complete
        # class with the class's own validator (its "prebuilt" reuse), validators and all.
        # This gives (fields, extras, fields_set); flujo builds the instance (_typed).
        return {"type": "model-fields", "fields": fields,
                "model_name": fields_node.get("model_name", cls.__name__),
                "extra_behavior": "allow" if allow else "ignore",
                "metadata": {MODEL_CLASS: cls}}

    def field(self, schema: dict[str, Any], owner: str, name: str) -> dict[str, Any]:
        try:
            return self.node(schema)
        except _Unsupported as exc:
            refusal = _refusal(owner, name, exc.kind)
            outer = schema
            while outer.get("type") in WRAPPERS:
                outer = outer["schema"]
            if outer.get("type") != "default":
                return refusal
            kept: dict[str, Any] = {"type": "default", "schema": refusal}
            for key in _DEFAULT_KEYS:
                if key in outer:
                    kept[key] = outer[key]
            return kept


def structure_schema(model_schema: dict[str, Any], *, many: bool = False) -> dict[str, Any]:
    """The structure of a model class's core schema (of a list of it when ``many``)."""
    builder = _Structure()
    root = builder.node(model_schema)
    if many:
        root = {"type": "list", "items_schema": root}
    if not builder.definitions:
        return root
    return {"type": "definitions", "schema": root, "definitions": builder.definitions}
