"""Every error flujo raises.

All of them derive from ``FlujoError``, and each also derives from the builtin
exception a caller would naturally catch (``TypeError``, ``ValueError``, ``LookupError``,
``RuntimeError``), so ``except ValueError`` keeps working for code that does not know flujo.
Errors from dependencies (orjson, jsonschema, sqlite3, psycopg, cryptography, ...) are mapped
to these at the boundary with ``raise ... from exc`` (``raise caused(..., exc)`` in the
modules compiled with mypyc); the original stays in ``__cause__``.

The tree::

    FlujoError
    ├── InvalidArgumentError (ValueError, TypeError)  a call's argument is not one it takes
    ├── RegistrationError (ValueError)            a type, schema, name or migration is rejected
    ├── SerializationError (ValueError)          anything the codec refuses; carries ``path``
    │   ├── UnserializableTypeError (TypeError)  no serializer for a value's type
    │   ├── CircularReferenceError               a container contains itself
    │   ├── NestingTooDeepError                  deeper than the codec's ``max_depth``
    │   ├── SchemaValidationError                encoded form violates its declared schema
    │   └── DeserializationError                 stored data is malformed
    │       ├── UnknownTypeError (LookupError)   a tag names no known type
    │       │   └── MissingDeserializerError     the type has no deserializer registered
    │       └── MigrationError                   stored versions cannot be brought up to date
    │           ├── MissingMigrationError        a step of the chain is not registered
    │           └── FutureVersionError           data written by a newer version of the code
    ├── StateError (RuntimeError)                a state backend failed
    │   ├── InvalidRunIdError (ValueError)       a run id that could escape its storage
    │   ├── CorruptStateError (ValueError)       a stored record cannot be read; never deleted
    │   │   └── RecordTooLargeError              a stored record over max_payload_bytes
    │   ├── PayloadTooLargeError (ValueError)    a state over max_payload_bytes; not saved
    │   │   └── RecordTooLargeError              (also a CorruptStateError)
    │   ├── StateConflictError                   compare-and-set lost to another writer
    │   ├── EncryptionError (ValueError)         missing key, tampered or plaintext record
    │   ├── InvalidStateError (ValueError)       a state that is not a valid WorkflowState
    │   ├── BackendConfigError (ValueError)      a bad backend URI, option or argument
    │   └── BackendUnavailableError              the store cannot be reached or opened
    └── PipelineError (RuntimeError)             the runner refuses or fails a run
        ├── RunInProgressError                   another worker holds the run
        │   └── ClaimLostError                   this worker lost its claim; it stops the run
        ├── RunIdConflictError (ValueError)      run_id= and the context's run_id disagree
        ├── PipelineMismatchError (ValueError)   saved run does not match this pipeline
        ├── RunNotFoundError (LookupError)       no saved run has this id
        │   └── CheckpointNotFoundError          the run has no (kept) checkpoint there
        ├── RunNotPausedError                    an answer for a run that awaits none
        ├── InvalidInputError (ValueError)       an answer the paused step's model refuses
        ├── RunNotQueuedError                    a run saved for workers, its message not sent
        └── StepFailedError                      a step raised; original in ``__cause__``

Not an error, and not a ``FlujoError``: ``PauseForInput``, raised by a step to
pause its run until a person answers (the runner catches it; see docs/durable-pipelines.md).

Warnings, not errors (defined here too, in a module that imports nothing, so a warnings
filter can name them before flujo is imported)::

    UserWarning
    ├── PurePythonWarning        the serialization core runs as pure Python (nothing compiled)
    ├── UnknownTypeWarning       safe_deserialize(strict=False) kept a tag it cannot decode
    └── UnportableTypeWarning    a class is stored under a name other processes cannot find
"""

from __future__ import annotations

from typing import Any, TypeVar

__all__ = [
    "BackendConfigError",
    "BackendUnavailableError",
    "CheckpointNotFoundError",
    "CircularReferenceError",
    "ClaimLostError",
    "CorruptStateError",
    "DeserializationError",
    "EncryptionError",
    "FlujoError",
    "FutureVersionError",
    "InvalidArgumentError",
    "InvalidInputError",
    "InvalidRunIdError",
    "InvalidStateError",
    "MigrationError",
    "MissingDeserializerError",
    "MissingMigrationError",
    "NestingTooDeepError",
    "PauseForInput",
    "PayloadTooLargeError",
    "PipelineError",
    "PipelineMismatchError",
    "PurePythonWarning",
    "RecordTooLargeError",
    "RegistrationError",
    "RunIdConflictError",
    "RunInProgressError",
    "RunNotFoundError",
    "RunNotPausedError",
    "RunNotQueuedError",
    "SchemaValidationError",
    "SerializationError",
    "StateConflictError",
    "StateError",
    "StepFailedError",
    "UnknownTypeError",
    "UnknownTypeWarning",
    "UnportableTypeWarning",
    "UnserializableTypeError",
]


class FlujoError(Exception):
    """Root of every exception raised by flujo."""


class InvalidArgumentError(FlujoError, ValueError, TypeError):
    """A function was called with an argument it does not take: an unknown mode or keyword,
    or something else where a class is expected. Both a ``ValueError`` and a ``TypeError``,
    as Python raises one or the other for such calls. (Backends raise ``BackendConfigError``
    for their own options.)"""


class RegistrationError(FlujoError, ValueError):
    """A type, schema, name or migration cannot be registered as given."""


class SerializationError(FlujoError, ValueError):
    """The codec refused a value.

    ``path`` is a JSONPath-like location (``$.scratchpad.records[3].price``) of the value in
    the object being encoded or decoded; it is also part of the message.
    """

    def __init__(self, message: str, *, path: str = "$") -> None:
        self.path = path
        super().__init__(f"{message} (at {path})")


class UnserializableTypeError(SerializationError, TypeError):
    """No serializer is registered for a value's type."""

    def __init__(self, value_type: type, *, path: str = "$", hint: str = "") -> None:
        self.value_type = value_type
        name = f"{value_type.__module__}.{value_type.__qualname__}"
        how = hint or (
            f"register one with flujo.utils.register_custom_serializer({value_type.__qualname__},"
            " to_json, deserializer=from_json, schema=...)"
        )
        super().__init__(f"cannot serialize a value of type {name}: {how}", path=path)


class CircularReferenceError(SerializationError):
    """A container holds a reference to itself (directly or through other containers)."""


class NestingTooDeepError(SerializationError):
    """The value is nested deeper than the codec's ``max_depth``."""


class SchemaValidationError(SerializationError):
    """A serializer's output does not match the JSON Schema it declared.

    ``type_name`` is the registered name, ``value`` the offending (encoded) value and
    ``schema_path`` the location of the failing keyword inside the declared schema.
    """

    def __init__(
        self, message: str, *, type_name: str, value: Any, path: str, schema_path: str = ""
    ) -> None:
        self.type_name = type_name
        self.value = value
        self.schema_path = schema_path
        super().__init__(message, path=path)


class DeserializationError(SerializationError):
    """Stored data is not valid tagged data."""


class UnknownTypeError(DeserializationError, LookupError):
    """A type tag names no registered or known type."""

    def __init__(self, message: str, *, tag: str, path: str = "$") -> None:
        self.tag = tag
        super().__init__(message, path=path)


class MissingDeserializerError(UnknownTypeError):
    """The tag names a registered type that has a serializer but no deserializer."""


class MigrationError(DeserializationError):
    """Stored data cannot be brought up to the versions this code knows."""


class MissingMigrationError(MigrationError):
    """A step of a migration chain (``vN -> vN+1``) is not registered."""


class FutureVersionError(MigrationError):
    """Stored data was written by a newer version of a type, format or state schema."""


class StateError(FlujoError, RuntimeError):
    """A state backend could not complete an operation."""


class InvalidRunIdError(StateError, ValueError):
    """A run id is empty, too long, or could escape the backend's storage."""


class CorruptStateError(StateError, ValueError):
    """A stored record cannot be parsed. The record is left exactly as it was found."""


class PayloadTooLargeError(StateError, ValueError):
    """A state is over the store's size limits (``max_payload_bytes``: its bytes, or the
    arrays and objects it holds): it could not be loaded back, so it is not saved (nothing
    is written)."""


class RecordTooLargeError(PayloadTooLargeError, CorruptStateError):
    """A stored record is over the store's size limits, or decompresses past them: refused
    unread (nothing is loaded; the record is left as it is). Both a
    ``PayloadTooLargeError`` and a ``CorruptStateError``: it cannot be read here."""


class StateConflictError(StateError):
    """A compare-and-set save lost: another writer changed the run first."""


class EncryptionError(StateError, ValueError):
    """Encryption or decryption failed: missing key, tampered or plaintext record."""


class InvalidStateError(StateError, ValueError):
    """The state given to a backend is not a valid WorkflowState (nothing was written)."""


class BackendConfigError(StateError, ValueError):
    """A backend URI, option or argument is invalid."""


class BackendUnavailableError(StateError):
    """The state store cannot be reached or opened."""


class PipelineError(FlujoError, RuntimeError):
    """The runner refused or failed a run."""


class RunInProgressError(PipelineError):
    """Another worker is executing this run right now."""


class ClaimLostError(RunInProgressError):
    """This worker's claim on the run ended while it held it (a PostgreSQL lease that could
    not be renewed in time, or that another worker took over after it expired).

    The worker stops: an async step is cancelled, and nothing more is saved (a save under
    the lost claim is refused, with nothing written). Another worker may be executing the
    run now, so, like its parent ``RunInProgressError``, it means "try the run later".
    """


class RunIdConflictError(PipelineError, ValueError):
    """``run_id=`` and ``initial_context_data["run_id"]`` name different runs."""


class PipelineMismatchError(PipelineError, ValueError):
    """The saved run was made by a pipeline that does not match the current one."""


class RunNotFoundError(PipelineError, LookupError):
    """No run is saved under the id given to ``resume`` or ``cancel``."""


class CheckpointNotFoundError(RunNotFoundError):
    """The run has no stored checkpoint for the step or revision asked for (the step never
    finished in it, or its checkpoint was pruned)."""


class RunNotPausedError(PipelineError):
    """An answer (``resume_input=``) was given for a run that is not waiting for one.

    Nothing was applied: the run is running, failed, completed or cancelled, or its pause
    was already answered with a different value.
    """


class InvalidInputError(PipelineError, ValueError):
    """The answer to a paused run does not validate against the model its pause declared.

    ``errors`` lists pydantic's errors (``loc``, ``msg``, ``type``); the message names the
    first fields. Nothing was consumed: the run is still paused.
    """

    def __init__(self, message: str, *, errors: list[dict[str, Any]] | None = None) -> None:
        self.errors = list(errors or [])
        super().__init__(message)


class PurePythonWarning(UserWarning):
    """flujo runs its serialization core as pure Python because nothing was compiled when it
    was installed (no C compiler, ``FLUJO_COMPILE=0``): correct, but slower.
    ``FLUJO_PURE_PYTHON=1`` runs pure Python on purpose, without this warning."""


class PauseForInput(Exception):
    """Raised by a step to pause its run until a person answers with an ``input_model``.

    The runner saves the run as ``paused`` with ``message``, the model's stable name and its
    JSON Schema, and the context as the step left it. ``runner.resume(run_id, answer)``
    validates the answer against the model and makes it the step's output: the step is not
    run again. Not a ``FlujoError``: it is how a step asks, not something that failed.
    """

    def __init__(self, input_model: type[Any], message: str = "") -> None:
        self.input_model = input_model
        self.message = message
        super().__init__(message or f"waiting for {getattr(input_model, '__name__', input_model)}")


class RunNotQueuedError(PipelineError):
    """A run was saved for workers, but the message that hands it to them could not be sent
    (the broker is unreachable: the original error is in ``__cause__``). ``run_id`` is the
    saved run's id: ``recover`` sends its message later, or submit it again with that id
    (submitting one id twice runs it once)."""

    def __init__(self, message: str, run_id: str) -> None:
        super().__init__(message)
        self.run_id = run_id

    def __reduce__(self) -> tuple[Any, ...]:  # picklable with its run id (Celery, logging)
        return (type(self), (str(self), self.run_id))


class StepFailedError(PipelineError):
    """A step raised. The original exception is chained as ``__cause__``."""


_E = TypeVar("_E", bound=BaseException)


def caused(error: _E, cause: BaseException | None) -> _E:
    """``raise caused(error, exc)`` is ``raise error from exc`` (and ``caused(error, None)``
    is ``from None``). The serialization modules that mypyc compiles use it: mypyc ignores
    the ``from`` clause, which would drop ``__cause__``."""
    error.__cause__ = cause  # also sets __suppress_context__, as ``from`` does
    return error


class UnknownTypeWarning(UserWarning):
    """Emitted by ``safe_deserialize(..., strict=False)`` when it keeps a tag it cannot decode."""


class UnportableTypeWarning(UserWarning):
    """A class stored under a name that other processes cannot find (``cls``).

    A class defined in ``__main__`` (a script) is found only by processes running that same
    script; one defined inside a function by no other process at all.
    """

    def __init__(self, message: str | type, *, cls: type | None = None) -> None:
        if isinstance(message, type) and cls is None:  # 0.16's UnportableTypeWarning(cls)
            cls, message = message, (f"{message.__qualname__} is stored under a name other"
                                     " processes cannot find")
        if not isinstance(message, str) or cls is None:
            raise TypeError("UnportableTypeWarning(message, cls=the class)")
        self.cls = cls
        super().__init__(message)

    def __reduce__(self) -> tuple[Any, ...]:  # pickled (by multiprocessing, say) with cls
        return (_unportable, (str(self), self.cls))


def _unportable(message: str, cls: type) -> UnportableTypeWarning:
    return UnportableTypeWarning(message, cls=cls)
