"""Regression tests for issue 14: records edited by hand (an operator, or an attacker who can
write the store) fail with a flujo error naming the run and the field, and change nothing.

Before these fixes each case below let a bare ``OverflowError``, ``ValueError``,
``TypeError`` or pydantic ``ValidationError`` escape, ran a step before failing, or lost data.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import ConfigDict, PrivateAttr

from flujo import Flujo, PipelineContext, Step
from flujo.exceptions import (
    CorruptStateError,
    FlujoError,
    PipelineMismatchError,
)
from flujo.state import FileBackend, InMemoryBackend, SQLiteBackend, StateBackend, WorkflowState

EDGES = ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"]  # outside years 1-9999 in UTC


def _edit_json(raw: bytes, edit: Callable[[dict[str, Any]], None]) -> bytes:
    record = json.loads(raw)
    edit(record)
    return json.dumps(record).encode()


# -- envelope header timestamps at the edges of the datetime range ------------------------


@pytest.mark.parametrize("value", EDGES)
@pytest.mark.parametrize("field", ["created_at", "updated_at"])
@pytest.mark.parametrize("kind", ["memory", "file", "sqlite"])
async def test_header_timestamps_beyond_the_utc_range_are_corrupt(
        tmp_path: Path, kind: str, field: str, value: str) -> None:
    # was: OverflowError from the envelope's UTC conversion, out of load_state and list_runs
    backend: Any
    if kind == "memory":
        backend = InMemoryBackend()
        await backend.save_state("r", WorkflowState(run_id="r", pipeline_context={"n": 1}))
        raw = _edit_json(backend.raw_records()["r"], lambda r: r.__setitem__(field, value))
        backend.put_raw("r", raw)  # was: OverflowError here already

        def stored() -> bytes:
            return bytes(backend.raw_records()["r"])
    elif kind == "file":
        backend = FileBackend(tmp_path / "runs")
        await backend.save_state("r", WorkflowState(run_id="r", pipeline_context={"n": 1}))
        path = backend.file_for("r")
        path.write_bytes(_edit_json(path.read_bytes(), lambda r: r.__setitem__(field, value)))

        def stored() -> bytes:
            return path.read_bytes()
    else:
        backend = SQLiteBackend(tmp_path / "state.db")
        await backend.save_state("r", WorkflowState(run_id="r", pipeline_context={"n": 1}))
        with sqlite3.connect(tmp_path / "state.db") as conn:
            (text,) = conn.execute("SELECT envelope FROM flujo_state").fetchone()
            conn.execute("UPDATE flujo_state SET envelope = ?",
                         (_edit_json(text.encode(), lambda r: r.__setitem__(field, value))
                          .decode(),))

        def stored() -> bytes:
            with sqlite3.connect(tmp_path / "state.db") as conn:
                return str(conn.execute("SELECT * FROM flujo_state").fetchall()).encode()
    before = stored()
    calls = [backend.load_state("r")]
    if kind != "sqlite":  # SQLite lists from its index columns, untouched here
        calls.append(backend.list_runs())
    for call in calls:
        with pytest.raises(CorruptStateError, match=f"run 'r'.*{field}.*years 1 to 9999"):
            await call
    with pytest.raises(CorruptStateError, match=f"{field}.*years 1 to 9999"):
        await Flujo(Step.from_callable(_unreachable), state_backend=backend).run_async(
            run_id="r")
    assert stored() == before


def _unreachable(data: Any) -> Any:
    raise AssertionError("no step may run on a refused record")


def _failing_pipeline(ran: list[str]) -> Any:
    def first(data: Any) -> Any:
        ran.append("first")
        return data

    def second(data: Any) -> Any:
        ran.append("second")
        raise RuntimeError("second failed")

    return Step.from_callable(first) >> Step.from_callable(second)


# -- SQLite index columns ------------------------------------------------------------------

COLUMN_EDITS = [
    ("created_at", "garbage"),
    ("created_at", EDGES[0]),
    ("created_at", 20240101),
    ("updated_at", None),
    ("updated_at", EDGES[1]),
    ("updated_at", "2024-01-01T00:00:00"),  # no UTC offset
    ("revision", "abc"),
    ("revision", 0),
    ("revision", 1.5),
    ("status", 5),
    ("status", "exploded"),
    ("pipeline_name", None),
    ("run_id", "../escape"),
]


def _untyped_table(db: Path) -> None:
    """Rebuild flujo's table the way a careless operator might: no types, no NOT NULL, so any
    value of any type fits in any column."""
    with sqlite3.connect(db) as conn:
        conn.executescript(
            "ALTER TABLE flujo_state RENAME TO flujo_state_old;"
            "CREATE TABLE flujo_state (run_id PRIMARY KEY, revision, status, pipeline_name,"
            " state_version, created_at, updated_at, envelope);"
            "INSERT INTO flujo_state SELECT * FROM flujo_state_old;"
            "DROP TABLE flujo_state_old;")


def _rows(db: Path) -> list[Any]:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT * FROM flujo_state ORDER BY run_id").fetchall()


@pytest.mark.parametrize(("column", "value"), COLUMN_EDITS)
async def test_edited_sqlite_index_columns_are_corrupt_not_a_crash(
        tmp_path: Path, column: str, value: Any) -> None:
    # was: ValueError (created_at 'garbage'), OverflowError (a timestamp beyond the UTC range),
    # TypeError (revision 'abc' on save), or a listing of a status, revision or run id flujo
    # never writes
    db = tmp_path / "state.db"
    runner = Flujo(_failing_pipeline([]), state_backend=SQLiteBackend(db))
    assert not (await runner.run_async(1, run_id="r")).success
    _untyped_table(db)
    with sqlite3.connect(db) as conn:
        conn.execute(f"UPDATE flujo_state SET {column} = ?", (value,))
    before = _rows(db)
    backend = SQLiteBackend(db)
    with pytest.raises(CorruptStateError, match=f"stored {column} ") as listed:
        await backend.list_runs()
    assert ("'../escape'" if column == "run_id" else "run 'r' (SQLite") in str(listed.value)
    if column in ("created_at", "revision"):  # what a save carries over from the row
        with pytest.raises(CorruptStateError, match=f"run 'r'.*stored {column}"):
            await backend.save_state("r", WorkflowState(run_id="r"))
        # the envelope is intact, so the run loads; its first save is refused
        runner = Flujo(_failing_pipeline([]), state_backend=backend)
        with pytest.raises(CorruptStateError, match=f"run 'r'.*stored {column}"):
            await runner.run_async(run_id="r")
    assert _rows(db) == before


async def test_a_status_edited_in_the_typed_sqlite_table_is_corrupt(tmp_path: Path) -> None:
    # flujo's own table turns 5 into '5' (TEXT affinity): listed as a status flujo never wrote
    db = tmp_path / "state.db"
    backend = SQLiteBackend(db)
    await backend.save_state("r", WorkflowState(run_id="r"))
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE flujo_state SET status = 5")
    with pytest.raises(CorruptStateError, match=r"run 'r'.*status '5'"):
        await backend.list_runs()
    assert await backend.list_runs(status="running") == []


@pytest.mark.parametrize(("column", "value"), [("status", "exploded"), ("revision", 0),
                                             ("revision", -5)])
async def test_edited_postgresql_index_columns_are_corrupt_not_listed(
        postgres_schemas: Callable[[str], tuple[str, str]], column: str, value: Any) -> None:
    # the checks live in the shared backend code, so PostgreSQL has them too
    import psycopg

    from flujo.state import PostgresBackend

    dsn, schema = postgres_schemas("flujo_edited")
    backend = PostgresBackend(dsn, schema=schema, min_size=1, max_size=2)
    try:
        await backend.save_state("r", WorkflowState(run_id="r"))
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f'UPDATE "{schema}".flujo_state SET {column} = %s', (value,))
        with pytest.raises(CorruptStateError, match=f"run 'r'.*stored {column} "):
            await backend.list_runs()
        if column == "revision":
            with pytest.raises(CorruptStateError, match=r"run 'r'.*stored revision"):
                await backend.save_state("r", WorkflowState(run_id="r"))
            with psycopg.connect(dsn, autocommit=True) as conn:
                (stored,) = conn.execute(f'SELECT revision FROM "{schema}".flujo_state').fetchone()
            assert stored == value
    finally:
        await backend.close()


# -- file times standing in for a missing timestamp ----------------------------------------


def _tmpfs() -> Path | None:
    """A directory whose filesystem keeps file times far beyond year 9999 (tmpfs), or None."""
    shm = Path("/dev/shm")
    if not shm.is_dir() or not os.access(shm, os.W_OK):
        return None
    probe = shm / f"flujo-mtime-{os.getpid()}"
    probe.touch()
    try:
        os.utime(probe, (1e18, 1e18))
        return shm if probe.stat().st_mtime == 1e18 else None
    finally:
        probe.unlink()


@pytest.mark.parametrize("mtime", [1e18, -1e15])
async def test_file_times_beyond_the_datetime_range_stand_in_clamped(mtime: float) -> None:
    # A record of earlier flujo has no timestamps; its file's time stands in. Fixed with the
    # store hardening (FileBackend clamps it); pinned here: datetime.fromtimestamp would raise
    # OverflowError/ValueError for these.
    shm = _tmpfs()
    if shm is None:
        pytest.skip("needs a tmpfs at /dev/shm to hold file times beyond year 9999")
    store = shm / f"flujo-mtime-store-{os.getpid()}"
    try:
        backend = FileBackend(store)
        store.mkdir(mode=0o700)  # the earlier flujo's store (constructing creates nothing)
        path = store / "r.json"
        path.write_text(json.dumps({"run_id": "r", "pipeline_context": {"n": 1},
                                    "current_step_index": 0, "status": "running"}))
        os.utime(path, (mtime, mtime))
        loaded = await backend.load_state("r")
        assert loaded is not None and loaded["pipeline_context"] == {"n": 1}
        (row,) = await backend.list_runs()
        assert row["updated_at"].year == (9999 if mtime > 0 else 1)
        assert await backend.save_state("r", WorkflowState(run_id="r")) == 2
    finally:
        for child in sorted(store.rglob("*"), reverse=True):
            child.rmdir() if child.is_dir() else child.unlink()
        store.rmdir()


# -- runner fields inside a stored state ---------------------------------------------------


HUGE = "9" * 4400  # over Python's 4,300-digit limit for int <-> str
RUNNER_EDITS: list[tuple[str, Any, type[FlujoError], str]] = [
    ("current_step_index", "HUGE", CorruptStateError, "not valid JSON"),
    ("current_step_index", {"$t": "int@1", "v": "0x" + "f" * 4400}, PipelineMismatchError,
     "run 'r' is at step an integer of 17600 bits"),
    ("current_step_index", -1, CorruptStateError, "current_step_index"),
    # step_names is a declared field of WorkflowState: refused when the record is decoded.
    ("step_names", 5, CorruptStateError,
     r"(?s)run 'r'.*not a valid WorkflowState.*step_names\n.*valid list"),
    ("step_names", ["first", 2], CorruptStateError,
     r"(?s)run 'r'.*not a valid WorkflowState.*step_names\.1\n.*valid string"),
    ("step_history", [1], CorruptStateError, r"run 'r'.*step_history\[0\], 1, is not a step"),
    ("step_history", [{"name": 5}], CorruptStateError, r"run 'r'.*step_history\[0\].*name"),
    ("failure", 5, CorruptStateError, "run 'r'.*failure, 5, is not a step result"),
    ("failure", {"$t": "flujo.StepResult@1", "v": {"name": "second", "attempts": "x"}},
     CorruptStateError, "run 'r'.*failure is not a valid step result: attempts"),
]


@pytest.mark.parametrize(("field", "value", "error", "message"), RUNNER_EDITS)
async def test_edited_runner_fields_are_refused_before_any_step_runs(
        tmp_path: Path, field: str, value: Any, error: type[FlujoError], message: str) -> None:
    # was: ValueError formatting a 4,300-digit index, TypeError from step_names = 5 or a
    # failure whose attempts is a str, and step_history [1] ran the step and saved before a
    # pydantic ValidationError escaped; failure = 5 was silently ignored
    ran: list[str] = []
    runner = Flujo(_failing_pipeline(ran), state_backend=FileBackend(tmp_path / "runs"))
    assert not (await runner.run_async(1, run_id="r")).success
    backend = FileBackend(tmp_path / "runs")
    await backend.compact("r")  # the run's last checkpoint as one whole state, to edit
    path = backend.file_for("r")

    def edit(record: dict[str, Any]) -> None:
        if field == "step_history":
            record["payload"]["history"] = value
        else:
            record["payload"]["fields"][field] = value

    raw = _edit_json(path.read_bytes(), edit)
    path.write_bytes(raw.replace(b'"HUGE"', HUGE.encode()))
    before, ran[:] = path.read_bytes(), []
    with pytest.raises(error, match=message):
        await runner.run_async(run_id="r")
    assert ran == []
    assert path.read_bytes() == before


class Loose(PipelineContext):
    model_config = ConfigDict(extra="allow")
    n: int = 0
    _secret: int = PrivateAttr(default=3)


ODD_NAMES = {"_fields_set": "kept", "_secret": 99, "__class__": 1, "__dict__": 2,
             "__pydantic_extra__": 3, "model_config": 4}


async def test_extra_context_fields_with_reserved_names_are_restored_as_extras() -> None:
    # was: model_construct took "_fields_set" as its own argument (the value lost, and
    # __pydantic_fields_set__ set to it) and "_secret" as the private attribute's value
    seen: list[Loose] = []

    def check(data: Any, *, context: Loose) -> Any:
        seen.append(context)
        if len(seen) == 1:
            raise RuntimeError("fail once, so that the run is resumed")
        return data

    backend = InMemoryBackend()
    runner = Flujo(Step.from_callable(check), context_model=Loose, state_backend=backend)
    assert not (await runner.run_async(1, run_id="r", initial_context_data=ODD_NAMES)).success
    assert (await runner.run_async(run_id="r")).success
    first, resumed = seen
    assert first.model_extra == resumed.model_extra == ODD_NAMES
    assert resumed.model_fields_set == {"run_id", "initial_prompt", "scratchpad", "n"}
    assert resumed._secret == 3
    assert resumed.model_dump(exclude_unset=True)["_fields_set"] == "kept"


async def test_an_edited_context_with_a_fields_set_key_resumes_with_it_as_an_extra() -> None:
    backend = InMemoryBackend()
    runner = Flujo(_failing_pipeline([]), context_model=Loose, state_backend=backend)
    await runner.run_async(1, run_id="r")
    await backend.compact("r")  # the run's last checkpoint as one whole state, to edit
    raw = _edit_json(backend.raw_records()["r"], lambda r: r["payload"]["fields"][
        "pipeline_context"].__setitem__("_fields_set", 5))
    backend.put_raw("r", raw)
    result = await runner.run_async(run_id="r")
    assert result.final_pipeline_context.model_extra == {"_fields_set": 5}
    assert isinstance(result.final_pipeline_context.model_fields_set, set)


class Rows(PipelineContext):
    rows: int = 0


async def test_an_earlier_flujo_context_that_does_not_fit_the_model_is_a_mismatch() -> None:
    # was: pydantic ValidationError from parsing the plain-JSON context of earlier flujo
    backend = InMemoryBackend()
    earlier = {"run_id": "old", "pipeline_name": "pipeline", "pipeline_version": "1",
               "current_step_index": 0, "pipeline_context": {"rows": "many"},
               "step_history": [], "status": "paused"}
    backend.put_raw("old", json.dumps(earlier).encode())
    runner = Flujo(Step.from_callable(_unreachable), context_model=Rows, state_backend=backend)
    with pytest.raises(PipelineMismatchError, match=r"run 'old'.*rows"):
        await runner.run_async(run_id="old")


class DictOnlyBackend(StateBackend):
    """A custom backend of the earlier, dict-only contract, holding an edited state."""

    def __init__(self, state: dict[str, Any]) -> None:
        self.state = state

    async def save_state(self, run_id: str, state: Any, *, expected_revision: Any = None) -> None:
        raise AssertionError("nothing may be saved")

    async def load_state(self, run_id: str) -> dict[str, Any] | None:
        return self.state

    async def delete_state(self, run_id: str) -> None:
        raise AssertionError("nothing may be deleted")


async def test_an_invalid_state_from_a_dict_only_backend_is_corrupt() -> None:
    # was: pydantic ValidationError out of Flujo.run
    backend = DictOnlyBackend({"run_id": "r", "current_step_index": "first"})
    runner = Flujo(Step.from_callable(_unreachable), state_backend=backend)
    with pytest.warns(RuntimeWarning, match="no run claim"), \
            pytest.raises(CorruptStateError, match=r"run 'r'.*current_step_index"):
        await runner.run_async(run_id="r")
