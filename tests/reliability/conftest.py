"""Fixtures for the reliability campaigns' CI runs (the campaigns live in scripts/reliability).

PostgreSQL: each campaign creates and drops its own uniquely named schema. When no server is
reachable the PostgreSQL variants skip, unless ``FLUJO_REQUIRE_POSTGRES`` is set, where they
fail.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts" / "reliability"
if str(SCRIPTS) not in sys.path:
    sys.path.insert(0, str(SCRIPTS))

from _common import postgres_dsn, postgres_unavailable  # noqa: E402


def require_postgres() -> str:
    """The DSN of a reachable server; skip (or fail under FLUJO_REQUIRE_POSTGRES) otherwise."""
    dsn = postgres_dsn()
    reason = postgres_unavailable(dsn)
    if reason is not None:
        if os.environ.get("FLUJO_REQUIRE_POSTGRES"):
            pytest.fail(f"FLUJO_REQUIRE_POSTGRES is set but {reason}")
        pytest.skip(reason)
    return dsn


@pytest.fixture(scope="session")
def postgres_dsn_or_skip() -> str:
    return require_postgres()
