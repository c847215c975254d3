"""Fixtures for the state-layer tests: PostgreSQL access and subprocess helpers.

PostgreSQL tests read the DSN from ``FLUJO_TEST_POSTGRES_DSN`` (default: the local trust-auth
server). They create one uniquely named schema per test session and drop it at the end, so
they never depend on, or disturb, anything else in the database. When no server is reachable
they skip with the reason, unless ``FLUJO_REQUIRE_POSTGRES`` is set (CI), where they fail.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
from state_helpers import PostgresTarget, postgres_dsn


@pytest.fixture(scope="session")
def postgres_target() -> Iterator[PostgresTarget]:
    dsn = postgres_dsn()
    try:
        import psycopg
    except ImportError as exc:  # pragma: no cover - the dev extra installs it
        _unavailable(f"psycopg is not installed ({exc})")
    try:
        with psycopg.connect(dsn, connect_timeout=3):
            pass
    except psycopg.Error as exc:
        _unavailable(f"PostgreSQL is not reachable via FLUJO_TEST_POSTGRES_DSN: {exc}")
    target = PostgresTarget(dsn, f"flujo_test_{uuid.uuid4().hex[:12]}")
    try:
        yield target
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{target.schema}" CASCADE')


def _unavailable(reason: str) -> None:
    if os.environ.get("FLUJO_REQUIRE_POSTGRES"):
        pytest.fail(f"FLUJO_REQUIRE_POSTGRES is set but {reason}")
    pytest.skip(reason)
