"""What backends read and write, and the checks of what a store returns (revisions,
timestamps, listing rows): the record types the storage primitives exchange."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from flujo.exceptions import (
    BackendConfigError,
    CorruptStateError,
    InvalidRunIdError,
    InvalidStateError,
    StateConflictError,
)

from .._envelope_codec import SealedRecord
from .._runid import validate_run_id
from ..models import RUN_STATUSES, RunSummary, WorkflowState

__all__ = [
    "MAX_REVISION",
    "CurrentRecord",
    "StateInput",
    "StoredRecord",
    "WriteRecord",
    "check_expected",
    "check_paging",
    "check_revision",
    "check_summary",
    "coerce_state",
    "shown",
    "stored_timestamp",
]

StateInput = WorkflowState | Mapping[str, Any]


@dataclass(frozen=True)
class StoredRecord:
    """What a backend's ``_read`` returns: the stored envelope bytes.

    ``fallback_time`` is used only for records written by earlier flujo without timestamps.
    """

    raw: bytes | str
    fallback_time: datetime | None = None

    @property
    def size(self) -> int:
        """The record's size in bytes (a database may return its text as ``str``)."""
        raw = self.raw
        return len(raw) if isinstance(raw, bytes) else len(raw.encode("utf-8", "surrogatepass"))


@dataclass(frozen=True)
class CurrentRecord:
    """The revision and timestamps of the record being replaced (``None`` when new).

    ``updated_at`` (None when the store cannot tell it cheaply) lets a save be written as a
    delta of the record the backend remembers: only when revision and both timestamps match
    is the stored head that record."""

    revision: int
    created_at: datetime
    updated_at: datetime | None = None


#: Called by ``_write`` inside the backend's per-run critical section with the current record
#: (or None); returns the record to store, or raises (then nothing is written).
WriteRecord = Callable[[CurrentRecord | None], SealedRecord]


def coerce_state(run_id: str, state: StateInput) -> WorkflowState:
    """Accept a ``WorkflowState`` or an earlier-flujo-style dict for ``run_id``."""
    if isinstance(state, WorkflowState):
        result = state
    elif isinstance(state, Mapping):
        data = dict(state)
        data.setdefault("run_id", run_id)
        try:
            result = WorkflowState.model_validate(data)
        except ValidationError as exc:
            raise InvalidStateError(
                f"state for run {run_id!r} is not a valid WorkflowState: {exc}"
            ) from exc
    else:
        raise InvalidStateError(
            f"state for run {run_id!r} must be a WorkflowState or a mapping,"
            f" got {type(state).__name__}"
        )
    if result.run_id != run_id:
        raise InvalidRunIdError(
            f"state.run_id {result.run_id!r} does not match the run id {run_id!r} it is saved as"
        )
    return result


def check_paging(limit: int | None, offset: int) -> None:
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise BackendConfigError(f"limit must be None or an int >= 0, got {limit!r}")
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise BackendConfigError(f"offset must be an int >= 0, got {offset!r}")


def check_expected(expected_revision: int | None) -> None:
    if expected_revision is None:
        return
    if (
        isinstance(expected_revision, bool)
        or not isinstance(expected_revision, int)
        or expected_revision < 0
    ):
        raise BackendConfigError(
            f"expected_revision must be None or an int >= 0, got {expected_revision!r}"
        )


#: Largest revision a record can have: SQLite INTEGER and PostgreSQL bigint hold 64 bits.
MAX_REVISION = 2**63 - 1


def shown(value: object) -> str:
    """``repr(value)`` cut to a readable length, for messages about stored values (a
    doctored column can hold a megabyte of text, and the repr of an int of over 4,300
    digits raises ValueError)."""
    if type(value) is int and value.bit_length() > 64:
        return f"an integer of {value.bit_length()} bits"
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:60]}... ({len(text)} characters)"


def stored_timestamp(what: str, name: str, value: object) -> datetime:
    """A timestamp a store keeps beside the envelope (``created_at``/``updated_at`` index
    columns), as an aware UTC datetime; ``value`` is a datetime or ISO 8601 text.

    flujo writes these itself, so anything else (text that is no timestamp, a naive one, NULL,
    a number, one beyond year 9999 or before year 1 in UTC) means the store was edited:
    CorruptStateError naming the record and the field.
    """
    parsed: object = value
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            parsed = None
    if isinstance(parsed, datetime) and parsed.utcoffset() is not None:
        try:
            return parsed.astimezone(UTC)
        except OverflowError:  # 0001-01-01T00:00:00+14:00 is before year 1 in UTC
            pass
    raise CorruptStateError(
        f"{what}: the stored {name} {shown(value)} is not a timestamp with a UTC offset"
        " within the years 1 to 9999 (the store's index was edited)")


def check_summary(describe: Callable[[str], str], summary: RunSummary) -> RunSummary:
    """Refuse a listing row whose fields are not what flujo stores (a doctored index column
    of a database: ``status=5``, ``revision='abc'``...) with CorruptStateError naming the
    record (``describe(run_id)``) and the field; return the row, timestamps in UTC."""
    run_id = summary["run_id"]
    try:
        if type(run_id) is not str:
            raise InvalidRunIdError("not a str")
        what = describe(validate_run_id(run_id))
    except InvalidRunIdError:
        raise CorruptStateError(
            f"a listed record's stored run_id {shown(run_id)} is not a valid run id (the"
            " store's index was edited)") from None
    problems = []
    if type(summary["pipeline_name"]) is not str:
        problems.append(f"pipeline_name {shown(summary['pipeline_name'])} is not a str")
    if type(summary["status"]) is not str or summary["status"] not in RUN_STATUSES:
        problems.append(f"status {shown(summary['status'])} is not one of"
                        f" {', '.join(RUN_STATUSES)}")
    revision = summary["revision"]
    if type(revision) is not int or not 1 <= revision <= MAX_REVISION:
        problems.append(f"revision {shown(revision)} is not an integer from 1 to {MAX_REVISION}")
    if problems:
        raise CorruptStateError(
            f"{what}: the stored {'; '.join(problems)} (the store's index was edited)")
    return RunSummary(
        run_id=run_id,
        pipeline_name=summary["pipeline_name"],
        status=summary["status"],
        revision=revision,
        created_at=stored_timestamp(what, "created_at", summary["created_at"]),
        updated_at=stored_timestamp(what, "updated_at", summary["updated_at"]),
    )


def check_revision(what: str, current: CurrentRecord | None, expected: int | None) -> int:
    """Compare-and-set check; return the revision the new record gets."""
    actual = current.revision if current is not None else 0
    if current is not None and (type(actual) is not int or actual < 1):  # 'abc', 0, NULL
        raise CorruptStateError(
            f"{what}: the stored revision {shown(actual)} is not an integer from 1 to"
            f" {MAX_REVISION} (the store's index was edited); refusing to save over it")
    if expected is not None and expected != actual:
        found = f"revision {actual}" if current is not None else "no record"
        raise StateConflictError(
            f"{what}: expected revision {expected} but found {found}; another writer saved"
            " it first (reload and retry, or give up the run)"
        )
    if not 0 <= actual < MAX_REVISION:  # only a damaged or doctored record gets here
        raise CorruptStateError(
            f"{what}: the stored revision {actual} is out of range (1 to {MAX_REVISION});"
            " refusing to save over it"
        )
    return actual + 1
