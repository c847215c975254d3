"""Small pieces of the runner: run ids, backends, and rebuilding what a saved state holds."""

from __future__ import annotations

import os
import uuid
import warnings
from collections.abc import Mapping
from typing import Any, TypeVar, cast

from pydantic import ValidationError

from ..exceptions import (
    CorruptStateError,
    InvalidRunIdError,
    PipelineError,
    PipelineMismatchError,
    RunIdConflictError,
)
from ..state import InMemoryBackend, StateBackend, WorkflowState, backend_from_uri
from ..state.backends.base import shown
from ._models import PipelineContext, StepResult

__all__ = [
    "STATE_URI_ENV",
    "choose_run_id",
    "construct",
    "context_fields",
    "problems",
    "resolve_backend",
    "restore_context",
    "stored_step",
]

STATE_URI_ENV = "FLUJO_STATE_URI"
ContextT = TypeVar("ContextT", bound=PipelineContext)


def resolve_backend(spec: StateBackend | str | None) -> StateBackend:
    if isinstance(spec, StateBackend):
        return spec
    if isinstance(spec, str):
        return backend_from_uri(spec)
    if spec is not None:
        raise PipelineError(f"state_backend must be a StateBackend or a URI, got {spec!r}")
    uri = os.environ.get(STATE_URI_ENV)
    return backend_from_uri(uri) if uri else InMemoryBackend()


def choose_run_id(run_id: str | None, initial_context_data: Mapping[str, Any] | None, *,
                  stacklevel: int) -> str:
    """``run_id``, or the one earlier flujo took from ``initial_context_data["run_id"]``
    (with a DeprecationWarning pointing to ``run_id=``), or a fresh one."""
    legacy = (initial_context_data or {}).get("run_id")
    if legacy is not None:
        warnings.warn(
            "initial_context_data={'run_id': ...} is deprecated: pass run_id=... to run(),"
            " run_async() or resume()", DeprecationWarning, stacklevel=stacklevel)
    if run_id is not None and legacy is not None and legacy != run_id:
        raise RunIdConflictError(
            f"run_id={run_id!r} and initial_context_data['run_id']={legacy!r} disagree; "
            "pass only run_id=")
    chosen = run_id if run_id is not None else legacy
    if chosen is None:
        return f"run_{uuid.uuid4().hex}"
    if not isinstance(chosen, str) or not chosen:
        raise InvalidRunIdError(f"run_id must be a non-empty str, got {shown(chosen)}")
    return chosen


def restore_context(model: type[ContextT], state: WorkflowState, *,
                    validate: bool) -> ContextT:
    """The ``model`` instance of a saved state's context: exactly as saved, or (``validate``:
    earlier flujo stored plain JSON) parsed back by the model."""
    fields = dict(state.pipeline_context)
    missing = [n for n, f in model.__pydantic_fields__.items()
               if f.is_required() and n not in fields]
    unknown = [n for n in fields if n not in model.__pydantic_fields__]
    if (missing or unknown) and model.model_config.get("extra") != "allow":
        raise PipelineMismatchError(
            f"the saved context of run {state.run_id!r} does not fit {model.__qualname__}: "
            f"missing {missing}, unknown {unknown}; register a state migration")
    fields["run_id"] = state.run_id
    if validate:
        try:
            return model.model_validate(fields)
        except ValidationError as exc:
            raise PipelineMismatchError(
                f"the saved context of run {state.run_id!r} (plain JSON, saved by earlier"
                f" flujo) does not fit {model.__qualname__}: {problems(exc)}; register a"
                " state migration") from exc
    return construct(model, fields)


def construct(model: type[ContextT], fields: dict[str, Any]) -> ContextT:
    """An instance of ``model`` holding exactly ``fields``, unvalidated (the values keep the
    types they were saved with): the declared fields, and every other name as an extra."""
    declared = model.__pydantic_fields__
    extra = {name: value for name, value in fields.items() if name not in declared}
    context = cast(ContextT, model.model_construct(
        **{n: v for n, v in fields.items() if n in declared}))
    if extra:  # only for extra="allow" models (see restore_context)
        # Set apart from model_construct, which would take ``_fields_set`` as its own argument
        # and a private attribute's name as that attribute: extras stay extras.
        object.__setattr__(context, "__pydantic_extra__",
                           {**(context.__pydantic_extra__ or {}), **extra})
    return context


def problems(exc: ValidationError) -> str:
    """The first few errors of ``exc``, each as ``location: message``."""
    return "; ".join(f"{'.'.join(str(p) for p in err['loc']) or '$'}: {err['msg']}"
                     for err in exc.errors()[:5])


def stored_step(what: str, where: str, value: Any, *, legacy: bool = True) -> None:
    """Refuse a step result of a saved state (``where``: ``step_history[2]``, ``failure``)
    that is not one: a StepResult whose fields have their declared types or, with
    ``legacy``, a dict that validates as one (how earlier flujo stored the history)."""
    try:
        if isinstance(value, StepResult):
            StepResult.model_validate(value.__dict__, strict=True)
            return
        if legacy and isinstance(value, dict):
            StepResult.model_validate(value)
            return
    except ValidationError as exc:
        raise CorruptStateError(
            f"{what}: the stored {where} is not a valid step result: {problems(exc)}"
        ) from exc
    raise CorruptStateError(
        f"{what}: the stored {where}, {shown(value)}, is not a step result")


def context_fields(context: PipelineContext) -> dict[str, Any]:
    fields = {name: getattr(context, name) for name in type(context).__pydantic_fields__}
    fields.update(context.__pydantic_extra__ or {})
    return fields
