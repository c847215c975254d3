"""Shared pytest configuration.

PostgreSQL: ``postgres_schemas`` gives each test area its own uniquely named schema on the
server named by ``FLUJO_TEST_POSTGRES_DSN`` (default: the local trust-auth server) and drops
them all at the end of the session, so tests never depend on or disturb anything else in the
database. Unreachable server: the tests skip with the reason, unless ``FLUJO_REQUIRE_POSTGRES``
is set (CI), where they fail.

Compiled modules (setup.py builds them in place with ``pip install -e .``) must not be older
than their sources: the session stops and says to rebuild (or to set FLUJO_PURE_PYTHON=1),
rather than test code that is not the code in the tree.

Snapshots live in the top-level ``snapshots/`` folder, one directory per test module
(``snapshots/<test module>/<test name>.json``), so they are easy to review in one place and
are not scattered through ``tests/``.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from syrupy.extensions.json import JSONSnapshotExtension

if TYPE_CHECKING:
    from syrupy.assertion import SnapshotAssertion
    from syrupy.location import PyTestLocation
    from syrupy.types import PropertyFilter, PropertyMatcher, SerializableData, SerializedData

REPO_ROOT = Path(__file__).resolve().parent.parent
SNAPSHOT_ROOT = REPO_ROOT / "snapshots"


def pytest_sessionstart(session: pytest.Session) -> None:
    from flujo.serialization import compiled_modules

    package = REPO_ROOT / "src" / "flujo" / "serialization"
    stale = []
    for name in compiled_modules():
        module = sys.modules[f"flujo.serialization.{name}"]
        if module.__file__ and Path(module.__file__).parent == package and \
                (package / f"{name}.py").stat().st_mtime > Path(module.__file__).stat().st_mtime:
            stale.append(name)
    if stale:
        pytest.exit(f"compiled flujo.serialization modules {stale} are older than their "
                    "sources: rebuild with `pip install -e .`, or run with "
                    "FLUJO_PURE_PYTHON=1", returncode=3)


def _keep_key_order(value: Any) -> Any:
    """Dicts as OrderedDicts, which syrupy's JSON extension writes in their own order."""
    if isinstance(value, dict):
        return OrderedDict((key, _keep_key_order(item)) for key, item in value.items())
    if isinstance(value, list):
        return [_keep_key_order(item) for item in value]
    return value


class TopLevelJSONSnapshotExtension(JSONSnapshotExtension):
    """JSON snapshots stored under ``<repo>/snapshots/<test module>/``.

    Dict keys are written in their own order (syrupy sorts them by default), so a snapshot of
    JSON data pins the precise output of the code under test, key order included.
    """

    @classmethod
    def dirname(cls, *, test_location: PyTestLocation) -> str:
        return str(SNAPSHOT_ROOT / test_location.basename)

    def serialize(
        self,
        data: SerializableData,
        *,
        exclude: PropertyFilter | None = None,
        include: PropertyFilter | None = None,
        matcher: PropertyMatcher | None = None,
    ) -> SerializedData:
        return super().serialize(
            _keep_key_order(data), exclude=exclude, include=include, matcher=matcher)


@pytest.fixture
def snapshot(snapshot: SnapshotAssertion) -> SnapshotAssertion:
    return snapshot.use_extension(TopLevelJSONSnapshotExtension)


@pytest.fixture
def states_in_deltas(monkeypatch: pytest.MonkeyPatch) -> None:
    """Let every save be a delta, however small the state (by default a state whose whole
    record is at most ``WHOLE_RECORD_BYTES`` is saved whole): for the tests of chains, and
    of what meets a chain at a run's head, whose states are a few hundred bytes."""
    from flujo.state import EnvelopeStateBackend

    monkeypatch.setattr(EnvelopeStateBackend, "WHOLE_RECORD_BYTES", 0)


DEFAULT_POSTGRES_DSN = "postgresql://postgres@127.0.0.1:5432/test"


def postgres_dsn() -> str:
    return os.environ.get("FLUJO_TEST_POSTGRES_DSN", DEFAULT_POSTGRES_DSN)


def _postgres_unavailable(reason: str) -> None:
    if os.environ.get("FLUJO_REQUIRE_POSTGRES"):
        pytest.fail(f"FLUJO_REQUIRE_POSTGRES is set but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def postgres_schemas() -> Iterator[Callable[[str], tuple[str, str]]]:
    """``new(prefix) -> (dsn, schema)``: a fresh schema name, dropped at the session's end."""
    dsn = postgres_dsn()
    try:
        import psycopg
    except ImportError as exc:  # pragma: no cover - the dev extra installs it
        _postgres_unavailable(f"psycopg is not installed ({exc})")
    try:
        with psycopg.connect(dsn, connect_timeout=3):
            pass
    except psycopg.Error as exc:
        _postgres_unavailable(f"PostgreSQL is not reachable via FLUJO_TEST_POSTGRES_DSN: {exc}")
    made: list[str] = []

    def new(prefix: str) -> tuple[str, str]:
        made.append(f"{prefix}_{uuid.uuid4().hex[:12]}")
        return dsn, made[-1]

    try:
        yield new
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            for schema in made:
                conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')

