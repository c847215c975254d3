"""PostgreSQL run claims as leases (for ``PostgresBackend``).

A claim is a row of ``<table>_claims``: the run, its ``epoch`` (drawn from the sequence
``<table>_claim_epochs`` by every successful claim, so never reused, even after a release
deletes the row), the holder (host:pid:random, for operators) and when it was taken and
expires (server clock). A claim takes the row only if it is missing or expired, in one
statement; a lost session frees nothing before the lease expires.

While the claim is held, a ``Renewer`` thread with its own connection moves
``expires_at`` on every third of the lease. A thread, because a sync step runs on the event
loop and would stop a task from renewing; its own connection, reconnected whenever a
renewal fails (a terminated session, ``idle_session_timeout``). The claim is lost when a
renewal finds another epoch (or no row), or when no renewal has succeeded by the local
deadline: the start of the last successful renewal + lease - margin (monotonic clock), kept
by the claim's ``ClaimWatch``, which the runner reads
without relying on the thread (a renewal can be stuck in a connection attempt).
"""

from __future__ import annotations

import contextlib
import threading
import time
from typing import TYPE_CHECKING, Any

from flujo.exceptions import BackendConfigError

from .._redact import redact
from ._claims import holder_name
from .base import ClaimWatch

if TYPE_CHECKING:
    from psycopg import Connection
    from psycopg.sql import SQL

__all__ = [
    "CLAIM_MIGRATION",
    "DEFAULT_CLAIM_LEASE",
    "Renewer",
    "check_lease",
    "connect",
    "holder_name",
    "margin",
]

#: Seconds a claim lasts without renewal, unless ``PostgresBackend(claim_lease=...)``.
DEFAULT_CLAIM_LEASE = 30.0
_MIN_LEASE, _MAX_LEASE = 0.5, 86_400.0

#: The layout migration (``postgres._MIGRATIONS``) that adds the claims table.
CLAIM_MIGRATION: tuple[str, ...] = (
    "CREATE SEQUENCE {epochs} AS bigint",
    """CREATE TABLE {claims} (
        run_id text PRIMARY KEY,
        epoch bigint NOT NULL,
        holder text NOT NULL,
        acquired_at timestamptz NOT NULL,
        expires_at timestamptz NOT NULL
    )""",
)

#: Take the claim if it is free or expired; returns the new epoch (no row: it is held).
TAKE = (
    "INSERT INTO {claims} AS c (run_id, epoch, holder, acquired_at, expires_at)"
    " VALUES (%(run_id)s, pg_catalog.nextval({epochs_name}::pg_catalog.regclass),"
    " %(holder)s, pg_catalog.clock_timestamp(),"
    " pg_catalog.clock_timestamp() + pg_catalog.make_interval(secs => %(lease)s))"
    " ON CONFLICT (run_id) DO UPDATE SET epoch = EXCLUDED.epoch, holder = EXCLUDED.holder,"
    " acquired_at = EXCLUDED.acquired_at, expires_at = EXCLUDED.expires_at"
    " WHERE c.expires_at <= pg_catalog.clock_timestamp()"
    " RETURNING c.epoch"
)
#: Who holds the claim, and until when (for the RunInProgressError).
HOLDER = "SELECT holder, expires_at FROM {claims} WHERE run_id = %s"
#: The live claims of some runs (for operators: ``claim_holders``).
HOLDERS = (
    "SELECT run_id, holder, acquired_at FROM {claims}"
    " WHERE run_id = ANY(%s) AND expires_at > pg_catalog.clock_timestamp()"
)
#: Move the lease on, if the epoch is still ours; returns a row while it is.
RENEW = (
    "UPDATE {claims} SET expires_at = pg_catalog.clock_timestamp()"
    " + pg_catalog.make_interval(secs => %s) WHERE run_id = %s AND epoch = %s RETURNING epoch"
)
#: Release: the row goes, if it is still ours (the sequence keeps epochs from being reused).
RELEASE = "DELETE FROM {claims} WHERE run_id = %s AND epoch = %s"
#: Fencing, inside a save's transaction: a claim taken meanwhile waits for the save (the
#: ``DO UPDATE`` of TAKE needs a lock FOR SHARE blocks), and a save under an older epoch
#: finds no row.
FENCE = "SELECT 1 FROM {claims} WHERE run_id = %s AND epoch = %s FOR SHARE"

_SEARCH_PATH = "SELECT pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', false)"


def check_lease(lease: object) -> float:
    """``claim_lease`` as float seconds, or BackendConfigError."""
    if isinstance(lease, bool) or not isinstance(lease, (int, float)) or not (
            _MIN_LEASE <= lease <= _MAX_LEASE):
        raise BackendConfigError(
            f"claim_lease must be a number of seconds from {_MIN_LEASE} to {_MAX_LEASE:.0f},"
            f" got {lease!r}")
    return float(lease)


def margin(lease: float) -> float:
    """How long before the lease's expiry a worker that could not renew gives its claim up:
    time for it to cancel its step, and room for the two clocks' rates to differ."""
    return lease / 3


def connect(dsn: str, connect_timeout: float) -> Connection[Any]:
    """The renewer's connection (autocommit, names resolved in pg_catalog only)."""
    import psycopg

    conn = psycopg.connect(dsn, autocommit=True, connect_timeout=max(1, round(connect_timeout)))
    try:
        conn.execute(_SEARCH_PATH)
    except BaseException:
        conn.close()
        raise
    return conn


class Renewer:
    """Renews one lease from a daemon thread until ``stop`` or until the claim is lost.

    ``started`` is the monotonic time the claim statement was sent: the lease cannot have
    been set to expire before ``started + lease``.
    """

    def __init__(self, *, dsn: str, connect_timeout: float, renew: SQL, run_id: str,
                 epoch: int, lease: float, started: float, watch: ClaimWatch,
                 secrets: frozenset[str]) -> None:
        self._dsn = dsn
        self._connect_timeout = connect_timeout
        self._renew = renew
        self._run_id = run_id
        self._epoch = epoch
        self._lease = lease
        self._period = lease / 3
        self._margin = margin(lease)
        self._started = started
        self._watch = watch
        self._secrets = secrets
        self._stop = threading.Event()
        self._conn: Connection[Any] | None = None
        #: The last renewal's failure (masked), for the loss's reason.
        self.last_error = ""
        self.thread = threading.Thread(target=self._run, daemon=True,
                                       name=f"flujo-lease-renewer[{run_id}]")

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        """Stop renewing (the thread ends after the renewal it may be in); see ``join``."""
        self._stop.set()

    def join(self) -> None:
        """Wait for the stopped thread, at most as long as one renewal can take (connecting,
        then the statement's own timeout)."""
        if self.thread.is_alive():
            self.thread.join(timeout=self._connect_timeout + self._period + 1.0)

    def _run(self) -> None:
        import psycopg

        next_at = self._started + self._period
        failures = 0
        try:
            while not self._stop.wait(max(0.0, next_at - time.monotonic())):
                began = time.monotonic()
                try:
                    held = self._renew_once()
                except psycopg.Error as exc:  # a lost session: reconnect and retry
                    self._drop()
                    self.last_error = redact(f"{type(exc).__name__}: {exc}", self._secrets)
                    if self._watch.reason is not None:
                        return
                    failures += 1
                    # A terminated session fails once: retry at once, then a few times a period.
                    next_at = began if failures == 1 else began + min(self._period / 4, 1.0)
                    continue
                failures = 0
                if not held:
                    self._watch.lose("another worker claimed the run after this worker's"
                                     " lease expired, or its lease row was removed")
                    return
                if not self._watch.extend(began + self._lease - self._margin):
                    return
                next_at = began + self._period
        finally:
            self._drop()

    def _renew_once(self) -> bool:
        if self._conn is None:
            self._conn = connect(self._dsn, self._connect_timeout)
            # A renewal stuck longer than a period is no use: let the server end it.
            self._conn.execute(
                "SELECT pg_catalog.set_config('statement_timeout', %s, false)",
                (f"{max(1, int(self._period * 1000))}ms",))
        cur = self._conn.execute(self._renew, (self._lease, self._run_id, self._epoch))
        return cur.fetchone() is not None

    def _drop(self) -> None:
        import psycopg

        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(psycopg.Error):  # a broken connection has nothing left
                conn.close()
