"""A custom state backend tested against flujo's backend contract (docs/testing.md).

``CustomBackend`` keeps envelopes in a dict. It is the smallest complete backend: it
subclasses ``EnvelopeStateBackend`` (docs/custom-backend.md), which implements serialization,
envelopes, compression, encryption, migrations and compare-and-set on top of the storage
primitives below. ``TestCustomBackend`` runs the same contract suite as the built-in
backends against it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from flujo.exceptions import RunInProgressError
from flujo.state import (
    CurrentRecord,
    EnvelopeStateBackend,
    RunClaim,
    RunSummary,
    SealedRecord,
    StateBackend,
    StoredRecord,
    WriteRecord,
    validate_run_id,
)
from flujo.testing import BackendContract


class CustomBackend(EnvelopeStateBackend):
    """Stores each run's envelope bytes in a dict (one process; lost when it exits)."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)  # registry=, compression=, encryption=, migrations=, ...
        self.records: dict[str, bytes] = {}
        self._lock = asyncio.Lock()  # the per-run critical section (one lock for all runs)
        self._claims: set[str] = set()

    async def _read(self, run_id: str) -> StoredRecord | None:
        raw = self.records.get(run_id)
        return None if raw is None else StoredRecord(raw)

    async def _write(self, run_id: str, make: WriteRecord) -> SealedRecord:
        async with self._lock:
            stored = await self.read_envelope(run_id)  # a damaged record raises: kept as is
            current = None if stored is None else CurrentRecord(stored.revision,
                                                                stored.created_at)
            sealed = make(current)  # checks expected_revision, builds the envelope; may raise
            self.records[run_id] = bytes(sealed.raw)
            return sealed

    async def _delete(self, run_id: str) -> None:
        async with self._lock:
            self.records.pop(run_id, None)

    async def _list(self, status: str | None, pipeline_name: str | None, limit: int | None,
                    offset: int) -> list[RunSummary]:
        rows: list[RunSummary] = []
        for run_id in list(self.records):
            env = await self.read_envelope(run_id)
            if env is None or status not in (None, env.status) or pipeline_name not in (
                    None, env.pipeline_name):
                continue
            rows.append(RunSummary(run_id=run_id, pipeline_name=env.pipeline_name,
                                   status=env.status, revision=env.revision,
                                   created_at=env.created_at, updated_at=env.updated_at))
        rows.sort(key=lambda row: (-row["updated_at"].timestamp(), row["run_id"]))
        return rows[offset:None if limit is None else offset + limit]

    async def _list_ids(self) -> list[str]:
        return list(self.records)

    @asynccontextmanager
    async def claim(self, run_id: str) -> AsyncIterator[RunClaim]:
        validate_run_id(run_id)
        if run_id in self._claims:
            raise RunInProgressError(f"run {run_id!r} is claimed by another worker")
        self._claims.add(run_id)
        try:
            yield RunClaim(run_id)
        finally:
            self._claims.discard(run_id)


class TestCustomBackend(BackendContract):
    """Every contract test, run against CustomBackend."""

    async def make_backend(self, tmp_path: Path, **options: Any) -> StateBackend:
        return CustomBackend(**options)  # fresh, empty storage on every call

    # Raw access enables the damaged-record, tampering and migration tests.
    async def get_raw(self, backend: StateBackend, run_id: str) -> bytes:
        assert isinstance(backend, CustomBackend)
        return backend.records[run_id]

    async def put_raw(self, backend: StateBackend, run_id: str, raw: bytes) -> None:
        assert isinstance(backend, CustomBackend)
        backend.records[run_id] = raw
