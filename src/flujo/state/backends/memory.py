"""In-process backend for tests and short-lived runs.

It stores the *encoded* envelope bytes, not live objects, so a state read back from memory has
gone through exactly the serialization (and compression/encryption) path production uses, and
mutating an object after saving it does not change what was saved.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from flujo.exceptions import (
    CorruptStateError,
    RunInProgressError,
    SerializationError,
    StateError,
)

from .._envelope import Envelope
from .._envelope_codec import SealedRecord
from .._runid import validate_run_id
from ..models import RunSummary
from ._claims import ClaimHolder, holder_name, run_ids_asked
from .base import CurrentRecord, EnvelopeStateBackend, RunClaim, StoredRecord, WriteRecord

__all__ = ["InMemoryBackend"]


@dataclass(frozen=True)
class _Entry:
    raw: bytes
    envelope: Envelope | None  # None: stored with put_raw and not parseable
    problem: str = ""  # why it is not parseable (the error of the parse, naming the field)

    def header(self, what: str) -> Envelope:
        if self.envelope is None:
            raise CorruptStateError(self.problem or f"{what}: the stored record is not a valid"
                                    " envelope")
        return self.envelope

    def summary(self, what: str) -> RunSummary:
        env = self.header(what)
        return RunSummary(
            run_id=env.run_id,
            pipeline_name=env.pipeline_name,
            status=env.status,
            revision=env.revision,
            created_at=env.created_at,
            updated_at=env.updated_at,
        )


def page(rows: list[RunSummary], limit: int | None, offset: int) -> list[RunSummary]:
    """Sort summaries newest first (ties by run id) and cut one page."""
    rows.sort(key=lambda r: r["run_id"])
    rows.sort(key=lambda r: r["updated_at"], reverse=True)
    end = None if limit is None else offset + limit
    return rows[offset:end]


class InMemoryBackend(EnvelopeStateBackend):
    """Keeps encoded envelopes in a dict, each run's earlier records (its checkpoint history)
    beside it. Claims are exclusive within this backend instance."""

    keeps_history = True

    def __init__(self, **codec_options: Any) -> None:
        super().__init__(**codec_options)
        self._lock = threading.Lock()
        self._entries: dict[str, _Entry] = {}
        self._history: dict[str, dict[int, bytes]] = {}
        self._claims: dict[str, ClaimHolder] = {}
        self._cancel_requests: set[str] = set()

    async def _read(self, run_id: str) -> StoredRecord | None:
        with self._lock:
            entry = self._entries.get(run_id)
        return None if entry is None else StoredRecord(entry.raw)

    def _current_locked(self, run_id: str) -> tuple[_Entry | None, CurrentRecord | None]:
        entry = self._entries.get(run_id)
        if entry is None:
            return None, None
        env = entry.header(self.describe(run_id))
        return entry, CurrentRecord(env.revision, env.created_at, env.updated_at)

    async def _write(self, run_id: str, make: WriteRecord) -> SealedRecord:
        with self._lock:
            entry, current = self._current_locked(run_id)
            sealed = make(current)
            if entry is not None and current is not None:
                self._history.setdefault(run_id, {})[current.revision] = entry.raw
            self._entries[run_id] = _Entry(bytes(sealed.raw), sealed.envelope)
        return sealed

    async def _read_history(self, run_id: str, first: int,
                            last: int) -> list[tuple[int, StoredRecord]]:
        with self._lock:
            kept = dict(self._history.get(run_id, {}))
        return [(revision, StoredRecord(kept[revision]))
                for revision in sorted(kept) if first <= revision <= last]

    async def _compact(self, run_id: str, make: WriteRecord) -> SealedRecord:
        with self._lock:
            sealed = make(self._current_locked(run_id)[1])
            self._entries[run_id] = _Entry(bytes(sealed.raw), sealed.envelope)
            self._history.pop(run_id, None)
        return sealed

    async def _delete(self, run_id: str) -> None:
        with self._lock:
            self._entries.pop(run_id, None)
            self._history.pop(run_id, None)
            self._cancel_requests.discard(run_id)

    async def _list(
        self, status: str | None, pipeline_name: str | None, limit: int | None, offset: int
    ) -> list[RunSummary]:
        with self._lock:
            entries = list(self._entries.items())
        rows = [e.summary(self.describe(run_id)) for run_id, e in entries]
        rows = [
            r
            for r in rows
            if (status is None or r["status"] == status)
            and (pipeline_name is None or r["pipeline_name"] == pipeline_name)
        ]
        return page(rows, limit, offset)

    async def _list_ids(self) -> list[str]:
        with self._lock:
            return list(self._entries)

    @asynccontextmanager
    async def claim(self, run_id: str) -> AsyncIterator[RunClaim]:
        validate_run_id(run_id)
        with self._lock:
            if run_id in self._claims:
                raise RunInProgressError(f"run {run_id!r} is claimed by another worker")
            claim = RunClaim(run_id)
            self._claims[run_id] = ClaimHolder(holder_name(), claim.acquired_at)
        try:
            yield claim
        finally:
            with self._lock:
                self._claims.pop(run_id, None)

    async def claim_holders(self, run_ids: Sequence[str]) -> dict[str, ClaimHolder]:
        asked = run_ids_asked(run_ids)
        with self._lock:
            return {rid: self._claims[rid] for rid in asked if rid in self._claims}

    async def _request_cancel(self, run_id: str) -> None:
        with self._lock:
            self._cancel_requests.add(run_id)

    async def _cancel_requested(self, run_id: str) -> bool:
        with self._lock:
            return run_id in self._cancel_requests

    async def _clear_cancel(self, run_id: str) -> None:
        with self._lock:
            self._cancel_requests.discard(run_id)

    def raw_records(self) -> dict[str, bytes]:
        """A copy of the stored bytes by run id (for tests and debugging)."""
        with self._lock:
            return {run_id: e.raw for run_id, e in self._entries.items()}

    def put_raw(self, run_id: str, raw: bytes) -> None:
        """Store bytes verbatim, bypassing every check (for corruption tests)."""
        validate_run_id(run_id)
        problem = ""
        try:
            env: Envelope | None = self._parse(run_id, StoredRecord(raw))
        except (StateError, SerializationError) as exc:
            env, problem = None, str(exc)
        with self._lock:
            self._entries[run_id] = _Entry(raw, env, problem)
