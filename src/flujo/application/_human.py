"""Human-in-the-loop: what a paused run stores, and how an answer to it is checked.

A pause names its input model by the model's stable name in the type registry (never by
import path) with the model's version and JSON Schema then. An answer is validated against
the model this process knows under that name: a dict or JSON text written for an older
version of the model goes through the model's registered migrations first, as stored data
does. Nothing here writes: the runner saves what these functions return.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, RootModel, ValidationError

from ..exceptions import (
    FutureVersionError,
    InvalidInputError,
    MigrationError,
    MissingMigrationError,
    PipelineError,
    PipelineMismatchError,
)
from ..serialization import TypeRegistry
from ..state import PauseRequest
from ._pipeline import Step

__all__ = ["accept_answer", "input_model_for", "pause_request"]

#: Errors named in an InvalidInputError's message (all of them are in ``errors``).
_SHOWN_ERRORS = 5


def pause_request(step: str, input_model: object, message: object,
                  registry: TypeRegistry) -> PauseRequest:
    """The ``PauseRequest`` a run stores when ``step`` pauses for ``input_model``."""
    if not (isinstance(input_model, type) and issubclass(input_model, BaseModel)):
        raise PipelineError(
            f"step {step!r} paused for {input_model!r}; the input model must be a pydantic"
            " model class")
    if not isinstance(message, str):
        raise PipelineError(f"step {step!r} paused with message {message!r}; it must be a str")
    codec = registry.codec_for_type(input_model)
    if codec is None or codec.py_type is not input_model:
        raise PipelineError(
            f"step {step!r} paused for {input_model.__qualname__}, which flujo cannot store;"
            f" register it: register_type({input_model.__qualname__}, name=...)")
    return PauseRequest(step=step, message=message, input_type=codec.name,
                        input_version=codec.version, input_schema=input_schema(step, input_model))


def input_schema(step: str, input_model: type[BaseModel]) -> dict[str, Any]:
    """The JSON Schema an answer must follow (what a person answering without the code
    reads); a model that has none cannot be asked for."""
    try:
        schema = input_model.model_json_schema()
        json.dumps(schema, ensure_ascii=False).encode("utf-8")  # a lone surrogate: refused
    except Exception as exc:  # pydantic's schema errors, or a schema that is not JSON
        raise PipelineError(
            f"step {step!r} pauses for {input_model.__qualname__}, whose JSON Schema cannot"
            f" be generated ({type(exc).__name__}: {exc}); an answer must be describable to"
            " the person who gives it") from exc
    return schema


def input_model_for(what: str, pause: PauseRequest, step: Step[Any, Any] | None,
                    registry: TypeRegistry) -> type[BaseModel]:
    """The model an answer to ``pause`` must fit: the class this process knows under the
    pause's stable name (a ``Step.human`` step's own model, else the registry's)."""
    declared = None if step is None else step.input_model
    if declared is not None:
        codec = registry.codec_for_type(declared)
        if codec is not None and pause.input_type in (codec.name, *codec.aliases):
            return declared
    codec = registry.codec_named(pause.input_type)
    model = None if codec is None else codec.py_type
    if isinstance(model, type) and issubclass(model, BaseModel):
        return model
    raise PipelineMismatchError(
        f"{what} waits for {pause.input_type!r}, which this process does not know: import"
        " the module that defines it, or register it under that name (register_type)")


def accept_answer(what: str, pause: PauseRequest, model: type[BaseModel], answer: object,
                  registry: TypeRegistry) -> BaseModel:
    """``answer`` validated as ``model``: an instance of it, a mapping, or JSON text of one.

    A mapping or text is taken as written for the model's version at the pause and brought
    to today's version by its registered migrations first. Refused with
    ``InvalidInputError`` naming the fields; nothing is consumed.
    """
    expected = f"{model.__qualname__} ({pause.input_type})"
    rooted = issubclass(model, RootModel)
    if type(answer) is model:
        # Built by the model, so validated then: taken as it is (validating it again would
        # run its validators twice), unless the model asks for instances to be revalidated.
        data: Any = answer
    elif isinstance(answer, Mapping):
        data = _current(what, pause, dict(answer), registry)
    elif isinstance(answer, str | bytes | bytearray):
        try:
            data = _json(answer)
        except (ValueError, RecursionError) as exc:  # RecursionError: nested too deep
            raise InvalidInputError(
                f"{what}: the answer is not JSON text ({exc}); expected {expected}") from exc
        if not isinstance(data, dict) and not rooted:
            raise InvalidInputError(
                f"{what}: the answer is JSON {type(data).__name__}, not an object of the"
                f" fields of {expected}")
        if isinstance(data, dict):
            data = _current(what, pause, data, registry)
    elif rooted and not isinstance(answer, BaseModel):
        data = answer  # a RootModel's value (a list, a number...): the model checks it
    else:
        raise InvalidInputError(
            f"{what}: an answer must be a {model.__qualname__}, a dict or JSON text, got"
            f" {type(answer).__qualname__}")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors: list[dict[str, Any]] = [dict(e) for e in exc.errors(include_url=False)]
        shown = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '$'}: {e['msg']}"
                          for e in errors[:_SHOWN_ERRORS])
        more = f" (and {len(errors) - _SHOWN_ERRORS} more)" if len(errors) > _SHOWN_ERRORS else ""
        raise InvalidInputError(
            f"{what}: the answer does not fit {expected}: {shown}{more}; the run stays paused",
            errors=errors) from exc


def _current(what: str, pause: PauseRequest, data: dict[str, Any],
             registry: TypeRegistry) -> dict[str, Any]:
    """``data``, written for the model's version at the pause, at today's version."""
    codec = registry.codec_named(pause.input_type)
    if codec is None or codec.version == pause.input_version:
        return data
    if pause.input_version > codec.version:
        raise FutureVersionError(
            f"{what} waits for {pause.input_type} version {pause.input_version}, newer than"
            f" this process's version {codec.version}; answer it with the newer application")
    for version in range(pause.input_version, codec.version):
        step = codec.migrations.get(version)
        if step is None:
            raise MissingMigrationError(
                f"{what}: the answer is written for {pause.input_type} version"
                f" {pause.input_version}, and no migration from version {version} to"
                f" {version + 1} is registered")
        try:
            migrated = step(data)
        except Exception as exc:
            raise MigrationError(
                f"{what}: migrating the answer from {pause.input_type} version {version}"
                f" raised {type(exc).__name__}: {exc}") from exc
        if not isinstance(migrated, dict):
            raise MigrationError(
                f"{what}: the migration of {pause.input_type} from version {version} returned"
                f" {type(migrated).__name__}, not the answer's fields")
        data = migrated
    return data


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text} does not fit a float")
    return value


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _json(answer: str | bytes | bytearray) -> Any:
    """An answer's JSON text (bytes: UTF-8), parsed exactly: integers of any size stay
    integers; NaN, Infinity, numbers beyond a float and text that is not Unicode (a lone
    surrogate, escaped or encoded) are refused, as none of them is JSON (ValueError)."""
    text = answer if isinstance(answer, str) else bytes(answer).decode("utf-8")
    data = json.loads(text, parse_float=_finite, parse_constant=_refuse_constant)
    json.dumps(data, ensure_ascii=False).encode("utf-8")  # UnicodeEncodeError: a surrogate
    return data
