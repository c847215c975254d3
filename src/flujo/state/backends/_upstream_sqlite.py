"""Reading the ``workflow_state`` table upstream flujo 0.4.x kept in its SQLite databases.

Upstream's ``SQLiteBackend`` stored one row per run: index columns plus the context, the last
output and the step history as JSON text (plain JSON: a datetime as a string, a model as a
dict), with naive UTC timestamps. ``SQLiteBackend`` reads such a database
in place: a run found only there is returned as a record of earlier flujo (a bare state
dict, envelope version 0; the runner lets the context model parse its plain JSON back), its
first save goes to flujo's own table, and ``delete_state`` removes it from both. Nothing in
upstream's table is ever rewritten: ``flujo state migrate`` copies each run into flujo's
table, where it shadows the old row.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from typing import Any

from flujo.exceptions import CorruptStateError

from .._envelope_codec import record_too_large
from .._jsonio import JSONError, dumps, loads
from .._runid import validate_run_id
from ..models import RUN_STATUSES, RunSummary
from .base import shown

__all__ = [
    "UPSTREAM_TABLE",
    "delete_upstream",
    "upstream_columns",
    "upstream_created_at",
    "upstream_ids",
    "upstream_record",
    "upstream_summaries",
]

UPSTREAM_TABLE = "workflow_state"
_REQUIRED = ("run_id", "pipeline_id", "pipeline_name", "pipeline_version", "current_step_index",
             "pipeline_context", "last_step_output", "status", "created_at", "updated_at")
# Added by upstream's own schema migrations: absent from databases of its first releases.
_OPTIONAL = ("step_history", "total_steps", "error_message", "execution_time_ms",
             "memory_usage_mb")
_TEXT_COLUMNS = ("run_id", "pipeline_name", "pipeline_version")
_JSON_COLUMNS: dict[str, Any] = {"pipeline_context": {}, "last_step_output": None,
                                 "step_history": []}


def upstream_columns(conn: sqlite3.Connection) -> tuple[str, ...] | None:
    """The columns of upstream's table to read, or None when the database has none (a view
    or a table of another layout under that name is not upstream's)."""
    row = conn.execute("SELECT type FROM sqlite_master WHERE name = ?",
                       (UPSTREAM_TABLE,)).fetchone()
    if row is None or row[0] != "table":
        return None
    present = {info[1] for info in conn.execute(f'PRAGMA table_info("{UPSTREAM_TABLE}")')}
    if not set(_REQUIRED) <= present:
        return None
    return tuple(c for c in (*_REQUIRED, *_OPTIONAL) if c in present)


def _what(path: object, run_id: str) -> str:
    return f"run {run_id!r} (SQLite {path}, upstream flujo's table {UPSTREAM_TABLE})"


def upstream_record(conn: sqlite3.Connection, columns: tuple[str, ...], run_id: str, *,
                    limit: int, path: object) -> bytes | None:
    """The run's row as the bare state dict earlier flujo wrote (JSON bytes), or None.

    A row over ``limit`` bytes is refused before it is fetched; JSON text that does not
    parse is refused naming the column (CorruptStateError; the row is left as it is)."""
    what = _what(path, run_id)
    size = " + ".join(f'coalesce(length(CAST("{c}" AS BLOB)), 0)' for c in columns)
    found = conn.execute(f'SELECT max({size}) FROM "{UPSTREAM_TABLE}" WHERE run_id = ?',
                         (run_id,)).fetchone()
    if found is not None and found[0] is None:
        found = None  # no row
    if found is None:
        return None
    if found[0] > limit:
        raise record_too_large(what, found[0], limit)
    names = ", ".join(f'"{c}"' for c in columns)
    row = conn.execute(f'SELECT {names} FROM "{UPSTREAM_TABLE}" WHERE run_id = ?'
                       " ORDER BY updated_at DESC LIMIT 1", (run_id,)).fetchone()
    if row is None:  # deleted in between
        return None
    state: dict[str, Any] = {}
    for name, value in zip(columns, row, strict=True):
        if name in _JSON_COLUMNS:
            state[name] = _json(what, name, value)
        else:
            state[name] = value
    problems = [f"{name} {shown(state[name])} is not text" for name in _TEXT_COLUMNS
                if type(state[name]) is not str]
    if state["status"] not in RUN_STATUSES:
        problems.append(f"status {shown(state['status'])} is not one of"
                        f" {', '.join(RUN_STATUSES)}")
    index = state["current_step_index"]
    if type(index) is not int or index < 0:
        problems.append(f"current_step_index {shown(index)} is not an integer >= 0")
    if problems:
        raise CorruptStateError(f"{what}: the column {'; the column '.join(problems)}"
                                " (the row was left as it is)")
    state.setdefault("step_history", [])
    for name in ("created_at", "updated_at"):
        state[name] = _timestamp(what, name, state[name]).isoformat()
    return dumps(state)


def _json(what: str, column: str, value: object) -> Any:
    if value is None:
        return _JSON_COLUMNS[column]
    if not isinstance(value, str | bytes):
        raise CorruptStateError(f"{what}: the column {column} holds {shown(value)}, not JSON"
                                " text")
    try:
        return loads(value)
    except JSONError as exc:
        raise CorruptStateError(f"{what}: the column {column} is not JSON text: {exc}") from exc


def _timestamp(what: str, column: str, value: object) -> datetime:
    """Upstream wrote ``datetime.utcnow().isoformat()``: naive UTC."""
    try:
        parsed = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        parsed = None
    if parsed is None:
        raise CorruptStateError(f"{what}: the column {column}, {shown(value)}, is not a"
                                " timestamp")
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def upstream_created_at(conn: sqlite3.Connection, run_id: str, *, path: object
                        ) -> datetime | None:
    """When upstream created the run (its first save in flujo's table keeps it), or None."""
    row = conn.execute(f'SELECT created_at FROM "{UPSTREAM_TABLE}" WHERE run_id = ?',
                       (run_id,)).fetchone()
    return None if row is None else _timestamp(_what(path, run_id), "created_at", row[0])


def _shadowing(flujo_table: str | None) -> str:
    """Upstream rows of runs flujo's table already holds are not listed (flujo's win)."""
    if flujo_table is None:
        return ""
    return f' AND run_id NOT IN (SELECT run_id FROM "{flujo_table}")'


def upstream_summaries(conn: sqlite3.Connection, flujo_table: str | None, status: str | None,
                       pipeline_name: str | None, *, path: object) -> list[RunSummary]:
    """Listing rows of the runs only upstream's table holds (revision 1, as read)."""
    where = ["1 = 1"]
    params: list[Any] = []
    if status is not None:
        where.append("status = ?")
        params.append(status)
    if pipeline_name is not None:
        where.append("pipeline_name = ?")
        params.append(pipeline_name)
    # One row per run (a table without upstream's primary key may hold a run twice: the
    # latest is the run, as reading it by id takes).
    rows = conn.execute(
        "SELECT run_id, pipeline_name, status, created_at, MAX(updated_at)"
        f' FROM "{UPSTREAM_TABLE}" WHERE {" AND ".join(where)}{_addressable()}'
        f"{_shadowing(flujo_table)} GROUP BY run_id", params).fetchall()
    return [RunSummary(run_id=r[0], pipeline_name=r[1], status=r[2], revision=1,
                       created_at=_timestamp(_what(path, r[0]), "created_at", r[3]),
                       updated_at=_timestamp(_what(path, r[0]), "updated_at", r[4]))
            for r in rows if _valid_id(r[0])]


def upstream_ids(conn: sqlite3.Connection, flujo_table: str | None) -> list[str]:
    return [r[0] for r in conn.execute(
        f'SELECT DISTINCT run_id FROM "{UPSTREAM_TABLE}" WHERE 1 = 1{_addressable()}'
        f"{_shadowing(flujo_table)}") if _valid_id(r[0])]


def _addressable() -> str:
    """Rows a run id can name: upstream's ``run_id TEXT PRIMARY KEY`` admits NULL (and, in
    SQLite, any type); such a row is no run flujo could load, save or delete, so it is not
    listed (it stays in upstream's table, untouched)."""
    return " AND typeof(run_id) = 'text'"


def _valid_id(run_id: str) -> bool:
    """Whether ``run_id`` is one flujo can address (``validate_run_id``); others are not
    listed either, for the same reason."""
    try:
        validate_run_id(run_id)
    except ValueError:
        return False
    return True


def delete_upstream(conn: sqlite3.Connection, run_id: str) -> None:
    conn.execute(f'DELETE FROM "{UPSTREAM_TABLE}" WHERE run_id = ?', (run_id,))
