"""SQLite: the embedded default.

* WAL journal, ``synchronous=FULL`` (a committed save survives ``kill -9`` and power loss)
  and a busy timeout, so several processes can read and write one database file at once.
* Each save runs in a ``BEGIN IMMEDIATE`` transaction: read the revision, build the
  envelope, upsert it. Two writers of one run are serialized by SQLite itself.
* The table layout is versioned: ``_MIGRATIONS[i]`` takes the layout from version ``i`` to
  ``i + 1`` and the applied version is kept in ``flujo_schema_versions``. A database written
  by a newer flujo is refused with FutureVersionError.
* Claims are ``flock`` lock files in ``<database>.claims/`` (see StateBackend.claim).
* A load reads on the calling thread when it can do so at once (``inline_reads``): a trip to
  a worker thread costs more than reading a small record. It uses a connection with no busy
  timeout: when another connection holds the database, the load goes to a worker thread and
  waits there, the event loop free; so does a load of a record over ``_INLINE_BYTES``.
* Reads never write: until the backend has saved, they use a read-only connection and
  find nothing in a missing database or one without flujo's table (no file, table or WAL
  switch is made). A database whose objects under flujo's names are not the plain tables
  flujo creates (a view, a trigger) is refused, and every statement is interrupted after
  ``statement_timeout`` seconds.
"""

from __future__ import annotations

import asyncio
import os
import re
import resource
import sqlite3
import stat
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from functools import partial
from os import PathLike
from pathlib import Path
from typing import Any, Literal

from flujo.exceptions import (
    BackendConfigError,
    BackendUnavailableError,
    FutureVersionError,
)

from .._envelope import Envelope, format_timestamp
from .._envelope_codec import SealedRecord, record_too_large
from ..models import RunSummary
from . import _flock
from ._dirs import kind_of
from ._sqlite_connections import Connections
from ._upstream_sqlite import (
    UPSTREAM_TABLE,
    delete_upstream,
    upstream_columns,
    upstream_created_at,
    upstream_ids,
    upstream_record,
    upstream_summaries,
)
from .base import (
    CurrentRecord,
    EnvelopeStateBackend,
    RunClaim,
    StoredRecord,
    WriteRecord,
    stored_timestamp,
)

__all__ = ["SQLITE_SCHEMA_VERSION", "SQLiteBackend"]

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")

# Position = the layout version the statements produce (index 0 -> version 1).
_MIGRATIONS: list[tuple[str, ...]] = [
    (
        """CREATE TABLE "{t}" (
            run_id TEXT PRIMARY KEY NOT NULL,
            revision INTEGER NOT NULL,
            status TEXT NOT NULL,
            pipeline_name TEXT NOT NULL,
            state_version INTEGER NOT NULL,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            envelope TEXT NOT NULL
        )""",
        'CREATE INDEX "{t}_status_updated" ON "{t}" (status, updated_at)',
        'CREATE INDEX "{t}_pipeline_updated" ON "{t}" (pipeline_name, updated_at)',
        'CREATE INDEX "{t}_updated" ON "{t}" (updated_at)',
    ),
    # 2: checkpoint history. A save moves the record it replaces here, in one transaction.
    (
        """CREATE TABLE "{t}_history" (
            run_id TEXT NOT NULL,
            revision INTEGER NOT NULL,
            envelope TEXT NOT NULL,
            PRIMARY KEY (run_id, revision)
        ) WITHOUT ROWID""",
    ),
]
#: The table layout version this code creates and expects.
SQLITE_SCHEMA_VERSION = len(_MIGRATIONS)


# SQLite calls the progress handler every this many virtual machine instructions (~1 ms).
_PROGRESS_STEPS = 10_000
_FILESYSTEM_ERRORS = ("SQLITE_IOERR", "SQLITE_CANTOPEN", "SQLITE_READONLY", "SQLITE_FULL")
# The connection slot of reads made on the calling thread (see SQLiteBackend.inline_reads).
_INLINE = "inline"
# The longest record read on the calling thread. Reading one there is always sooner than a
# trip to a worker thread and back, but it holds the event loop: up to about 0.3 ms at this
# size, about what decoding such a state on the event loop costs anyway (the load does).
_INLINE_BYTES = 64 * 1024


class _NotInline(Exception):
    """A read the calling thread does not make, made again on a worker thread: the database
    is locked (SQLITE_BUSY / SQLITE_LOCKED at once, the inline connection having no busy
    timeout), a record is over ``_INLINE_BYTES``, or the run is not in flujo's table (then
    upstream flujo's table is looked at there)."""


def _waits_for_lock(exc: sqlite3.Error) -> bool:
    return str(getattr(exc, "sqlite_errorname", "")).startswith(("SQLITE_BUSY", "SQLITE_LOCKED"))


def _in_transaction(conn: sqlite3.Connection) -> bool:
    try:
        return conn.in_transaction
    except sqlite3.ProgrammingError:  # closed: a nested use of it failed and discarded it
        return False


def _diagnosis(path: Path, exc: sqlite3.Error) -> str:
    """Why the filesystem may have refused, for error messages ("" when nothing is known).

    SQLite reports a full or read-only filesystem as "disk I/O error" or "unable to open
    database file" when it cannot create the WAL's ``-shm``/``-wal`` files next to the
    database, which says nothing about the cause.
    """
    if not str(getattr(exc, "sqlite_errorname", "")).startswith(_FILESYSTEM_ERRORS):
        return ""
    directory = path.parent
    try:
        stats = os.statvfs(directory)
    except OSError:
        return ""
    if stats.f_flag & os.ST_RDONLY:
        return f" (the filesystem holding {directory} is read-only)"
    free = stats.f_bfree if os.geteuid() == 0 else stats.f_bavail
    if free == 0:
        return f" (no space left on the device holding {directory})"
    if not os.access(directory, os.W_OK):
        return f" ({directory} is not writable by this process)"
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    if limit != resource.RLIM_INFINITY:  # reported by SQLite as a "disk I/O error"
        return f" (this process may not write files over {limit} bytes: RLIMIT_FSIZE)"
    return ""


class SQLiteBackend(_flock.FlockClaims, EnvelopeStateBackend):
    """Stores runs in one table of a SQLite database file.

    ``table`` names the table (letters, digits, ``_``); ``busy_timeout`` is how long (seconds)
    a writer waits for another process's transaction before BackendUnavailableError;
    ``synchronous`` is SQLite's durability setting (``FULL`` by default; ``NORMAL`` survives
    process crashes but may lose the last commits on power loss); ``statement_timeout``
    (seconds) interrupts any statement running longer, with BackendUnavailableError.

    ``inline_reads`` (default True): a load of a database in WAL mode that this backend has
    prepared reads its records on the calling thread (the event loop's), with a connection
    whose busy timeout is zero, when each is at most ``_INLINE_BYTES`` (64 KiB); should the
    database be locked (another connection in exclusive locking mode, a recovery), it reads
    on a worker thread instead, waiting up to ``busy_timeout`` there. The page reads of a
    record not in the operating system's cache then wait on the disk on the event loop, and
    SQLite's own brief retries of a WAL read lock are made there: ``inline_reads=False``,
    where every read runs on a worker thread, suits a database on a slow or network
    filesystem.

    Earlier records of a run (its checkpoint history) are kept in ``<table>_history``.
    """

    keeps_history = True

    def __init__(
        self,
        path: str | PathLike[str],
        *,
        table: str = "flujo_state",
        busy_timeout: float = 30.0,
        synchronous: Literal["FULL", "NORMAL", "EXTRA"] = "FULL",
        statement_timeout: float = 60.0,
        inline_reads: bool = True,
        **codec_options: Any,
    ) -> None:
        super().__init__(**codec_options)
        if str(path) in ("", ":memory:") or str(path).startswith("file:"):
            raise BackendUnavailableError(
                f"SQLiteBackend needs a database file path, got {str(path)!r};"
                " use InMemoryBackend for a store that lives in memory"
            )
        if not _IDENT.match(table):
            raise BackendConfigError(f"table name {table!r} must match {_IDENT.pattern}")
        if synchronous not in ("FULL", "NORMAL", "EXTRA"):
            raise BackendConfigError(
                f"synchronous must be FULL, NORMAL or EXTRA, got {synchronous!r}")
        if not (isinstance(statement_timeout, int | float) and statement_timeout > 0):
            raise BackendConfigError(
                "statement_timeout must be a positive number of seconds, got"
                f" {statement_timeout!r}")
        if not isinstance(inline_reads, bool):
            raise BackendConfigError(f"inline_reads must be True or False, got {inline_reads!r}")
        self.path = Path(path)
        self.table = table
        self.busy_timeout = busy_timeout
        self.statement_timeout = float(statement_timeout)
        self.synchronous = synchronous
        self.inline_reads = inline_reads
        self.journal_mode = ""  # set when the database is first opened ("wal")
        self._ready = False
        self._ready_lock = threading.Lock()
        self._conns = Connections()
        self._claims = _flock.ClaimDirectory(self.path.parent, f"{self.path.name}.claims")

    def describe(self, run_id: str) -> str:
        return f"run {run_id!r} (SQLite {self.path}, table {self.table})"

    # -- connections and layout ----------------------------------------------------------

    def _connect(self, slot: str = "conn") -> sqlite3.Connection:
        """A new connection for ``slot``: ``"conn"`` reads and writes (creating the file);
        ``"reader"`` only reads, and never creates the file, a table, or switches the journal
        mode; ``_INLINE`` reads a file that exists, and has no busy timeout: a statement that
        would wait for a lock fails at once (``_NotInline``)."""
        conn: sqlite3.Connection | None = None
        waits = slot != _INLINE
        timeout = self.busy_timeout if waits else 0.0
        try:
            if slot == "conn":
                conn = sqlite3.connect(self.path, timeout=timeout,
                                       isolation_level=None, check_same_thread=False)
                conn.execute(f"PRAGMA synchronous={self.synchronous}")
            else:
                uri = f"{self.path.resolve().as_uri()}?mode={'ro' if slot == 'reader' else 'rw'}"
                conn = sqlite3.connect(uri, uri=True, timeout=timeout,
                                       isolation_level=None, check_same_thread=False)
            conn.set_progress_handler(self._past_deadline, _PROGRESS_STEPS)
            self._check_schema(conn)
        except BackendUnavailableError:
            assert conn is not None
            conn.close()  # refused: do not leak its file descriptor
            raise
        except sqlite3.Error as exc:
            if conn is not None:  # opened, then refused: do not leak its file descriptor
                conn.close()
            if not waits and _waits_for_lock(exc):
                raise _NotInline from exc
            raise BackendUnavailableError(
                f"cannot open SQLite database {self.path}: {exc}{_diagnosis(self.path, exc)}"
            ) from exc
        return conn

    def _past_deadline(self) -> int:
        """SQLite's progress handler: non-zero interrupts the statement running."""
        deadline: float | None = getattr(self._conns.local, "deadline", None)
        return 1 if deadline is not None and time.monotonic() > deadline else 0

    def _check_schema(self, conn: sqlite3.Connection) -> None:
        """Refuse a database whose objects under flujo's names are not the plain tables flujo
        made: a view there, or a trigger on them, runs code of the database's author on every
        read or save (a recursive trigger or view spins forever holding the write lock)."""
        names = (self.table, "flujo_schema_versions")
        # Upstream flujo's table too: a run found there is deleted from it.
        rows = conn.execute(
            "SELECT type, name, tbl_name FROM sqlite_master WHERE (name IN (?, ?) AND type"
            " != 'table') OR (type = 'trigger' AND tbl_name IN (?, ?, ?))",
            (*names, *names, UPSTREAM_TABLE)
        ).fetchall()
        if rows:
            found = ", ".join(f"{kind} {name!r}" + (f" on {table!r}" if kind == "trigger" else "")
                              for kind, name, table in rows)
            raise BackendUnavailableError(
                f"SQLite {self.path}: {found} under flujo's names; flujo uses only the plain"
                f" tables {self.table!r} and 'flujo_schema_versions' it creates, so it does not"
                " use this database")

    @contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        """This thread's connection, the database prepared (created, WAL, tables)."""
        self._ensure_ready()
        with self._using("conn") as conn:
            yield conn

    @contextmanager
    def _reading(self, slot: str = "conn") -> Iterator[sqlite3.Connection | None]:
        """A connection to read with, or None when there is nothing to read: no database
        file, or no flujo table in it. Reads never create the database, add tables or switch
        the journal mode: until this backend has written, they use a read-only connection.
        ``slot``: ``_INLINE`` for a read on the calling thread (the backend is then ready)."""
        with self._read_connection(slot) as conn:
            yield conn if conn is not None and (self._ready or self._has_table(conn)) else None

    @contextmanager
    def _upstream_reading(self) -> Iterator[tuple[sqlite3.Connection, tuple[str, ...]] | None]:
        """A connection and the columns to read upstream flujo's table with, or None when
        the database has no such table (see ``_upstream_sqlite``)."""
        if self.table == UPSTREAM_TABLE:
            yield None
            return
        with self._read_connection() as conn:
            columns = None if conn is None else upstream_columns(conn)
            yield None if conn is None or columns is None else (conn, columns)

    @contextmanager
    def _read_connection(self, slot: str = "conn") -> Iterator[sqlite3.Connection | None]:
        """This thread's connection in ``slot`` once the backend has written, else a
        read-only one; None when there is no database file."""
        if self._ready:
            with self._using(slot) as conn:
                yield conn
            return
        assert slot != _INLINE, "inline reads are made once the backend is ready"
        try:
            mode = self.path.stat().st_mode
        except FileNotFoundError:
            yield None
            return
        except OSError as exc:
            raise BackendUnavailableError(
                f"cannot open SQLite database {self.path}: {exc}") from exc
        if not stat.S_ISREG(mode):
            raise BackendUnavailableError(
                f"cannot open SQLite database {self.path}: it is {kind_of(mode)}")
        with self._using("reader") as conn:
            yield conn

    def _has_table(self, conn: sqlite3.Connection) -> bool:
        found = {name for (name,) in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name IN (?, ?)",
            (self.table, "flujo_schema_versions"))}
        if "flujo_schema_versions" in found:
            row = conn.execute("SELECT version FROM flujo_schema_versions WHERE component = ?",
                               (self.table,)).fetchone()
            if row is not None:
                self._check_layout(int(row[0]))
        return self.table in found

    def _check_layout(self, version: int) -> None:
        if version > SQLITE_SCHEMA_VERSION:
            raise FutureVersionError(
                f"SQLite {self.path}: table {self.table} has layout version {version}; this"
                f" flujo knows up to {SQLITE_SCHEMA_VERSION}. Upgrade flujo",
                path="$",
            )

    @contextmanager
    def _using(self, slot: str) -> Iterator[sqlite3.Connection]:
        """This thread's connection in ``slot`` for one call, its statements interrupted
        after ``statement_timeout``; sqlite3 errors become BackendUnavailableError."""
        conns = self._conns
        conn = conns.take(slot, self._connect)
        local = conns.local
        outer = getattr(local, "deadline", None)  # (a read nested in another keeps its own)
        local.deadline = time.monotonic() + self.statement_timeout
        try:
            yield conn
        except sqlite3.Error as exc:
            if slot == _INLINE and _waits_for_lock(exc):
                raise _NotInline from exc  # a read that changed nothing: the connection is kept
            conns.discard(conn)  # a failed connection is not reused
            why = (f" (a statement ran longer than statement_timeout={self.statement_timeout}s)"
                   if "interrupted" in str(exc) else _diagnosis(self.path, exc))
            raise BackendUnavailableError(f"SQLite {self.path}: {exc}{why}") from exc
        except BaseException:
            if _in_transaction(conn):  # never hand a half-done transaction to the next call
                conns.discard(conn)
            raise
        finally:
            local.deadline = outer
            conns.give_back(conn)

    async def close(self) -> None:
        """Close the connections this backend opened (it reopens them if used again); one
        that another thread is using is closed when that thread is done with it."""
        self._conns.close_all()

    @contextmanager
    def _transaction(self, conn: sqlite3.Connection) -> Iterator[None]:
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def _ensure_ready(self) -> None:
        if self._ready:
            return
        with self._ready_lock:
            if self._ready:
                return
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise BackendUnavailableError(f"cannot create {self.path.parent}: {exc}") from exc
            conn = self._connect()
            self._conns.local.deadline = (time.monotonic() + self.busy_timeout
                                          + self.statement_timeout)
            try:
                self.journal_mode = self._enable_wal(conn)
                with self._transaction(conn):
                    self._migrate(conn)
            except sqlite3.Error as exc:
                raise BackendUnavailableError(
                    f"cannot prepare SQLite database {self.path}: {exc}{_diagnosis(self.path, exc)}"
                ) from exc
            finally:
                self._conns.local.deadline = None
                conn.close()
            self._ready = True

    def _enable_wal(self, conn: sqlite3.Connection) -> str:
        """Switch the database to WAL (persistent); return the journal mode in force.

        Switching needs a moment when no other connection is active, and SQLite reports
        "database is locked" at once (without waiting on the busy timeout) when several
        processes open a new database together, so retry until the busy timeout.
        """
        deadline = time.monotonic() + self.busy_timeout
        while True:
            try:
                mode = str(conn.execute("PRAGMA journal_mode").fetchone()[0]).lower()
                if mode != "wal":
                    mode = str(conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]).lower()
                return mode  # not "wal" only where SQLite cannot do WAL (e.g. some VFSes)
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.01)

    def _migrate(self, conn: sqlite3.Connection) -> None:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS flujo_schema_versions"
            " (component TEXT PRIMARY KEY NOT NULL, version INTEGER NOT NULL)"
        )
        row = conn.execute(
            "SELECT version FROM flujo_schema_versions WHERE component = ?", (self.table,)
        ).fetchone()
        version = 0 if row is None else int(row[0])
        self._check_layout(version)
        for statements in _MIGRATIONS[version:]:
            for statement in statements:
                conn.execute(statement.format(t=self.table))
        conn.execute(
            "INSERT INTO flujo_schema_versions (component, version) VALUES (?, ?)"
            " ON CONFLICT(component) DO UPDATE SET version = excluded.version",
            (self.table, SQLITE_SCHEMA_VERSION),
        )
        # Claim epochs (fencing, see claim): beside the versioned layout, which earlier flujo
        # reads without knowing this table. The row of run id '' (never a run's) counts.
        conn.execute(f'CREATE TABLE IF NOT EXISTS "{self.table}_claim_epochs"'
                     " (run_id TEXT PRIMARY KEY NOT NULL, epoch INTEGER NOT NULL)")

    def schema_version(self) -> int:
        """The table layout version stored in the database (after preparing it)."""
        with self._connection() as conn:
            row = conn.execute(
                "SELECT version FROM flujo_schema_versions WHERE component = ?", (self.table,)
            ).fetchone()
        return 0 if row is None else int(row[0])

    # -- primitives ----------------------------------------------------------------------

    def _read_sync(self, run_id: str, slot: str = "conn") -> StoredRecord | None:
        limit = self.codec.max_record_bytes
        inline = slot == _INLINE
        with self._reading(slot) as conn:
            # The size first: a record over the limit is refused, never fetched.
            row = None if conn is None else conn.execute(
                "SELECT length(CAST(envelope AS BLOB)), CASE WHEN"
                f' length(CAST(envelope AS BLOB)) <= ? THEN envelope END FROM "{self.table}"'
                " WHERE run_id = ?", (min(limit, _INLINE_BYTES) if inline else limit, run_id)
            ).fetchone()
        if row is None:
            if inline:
                raise _NotInline
            return self._read_upstream(run_id)
        if row[1] is None:
            if inline and row[0] <= limit:
                raise _NotInline
            raise record_too_large(self.describe(run_id), row[0], limit)
        return StoredRecord(row[1])

    def _read_upstream(self, run_id: str) -> StoredRecord | None:
        with self._upstream_reading() as found:
            if found is None:
                return None
            conn, columns = found
            raw = upstream_record(conn, columns, run_id, limit=self.codec.max_record_bytes,
                                  path=self.path)
        return None if raw is None else StoredRecord(raw)

    async def _read(self, run_id: str) -> StoredRecord | None:
        return await asyncio.to_thread(self._read_sync, run_id)

    def _write_sync(self, run_id: str, make: WriteRecord,
                    epoch: int | None = None) -> SealedRecord:
        with self._connection() as conn, self._transaction(conn):
            if epoch is not None:
                self._fence(conn, run_id, epoch)
            current = self._current(conn, run_id)
            if current is not None:
                conn.execute(  # the replaced record becomes history
                    f'INSERT OR REPLACE INTO "{self.table}_history" (run_id, revision, envelope)'
                    f' SELECT run_id, revision, envelope FROM "{self.table}" WHERE run_id = ?',
                    (run_id,))
            if current is None and upstream_columns(conn) is not None \
                    and self.table != UPSTREAM_TABLE:
                # A run upstream flujo saved is at revision 1, as it is read.
                created = upstream_created_at(conn, run_id, path=self.path)
                current = None if created is None else CurrentRecord(1, created)
            sealed = make(current)
            env = sealed.envelope
            conn.execute(
                f'INSERT INTO "{self.table}" (run_id, revision, status, pipeline_name,'
                " state_version, created_at, updated_at, envelope)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT(run_id) DO UPDATE SET revision = excluded.revision,"
                " status = excluded.status, pipeline_name = excluded.pipeline_name,"
                " state_version = excluded.state_version, created_at = excluded.created_at,"
                " updated_at = excluded.updated_at, envelope = excluded.envelope",
                (
                    run_id,
                    env.revision,
                    env.status,
                    env.pipeline_name,
                    env.state_version,
                    format_timestamp(env.created_at),
                    format_timestamp(env.updated_at),
                    sealed.raw.decode("utf-8"),
                ),
            )
        return sealed

    def _fence(self, conn: sqlite3.Connection, run_id: str, epoch: int) -> None:
        """Refuse the write in progress (its transaction holds the database's write lock)
        unless ``epoch`` is still the run's claim epoch."""
        row = conn.execute(f'SELECT epoch FROM "{self.table}_claim_epochs" WHERE run_id = ?',
                           (run_id,)).fetchone()
        if row is None or int(row[0]) != epoch:
            raise _flock.fenced_out(self.describe(run_id), epoch)

    def _next_epoch(self, run_id: str) -> int:
        """A new claim epoch for ``run_id``, greater than every epoch given before."""
        table = f'"{self.table}_claim_epochs"'
        with self._connection() as conn, self._transaction(conn):
            conn.execute(f"INSERT INTO {table} (run_id, epoch) VALUES ('', 1)"
                         " ON CONFLICT(run_id) DO UPDATE SET epoch = epoch + 1")
            epoch = int(conn.execute(f"SELECT epoch FROM {table} WHERE run_id = ''")
                        .fetchone()[0])
            conn.execute(f"INSERT INTO {table} (run_id, epoch) VALUES (?, ?)"
                         " ON CONFLICT(run_id) DO UPDATE SET epoch = excluded.epoch",
                         (run_id, epoch))
        return epoch

    def _current(self, conn: sqlite3.Connection, run_id: str) -> CurrentRecord | None:
        row = conn.execute(
            f'SELECT revision, created_at, updated_at FROM "{self.table}" WHERE run_id = ?',
            (run_id,)).fetchone()
        if row is None:
            return None
        what = self.describe(run_id)
        return CurrentRecord(row[0], stored_timestamp(what, "created_at", row[1]),
                             stored_timestamp(what, "updated_at", row[2]))

    def _read_history_sync(self, run_id: str, first: int, last: int,
                           slot: str = "conn") -> list[tuple[int, StoredRecord]]:
        limit = self.codec.max_record_bytes
        inline = slot == _INLINE
        with self._reading(slot) as conn:
            if conn is None:
                return []
            # A table of layout 1 (not written to since) has no history table; once this
            # backend has prepared the database (_ready), it has.
            if not self._ready and conn.execute(
                    "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                    (f"{self.table}_history",)).fetchone() is None:
                return []
            rows = conn.execute(
                "SELECT revision, length(CAST(envelope AS BLOB)), CASE WHEN"
                f' length(CAST(envelope AS BLOB)) <= ? THEN envelope END FROM'
                f' "{self.table}_history" WHERE run_id = ? AND revision BETWEEN ? AND ?'
                " ORDER BY revision",
                (min(limit, _INLINE_BYTES) if inline else limit, run_id, first, last)).fetchall()
        found = []
        for revision, size, raw in rows:
            if raw is None:
                if inline and size <= limit:
                    raise _NotInline
                raise record_too_large(
                    f"{self.describe(run_id)}, revision {revision}", size, limit)
            found.append((revision, StoredRecord(raw)))
        return found

    async def _read_history(self, run_id: str, first: int,
                            last: int) -> list[tuple[int, StoredRecord]]:
        return await asyncio.to_thread(self._read_history_sync, run_id, first, last)

    def _read_chain_sync(self, run_id: str,
                         slot: str = "conn") -> list[tuple[Envelope, int]] | None:
        return self._chain_with_sync(run_id, partial(self._read_sync, slot=slot),
                                     partial(self._read_history_sync, slot=slot))

    async def _read_chain(self, run_id: str) -> list[tuple[Envelope, int]] | None:
        if self.inline_reads and self._ready and self.journal_mode == "wal":
            # In WAL mode a reader waits for no writer: a small record is read here in tens
            # of microseconds, a third of the trip to a worker thread and back.
            try:
                chain = self._read_chain_sync(run_id, _INLINE)
            except _NotInline:
                pass  # locked, long or elsewhere: read on a worker thread
            else:
                # Still a point where other tasks run, as a read on a worker thread is: a
                # task loading a run until another task saves it would otherwise starve it.
                await asyncio.sleep(0)
                return chain
        # The head and its chain in one trip to a worker thread, not two.
        return await asyncio.to_thread(self._read_chain_sync, run_id)

    def _compact_sync(self, run_id: str, make: WriteRecord) -> SealedRecord:
        with self._connection() as conn, self._transaction(conn):
            sealed = make(self._current(conn, run_id))
            conn.execute(f'UPDATE "{self.table}" SET envelope = ? WHERE run_id = ?',
                         (sealed.raw.decode("utf-8"), run_id))
            conn.execute(f'DELETE FROM "{self.table}_history" WHERE run_id = ?', (run_id,))
        return sealed

    async def _compact(self, run_id: str, make: WriteRecord) -> SealedRecord:
        return await asyncio.to_thread(self._compact_sync, run_id, make)

    def _delete_sync(self, run_id: str) -> None:
        if not self._ready:
            try:
                os.stat(self.path)
            except FileNotFoundError:
                return  # no database: no run to delete, and nothing to create for it
            except OSError as exc:
                raise BackendUnavailableError(
                    f"cannot open SQLite database {self.path}: {exc}") from exc
        with self._connection() as conn, self._transaction(conn):
            conn.execute(f'DELETE FROM "{self.table}" WHERE run_id = ?', (run_id,))
            conn.execute(f'DELETE FROM "{self.table}_history" WHERE run_id = ?', (run_id,))
            if self.table != UPSTREAM_TABLE and upstream_columns(conn) is not None:
                delete_upstream(conn, run_id)  # else the run would come back from there

    async def _delete(self, run_id: str) -> None:
        await asyncio.to_thread(self._delete_sync, run_id)
        await asyncio.to_thread(self._claims.clear_cancel, run_id)

    def _list_sync(
        self, status: str | None, pipeline_name: str | None, limit: int | None, offset: int,
        *, upstream_too: bool = True,
    ) -> list[RunSummary]:
        where: list[str] = []
        params: list[Any] = []
        if status is not None:
            where.append("status = ?")
            params.append(status)
        if pipeline_name is not None:
            where.append("pipeline_name = ?")
            params.append(pipeline_name)
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        with self._upstream_reading() as upstream:
            older = [] if upstream is None or not upstream_too else upstream_summaries(
                upstream[0], self.table if self._has_table(upstream[0]) else None, status,
                pipeline_name, path=self.path)
        if older:  # merged with flujo's rows, then paged here
            end = None if limit is None else offset + limit
            rows = sorted([*older, *self._list_sync(status, pipeline_name, None, 0,
                                                    upstream_too=False)],
                          key=lambda r: r["run_id"])
            rows.sort(key=lambda r: r["updated_at"], reverse=True)
            return rows[offset:end]
        params.extend([-1 if limit is None else limit, offset])
        with self._reading() as conn:
            if conn is None:
                return []
            found = conn.execute(
                "SELECT run_id, pipeline_name, status, revision, created_at, updated_at"
                f' FROM "{self.table}"{clause}'
                " ORDER BY updated_at DESC, run_id LIMIT ? OFFSET ?",
                params,
            ).fetchall()
        # The columns are checked (EnvelopeStateBackend.list_runs): anyone with SQL access
        # can put any value of any type into them.
        return [
            RunSummary(
                run_id=r[0],
                pipeline_name=r[1],
                status=r[2],
                revision=r[3],
                created_at=stored_timestamp(self.describe(str(r[0])), "created_at", r[4]),
                updated_at=stored_timestamp(self.describe(str(r[0])), "updated_at", r[5]),
            )
            for r in found
        ]

    async def _list(
        self, status: str | None, pipeline_name: str | None, limit: int | None, offset: int
    ) -> list[RunSummary]:
        return await asyncio.to_thread(self._list_sync, status, pipeline_name, limit, offset)

    def _ids_sync(self) -> list[str]:
        with self._upstream_reading() as upstream:
            older = [] if upstream is None else upstream_ids(
                upstream[0], self.table if self._has_table(upstream[0]) else None)
        with self._reading() as conn:
            if conn is None:
                return older
            return [*older, *(r[0] for r in conn.execute(f'SELECT run_id FROM "{self.table}"'))]

    async def _list_ids(self) -> list[str]:
        return await asyncio.to_thread(self._ids_sync)

    @asynccontextmanager
    async def claim(self, run_id: str) -> AsyncIterator[RunClaim]:
        """Claim via ``flock`` on ``<database>.claims/<run_id>.claim``, with an epoch drawn
        from the database that saves under the claim check (fencing): the kernel keeps the
        lock while its holder lives, and the epoch refuses a holder's saves should its lock
        file be removed and the run claimed again."""
        async with self._claims.claim(run_id) as held:
            epoch = await asyncio.to_thread(self._next_epoch, run_id)
            yield RunClaim(run_id, acquired_at=held.acquired_at, epoch=epoch)
