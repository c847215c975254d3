"""Helpers shared by the reliability campaigns (``scripts/reliability/*.py``).

The campaigns are plain scripts: run them from a checkout with the project's virtualenv, e.g.
``.venv/bin/python scripts/reliability/crash_campaign.py --help``. The CI tests under
``tests/reliability/`` import these modules and run them with small counts.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import sys
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from pydantic import BaseModel

REPO = Path(__file__).resolve().parents[2]
SRC = REPO / "src"
if str(SRC) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(SRC))

from flujo.state import (  # noqa: E402
    EnvelopeStateBackend,
    FileBackend,
    PostgresBackend,
    SQLiteBackend,
)

DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/test"


def postgres_dsn() -> str:
    return os.environ.get("FLUJO_TEST_POSTGRES_DSN", DEFAULT_DSN)


def postgres_unavailable(dsn: str) -> str | None:
    """Why PostgreSQL cannot be used (None when it can)."""
    try:
        import psycopg
    except ImportError as exc:  # pragma: no cover - the dev extra installs it
        return f"psycopg is not installed ({exc})"
    try:
        with psycopg.connect(dsn, connect_timeout=3):
            return None
    except psycopg.Error as exc:
        return f"PostgreSQL is not reachable at FLUJO_TEST_POSTGRES_DSN: {exc}"


def new_schema_name(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


def drop_schema(dsn: str, schema: str) -> None:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@contextmanager
def postgres_schema(dsn: str, prefix: str) -> Iterator[str]:
    """A uniquely named schema, dropped afterwards (flujo creates it on first use)."""
    schema = new_schema_name(prefix)
    try:
        yield schema
    finally:
        drop_schema(dsn, schema)


#: The campaigns' PostgreSQL claim lease (seconds): a killed worker's runs are free again
#: once it expires, so it is short to keep campaigns quick.
PG_CLAIM_LEASE = 2.0


@dataclass(frozen=True)
class Store:
    """Where a backend keeps its data, so that any (forked or spawned) process can open it."""

    kind: str  # file | sqlite | postgres
    location: str  # directory, database file or DSN
    schema: str = "public"
    table: str = "flujo_state"

    def open(self, **options: Any) -> EnvelopeStateBackend:
        if self.kind == "file":
            return FileBackend(self.location, **options)
        if self.kind == "sqlite":
            return SQLiteBackend(self.location, table=self.table, **options)
        if self.kind == "postgres":
            options.setdefault("claim_lease", PG_CLAIM_LEASE)
            return PostgresBackend(self.location, schema=self.schema, table=self.table,
                                   min_size=1, max_size=2, **options)
        raise ValueError(f"unknown backend kind {self.kind!r}")

    def sibling(self, name: str) -> Store:
        """Another, independent store of the same kind next to this one."""
        if self.kind == "file":
            return Store("file", str(Path(self.location).with_name(name)))
        if self.kind == "sqlite":
            return Store("sqlite", str(Path(self.location).with_name(f"{name}.db")))
        return Store(self.kind, self.location, self.schema, name)

    def to_json(self) -> dict[str, str]:
        return asdict(self)


def make_store(kind: str, workdir: Path, *, dsn: str | None = None,
               schema: str | None = None, name: str = "state") -> Store:
    if kind == "file":
        return Store("file", str(workdir / name))
    if kind == "sqlite":
        return Store("sqlite", str(workdir / f"{name}.db"))
    if kind == "postgres":
        if dsn is None or schema is None:
            raise ValueError("postgres needs a DSN and a schema")
        return Store("postgres", dsn, schema, name)
    raise ValueError(f"unknown backend kind {kind!r}")


def difference(a: Any, b: Any, path: str = "$") -> str | None:
    """Where ``a`` and ``b`` differ in value *or type* (at any depth); None when identical."""
    if type(a) is not type(b):
        return f"{path}: {type(a).__name__} != {type(b).__name__}"
    if isinstance(a, BaseModel):
        return difference({**a.__dict__, **(a.__pydantic_extra__ or {})},
                          {**b.__dict__, **(b.__pydantic_extra__ or {})}, path)
    if isinstance(a, dict):
        if list(a) != list(b):
            return f"{path}: keys {list(a)!r:.200} != {list(b)!r:.200}"
        for key in a:
            found = difference(a[key], b[key], f"{path}[{key!r}]")
            if found:
                return found
        return None
    if isinstance(a, list | tuple):
        if len(a) != len(b):
            return f"{path}: length {len(a)} != {len(b)}"
        for index, (x, y) in enumerate(zip(a, b, strict=True)):
            found = difference(x, y, f"{path}[{index}]")
            if found:
                return found
        return None
    if isinstance(a, float):
        same = (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a)
                                                     == math.copysign(1, b))
        return None if same else f"{path}: {a!r} != {b!r}"
    if isinstance(a, Decimal):
        return None if a.as_tuple() == b.as_tuple() else f"{path}: {a!r} != {b!r}"
    if isinstance(a, _dt.datetime | _dt.time):
        return None if (a == b and repr(a) == repr(b)) else f"{path}: {a!r} != {b!r}"
    return None if a == b else f"{path}: {a!r:.200} != {b!r:.200}"


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) by the nearest-rank method; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def write_json(path: str | None, data: dict[str, Any]) -> None:
    text = json.dumps(data, indent=2, sort_keys=True, default=str)
    if path:
        Path(path).write_text(text + "\n", encoding="utf-8")
    else:
        print(text)
