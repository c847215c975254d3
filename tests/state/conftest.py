"""Fixtures for the state-layer tests: PostgreSQL access and subprocess helpers.

PostgreSQL tests read the DSN from ``FLUJO_TEST_POSTGRES_DSN`` (default: the local trust-auth
server). They create one uniquely named schema per test session and drop it at the end, so
they never depend on, or disturb, anything else in the database. When no server is reachable
they skip with the reason, unless ``FLUJO_REQUIRE_POSTGRES`` is set (CI), where they fail.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from state_helpers import PostgresTarget


@pytest.fixture(scope="session")
def postgres_target(postgres_schemas: Callable[[str], tuple[str, str]]) -> PostgresTarget:
    dsn, schema = postgres_schemas("flujo_test")
    return PostgresTarget(dsn, schema)
