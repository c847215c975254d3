"""The shared backend contract (flujo.testing.BackendContract) run on all four backends."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from state_helpers import PostgresTarget

from flujo.state import (
    FileBackend,
    InMemoryBackend,
    PostgresBackend,
    SQLiteBackend,
    StateBackend,
)
from flujo.testing import BackendContract


class TestInMemoryBackend(BackendContract):
    async def make_backend(self, tmp_path: Path, **options: Any) -> StateBackend:
        return InMemoryBackend(**options)

    async def get_raw(self, backend: StateBackend, run_id: str) -> bytes:
        assert isinstance(backend, InMemoryBackend)
        return backend.raw_records()[run_id]

    async def put_raw(self, backend: StateBackend, run_id: str, raw: bytes) -> None:
        assert isinstance(backend, InMemoryBackend)
        backend.put_raw(run_id, raw)

    async def put_kept_raw(self, backend: StateBackend, run_id: str, revision: int,
                           raw: bytes | None) -> None:
        assert isinstance(backend, InMemoryBackend)
        kept = backend._history.setdefault(run_id, {})
        if raw is None:
            kept.pop(revision, None)
        else:
            kept[revision] = raw


class TestFileBackend(BackendContract):
    async def make_backend(self, tmp_path: Path, **options: Any) -> StateBackend:
        return FileBackend(tmp_path / uuid.uuid4().hex, **options)

    async def get_raw(self, backend: StateBackend, run_id: str) -> bytes:
        assert isinstance(backend, FileBackend)
        return backend.file_for(run_id).read_bytes()

    async def put_raw(self, backend: StateBackend, run_id: str, raw: bytes) -> None:
        assert isinstance(backend, FileBackend)
        backend.path.mkdir(mode=0o700, parents=True, exist_ok=True)  # as a first write makes it
        backend.file_for(run_id).write_bytes(raw)

    async def put_kept_raw(self, backend: StateBackend, run_id: str, revision: int,
                           raw: bytes | None) -> None:
        assert isinstance(backend, FileBackend)
        path = backend.path / ".history" / run_id / f"{revision}.json"
        path.unlink(missing_ok=True)  # a hard link: never write through it
        if raw is not None:
            path.write_bytes(raw)


class TestSQLiteBackend(BackendContract):
    async def make_backend(self, tmp_path: Path, **options: Any) -> StateBackend:
        return SQLiteBackend(tmp_path / f"{uuid.uuid4().hex}.db", **options)

    async def get_raw(self, backend: StateBackend, run_id: str) -> bytes:
        assert isinstance(backend, SQLiteBackend)
        with backend._connection() as conn:
            row = conn.execute(
                f'SELECT envelope FROM "{backend.table}" WHERE run_id = ?', (run_id,)
            ).fetchone()
        value = row[0]
        return value.encode() if isinstance(value, str) else bytes(value)

    async def put_raw(self, backend: StateBackend, run_id: str, raw: bytes) -> None:
        assert isinstance(backend, SQLiteBackend)
        try:
            value: str | bytes = raw.decode()
        except UnicodeDecodeError:
            value = raw  # stored as a BLOB, as a damaged file could end up
        with backend._connection() as conn:
            conn.execute(
                f'INSERT INTO "{backend.table}" (run_id, revision, status, pipeline_name,'
                " state_version, created_at, updated_at, envelope)"
                " VALUES (?, 1, 'running', '', 1, '2000-01-01T00:00:00.000000+00:00',"
                " '2000-01-01T00:00:00.000000+00:00', ?)"
                " ON CONFLICT(run_id) DO UPDATE SET envelope = excluded.envelope",
                (run_id, value),
            )

    async def put_kept_raw(self, backend: StateBackend, run_id: str, revision: int,
                           raw: bytes | None) -> None:
        assert isinstance(backend, SQLiteBackend)
        with backend._connection() as conn:
            conn.execute(f'DELETE FROM "{backend.table}_history" WHERE run_id = ? AND'
                         " revision = ?", (run_id, revision))
            if raw is not None:
                conn.execute(f'INSERT INTO "{backend.table}_history" (run_id, revision,'
                             " envelope) VALUES (?, ?, ?)", (run_id, revision, raw.decode()))


@pytest.mark.postgres
class TestPostgresBackend(BackendContract):
    @pytest.fixture(autouse=True)
    def _target(self, postgres_target: PostgresTarget) -> None:
        self.target = postgres_target

    async def make_backend(self, tmp_path: Path, **options: Any) -> StateBackend:
        return PostgresBackend(
            self.target.dsn,
            schema=self.target.schema,
            table=self.target.new_table(),
            min_size=1,
            max_size=4,
            **options,
        )

    async def get_raw(self, backend: StateBackend, run_id: str) -> bytes:
        import psycopg

        assert isinstance(backend, PostgresBackend)
        async with await psycopg.AsyncConnection.connect(backend.dsn) as conn:
            cur = await conn.execute(
                f'SELECT envelope::text FROM "{backend.schema}"."{backend.table}"'
                " WHERE run_id = %s",
                (run_id,),
            )
            row = await cur.fetchone()
        assert row is not None
        return str(row[0]).encode()

    async def put_raw(self, backend: StateBackend, run_id: str, raw: bytes) -> None:
        import psycopg

        assert isinstance(backend, PostgresBackend)
        await backend.schema_version()  # creates the table (reads never do)
        try:
            text = raw.decode()
            async with await psycopg.AsyncConnection.connect(backend.dsn) as conn:
                await conn.execute(
                    f'INSERT INTO "{backend.schema}"."{backend.table}" (run_id, revision, status,'
                    " pipeline_name, state_version, created_at, updated_at, envelope)"
                    " VALUES (%s, 1, 'running', '', 1, now(), now(), %s::json)"
                    " ON CONFLICT (run_id) DO UPDATE SET envelope = EXCLUDED.envelope",
                    (run_id, text),
                )
        except (UnicodeDecodeError, psycopg.errors.InvalidTextRepresentation):
            pytest.skip("a PostgreSQL json column cannot hold text that is not JSON")

    async def put_kept_raw(self, backend: StateBackend, run_id: str, revision: int,
                           raw: bytes | None) -> None:
        import psycopg

        assert isinstance(backend, PostgresBackend)
        table = f'"{backend.schema}"."{backend.table}_history"'
        async with await psycopg.AsyncConnection.connect(backend.dsn) as conn:
            await conn.execute(f"DELETE FROM {table} WHERE run_id = %s AND revision = %s",
                               (run_id, revision))
            if raw is not None:
                await conn.execute(f"INSERT INTO {table} (run_id, revision, envelope)"
                                   " VALUES (%s, %s, %s::json)", (run_id, revision, raw.decode()))
