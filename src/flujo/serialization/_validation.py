"""Checks of encoded values against the JSON Schema their type declared.

The fast validator (jsonschema-rs, compiled once per schema) answers yes/no on the hot path;
only when it says no does ``jsonschema`` run to explain where and why. ``jsonschema`` (pure
Python, a sixth of ``import flujo``) is imported then, and when a schema is registered.
"""

from __future__ import annotations

from typing import Any

from ..exceptions import RegistrationError, SchemaValidationError


def check_schema(schema: Any, *, owner: str) -> None:
    """Refuse a schema that is not valid Draft 2020-12."""
    import jsonschema

    if not isinstance(schema, dict) and not isinstance(schema, bool):
        raise RegistrationError(f"schema for {owner} must be a JSON Schema dict, got {schema!r}")
    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise RegistrationError(
            f"schema for {owner} is not valid JSON Schema (Draft 2020-12): {exc.message}"
        ) from exc
    try:  # the metaschema does not resolve $refs or know the fast validator's regex dialect
        _compile(schema)
    except ValueError as exc:  # jsonschema_rs.ValidationError
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
        raise RegistrationError(f"schema for {owner} cannot be compiled: {reason}") from exc


def _compile(schema: dict[str, Any] | bool) -> Any:
    # offline: a schema's remote $ref is refused, never fetched (no network on registration,
    # and a schema cannot make the process reach out to a host). Imported when first needed:
    # an application that registers no schema never loads it.
    import jsonschema_rs

    return jsonschema_rs.validator_for(schema, offline=True)


class CompiledSchema:
    """A schema with its fast validator compiled once."""

    __slots__ = ("_fast", "fast_check", "schema")

    def __init__(self, schema: dict[str, Any] | bool) -> None:
        self.schema = schema
        self._fast = _compile(schema)
        #: The compiled validator's own yes/no check (called on the hot path, no wrapper).
        self.fast_check: Any = self._fast.is_valid

    def is_valid(self, value: Any) -> bool:
        return bool(self._fast.is_valid(value))

    def raise_for(self, value: Any, *, type_name: str) -> None:
        """Raise a SchemaValidationError that names the offending value and its location."""
        import jsonschema

        error = jsonschema.exceptions.best_match(
            jsonschema.Draft202012Validator(self.schema).iter_errors(value))
        if error is None:  # the two validators disagree: trust the slower, detailed one
            return
        inner = "".join(
            f"[{part}]" if isinstance(part, int) else f".{part}" for part in error.absolute_path
        )
        schema_path = "/".join(str(part) for part in error.absolute_schema_path)
        raise SchemaValidationError(
            f"the serializer of {type_name!r} produced a value that violates its declared "
            f"schema: at output{inner or ''} {error.message} (schema keyword {schema_path!r})",
            type_name=type_name,
            value=error.instance,
            path="$",
            schema_path=schema_path,
        )
