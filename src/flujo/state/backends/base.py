"""The backend contract (``StateBackend``) and the shared envelope machinery.

``StateBackend`` keeps the contract of earlier flujo versions: a custom backend that
implements ``save_state`` / ``load_state`` / ``delete_state`` keeps working. Everything else
(listing, revisions, raw envelopes, claims) is optional there and raises NotImplementedError.

``EnvelopeStateBackend`` implements the whole API on top of five storage primitives; the
four built-in backends and any new custom backend subclass it (see docs/custom-backend.md).
"""

from __future__ import annotations

import abc
import threading
import warnings
from collections.abc import Awaitable, Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, ClassVar, Self

from flujo.exceptions import (
    BackendConfigError,
    CorruptStateError,
    EncryptionError,
    RecordTooLargeError,
)
from flujo.serialization import TypeRegistry

from .._chain import MAX_CHAIN, UNKNOWN, ChainTip, History, HistoryEntry
from .._compression import Compressor
from .._crypto import Encryption
from .._envelope import Envelope
from .._envelope_codec import (
    DEFAULT_MAX_PAYLOAD_BYTES,
    EncodedState,
    EnvelopeCodec,
    SealedRecord,
)
from .._jsonio import dumps
from .._migrations import StateMigrations
from .._runid import validate_run_id
from .._sealing import TIMESTAMPS_KEY
from ..models import RUN_STATUSES, RunSummary, StateRecord, WorkflowState
from . import _history
from ._admin import UpstreamAdminCalls
from ._claims import ClaimHolder, ClaimWatch, RunClaim
from ._history import Checkpoint, PruneReport
from ._records import (
    MAX_REVISION,
    CurrentRecord,
    StateInput,
    StoredRecord,
    WriteRecord,
    check_expected,
    check_paging,
    check_revision,
    check_summary,
    coerce_state,
    shown,
    stored_timestamp,
)

__all__ = [
    "ClaimHolder",
    "ClaimWatch",
    "CurrentRecord",
    "EnvelopeStateBackend",
    "RunClaim",
    "SealedRecord",
    "StateBackend",
    "StateInput",
    "StoredRecord",
    "WriteRecord",
    "coerce_state",
    "shown",
    "stored_timestamp",
]


class StateBackend(abc.ABC):
    """Where workflow state is persisted.

    Required (the earlier flujo contract): ``save_state``, ``load_state``,
    ``delete_state``. Optional, raising NotImplementedError unless a backend provides
    them: ``list_runs``, ``list_run_ids``, ``load_record``,
    ``read_envelope``, ``write_envelope``, ``claim``.
    """

    @abc.abstractmethod
    async def save_state(
        self, run_id: str, state: StateInput, *, expected_revision: int | None = None
    ) -> int | None:
        """Persist ``state`` for ``run_id``; return the new revision (None if not tracked)."""

    @abc.abstractmethod
    async def load_state(self, run_id: str) -> dict[str, Any] | None:
        """Return the saved state as a dict of WorkflowState fields, or None if absent."""

    @abc.abstractmethod
    async def delete_state(self, run_id: str) -> None:
        """Delete the run's state; deleting an absent run is not an error."""

    async def list_runs(
        self,
        status: str | None = None,
        pipeline_name: str | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[RunSummary]:
        """Runs, most recently updated first, optionally filtered by status and pipeline."""
        raise NotImplementedError(f"{type(self).__name__} does not support list_runs")

    async def list_run_ids(self) -> list[str]:
        """Every stored run id, sorted. Reads no record, so damaged records are listed too."""
        raise NotImplementedError(f"{type(self).__name__} does not support list_run_ids")

    async def load_record(self, run_id: str) -> StateRecord | None:
        """The decoded state together with its revision and envelope."""
        raise NotImplementedError(f"{type(self).__name__} does not support load_record")

    async def read_envelope(self, run_id: str) -> Envelope | None:
        """The stored envelope, header parsed, payload left as stored (for tools)."""
        raise NotImplementedError(f"{type(self).__name__} does not support read_envelope")

    async def write_envelope(
        self, envelope: Envelope, *, expected_revision: int | None = None
    ) -> int:
        """Store an envelope as given (the backend assigns its revision); return it."""
        raise NotImplementedError(f"{type(self).__name__} does not support write_envelope")

    def claim(self, run_id: str) -> AbstractAsyncContextManager[RunClaim]:
        """Exclusive per-run claim: ``async with backend.claim(run_id): ...``.

        Raises ``RunInProgressError`` at once if another worker (in
        this process or another) holds it. The claim is released when the block exits and,
        if the worker dies, by the operating system or database server.
        """
        raise NotImplementedError(f"{type(self).__name__} does not support claim")

    async def claim_holders(self, run_ids: Sequence[str]) -> dict[str, ClaimHolder]:
        """Who holds the claim of each of ``run_ids`` now (runs nobody holds are left out):
        for operators (``flujo state ls --status running``); reading takes no claim."""
        raise NotImplementedError(f"{type(self).__name__} does not support claim_holders")

    async def request_cancel(self, run_id: str) -> None:
        """Ask the worker executing ``run_id`` to stop at its next step boundary.

        The request is kept in the store (any process sharing it sees it) until the run is
        saved as cancelled, completes, or ``clear_cancel_request`` drops it; asking twice
        is asking once. ``Flujo.cancel`` calls it for a run another worker holds.
        """
        raise NotImplementedError(f"{type(self).__name__} does not support cancel requests")

    async def cancel_requested(self, run_id: str) -> bool:
        """Whether a cancellation of ``run_id`` was requested and not yet carried out."""
        raise NotImplementedError(f"{type(self).__name__} does not support cancel requests")

    async def clear_cancel_request(self, run_id: str) -> None:
        """Drop the cancellation request of ``run_id``, if any."""
        raise NotImplementedError(f"{type(self).__name__} does not support cancel requests")

    async def close(self) -> None:
        """Release connections and other resources. The default does nothing."""
        return None

    async def shutdown(self) -> None:
        """Alias of ``close`` kept for backends written for earlier flujo."""
        await self.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


class EnvelopeStateBackend(UpstreamAdminCalls, StateBackend):
    """The full backend API implemented over five storage primitives.

    A subclass stores opaque envelope bytes keyed by run id and implements:

    * ``_read(run_id) -> StoredRecord | None``
    * ``_write(run_id, make) -> SealedRecord``: inside a critical section exclusive per run
      (across processes for durable stores), look up the current record's revision and
      creation time, call ``make(current_or_None)`` and store the record it returns
      atomically, together with its header fields for listing. If ``make`` raises, store
      nothing.
    * ``_delete(run_id)``
    * ``_list(status, pipeline_name, limit, offset) -> list[RunSummary]``
    * ``_list_ids() -> list[str]``

    plus ``claim``. Run ids reaching the primitives are already validated. A backend
    that can fence writes by claim epoch also overrides ``_write_claimed``.

    A backend that keeps checkpoint history sets ``keeps_history = True``: its ``_write``
    keeps the record it replaces, under that record's revision, and it implements
    ``_read_history`` and ``_compact``. Saves are then written as deltas of the record
    before (``flujo.state._chain``). A backend that does not keep history stores a whole
    state at every save, as before.
    """

    keeps_history: ClassVar[bool] = False
    #: How many runs' chain tips a backend remembers (the runs it is executing).
    TIPS = 256
    #: A run whose last whole-state record took at most this many bytes is saved whole, not
    #: as a delta: a record this small costs a database page or two to write either way
    #: (SQLite keeps up to about 4 KiB of a row in its page; PostgreSQL moves a value over
    #: about 2 KiB out of the row, compressed), so a delta would save next to nothing, and a
    #: load would read and parse two or more records instead of one. A run past it saves
    #: deltas, so a save never costs what a large state does. The size is the stored
    #: record's: after compression, and after encryption's base64.
    WHOLE_RECORD_BYTES = 4096

    def __init__(
        self,
        *,
        registry: TypeRegistry | None = None,
        migrations: StateMigrations | None = None,
        compression: str | Compressor | None = None,
        compression_level: int | None = None,
        encryption: Encryption | None = None,
        max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
    ) -> None:
        self.codec = EnvelopeCodec(
            registry=registry,
            migrations=migrations,
            compression=compression,
            compression_level=compression_level,
            encryption=encryption,
            max_payload_bytes=max_payload_bytes,
        )
        self._tips: dict[str, ChainTip] = {}
        self._tips_lock = threading.Lock()

    # -- primitives ----------------------------------------------------------------------

    @abc.abstractmethod
    async def _read(self, run_id: str) -> StoredRecord | None: ...

    @abc.abstractmethod
    async def _write(self, run_id: str, make: WriteRecord) -> SealedRecord: ...

    @abc.abstractmethod
    async def _delete(self, run_id: str) -> None: ...

    @abc.abstractmethod
    async def _list(
        self, status: str | None, pipeline_name: str | None, limit: int | None, offset: int
    ) -> list[RunSummary]: ...

    @abc.abstractmethod
    async def _list_ids(self) -> list[str]: ...

    def describe(self, run_id: str) -> str:
        """How error messages name a run's record (file backends add the file)."""
        return f"run {run_id!r}"

    # -- the API -------------------------------------------------------------------------

    async def save_state(
        self, run_id: str, state: StateInput, *, expected_revision: int | None = None,
        claim: RunClaim | None = None,
    ) -> int:
        """Encode and store ``state``; return its new revision.

        ``expected_revision`` turns the save into a compare-and-set: ``0`` means "the run must
        not exist yet", ``N`` means "the stored revision must still be N"; otherwise
        StateConflictError is raised and nothing is written. Serialization errors (a type
        with no serializer, ...) are raised here, before anything is stored.

        ``claim``: the claim on the run this save is made under. A backend that fences
        (PostgreSQL) checks in the same transaction that it is still the run's current
        claim and otherwise raises ClaimLostError, writing nothing; the others ignore it.
        """
        return await self._save_state(run_id, state, expected_revision, claim)

    async def _save_state(self, run_id: str, state: StateInput, expected_revision: int | None,
                          claim: RunClaim | None, *, updated_at: datetime | None = None,
                          whole: bool = False) -> int:
        """``save_state``; ``updated_at``: the time to record instead of now (a maintenance
        rewrite, ``migrate_all``, keeps the run's own); ``whole``: store the whole state, not
        a delta (a rewrite brings every part of the record up to date)."""
        validate_run_id(run_id)
        check_expected(expected_revision)
        what = self.describe(run_id)

        # The store owns created_at (see WorkflowState): the first save's time, or the one a
        # caller set explicitly on a run's first save (an import keeps its own).
        coerced = coerce_state(run_id, state)
        first_created = coerced.created_at if "created_at" in coerced.model_fields_set else None
        deltas = not whole and self._writes_deltas()
        tip = self._tip(run_id) if deltas else None
        encoded = self.codec.encode_state(coerced, tip, memo=deltas)
        # The delta of the tip, computed here, with no await since the encoding: the encoder's
        # output shares plain lists and dicts with the live context, which another task may
        # change while the write waits for the store. Used if the tip is still the stored
        # head (its revision is then the tip's next); not computed when the last whole state
        # leaves no room for even a header.
        room = 0 if tip is None else tip.snapshot_bytes - tip.chain_bytes
        early = self.codec.delta(tip, encoded, tip.revision + 1) if (
            tip is not None and tip.chain_length < MAX_CHAIN and room > tip.overhead
            and tip.snapshot_bytes > self.WHOLE_RECORD_BYTES) else None
        # The history entries as asked for, should the stored head not be the tip after all
        # (a pointer copy: the entries are encoded anew only then).
        entries = list(coerced.step_history) if tip is not None and tip.history.entries \
            else []
        written: list[ChainTip | None] = [None]

        def make(current: CurrentRecord | None) -> SealedRecord:
            nonlocal encoded
            revision = check_revision(what, current, expected_revision)
            created = (first_created if current is None
                       else stored_timestamp(what, "created_at", current.created_at))
            matches = tip is not None and current is not None and created is not None and \
                tip.matches(current.revision, created, current.updated_at)
            if tip is not None and not matches and tip.history.entries:
                # Another writer saved the run since: history entries this backend encoded
                # before are not reused (that writer may have stored them otherwise). Only
                # they: the live context may have changed since the save was asked for.
                encoded = self.codec.with_fresh_history(encoded, entries)
            # (the stored head is the tip: the revision is the tip's next, as early assumed)
            if tip is not None and matches and early is not None and \
                    revision == tip.revision + 1:
                delta = early
                if self.codec.fits(delta, room, tip):  # else not sealed only to be dropped
                    sealed = self.codec.seal(encoded, revision=revision, created_at=created,
                                             updated_at=updated_at, delta=delta,
                                             base=tip.base)
                    size = len(sealed.raw)
                    if size <= room:
                        written[0] = self._next_tip(
                            sealed, encoded, tip.base, tip.snapshot_bytes,
                            tip.chain_bytes + size, tip.chain_length + 1, delta.after)
                        return sealed
            sealed = self.codec.seal(encoded, revision=revision, created_at=created,
                                     updated_at=updated_at)
            written[0] = self._next_tip(sealed, encoded, revision, len(sealed.raw), 0, 0)
            return sealed

        sealed = await self._write_as(run_id, make, claim)
        self._keep_tip(run_id, written[0] if sealed.envelope.status == "running" else None)
        return sealed.envelope.revision

    @staticmethod
    def _next_tip(sealed: SealedRecord, encoded: EncodedState, base: int, snapshot_bytes: int,
                  chain_bytes: int, chain_length: int, parsed: Any = None) -> ChainTip:
        envelope = sealed.envelope
        plain = sealed.payload_json
        return ChainTip(revision=envelope.revision, created_at=envelope.created_at,
                        updated_at=envelope.updated_at, base=base,
                        snapshot_bytes=snapshot_bytes, chain_bytes=chain_bytes,
                        chain_length=chain_length, fields_json=encoded.fields_json,
                        history=encoded.history, memo=encoded.memo, parsed=parsed,
                        # (a compressed payload can make the record shorter than it)
                        overhead=0 if plain is None else max(0, len(sealed.raw) - len(plain)))

    def _writes_deltas(self) -> bool:
        """Whether saves may be written as deltas (a backend that keeps history can decline,
        e.g. to keep a queryable copy of the whole state)."""
        return self.keeps_history

    def _tip(self, run_id: str) -> ChainTip | None:
        with self._tips_lock:
            return self._tips.get(run_id)

    def _keep_tip(self, run_id: str, tip: ChainTip | None) -> None:
        """Remember ``tip`` as the run's last record (forget the run's tip when None). Only
        the tips of running runs are kept: a paused or finished run's next save, if any,
        comes much later, often from another process."""
        with self._tips_lock:
            if tip is None or not self.keeps_history:
                self._tips.pop(run_id, None)
                return
            known = self._tips.get(run_id)
            if known is not None and known.revision > tip.revision and \
                    known.created_at == tip.created_at:
                # a later save (another task of this process) was remembered first; not a
                # record of the run before it was deleted and created again (its own time)
                return
            self._tips.pop(run_id, None)
            self._tips[run_id] = tip
            while len(self._tips) > self.TIPS:
                del self._tips[next(iter(self._tips))]

    async def load_state(self, run_id: str) -> dict[str, Any] | None:
        record = await self.load_record(run_id)
        return None if record is None else record.state.to_dict()

    async def load_record(self, run_id: str) -> StateRecord | None:
        validate_run_id(run_id)
        chain = await self._read_chain(run_id)
        if chain is None:
            return None
        envelopes = [envelope for envelope, _ in chain]
        state, tip = self.codec.open_chain(envelopes, what=self.describe(run_id))
        head = envelopes[-1]
        if tip is not None and self.keeps_history and state.status == "running":
            tip.snapshot_bytes = chain[0][1]
            tip.chain_bytes = sum(size for _, size in chain[1:])
            self._keep_tip(run_id, tip)
        return StateRecord(state=state, revision=head.revision, envelope=head)

    async def _read_chain(self, run_id: str) -> list[tuple[Envelope, int]] | None:
        """The run's head record and, when it is a delta, the records of its chain before
        it (from the whole-state record it starts at), each with its stored size; None when
        the run does not exist.

        The records below the head never change once written, but a compaction can remove
        them between the two reads: then the head is read again. (A backend that can read
        both at once overrides this: with ``_chain_with`` given its own primitives, or, where
        its reads are not async, with ``_chain_with_sync`` on a worker thread.)"""
        return await self._chain_with(run_id, self._read, self._read_history)

    async def _chain_with(
        self, run_id: str, read: Callable[[str], Awaitable[StoredRecord | None]],
        read_history: Callable[[str, int, int], Awaitable[list[tuple[int, StoredRecord]]]],
    ) -> list[tuple[Envelope, int]] | None:
        """``_read_chain`` with these primitives (a backend's, on one connection, say)."""
        for _ in range(3):
            stored = await read(run_id)
            if stored is None:
                return None
            head, first = self._chain_head(run_id, stored)
            if first is None:
                return [(head, stored.size)]
            chain = self._chain_below(run_id, head, stored, await read_history(
                run_id, first, head.revision - 1))
            if chain is not None:
                return chain
        raise self._broken_chain(run_id, head)

    def _chain_with_sync(
        self, run_id: str, read: Callable[[str], StoredRecord | None],
        read_history: Callable[[str, int, int], list[tuple[int, StoredRecord]]],
    ) -> list[tuple[Envelope, int]] | None:
        """``_chain_with`` of primitives that are not async: the whole chain in one call (one
        trip to a worker thread, not one per read)."""
        for _ in range(3):
            stored = read(run_id)
            if stored is None:
                return None
            head, first = self._chain_head(run_id, stored)
            if first is None:
                return [(head, stored.size)]
            chain = self._chain_below(run_id, head, stored,
                                      read_history(run_id, first, head.revision - 1))
            if chain is not None:
                return chain
        raise self._broken_chain(run_id, head)

    def _chain_head(self, run_id: str, stored: StoredRecord) -> tuple[Envelope, int | None]:
        """The head record parsed, and the first revision of its chain (None for a
        whole-state record)."""
        head = self._parse(run_id, stored)
        if head.kind == "state":
            return head, None
        what = self.describe(run_id)
        if not self.keeps_history:
            raise CorruptStateError(
                f"{what}: the record is a delta of revision {head.base}, but"
                f" {type(self).__name__} keeps no earlier records")
        if head.revision - head.base > MAX_CHAIN:
            raise CorruptStateError(
                f"{what}: the record is a delta in a chain of {head.revision - head.base}"
                f" records, over the {MAX_CHAIN} flujo writes; the store was edited")
        return head, head.base

    def _chain_below(self, run_id: str, head: Envelope, stored: StoredRecord,
                     older: list[tuple[int, StoredRecord]]) -> list[tuple[Envelope, int]] | None:
        """The whole chain of ``head``, or None when ``older`` misses some of its records
        (a compaction removed them since the head was read)."""
        chain = self._parse_history(run_id, older)
        if [envelope.revision for envelope, _ in chain] != list(range(head.base,
                                                                      head.revision)):
            return None
        total = sum(size for _, size in chain) + stored.size
        if total > 2 * self.codec.max_record_bytes:
            raise RecordTooLargeError(
                f"{self.describe(run_id)}: the records of the chain hold {total:,} bytes, over"
                " twice this store's record limit; refused unread")
        return [*chain, (head, stored.size)]

    def _broken_chain(self, run_id: str, head: Envelope) -> CorruptStateError:
        return CorruptStateError(
            f"{self.describe(run_id)}: revision {head.revision} is a delta, and the records of"
            f" its chain from revision {head.base} are not all stored; the history is damaged")

    def _parse_history(self, run_id: str,
                       records: list[tuple[int, StoredRecord]]) -> list[tuple[Envelope, int]]:
        parsed = []
        for revision, stored in records:
            envelope = self._parse(run_id, stored)
            if envelope.revision != revision:
                raise CorruptStateError(
                    f"{self.describe(run_id)}: the record stored as revision {revision} says"
                    f" it is revision {envelope.revision}; the history was edited")
            parsed.append((envelope, stored.size))
        return parsed

    async def _read_history(self, run_id: str, first: int,
                            last: int) -> list[tuple[int, StoredRecord]]:
        """The kept records of revisions ``first`` to ``last`` (all below the head), in
        revision order; missing ones are left out. Backends with ``keeps_history``."""
        raise NotImplementedError(f"{type(self).__name__} keeps no checkpoint history")

    async def _compact(self, run_id: str, make: WriteRecord) -> SealedRecord:
        """Inside the run's critical section: call ``make(current)`` for a whole-state
        record at the current revision, store it as the head in place of the current one
        (not kept in the history) and delete every record below it, atomically where the
        store can (a crash may otherwise leave some of them, which a later compaction
        removes). Backends with ``keeps_history``."""
        raise NotImplementedError(f"{type(self).__name__} keeps no checkpoint history")

    # -- checkpoint history (see _history) ----------------------------------------------

    async def history(self, run_id: str) -> list[Checkpoint]:
        """Every stored checkpoint of ``run_id`` (one per save), oldest first; empty for an
        unknown run. Read from the records' headers: no value is decoded."""
        return await _history.history(self, run_id)

    async def state_at(self, run_id: str, revision: int) -> StateRecord | None:
        """The state ``run_id`` had at checkpoint ``revision``, exactly as that save stored
        it; None when the run or that checkpoint is not stored."""
        return await _history.state_at(self, run_id, revision)

    async def read_record(self, run_id: str, revision: int) -> Envelope | None:
        """The stored record of checkpoint ``revision`` as it is (a delta holds only what
        its save changed), header parsed, payload untouched; None when not stored."""
        validate_run_id(run_id)
        if isinstance(revision, bool) or not isinstance(revision, int) or revision < 1:
            raise BackendConfigError(f"revision must be an int >= 1, got {revision!r}")
        stored = await self._read(run_id)
        if stored is None:
            return None
        head = self._parse(run_id, stored)
        if revision == head.revision:
            return head
        if not self.keeps_history or not 1 <= revision < head.revision:
            return None
        found = self._parse_history(run_id, await self._read_history(run_id, revision,
                                                                     revision))
        return found[0][0] if found else None

    async def compact(self, run_id: str) -> int:
        """Keep only the last checkpoint of the finished run ``run_id``, stored whole;
        return how many records were removed (StateConflictError for a run that is not
        finished or was saved meanwhile)."""
        return await _history.compact(self, run_id)

    async def prune(
        self,
        *,
        older_than: timedelta | datetime | None = None,
        keep_last: int | None = None,
        status: str | Iterable[str] | None = None,
        history_only: bool = False,
        dry_run: bool = False,
        progress: Callable[[int, int], None] | None = None,
    ) -> PruneReport:
        """Remove finished runs (or, ``history_only``, all their checkpoints but the last)
        last saved before ``older_than`` and not among the ``keep_last`` newest of their
        pipeline; see ``flujo.state.backends._history.prune``."""
        return await _history.prune(self, older_than=older_than, keep_last=keep_last,
                                    status=status, history_only=history_only,
                                    dry_run=dry_run, progress=progress)

    async def load_workflow_state(self, run_id: str) -> WorkflowState | None:
        """Deprecated: ``(await load_record(run_id)).state``, which also gives the revision."""
        warnings.warn("load_workflow_state is deprecated and will be removed in flujo 1.0:"
                      " use (await backend.load_record(run_id)).state", DeprecationWarning,
                      stacklevel=2)
        record = await self.load_record(run_id)
        return None if record is None else record.state

    async def delete_state(self, run_id: str) -> None:
        validate_run_id(run_id)
        self._keep_tip(run_id, None)
        await self._delete(run_id)
        self._keep_tip(run_id, None)  # a save racing the delete remembered a record gone now

    async def request_cancel(self, run_id: str) -> None:
        await self._request_cancel(validate_run_id(run_id))

    async def cancel_requested(self, run_id: str) -> bool:
        return await self._cancel_requested(validate_run_id(run_id))

    async def clear_cancel_request(self, run_id: str) -> None:
        await self._clear_cancel(validate_run_id(run_id))

    # Cancel requests are kept apart from the records (a request must not conflict with the
    # saves of the worker that holds the run); ``_delete`` drops a run's request with it.
    # The built-in backends implement these three; a custom backend that does not cannot be
    # asked to cancel a run another worker holds.
    async def _request_cancel(self, run_id: str) -> None:
        raise NotImplementedError(f"{type(self).__name__} does not support cancel requests")

    async def _cancel_requested(self, run_id: str) -> bool:
        raise NotImplementedError(f"{type(self).__name__} does not support cancel requests")

    async def _clear_cancel(self, run_id: str) -> None:
        raise NotImplementedError(f"{type(self).__name__} does not support cancel requests")

    async def list_runs(
        self,
        status: str | None = None,
        pipeline_name: str | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[RunSummary]:
        if status is not None and status not in RUN_STATUSES:
            raise BackendConfigError(
                f"status must be one of {', '.join(RUN_STATUSES)}, got {status!r}")
        check_paging(limit, offset)
        rows = await self._list(status, pipeline_name, limit, offset)
        return [check_summary(self.describe, row) for row in rows]

    async def list_run_ids(self) -> list[str]:
        return sorted(await self._list_ids())

    def plain_fields(self, envelope: Envelope) -> Any:
        """The state fields of a whole-state ``envelope`` as JSON data, no value decoded (for
        listings): the step history as a list of tagged documents."""
        return self._plain([envelope])

    async def plain_state(self, run_id: str) -> Any:
        """The current state fields of ``run_id`` as JSON data, as ``plain_fields`` gives
        them, rebuilt from its chain (nothing resealed); None when the run does not exist."""
        chain = await self._read_chain(validate_run_id(run_id))
        return None if chain is None else self._plain([envelope for envelope, _ in chain])

    def _plain(self, chain: list[Envelope]) -> Any:
        data = self.codec.plain_chain(chain, what=self.describe(chain[-1].run_id))
        if chain[0].stored_envelope_version < 2:
            return data
        return {**data["fields"], "step_history": data["history"]}

    async def read_envelope(self, run_id: str) -> Envelope | None:
        """The run's current record as one whole-state envelope: the stored head, or, when
        the head is a delta, the state its chain builds, sealed as this store seals records
        (nothing is written)."""
        validate_run_id(run_id)
        chain = await self._read_chain(run_id)
        if chain is None:
            return None
        envelopes = [envelope for envelope, _ in chain]
        if len(envelopes) == 1:
            return envelopes[0]
        what = self.describe(run_id)
        return self.codec.reseal(envelopes[-1], self.codec.plain_chain(envelopes, what=what))

    def _parse(self, run_id: str, stored: StoredRecord) -> Envelope:
        what = self.describe(run_id)
        envelope = self.codec.parse(stored.raw, what=what, fallback_time=stored.fallback_time)
        if envelope.revision > MAX_REVISION:  # a database column cannot even hold it
            raise CorruptStateError(
                f"{what}: the stored revision {shown(envelope.revision)} is out of range (1 to"
                f" {MAX_REVISION}); the record was edited")
        if envelope.run_id != run_id:
            raise CorruptStateError(
                f"{what}: the record belongs to run {envelope.run_id!r} (was it copied or renamed?)"
            )
        return envelope

    async def write_envelope(
        self, envelope: Envelope, *, expected_revision: int | None = None,
        claim: RunClaim | None = None,
    ) -> int:
        """Store ``envelope`` unchanged except for its revision, which the backend assigns.

        Meant for tools (import, repair). An encrypting backend refuses plaintext envelopes.
        ``claim`` fences the write as in ``save_state``.
        """
        run_id = validate_run_id(envelope.run_id)
        check_expected(expected_revision)
        encryption = self.codec.encryption
        if encryption is not None and not envelope.encrypted and not encryption.accept_plaintext:
            raise EncryptionError(
                f"{self.describe(run_id)}: this backend encrypts records; refusing to store a"
                f" plaintext envelope (codec {envelope.codec!r})"
            )
        what = self.describe(run_id)

        def make(current: CurrentRecord | None) -> SealedRecord:
            revision = check_revision(what, current, expected_revision)
            stored = envelope.model_copy(update={"revision": revision, "base": revision})
            stored._stored_envelope_version = envelope.stored_envelope_version
            raw = self.codec.to_bytes(stored)
            plain = dumps(stored.payload) if stored.codec == "json" else None
            return SealedRecord(stored, raw, plain)

        if envelope.kind != "state":
            raise BackendConfigError(
                f"{what}: write_envelope stores whole-state records; this one is a delta of"
                f" revision {envelope.base} (read_envelope gives the whole state)")
        sealed = await self._write_as(run_id, make, claim)
        self._keep_tip(run_id, None)
        return sealed.envelope.revision

    async def rewrite_status(self, envelope: Envelope, status: str, *,
                             claim: RunClaim | None = None) -> int:
        """Store the run of ``envelope`` (as ``read_envelope`` gave it) again with
        ``status`` and no pause, everything else as stored, and no value decoded (an
        operator's tool needs none of the application's types); return the new revision.
        Compare-and-set on the envelope's revision, fenced by ``claim``."""
        if status not in RUN_STATUSES:
            raise BackendConfigError(
                f"status must be one of {', '.join(RUN_STATUSES)}, got {status!r}")
        run_id = envelope.run_id
        what = self.describe(run_id)
        # An altered header is refused here as when the record is read: a rewrite must not
        # seal its values into a record that then looks authentic.
        data = self.codec.plain_chain([envelope], what=what)
        legacy = envelope.stored_envelope_version < 2
        fields = dict(data) if legacy else dict(data["fields"])
        fields.pop(TIMESTAMPS_KEY, None)
        fields.update(status=status, pause=None)
        try:
            fields_json = dumps(fields)
        except ValueError as exc:  # pragma: no cover - it was read from JSON
            raise CorruptStateError(f"{what}: the payload cannot be written again: {exc}") from exc
        docs = [] if legacy else data["history"]
        history = History.of([HistoryEntry(doc, {}) for doc in docs], [UNKNOWN] * len(docs))
        encoded = EncodedState(run_id=run_id, pipeline_name=envelope.pipeline_name,
                               status=status, state_version=envelope.state_version,
                               manifest=dict(envelope.manifest), fields=fields,
                               fields_json=fields_json, history=history,
                               step=envelope.step, attempt=envelope.attempt,
                               steps_done=envelope.steps_done)

        def make(current: CurrentRecord | None) -> SealedRecord:
            revision = check_revision(what, current, envelope.revision)
            assert current is not None  # check_revision refused a missing record
            created = stored_timestamp(what, "created_at", current.created_at)
            if legacy:  # its one document cannot be split: it stays a version 1 record
                return self.codec.seal_version1(encoded, revision=revision, created_at=created)
            return self.codec.seal(encoded, revision=revision, created_at=created)

        sealed = await self._write_as(validate_run_id(run_id), make, claim)
        self._keep_tip(run_id, None)
        return sealed.envelope.revision

    async def _write_as(self, run_id: str, make: WriteRecord,
                        claim: RunClaim | None) -> SealedRecord:
        if claim is None:
            return await self._write(run_id, make)
        if not isinstance(claim, RunClaim) or claim.run_id != run_id:
            raise BackendConfigError(
                f"{self.describe(run_id)}: claim= must be this run's RunClaim, got {claim!r}")
        return await self._write_claimed(run_id, make, claim)

    async def _write_claimed(self, run_id: str, make: WriteRecord,
                             claim: RunClaim) -> SealedRecord:
        """``_write`` under ``claim``. A backend that can fence overrides it to check, in the
        same critical section as the write, that ``claim`` is still the run's current claim
        (ClaimLostError otherwise, nothing written); by default the claim is not checked."""
        return await self._write(run_id, make)
