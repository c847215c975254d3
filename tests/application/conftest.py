"""Backends for the runner tests: every built-in kind, each in its own place.

PostgreSQL: one uniquely named schema per session, dropped at the end; skipped when the
server is unreachable unless FLUJO_REQUIRE_POSTGRES is set (CI), where it fails.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from crash_pipeline import make_backend

from flujo.state import InMemoryBackend, StateBackend

DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/test"


@dataclass(frozen=True)
class Store:
    """Where a backend kind keeps its data, so a child process can open the same store."""

    kind: str
    location: str
    schema: str | None = None

    def open(self) -> StateBackend:
        if self.kind == "memory":
            return InMemoryBackend()
        return make_backend(self.kind, self.location, self.schema)


@pytest.fixture(scope="session")
def postgres_schema() -> Iterator[tuple[str, str]]:
    dsn = os.environ.get("FLUJO_TEST_POSTGRES_DSN", DEFAULT_DSN)
    psycopg = pytest.importorskip("psycopg")
    try:
        with psycopg.connect(dsn, connect_timeout=3):
            pass
    except psycopg.Error as exc:
        if os.environ.get("FLUJO_REQUIRE_POSTGRES"):
            pytest.fail(f"FLUJO_REQUIRE_POSTGRES is set but PostgreSQL is unreachable: {exc}")
        pytest.skip(f"PostgreSQL is not reachable via FLUJO_TEST_POSTGRES_DSN: {exc}")
    schema = f"flujo_runner_{uuid.uuid4().hex[:12]}"
    try:
        yield dsn, schema
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def _store(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> Store:
    if kind == "file":
        return Store("file", str(tmp_path / "runs"))
    if kind == "sqlite":
        return Store("sqlite", str(tmp_path / "state.db"))
    if kind == "postgres":
        dsn, schema = request.getfixturevalue("postgres_schema")
        return Store("postgres", dsn, schema)
    return Store("memory", "")


@pytest.fixture(params=["memory", "file", "sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    return _store(request.param, tmp_path, request)


@pytest.fixture(params=["file", "sqlite", "postgres"])
def durable_store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    return _store(request.param, tmp_path, request)


@pytest.fixture
async def backend(store: Store) -> AsyncIterator[StateBackend]:
    opened = store.open()
    try:
        yield opened
    finally:
        await opened.close()
