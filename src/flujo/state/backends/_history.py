"""Checkpoint history on every backend that keeps it: list, read the state at any
checkpoint, compact a run's history, prune finished runs.

A run's checkpoints are its stored records, one per save: the current one (the head) and
the earlier ones the backend keeps (``keeps_history``). Reading revision ``r`` reads the
whole-state record its chain starts at and the deltas up to ``r``.

What is kept by default: everything. A run's records stay until the run is deleted
(``delete_state``, ``delete_on_completion``), its history is compacted (``compact``),
or ``prune`` removes it. Running and paused runs are never pruned or compacted.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from flujo.exceptions import (
    BackendConfigError,
    CorruptStateError,
    FlujoError,
    RunInProgressError,
    StateConflictError,
)

from .._chain import MAX_CHAIN
from .._envelope import Envelope
from .._envelope_codec import SealedRecord
from .._jsonio import dumps
from .._runid import validate_run_id
from ..models import RUN_STATUSES, RunSummary, StateRecord, utc_now

if TYPE_CHECKING:
    from .base import CurrentRecord, EnvelopeStateBackend, StoredRecord

__all__ = ["FINISHED", "Checkpoint", "PruneReport", "compact", "history", "prune", "state_at"]

#: The statuses of runs that are over: only these are pruned or compacted.
FINISHED: tuple[str, ...] = ("completed", "failed", "cancelled")


@dataclass(frozen=True)
class Checkpoint:
    """One stored checkpoint of a run, read from its record's header (no value decoded).

    ``step`` is the step the checkpoint records (the last one finished, or the one failing
    or pausing), ``attempt`` that step's attempt count, ``steps_done`` how many steps of the
    pipeline the state has finished, ``kind`` ``state`` (a whole state) or ``delta``, and
    ``size`` the record's stored bytes."""

    run_id: str
    revision: int
    step: str | None
    attempt: int | None
    steps_done: int
    status: str
    saved_at: datetime
    kind: str
    size: int


@dataclass
class PruneReport:
    """What ``CheckpointCalls.prune`` did (or, with ``dry_run``, would do)."""

    deleted: list[str] = field(default_factory=list)
    compacted: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    records_removed: int = 0
    bytes_removed: int = 0
    dry_run: bool = False

    def summary(self) -> str:
        verb = "would remove" if self.dry_run else "removed"
        parts = [f"{verb} {self.records_removed} record(s), {self.bytes_removed:,} bytes:",
                 f"{len(self.deleted)} run(s) deleted, {len(self.compacted)} compacted"]
        if self.skipped:
            parts.append(f"{len(self.skipped)} skipped (changed, in use or unreadable)")
        return " ".join(parts)


def _checkpoint(envelope: Envelope, size: int) -> Checkpoint:
    return Checkpoint(run_id=envelope.run_id, revision=envelope.revision, step=envelope.step,
                      attempt=envelope.attempt, steps_done=envelope.steps_done,
                      status=envelope.status, saved_at=envelope.updated_at,
                      kind=envelope.kind, size=size)


async def history(backend: EnvelopeStateBackend, run_id: str) -> list[Checkpoint]:
    """Every stored checkpoint of ``run_id``, oldest first (empty for an unknown run).
    A backend that keeps no history lists the current record only."""
    validate_run_id(run_id)
    stored = await backend._read(run_id)
    if stored is None:
        return []
    head = backend._parse(run_id, stored)
    older = []
    if backend.keeps_history and head.revision > 1:
        older = backend._parse_history(
            run_id, await backend._read_history(run_id, 1, head.revision - 1))
    return [_checkpoint(envelope, size) for envelope, size in older] + [
        _checkpoint(head, stored.size)]

async def state_at(backend: EnvelopeStateBackend, run_id: str,
                   revision: int) -> StateRecord | None:
    """The state ``run_id`` had at checkpoint ``revision``, exactly as that save stored it
    (None when the run or that checkpoint is not stored: never saved, or pruned)."""
    validate_run_id(run_id)
    if isinstance(revision, bool) or not isinstance(revision, int) or revision < 1:
        raise BackendConfigError(f"revision must be an int >= 1, got {revision!r}")
    what = f"{backend.describe(run_id)}, revision {revision}"
    stored = await backend._read(run_id)
    if stored is None:
        return None
    head = backend._parse(run_id, stored)
    if revision > head.revision:
        return None
    if revision == head.revision:
        record = await backend.load_record(run_id)
        if record is not None and record.revision == revision:
            return record
        # saved again meanwhile: the record is in the history now
    if not backend.keeps_history:
        return None
    base = revision
    for _ in range(3):
        target = backend._parse_history(
            run_id, await backend._read_history(run_id, revision, revision))
        if not target:
            return None  # never kept, or pruned
        envelope = target[0][0]
        base = envelope.base
        if revision - base > MAX_CHAIN:
            raise CorruptStateError(f"{what}: its chain is longer than flujo writes")
        chain = backend._parse_history(run_id, await backend._read_history(
            run_id, base, revision))
        if [e.revision for e, _ in chain] == list(range(base, revision + 1)):
            state, _ = backend.codec.open_chain([e for e, _ in chain], what=what)
            return StateRecord(state=state, revision=revision, envelope=envelope)
        # a compaction removed records meanwhile: read again (the target itself may be gone)
    raise CorruptStateError(f"{what}: the records of its chain from revision {base} are"
                            " not all stored")


async def compact(backend: EnvelopeStateBackend, run_id: str) -> int:
    """Drop every checkpoint of the finished run ``run_id`` but the last, which is
    stored as one whole state; return how many records were removed. Refused
    (StateConflictError) for a running or paused run, or one saved meanwhile. Kept records
    are removed unread (a store made to encrypt can compact away its plaintext history)."""
    return len(await _compacted(backend, run_id))


async def _compacted(backend: EnvelopeStateBackend,
                     run_id: str) -> list[tuple[int, StoredRecord]]:
    """``compact``; the kept records it removed."""
    envelope = await backend.read_envelope(run_id)
    if envelope is None:
        return []
    what = backend.describe(run_id)
    if envelope.status not in FINISHED:
        raise StateConflictError(
            f"{what} is {envelope.status}: only finished runs ({', '.join(FINISHED)}) are"
            " compacted")
    kept = (await backend._read_history(run_id, 1, envelope.revision - 1)
            if backend.keeps_history and envelope.revision > 1 else [])
    if not kept and envelope.kind == "state":
        return []  # nothing to drop
    raw = backend.codec.to_bytes(envelope)
    plain = dumps(envelope.payload) if envelope.codec == "json" else None

    def make(current: CurrentRecord | None) -> SealedRecord:
        if current is None or current.revision != envelope.revision \
                or current.created_at != envelope.created_at \
                or current.updated_at not in (None, envelope.updated_at):
            found = "deleted" if current is None else f"at revision {current.revision}"
            raise StateConflictError(
                f"{what}: expected revision {envelope.revision} but it is {found} (or was"
                " saved again); nothing was compacted")
        return SealedRecord(envelope, raw, plain)

    await backend._compact(run_id, make)
    backend._keep_tip(run_id, None)
    return kept


async def prune(
    backend: EnvelopeStateBackend,
    *,
    older_than: timedelta | datetime | None = None,
    keep_last: int | None = None,
    status: str | Iterable[str] | None = None,
    history_only: bool = False,
    dry_run: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> PruneReport:
    """Remove finished runs, or (``history_only``) their earlier checkpoints.

    A run is a candidate when it is finished (``status``: some of completed, failed,
    cancelled; all three by default), last saved before ``older_than`` (an age or a
    time), and not among the ``keep_last`` most recently saved candidates of its
    pipeline. At least one of ``older_than`` and ``keep_last`` is required. Running and
    paused runs are never touched, and a run that changes or is claimed meanwhile is
    skipped. ``progress(done, total)`` is called after each candidate.
    """
    statuses = _statuses(status)
    cutoff = _cutoff(older_than)
    if keep_last is not None and (isinstance(keep_last, bool)
                                  or not isinstance(keep_last, int) or keep_last < 0):
        raise BackendConfigError(f"keep_last must be an int >= 0, got {keep_last!r}")
    if cutoff is None and keep_last is None:
        raise BackendConfigError(
            "prune needs older_than or keep_last: it does not remove every finished run")
    runs = [row for row in await backend.list_runs() if row["status"] in statuses]
    candidates = _candidates(runs, cutoff, keep_last)
    report = PruneReport(dry_run=dry_run)
    for number, row in enumerate(candidates, 1):
        run_id = row["run_id"]
        try:
            await _prune_one(backend, row, history_only, dry_run, report)
        except (StateConflictError, RunInProgressError) as exc:
            report.skipped[run_id] = str(exc)
        except FlujoError as exc:  # a damaged or locked record: the others go on
            report.skipped[run_id] = f"{type(exc).__name__}: {exc}"
        if progress is not None:
            progress(number, len(candidates))
    return report


def _statuses(status: str | Iterable[str] | None) -> tuple[str, ...]:
    chosen = FINISHED if status is None else (status,) if isinstance(status, str) else \
        tuple(status)
    for name in chosen:
        if name not in FINISHED:
            known = "a status of a run that is not over" if name in RUN_STATUSES else "unknown"
            raise BackendConfigError(
                f"prune removes finished runs only ({', '.join(FINISHED)}); status {name!r}"
                f" is {known}")
    return chosen


def _cutoff(older_than: timedelta | datetime | None) -> datetime | None:
    if older_than is None:
        return None
    if isinstance(older_than, timedelta):
        if older_than < timedelta(0):
            raise BackendConfigError(f"older_than must not be negative, got {older_than!r}")
        try:
            return utc_now() - older_than
        except OverflowError:  # older than year 1: nothing is that old
            return datetime.min.replace(tzinfo=UTC)
    if isinstance(older_than, datetime):
        if older_than.tzinfo is None:
            raise BackendConfigError("older_than must be an aware datetime (with a UTC offset)")
        return older_than
    raise BackendConfigError(
        f"older_than must be a timedelta or a datetime, got {type(older_than).__name__}")


def _candidates(runs: list[RunSummary], cutoff: datetime | None,
                keep_last: int | None) -> list[RunSummary]:
    kept: set[str] = set()
    if keep_last is not None:
        by_pipeline: dict[str, list[RunSummary]] = {}
        for row in runs:  # newest first (list_runs' order)
            by_pipeline.setdefault(row["pipeline_name"], []).append(row)
        for rows in by_pipeline.values():
            kept.update(row["run_id"] for row in rows[:keep_last])
    return [row for row in runs if row["run_id"] not in kept
            and (cutoff is None or row["updated_at"] < cutoff)]


async def _prune_one(backend: EnvelopeStateBackend, row: RunSummary, history_only: bool,
                     dry_run: bool, report: PruneReport) -> None:
    """Prune one candidate under its claim (a runner resuming it would hold the claim), after
    checking that it is still the finished run that was listed."""
    run_id = row["run_id"]
    claim: contextlib.AbstractAsyncContextManager[object]
    try:
        claim = backend.claim(run_id)
    except NotImplementedError:
        claim = contextlib.nullcontext()
    async with claim:
        stored = await backend._read(run_id)
        head = None if stored is None else backend._parse(run_id, stored)
        if head is None or stored is None or head.revision != row["revision"] \
                or head.status not in FINISHED:
            raise StateConflictError(f"{backend.describe(run_id)} changed since it was listed")
        # Counted unread: a kept record this store cannot read (plaintext history in a store
        # that now encrypts) is still removed.
        if history_only and not dry_run:
            older = await _compacted(backend, run_id)
        else:
            older = (await backend._read_history(run_id, 1, head.revision - 1)
                     if backend.keeps_history and head.revision > 1 else [])
        sizes = [record.size for _, record in older]
        if history_only:
            if older:  # counted once done
                report.compacted.append(run_id)
                report.records_removed += len(older)
                report.bytes_removed += sum(sizes)
            return
        if not dry_run:
            await backend.delete_state(run_id)
        report.deleted.append(run_id)
        report.records_removed += len(older) + 1
        report.bytes_removed += sum(sizes) + stored.size
