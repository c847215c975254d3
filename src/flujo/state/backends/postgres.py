"""PostgreSQL, for deployments that outgrow one machine (``pip install 'flujo[postgres]'``).

* psycopg 3 with an async connection pool, opened on first use.
* ``envelope`` (type ``json``) holds the exact envelope text: ``json`` keeps the text as
  written, so key order, integer/float distinction and ``\\u0000`` survive. ``payload``
  (type ``jsonb``) is a copy of the decoded payload for operators' queries and indexes; it is
  NULL for encrypted records (and for the rare payload that ``jsonb`` cannot hold). Loads
  read only ``envelope``.
* Saves run in a transaction: ``SELECT ... FOR UPDATE`` of the row, build, upsert; a save
  of a run whose last record this backend wrote is first tried as one statement that writes
  only if that record (and the claim) are still current (``_write_over``).
* Connections are autocommit outside flujo's transactions (a load is one statement); the
  last one given back idle is kept for the next operation (``_lend``).
* The table layout is versioned like SQLite's (``flujo_schema_versions`` in the same schema);
  layout changes run under a transaction-level advisory lock so concurrent starters are safe.
* Reads never create or change anything: until the backend has written, ``load_state``,
  ``list_runs``, ``list_run_ids`` and ``delete_state`` look for flujo's table first and find
  nothing in a missing schema or table. The schema, tables and migrations are made by the
  first write; a layout newer than this flujo knows is refused by reads and writes alike.
* Claims are leases (``_pglease``): a row of ``<table>_claims`` with a growing ``epoch``,
  taken only when free or expired, renewed every third of ``claim_lease`` by a thread with
  its own connection (reconnecting after a lost session), so a lost session or a killed
  worker frees the run only when its lease expires. A worker that cannot renew in time
  loses the claim (the runner stops; ClaimLostError), and every save under a claim checks
  the epoch in its own transaction (fencing): a stale worker's save writes nothing.
* Every connection flujo opens resolves names in ``pg_catalog`` alone (``search_path``), and
  every function flujo calls is written ``pg_catalog.<name>``: nothing planted in a schema on
  the role's or the database's search path runs in flujo's statements.
* The DSN's password is masked in every message flujo builds and in psycopg's log records.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import re
import select
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC
from typing import TYPE_CHECKING, Any

from flujo.exceptions import (
    BackendConfigError,
    BackendUnavailableError,
    ClaimLostError,
    FlujoError,
    FutureVersionError,
    RunInProgressError,
    StateConflictError,
    StateError,
)

from .._envelope import Envelope
from .._envelope_codec import SealedRecord, record_too_large
from .._redact import dsn_secrets, hide_in_logs, redact
from .._runid import validate_run_id
from ..models import RunSummary
from . import _pglease
from ._claims import run_ids_asked
from .base import (
    ClaimHolder,
    ClaimWatch,
    CurrentRecord,
    EnvelopeStateBackend,
    RunClaim,
    StoredRecord,
    WriteRecord,
)

if TYPE_CHECKING:
    from psycopg import AsyncConnection
    from psycopg.sql import SQL, Composed
    from psycopg_pool import AsyncConnectionPool

__all__ = ["POSTGRES_SCHEMA_VERSION", "PostgresBackend"]

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,45}$")
_INSERT_RETRIES = 10

# Position = the layout version the statements produce (index 0 -> version 1).
_MIGRATIONS: list[tuple[str, ...]] = [
    (
        """CREATE TABLE {table} (
            run_id text PRIMARY KEY,
            revision bigint NOT NULL,
            status text NOT NULL,
            pipeline_name text NOT NULL,
            state_version integer NOT NULL,
            created_at timestamptz NOT NULL,
            updated_at timestamptz NOT NULL,
            envelope json NOT NULL,
            payload jsonb
        )""",
        "CREATE INDEX {idx_status} ON {table} (status, updated_at DESC)",
        "CREATE INDEX {idx_pipeline} ON {table} (pipeline_name, updated_at DESC)",
        "CREATE INDEX {idx_updated} ON {table} (updated_at DESC)",
    ),
    # Version 2: claims are leases with epochs (an older flujo, which claims with advisory
    # locks, refuses the store from now on instead of claiming runs past the leases).
    _pglease.CLAIM_MIGRATION,
    # Version 3: cancel requests, kept apart from the records so that asking does not
    # conflict with the saves of the worker executing the run.
    (
        """CREATE TABLE {cancels} (
            run_id text PRIMARY KEY,
            requested_at timestamptz NOT NULL
        )""",
    ),
    # Version 4: checkpoint history. A save moves the record it replaces here, in its
    # transaction.
    (
        """CREATE TABLE {history} (
            run_id text NOT NULL,
            revision bigint NOT NULL,
            envelope json NOT NULL,
            PRIMARY KEY (run_id, revision)
        )""",
    ),
]
#: The table layout version this code creates and expects.
POSTGRES_SCHEMA_VERSION = len(_MIGRATIONS)

# Run on every connection flujo opens. Unqualified names (operators such as ``=``, types such
# as ``json``) then resolve in pg_catalog, never in a schema someone could plant an object of
# the same name in; pg_temp goes last (by default it is searched first, for relations).
_SEARCH_PATH = "SELECT pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', false)"


# How libpq reports that the server refused a connection, as opposed to not reaching it
# (psycopg gives such errors no SQLSTATE), and the refusals that waiting does not cure: a
# wrong role, password or database, or an address pg_hba.conf does not admit. Others (too
# many clients, starting up, in recovery) pass with time; a server whose messages are in
# another language is waited for too, as before.
_FATAL = "FATAL:"
_FOR_GOOD = ("does not exist", "password authentication failed", "authentication failed",
             "no pg_hba.conf entry", "permission denied for database")


def _refusal(failure: Exception | None) -> str | None:
    """The server's reason where ``failure`` is a refusal waiting does not cure, else None."""
    text = str(failure) if failure is not None else ""
    if _FATAL not in text:
        return None
    reason = " ".join(text.split(_FATAL, 1)[1].split())
    return reason if any(mark in reason for mark in _FOR_GOOD) else None


def _modules() -> tuple[Any, Any, Any]:
    try:
        import psycopg
        import psycopg_pool
        from psycopg import sql
    except ImportError as exc:
        raise BackendUnavailableError(
            "PostgresBackend needs psycopg 3 and psycopg-pool: pip install 'flujo[postgres]'"
        ) from exc
    return psycopg, psycopg_pool, sql


#: Seconds the connection kept for the next operation may stay idle (see ``_lend``).
_SPARE_IDLE = 5.0


class _LostInsertRace(Exception):
    """Another transaction inserted the run between our SELECT and INSERT; retry."""


async def _configure(conn: AsyncConnection[Any]) -> None:
    """The pool's set-up of each new connection: names resolve in pg_catalog only, and
    statements outside ``conn.transaction()`` commit alone (autocommit). A read is then one
    round trip: no ``BEGIN`` before it, no ``ROLLBACK`` when the pool takes it back."""
    await conn.set_autocommit(True)
    await conn.execute(_SEARCH_PATH)


def _unwell(conn: AsyncConnection[Any]) -> bool:
    """Whether an idle connection may be broken: closed, or with something to read, which
    an idle session has only when the server ended it (its termination message, or the end
    of the stream). ``poll``, not ``select``: a busy process has descriptors past 1024."""
    if conn.closed:
        return True
    try:
        fd = conn.pgconn.socket
        if hasattr(select, "poll"):
            watch = select.poll()
            watch.register(fd, select.POLLIN)
            return bool(watch.poll(0))
        return bool(select.select([fd], [], [], 0)[0])  # Windows: no descriptor limit
    except (OSError, ValueError):  # whatever the socket's state: let a query tell
        return True


async def _check(conn: AsyncConnection[Any]) -> None:
    """The pool's check of a connection it hands out, with a round trip only when it may be
    broken (``_unwell``): psycopg_pool's ``check_connection`` then fails on a broken one,
    and the pool replaces it."""
    _, psycopg_pool, _ = _modules()
    if _unwell(conn):
        await psycopg_pool.AsyncConnectionPool.check_connection(conn)


class PostgresBackend(EnvelopeStateBackend):
    """Stores runs in ``<schema>.<table>`` of a PostgreSQL database.

    ``dsn`` is a libpq connection string or URI. ``schema`` and ``table`` (letters, digits,
    ``_``) are created by the first write if missing (reads find nothing there).
    ``min_size``/``max_size`` size the pool; ``connect_timeout`` (seconds) bounds
    connecting. ``queryable_payload=True`` keeps a ``jsonb`` copy of the current whole state
    in the ``payload`` column, for SQL queries; every save then writes the whole state (a
    delta would leave nothing to query), so it is off by default. Earlier records of a run
    (its checkpoint history) are kept in ``<table>_history``. ``claim_lease`` (seconds,
    default 30) is how long a run's claim outlives a worker that stops renewing it (a
    killed process, a lost network): claims are renewed every third of it, and a worker
    that could not renew for two thirds of it gives the run up (see docs/backends.md).
    """

    keeps_history = True

    def __init__(
        self,
        dsn: str,
        *,
        schema: str = "public",
        table: str = "flujo_state",
        min_size: int = 1,
        max_size: int = 10,
        connect_timeout: float = 10.0,
        queryable_payload: bool = False,
        claim_lease: float = _pglease.DEFAULT_CLAIM_LEASE,
        **codec_options: Any,
    ) -> None:
        super().__init__(**codec_options)
        _modules()
        if not isinstance(dsn, str):
            raise BackendConfigError(f"dsn must be a str, got {type(dsn).__name__}")
        for what, name in (("schema", schema), ("table", table)):
            if not _IDENT.match(name):
                raise BackendConfigError(f"{what} name {name!r} must match {_IDENT.pattern}")
        self.dsn = dsn
        self.schema = schema
        self.table = table
        self.min_size = min_size
        self.max_size = max_size
        self.connect_timeout = connect_timeout
        self.queryable_payload = queryable_payload
        self.claim_lease = _pglease.check_lease(claim_lease)
        self._secrets = dsn_secrets(dsn)
        hide_in_logs(self._secrets)  # psycopg_pool logs every failed connection attempt
        self._pool: AsyncConnectionPool[Any] | None = None
        self._ready = False  # the schema, tables and migrations are in place (first write)
        self._found = False  # reads have seen flujo's table, with a layout this flujo knows
        self._ready_lock = asyncio.Lock()
        self._rendered: dict[str, SQL] = {}
        self._spare: AsyncConnection[Any] | None = None  # see _lend
        self._spare_since = 0.0

    def describe(self, run_id: str) -> str:
        return f"run {run_id!r} (PostgreSQL table {self.schema}.{self.table})"

    # -- plumbing ------------------------------------------------------------------------

    def _sql(self, template: str) -> SQL:
        """``template`` with this backend's names filled in (rendered once per template)."""
        rendered = self._rendered.get(template)
        if rendered is None:
            _, _, sql = _modules()
            # The names match _IDENT: quoting them needs no connection's encoding.
            rendered = sql.SQL(self._compose(template).as_string())
            self._rendered[template] = rendered
        return rendered

    def _compose(self, template: str) -> Composed:
        _, _, sql = _modules()
        composed: Composed = sql.SQL(template).format(
            table=sql.Identifier(self.schema, self.table),
            versions=sql.Identifier(self.schema, "flujo_schema_versions"),
            schema=sql.Identifier(self.schema),
            idx_status=sql.Identifier(f"{self.table}_status_updated"),
            idx_pipeline=sql.Identifier(f"{self.table}_pipeline_updated"),
            idx_updated=sql.Identifier(f"{self.table}_updated"),
            claims=sql.Identifier(self.schema, f"{self.table}_claims"),
            cancels=sql.Identifier(self.schema, f"{self.table}_cancel_requests"),
            history=sql.Identifier(self.schema, f"{self.table}_history"),
            epochs=sql.Identifier(self.schema, f"{self.table}_claim_epochs"),
            # (names match _IDENT: quoting them needs no escaping)
            epochs_name=sql.Literal(f'"{self.schema}"."{self.table}_claim_epochs"'),
        )
        return composed

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        psycopg, psycopg_pool, _ = _modules()
        try:
            yield
        except psycopg_pool.PoolTimeout as exc:
            raise BackendUnavailableError(
                self._message(": no connection available: ", exc)) from self._cause(exc)
        except psycopg.OperationalError as exc:
            raise BackendUnavailableError(
                self._message(" is unavailable: ", exc)) from self._cause(exc)
        except psycopg.Error as exc:
            raise StateError(
                self._message(" refused the operation: ", exc)) from self._cause(exc)

    def _message(self, what: str, exc: Exception) -> str:
        """The message for psycopg's ``exc``, with the DSN's password masked."""
        return f"PostgreSQL ({self.schema}.{self.table}){what}{redact(str(exc), self._secrets)}"

    def _cause(self, exc: Exception) -> Exception | None:
        """``exc`` to chain as the cause, or None when its text shows the password (libpq
        echoes a connection string it cannot parse, and a traceback prints causes as they
        are): the message has its text, masked."""
        text = str(exc)
        return exc if redact(text, self._secrets) == text else None

    async def _get_pool(self) -> AsyncConnectionPool[Any]:
        """The connection pool, opened on first use; nothing in the database is created."""
        if self._pool is not None:
            return self._pool
        async with self._ready_lock:
            if self._pool is None:
                _, psycopg_pool, _ = _modules()
                started = time.monotonic()
                first = await self._connection_failure()
                reason = _refusal(first)
                if first is not None and reason is not None:
                    # The server answered and refused for good (a wrong role, password or
                    # database): the pool would retry that until connect_timeout, logging
                    # every attempt. Anything else (too many clients, starting up, not
                    # reachable) is left to the pool's retries.
                    raise BackendUnavailableError(self._message(
                        ": the server refused the connection: ", Exception(reason))
                    ) from self._cause(first)
                # the first attempt's time counts against connect_timeout
                left = max(0.1, self.connect_timeout - (time.monotonic() - started))
                pool = psycopg_pool.AsyncConnectionPool(
                    self.dsn,
                    min_size=self.min_size,
                    max_size=self.max_size,
                    open=False,
                    timeout=self.connect_timeout,
                    kwargs={"connect_timeout": max(1, round(self.connect_timeout))},
                    configure=_configure,
                    check=_check,
                )
                with self._errors():  # any other psycopg error, as flujo's
                    try:
                        await pool.open(wait=True, timeout=left)
                    except psycopg_pool.PoolTimeout as exc:
                        await pool.close()
                        # say why: the first attempt's own error (server down, unreachable)
                        failure = first or exc
                        text = " ".join(str(failure).split())  # libpq's lines, as one
                        raise BackendUnavailableError(self._message(
                            f": no connection within {self.connect_timeout:g} s: ",
                            Exception(text))) from self._cause(failure)
                    except BaseException:
                        # psycopg_pool closes it after a timeout, not when the wait is
                        # cancelled: left open, it would go on reconnecting (and logging)
                        # in the background.
                        await pool.close()
                        raise
                self._pool = pool
        return self._pool

    async def _connection_failure(self) -> Exception | None:
        """One direct connection attempt: its error, or None when it connects."""
        psycopg = _modules()[0]
        with self._errors():  # a DSN that does not parse, say: with its password masked
            try:
                conn = await psycopg.AsyncConnection.connect(
                    self.dsn, connect_timeout=max(1, round(self.connect_timeout)),
                    autocommit=True)
            except psycopg.OperationalError as exc:
                failure: Exception = exc
                return failure
            await conn.close()
        return None

    @asynccontextmanager
    async def _lend(self, pool: AsyncConnectionPool[Any]) -> AsyncIterator[AsyncConnection[Any]]:
        """A connection of ``pool`` for one operation.

        The last connection given back idle is kept for the next operation instead of going
        back to the pool: taking one from psycopg_pool and giving it back costs more than a
        round trip to the server, and a run's saves and loads come one after another. It
        counts against the pool's ``max_size`` like any connection in use; concurrent
        operations take theirs from the pool, and a connection given back while one of them
        waits for it goes to the pool (so to that operation). Before reuse it gets the
        pool's check (``_check``); one kept idle longer than ``_SPARE_IDLE`` seconds goes
        back to the pool first (its ``max_lifetime``, its checks); ``close()`` gives it
        back."""
        idle = _modules()[0].pq.TransactionStatus.IDLE
        conn, self._spare = self._spare, None
        if conn is not None and (conn.info.transaction_status != idle or _unwell(conn)
                                 or time.monotonic() - self._spare_since > _SPARE_IDLE):
            await pool.putconn(conn)  # the pool resets, replaces or retires it
            conn = None
        if conn is None:
            conn = await pool.getconn()
        try:
            yield conn
        finally:
            if self._spare is None and self._pool is pool and not conn.closed \
                    and conn.info.transaction_status == idle \
                    and not pool.get_stats().get("requests_waiting"):
                self._spare = conn
                self._spare_since = time.monotonic()
            else:
                await pool.putconn(conn)

    async def _prepared_pool(self) -> AsyncConnectionPool[Any]:
        """The pool, with the schema and tables created and migrated: for writes."""
        pool = await self._get_pool()
        if not self._ready:
            async with self._ready_lock:
                if not self._ready:
                    with self._errors():
                        await self._migrate(pool)
                    self._ready = True
        return pool

    @asynccontextmanager
    async def _reading(self) -> AsyncIterator[AsyncConnection[Any] | None]:
        """A connection to read with, or None when there is nothing to read: no schema, or no
        flujo table in it. Until this backend has written, it looks for the table (and checks
        its layout version) instead of creating it, so reads never change the database."""
        pool = await self._get_pool()
        with self._errors():
            async with self._lend(pool) as conn:
                if not (self._ready or self._found):
                    self._found = await self._has_table(conn)
                yield conn if self._ready or self._found else None

    async def _has_table(self, conn: AsyncConnection[Any]) -> bool:
        """Whether flujo's table exists; FutureVersionError if its layout is newer than known."""
        cur = await conn.execute(
            "SELECT c.relname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n"
            " ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname IN (%s, %s)",
            (self.schema, self.table, "flujo_schema_versions"),
        )
        found = {row[0] for row in await cur.fetchall()}
        if "flujo_schema_versions" in found:
            cur = await conn.execute(
                self._sql("SELECT version FROM {versions} WHERE component = %s"), (self.table,)
            )
            row = await cur.fetchone()
            if row is not None:
                self._check_layout(int(row[0]))
        return self.table in found

    def _check_layout(self, version: int) -> None:
        if version > POSTGRES_SCHEMA_VERSION:
            raise FutureVersionError(
                f"PostgreSQL table {self.schema}.{self.table} has layout version {version};"
                f" this flujo knows up to {POSTGRES_SCHEMA_VERSION}. Upgrade flujo",
                path="$",
            )

    async def schema_exists(self) -> bool:
        """Whether this backend's schema exists in the database (nothing is created)."""
        pool = await self._get_pool()
        with self._errors():
            async with self._lend(pool) as conn:
                cur = await conn.execute(
                    "SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = %s", (self.schema,)
                )
                return await cur.fetchone() is not None

    async def _migrate(self, pool: AsyncConnectionPool[Any]) -> None:
        async with self._lend(pool) as conn, conn.transaction():
            await conn.execute(
                "SELECT pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtextextended(%s, 0))",
                (f"flujo-schema:{self.schema}",),
            )
            cur = await conn.execute(
                "SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = %s", (self.schema,)
            )
            if await cur.fetchone() is None:
                await conn.execute(self._sql("CREATE SCHEMA {schema}"))
            await conn.execute(
                self._sql(
                    "CREATE TABLE IF NOT EXISTS {versions}"
                    " (component text PRIMARY KEY, version integer NOT NULL)"
                )
            )
            cur = await conn.execute(
                self._sql("SELECT version FROM {versions} WHERE component = %s"), (self.table,)
            )
            row = await cur.fetchone()
            version = 0 if row is None else int(row[0])
            self._check_layout(version)
            for statements in _MIGRATIONS[version:]:
                for statement in statements:
                    await conn.execute(self._sql(statement))
            await conn.execute(
                self._sql(
                    "INSERT INTO {versions} (component, version) VALUES (%s, %s)"
                    " ON CONFLICT (component) DO UPDATE SET version = EXCLUDED.version"
                ),
                (self.table, POSTGRES_SCHEMA_VERSION),
            )

    async def schema_version(self) -> int:
        """The table layout version stored in the database (after preparing it)."""
        pool = await self._prepared_pool()
        with self._errors():
            async with self._lend(pool) as conn:
                cur = await conn.execute(
                    self._sql("SELECT version FROM {versions} WHERE component = %s"),
                    (self.table,),
                )
                row = await cur.fetchone()
        return 0 if row is None else int(row[0])

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        spare, self._spare = self._spare, None
        if spare is not None and pool is not None:
            await pool.putconn(spare)
        self._ready = self._found = False
        if pool is not None:
            await pool.close()

    # -- primitives ----------------------------------------------------------------------

    async def _read(self, run_id: str) -> StoredRecord | None:
        async with self._reading() as conn:
            return None if conn is None else await self._read_in(conn, run_id)

    async def _read_chain(self, run_id: str) -> list[tuple[Envelope, int]] | None:
        # The head and its chain on one connection of the pool, not two.
        async with self._reading() as conn:
            if conn is None:
                return None
            return await self._chain_with(
                run_id, functools.partial(self._read_in, conn),
                functools.partial(self._read_history_in, conn))

    async def _read_in(self, conn: AsyncConnection[Any], run_id: str) -> StoredRecord | None:
        # The size first: a record over the limit is refused, never fetched.
        cur = await conn.execute(
            self._sql("SELECT pg_catalog.octet_length(envelope::text),"
                      " CASE WHEN pg_catalog.octet_length(envelope::text) <= %s"
                      " THEN envelope::text END FROM {table} WHERE run_id = %s"),
            (self.codec.max_record_bytes, run_id),
        )
        row = await cur.fetchone()
        if row is None:
            return None
        if row[1] is None:
            raise record_too_large(self.describe(run_id), row[0], self.codec.max_record_bytes)
        return StoredRecord(row[1])

    def _row(self, run_id: str, sealed: SealedRecord) -> tuple[Any, ...]:
        env = sealed.envelope
        queryable = None
        plain = sealed.payload_json
        if self.queryable_payload and plain is not None and b"\\u0000" not in plain:
            # (jsonb cannot hold U+0000; such payloads get no queryable copy)
            queryable = plain.decode("utf-8")
        return (
            run_id,
            env.revision,
            env.status,
            env.pipeline_name,
            env.state_version,
            env.created_at,
            env.updated_at,
            sealed.raw.decode("utf-8"),
            queryable,
        )

    async def _write(self, run_id: str, make: WriteRecord, *,
                     claim: RunClaim | None = None) -> SealedRecord:
        pool = await self._prepared_pool()
        tip = self._tip(run_id)
        if tip is not None and tip.updated_at is not None:
            # The record this process wrote last is most likely still the run's current one:
            # build the next on it and write it with one statement, if it still is.
            assumed = CurrentRecord(tip.revision, tip.created_at, tip.updated_at)
            try:
                sealed: SealedRecord | None = make(assumed)
            except FlujoError:  # e.g. expected_revision is not the assumed one: see below
                sealed = None
            if sealed is not None:
                with self._errors():
                    async with self._lend(pool) as conn:
                        if await self._write_over(conn, run_id, assumed, sealed, claim):
                            return sealed
        # Under the row lock: the stored record, the claim checked first (or a first save).
        for _ in range(_INSERT_RETRIES):
            try:
                with self._errors():
                    async with self._lend(pool) as conn, conn.transaction():
                        if claim is not None:
                            await self._fence(conn, claim)
                        return await self._write_in(conn, run_id, make)
            except _LostInsertRace:
                continue
        raise StateConflictError(
            f"{self.describe(run_id)}: gave up after {_INSERT_RETRIES} concurrent first saves"
        )

    async def _write_over(self, conn: AsyncConnection[Any], run_id: str,
                          assumed: CurrentRecord, sealed: SealedRecord,
                          claim: RunClaim | None) -> bool:
        """Replace the run's record by ``sealed`` in one statement (autocommit: atomic), if
        the stored record is still ``assumed`` (and ``claim`` still the run's claim); False,
        writing nothing, if not. The ``FOR UPDATE`` row lock makes a concurrent writer's
        statement wait and then find the record changed."""
        params = self._row(run_id, sealed)
        fence = f"AND EXISTS ({_pglease.FENCE})" if claim is not None else ""
        cur = await conn.execute(
            self._sql(
                "WITH old AS (SELECT run_id, revision, envelope FROM {table} WHERE run_id = %s"
                " AND revision = %s AND created_at = %s AND updated_at = %s " + fence +
                " FOR UPDATE), done AS (UPDATE {table} t SET revision = %s, status = %s,"
                " pipeline_name = %s, state_version = %s, created_at = %s, updated_at = %s,"
                " envelope = %s::json, payload = %s::jsonb FROM old"
                " WHERE t.run_id = old.run_id RETURNING 1)"
                # the replaced record becomes history
                " INSERT INTO {history} (run_id, revision, envelope) SELECT run_id, revision,"
                " envelope FROM old ON CONFLICT (run_id, revision) DO UPDATE SET"
                " envelope = excluded.envelope RETURNING (SELECT count(*) FROM done)"),
            (run_id, assumed.revision, assumed.created_at, assumed.updated_at,
             *((claim.run_id, claim.epoch) if claim is not None else ()), *params[1:]))
        row = await cur.fetchone()
        return row is not None and row[0] == 1

    async def _write_claimed(self, run_id: str, make: WriteRecord,
                             claim: RunClaim) -> SealedRecord:
        if claim.epoch is None:
            raise BackendConfigError(
                f"{self.describe(run_id)}: claim= must come from a PostgresBackend's claim"
                " (it has no epoch)")
        return await self._write(run_id, make, claim=claim)

    async def _fence(self, conn: AsyncConnection[Any], claim: RunClaim) -> None:
        """Refuse the write in progress unless ``claim`` is still the run's current claim;
        the row stays locked until the write commits, so no claim can be taken meanwhile."""
        cur = await conn.execute(self._sql(_pglease.FENCE), (claim.run_id, claim.epoch))
        if await cur.fetchone() is None:
            raise ClaimLostError(
                f"{self.describe(claim.run_id)}: the save was refused: this worker's claim"
                f" (epoch {claim.epoch}) is no longer the run's claim (its lease expired and"
                " another worker may have claimed the run); nothing was written")

    async def _write_in(
        self, conn: AsyncConnection[Any], run_id: str, make: WriteRecord
    ) -> SealedRecord:
        row = await self._current(conn, run_id)
        sealed = make(row)
        params = self._row(run_id, sealed)
        if row is None:
            cur = await conn.execute(
                self._sql(
                    "INSERT INTO {table} (run_id, revision, status, pipeline_name, state_version,"
                    " created_at, updated_at, envelope, payload)"
                    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s::json, %s::jsonb)"
                    " ON CONFLICT (run_id) DO NOTHING RETURNING 1"
                ),
                params,
            )
            if await cur.fetchone() is None:
                raise _LostInsertRace
        else:
            await conn.execute(  # the replaced record becomes history
                self._sql("INSERT INTO {history} (run_id, revision, envelope) SELECT run_id,"
                          " revision, envelope FROM {table} WHERE run_id = %s"
                          " ON CONFLICT (run_id, revision) DO UPDATE SET"
                          " envelope = excluded.envelope"), (run_id,))
            await conn.execute(
                self._sql(
                    "UPDATE {table} SET revision = %s, status = %s, pipeline_name = %s,"
                    " state_version = %s, created_at = %s, updated_at = %s,"
                    " envelope = %s::json, payload = %s::jsonb WHERE run_id = %s"
                ),
                (*params[1:], run_id),
            )
        return sealed

    async def _current(self, conn: AsyncConnection[Any], run_id: str) -> CurrentRecord | None:
        cur = await conn.execute(
            self._sql("SELECT revision, created_at, updated_at FROM {table} WHERE run_id = %s"
                      " FOR UPDATE"), (run_id,))
        row = await cur.fetchone()
        if row is None:
            return None
        return CurrentRecord(int(row[0]), row[1].astimezone(UTC), row[2].astimezone(UTC))

    def _writes_deltas(self) -> bool:
        return not self.queryable_payload

    async def _read_history(self, run_id: str, first: int,
                            last: int) -> list[tuple[int, StoredRecord]]:
        async with self._reading() as conn:
            return [] if conn is None else await self._read_history_in(conn, run_id, first,
                                                                       last)

    async def _read_history_in(self, conn: AsyncConnection[Any], run_id: str, first: int,
                               last: int) -> list[tuple[int, StoredRecord]]:
        limit = self.codec.max_record_bytes
        # A schema of layout 3 or less (not written to since) has no history table; once
        # this backend has prepared the schema (_ready), it has.
        if not self._ready:
            cur = await conn.execute("SELECT pg_catalog.to_regclass(%s) IS NOT NULL",
                                     (f'"{self.schema}"."{self.table}_history"',))
            exists = await cur.fetchone()
            if exists is None or not exists[0]:
                return []
        cur = await conn.execute(
            self._sql("SELECT revision, pg_catalog.octet_length(envelope::text), CASE WHEN"
                      " pg_catalog.octet_length(envelope::text) <= %s THEN envelope::text"
                      " END FROM {history} WHERE run_id = %s AND revision BETWEEN %s AND"
                      " %s ORDER BY revision"), (limit, run_id, first, last))
        rows = await cur.fetchall()
        found = []
        for revision, size, raw in rows:
            if raw is None:
                raise record_too_large(
                    f"{self.describe(run_id)}, revision {revision}", size, limit)
            found.append((int(revision), StoredRecord(raw)))
        return found

    async def _compact(self, run_id: str, make: WriteRecord) -> SealedRecord:
        pool = await self._prepared_pool()
        with self._errors():
            async with self._lend(pool) as conn, conn.transaction():
                sealed = make(await self._current(conn, run_id))
                params = self._row(run_id, sealed)
                await conn.execute(
                    self._sql("UPDATE {table} SET envelope = %s::json, payload = %s::jsonb"
                              " WHERE run_id = %s"), (params[7], params[8], run_id))
                await conn.execute(self._sql("DELETE FROM {history} WHERE run_id = %s"),
                                   (run_id,))
        return sealed

    async def _delete(self, run_id: str) -> None:
        # Nothing to delete in a missing table: deleting creates nothing either.
        async with self._reading() as conn:
            if conn is None:
                return
        pool = await self._prepared_pool()  # the table exists: bring its layout up to date
        with self._errors():
            async with self._lend(pool) as conn, conn.transaction():
                await conn.execute(self._sql("DELETE FROM {table} WHERE run_id = %s"), (run_id,))
                await conn.execute(self._sql("DELETE FROM {history} WHERE run_id = %s"),
                                   (run_id,))
                await conn.execute(
                    self._sql("DELETE FROM {cancels} WHERE run_id = %s"), (run_id,))

    async def _list(
        self, status: str | None, pipeline_name: str | None, limit: int | None, offset: int
    ) -> list[RunSummary]:
        where: list[str] = []
        params: list[Any] = []
        if status is not None:
            where.append("status = %s")
            params.append(status)
        if pipeline_name is not None:
            where.append("pipeline_name = %s")
            params.append(pipeline_name)
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        params.extend([limit, offset])
        query = self._sql(
            "SELECT run_id, pipeline_name, status, revision, created_at, updated_at"
            " FROM {table}" + clause + " ORDER BY updated_at DESC, run_id LIMIT %s OFFSET %s"
        )
        async with self._reading() as conn:
            if conn is None:
                return []
            cur = await conn.execute(query, params)
            rows = await cur.fetchall()
        return [
            RunSummary(
                run_id=r[0],
                pipeline_name=r[1],
                status=r[2],
                revision=int(r[3]),
                created_at=r[4].astimezone(UTC),
                updated_at=r[5].astimezone(UTC),
            )
            for r in rows
        ]

    async def _list_ids(self) -> list[str]:
        async with self._reading() as conn:
            if conn is None:
                return []
            cur = await conn.execute(self._sql("SELECT run_id FROM {table}"))
            return [r[0] for r in await cur.fetchall()]

    # -- claims --------------------------------------------------------------------------

    @asynccontextmanager
    async def claim(self, run_id: str) -> AsyncIterator[RunClaim]:
        """Claim the run with a lease (``_pglease``), renewed until the block exits.

        The claim, like a write, creates flujo's tables when missing. The yielded claim has
        an ``epoch`` (pass it to saves as ``claim=`` to fence them) and a ``watch`` that
        reports its loss.
        """
        validate_run_id(run_id)
        pool = await self._prepared_pool()
        holder = _pglease.holder_name()
        started = time.monotonic()
        with self._errors():
            async with self._lend(pool) as conn, conn.transaction():
                cur = await conn.execute(
                    self._sql(_pglease.TAKE),
                    {"run_id": run_id, "holder": holder, "lease": self.claim_lease})
                row = await cur.fetchone()
                if row is None:
                    cur = await conn.execute(self._sql(_pglease.HOLDER), (run_id,))
                    held = await cur.fetchone()
        if row is None:
            by = "" if held is None else (
                f" ({held[0]}) until {held[1].astimezone(UTC).isoformat()} unless renewed")
            raise RunInProgressError(
                f"{self.describe(run_id)}: the run is claimed by another worker{by}")
        epoch = int(row[0])
        watch = ClaimWatch(self.describe(run_id),
                           started + self.claim_lease - _pglease.margin(self.claim_lease))
        renewer = _pglease.Renewer(
            dsn=self.dsn, connect_timeout=self.connect_timeout, renew=self._sql(_pglease.RENEW),
            run_id=run_id, epoch=epoch, lease=self.claim_lease, started=started, watch=watch,
            secrets=self._secrets)
        renewer.start()
        try:
            yield RunClaim(run_id, epoch=epoch, watch=watch)
        finally:
            renewer.stop()  # at once, even if what follows is interrupted
            await asyncio.to_thread(renewer.join)  # within one renewal, off the event loop
            # Nothing left to do if the release fails: the lease expires by itself.
            with contextlib.suppress(StateError):
                await self._release(run_id, epoch)

    async def claim_holders(self, run_ids: Sequence[str]) -> dict[str, ClaimHolder]:
        ids = run_ids_asked(run_ids)
        async with self._reading() as conn:
            if conn is None:  # no tables yet: nobody holds anything
                return {}
            cur = await conn.execute(self._sql(_pglease.HOLDERS), (ids,))
            rows = await cur.fetchall()
        return {row[0]: ClaimHolder(row[1], row[2].astimezone(UTC)) for row in rows}

    async def _release(self, run_id: str, epoch: int) -> None:
        pool = await self._get_pool()
        with self._errors():
            async with self._lend(pool) as conn, conn.transaction():
                await conn.execute(self._sql(_pglease.RELEASE), (run_id, epoch))

    # -- cancel requests ------------------------------------------------------------------

    async def _request_cancel(self, run_id: str) -> None:
        pool = await self._prepared_pool()
        with self._errors():
            async with self._lend(pool) as conn:
                await conn.execute(self._sql(
                    "INSERT INTO {cancels} (run_id, requested_at) VALUES"
                    " (%s, pg_catalog.clock_timestamp()) ON CONFLICT (run_id) DO NOTHING"),
                    (run_id,))

    async def _cancel_requested(self, run_id: str) -> bool:
        # A read: it creates nothing, and a store at an older layout has no request table.
        async with self._reading() as conn:
            if conn is None:
                return False
            if not self._ready:  # (once this backend has written, its layout is current)
                cur = await conn.execute("SELECT pg_catalog.to_regclass(%s) IS NOT NULL",
                                         (f'"{self.schema}"."{self.table}_cancel_requests"',))
                found = await cur.fetchone()
                if found is None or not found[0]:
                    return False
            cur = await conn.execute(
                self._sql("SELECT 1 FROM {cancels} WHERE run_id = %s"), (run_id,))
            return await cur.fetchone() is not None

    async def _clear_cancel(self, run_id: str) -> None:
        pool = await self._prepared_pool()
        with self._errors():
            async with self._lend(pool) as conn:
                await conn.execute(
                    self._sql("DELETE FROM {cancels} WHERE run_id = %s"), (run_id,))
