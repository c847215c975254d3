"""Backends for the runner tests: every built-in kind, each in its own place.

PostgreSQL: one uniquely named schema per session, dropped at the end; skipped when the
server is unreachable unless FLUJO_REQUIRE_POSTGRES is set (CI), where it fails.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from crash_pipeline import make_backend

from flujo.state import InMemoryBackend, StateBackend


@pytest.fixture(autouse=True)
def _runs_meet_chains(states_in_deltas: None) -> None:
    """The runner's tests resume, pause, retry and fork runs whose states are a few hundred
    bytes: their saves are deltas here, so that those paths meet a chain at the head (whole
    small records are the backends' and the contract's tests)."""


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
def postgres_schema(postgres_schemas: Callable[[str], tuple[str, str]]) -> tuple[str, str]:
    return postgres_schemas("flujo_runner")


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
